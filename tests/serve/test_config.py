"""ServeConfig validation and the shipped configs' [serve] sections."""

from __future__ import annotations

import pytest

from youtu.config import ConfigError, load_config
from youtu.serve.config import ServeConfig


@pytest.mark.parametrize("bad,field", [(dict(port=0), "port"), (dict(max_batch=0), "max_batch"),
                                       (dict(max_seq_len=1), "max_seq_len"),
                                       (dict(cache_memory_mb=-1), "cache_memory_mb"),
                                       (dict(top_p=0.0), "top_p"), (dict(tools=["web"]), "tools"),
                                       (dict(compile_decode=True, use_cuda_graph=False), "compile_decode")])
def test_bad_values_name_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        ServeConfig(**bad)


@pytest.mark.parametrize("name", ["tiny", "small", "youtu-2b"])
def test_shipped_configs_serve_sections(name):
    cfg = load_config(f"configs/{name}.toml")
    assert cfg.serve.max_seq_len <= cfg.model.max_position_embeddings
    with pytest.raises(ConfigError, match="serve.max_batch"):
        load_config(f"configs/{name}.toml", ["--serve.max_batch=zero"])
