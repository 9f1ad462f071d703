"""Training configuration (owned by youtu.train): pre-/mid-training, SFT, RL."""

from __future__ import annotations

from dataclasses import dataclass, field

from youtu.data.config import StageConfig


@dataclass(kw_only=True)
class TrainConfig:
    """Curriculum pre-training and mid-training."""

    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    """The curriculum, in order."""


@dataclass(kw_only=True)
class SFTConfig:
    """Supervised fine-tuning on conversations and rendered trajectories."""

    steps: int = 100
    """Optimizer steps."""


@dataclass(kw_only=True)
class RLConfig:
    """GRPO-style RL with verifiable rewards."""

    steps: int = 20
    """Policy updates."""
