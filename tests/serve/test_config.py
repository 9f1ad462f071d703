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


@pytest.mark.parametrize("setting,expected", [(0, 1), (3, 3)])
def test_cpu_threads_are_set_from_config_for_serve_chat_and_agent(checkpoint, setting, expected):
    import torch

    from youtu.config import RunConfig, replace
    from youtu.serve.engine import engine_from_config

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = replace(RunConfig(), [f"--serve.checkpoint={checkpoint}", "--device=cpu",
                                    f"--serve.cpu_threads={setting}", "--serve.max_seq_len=256"])
        engine_from_config(cfg.serve, run_dir=cfg.run_dir, device=cfg.device)  # the one loader
        assert torch.get_num_threads() == expected  # 0 = auto: one thread for a tiny model
    finally:
        torch.set_num_threads(before)


def test_auto_threads_leave_large_models_to_torch():
    from youtu.serve.config import SMALL_MODEL_PARAMS

    assert ServeConfig().threads_for(1_961_560_064) == 0 and ServeConfig().threads_for(10**6) == 1
    assert ServeConfig(cpu_threads=4).threads_for(SMALL_MODEL_PARAMS * 10) == 4
    with pytest.raises(ValueError, match="cpu_threads"):
        ServeConfig(cpu_threads=-1)
    with pytest.raises(ValueError, match="max_request_bytes"):
        ServeConfig(max_request_bytes=10)
