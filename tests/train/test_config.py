"""TrainConfig / SFTConfig validation and the shipped configs' train sections."""

from __future__ import annotations

from pathlib import Path

import pytest

from youtu.config import ConfigError, load_config
from youtu.train.config import SFTConfig, TrainConfig
from youtu.train.schedule import plan_stages, wsd_for_plan

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.toml"))


def test_defaults_plan_the_four_paper_stages():
    cfg = TrainConfig()
    plan = plan_stages(cfg.stages, base_rope_theta=1e4)
    assert [s.name for s in plan] == ["commonsense", "stem", "general", "agent"]
    sched = wsd_for_plan(plan, peak_lr=cfg.lr, warmup_steps=cfg.warmup_steps, decay=cfg.decay,
                         min_lr_ratio=cfg.min_lr_ratio)
    assert sched.decay_start == plan[2].start_step and sched.decay_end == plan[3].end_step


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_plan(path):
    cfg = load_config(path)
    plan = plan_stages(cfg.train.stages, base_rope_theta=cfg.model.rope_theta)
    wsd_for_plan(plan, peak_lr=cfg.train.lr, warmup_steps=cfg.train.warmup_steps,
                 decay=cfg.train.decay, min_lr_ratio=cfg.train.min_lr_ratio)
    assert max(s.seq_len for s in plan) <= cfg.model.max_position_embeddings
    assert cfg.sft.seq_len <= cfg.model.max_position_embeddings


@pytest.mark.parametrize("override, message", [
    ("--train.lr=0", "lr must be positive"),
    ("--train.min_lr_ratio=2", "min_lr_ratio"),
    ("--train.run_stages=[\"sft\"]", "run_stages: unknown stage"),
    ("--train.run_stages=[\"commonsense\", \"general\"]", "contiguous"),
    ("--train.spike_factor=0.5", "spike_factor must be > 1"),
    ("--train.keep_last=0", "keep_last must be >= 1"),
    ("--train.decay=\"exp\"", "not one of the valid choices"),
    ("--sft.batch_tokens=1000", "multiple of seq_len"),
    ("--sft.decay_fraction=1.5", "decay_fraction"),
])
def test_bad_values_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_sft_inherits_loop_fields_with_its_own_defaults():
    s = SFTConfig()
    assert s.lr == 1e-3 and s.weight_decay == 0.0 and s.spike_factor == 0.0
    assert s.grad_clip == TrainConfig().grad_clip  # shared field, shared default
