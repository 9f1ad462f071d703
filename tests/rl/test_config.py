"""RLConfig: the trainer's optimizer keys, none of the pre-training loop's."""

from __future__ import annotations

import pytest

from youtu.config import ConfigError, load_config
from youtu.rl.config import RLConfig
from youtu.train.config import LoopConfig, OptimizerConfig


def test_rl_shares_the_optimizer_section_not_the_training_loop():
    cfg = load_config(None, ["--rl.lr=2e-6", "--rl.beta2=0.99", "--rl.grad_clip=0.5"])
    assert isinstance(cfg.rl, OptimizerConfig) and not isinstance(cfg.rl, LoopConfig)
    assert (cfg.rl.lr, cfg.rl.beta2, cfg.rl.grad_clip) == (2e-6, 0.99, 0.5)


@pytest.mark.parametrize("key", ["spike_factor", "max_skipped_steps", "heldout_tokens",
                                 "loss_kernel"])
def test_loop_keys_rl_never_read_are_errors(key):
    with pytest.raises(ConfigError, match=f"'rl.{key}' is gone: RL never read it.*delete it"):
        load_config(None, [f"--rl.{key}=1"])


def test_rl_validation_names_the_field():
    with pytest.raises(ValueError, match="checkpoint_every"):
        RLConfig(checkpoint_every=-1)
    with pytest.raises(ValueError, match="lr must be positive"):
        RLConfig(lr=0)
