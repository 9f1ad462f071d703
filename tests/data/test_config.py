"""DataConfig and StageConfig: validation, TOML round trip, the shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from youtu.config import ConfigError, load_config, replace
from youtu.data.config import DataConfig, StageConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("override,match", [
    ("--data.workers=-1", "data.workers"),
    ("--data.dedup.threshold=1.5", "dedup.threshold"),
    ("--data.quality.min_words=0", "quality.min_words"),
    ("--data.embedded.stem_chars=-3", "embedded.stem_chars"),
    ("--data.classifier=svm", "'rules', 'bayes'"),
    ("--data.shard_chars=10", "shard_chars"),
    ("--data.heldout_fraction=-0.1", "data.heldout_fraction"),
    ("--data.heldout_fraction=1.0", "data.heldout_fraction"),
    ("--data.executor.tasks=-1", "data.executor.tasks"),
    ("--data.executor.kind=ray", "'local', 'slurm'"),
    ("--data.executor.cpus_per_task=0", "cpus_per_task"),
])
def test_bad_values_name_the_field(override, match):
    from youtu.config import RunConfig

    with pytest.raises(ConfigError, match=match):
        replace(RunConfig(), [override])


def test_shard_subfolder_names_are_not_domains():
    from youtu.data.config import SourceConfig

    for name in ("heldout", "tokenizer"):
        with pytest.raises(ValueError, match=f"sources\\[\\].domain cannot be '{name}'"):
            SourceConfig(path="x.jsonl", domain=name)


def test_stage_validation():
    with pytest.raises(ValueError, match="mix needs non-negative weights"):
        StageConfig(mix={"code": -1.0})
    with pytest.raises(ValueError, match="seq_len"):
        StageConfig(seq_len=0)


def test_sources_from_toml(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[data]\nworkers = 1\n[[data.sources]]\npath = "web.jsonl.zst"\n'
                    'domain = "commonsense"\ntext_field = "content"\n')
    cfg = load_config(path)
    assert cfg.data.sources[0].text_field == "content" and cfg.data.workers == 1
    with pytest.raises(ConfigError, match="sources"):
        path.write_text('[[data.sources]]\ndomain = "code"\n')  # no path
        load_config(path)


@pytest.mark.parametrize("name", ["tiny", "small", "youtu-2b"])
def test_shipped_configs_load(name):
    cfg = load_config(ROOT / "configs" / f"{name}.toml")
    assert isinstance(cfg.data, DataConfig)


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_shipped_configs_hold_out_a_few_percent(name):
    fraction = load_config(ROOT / "configs" / f"{name}.toml").data.heldout_fraction
    assert 0.01 <= fraction <= 0.05
