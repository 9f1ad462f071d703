"""The [eval] section: validation, shipped configs, CLI overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from youtu.config import ConfigError, load_config
from youtu.eval.config import EvalConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["tiny", "small", "youtu-2b"])
def test_shipped_configs_load(name):
    cfg = load_config(CONFIGS / f"{name}.toml")
    assert cfg.eval.needle_max_tokens <= cfg.model.max_position_embeddings


@pytest.mark.parametrize("override, message", [
    ("--eval.tasks=['aptbench', 'mmlu']", "unknown task group.*mmlu"),
    ("--eval.probe_seed=7", "probe_seed must be >= 1,000,000"),
    ("--eval.probe_kinds=['planing']", "unknown kind"),
    ("--eval.batch_size=0", "batch_size must be >= 1"),
    ("--eval.needle_depths=[1.5]", "needle_depths"),
    ("--eval.backend=openai", "needs base_url"),
    ("--eval.aptbench_limt=3", "Did you mean 'aptbench_limit'"),
    ("--eval.compare=['before=']", "compare: entry 'before=' must be 'label=path' or 'path'"),
    ("--eval.compare=['=runs/x/results.json']", "compare: entry"),
    ("--eval.compare=['']", "compare: entry"),
])
def test_bad_values_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_defaults():
    cfg = EvalConfig()
    assert cfg.probe_seed == 1_000_000 and cfg.max_prompt_tokens == 120_000
    assert "aptbench" in cfg.tasks and cfg.backend == "youtu"
