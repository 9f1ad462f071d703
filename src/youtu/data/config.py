"""Data configuration (owned by youtu.data): sources, filters, shards, curriculum stages."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(kw_only=True)
class StageConfig:
    """One curriculum stage: what data, how much, how long the sequences, how the LR moves."""

    name: str = "commonsense"
    """Stage name (commonsense, stem, general, agent, ...)."""
    tokens: int = 1_000_000
    """Token budget of the stage."""
    seq_len: int = 256
    """Training sequence length in this stage."""
    batch_tokens: int = 8192
    """Global batch size in tokens."""
    mix: dict[str, float] = field(default_factory=lambda: {"commonsense": 1.0})
    """Domain -> sampling weight (normalised)."""
    lr_phase: str = "stable"
    """'warmup_stable' | 'stable' | 'decay': where this stage sits in the WSD schedule."""
    rope_theta: float = 0.0
    """RoPE base from this stage on; 0 = unchanged."""


@dataclass(kw_only=True)
class DataConfig:
    """Where documents come from and how they become token shards."""

    dir: str = ""
    """Token shard folder; empty = `<run_dir>/data`."""
