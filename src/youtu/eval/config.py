"""Evaluation configuration (owned by youtu.eval)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(kw_only=True)
class EvalConfig:
    """What to evaluate and with which backend."""

    checkpoint: str = ""
    """Checkpoint folder to evaluate; empty = the run's latest."""
