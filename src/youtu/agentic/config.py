"""Synthesis configuration (owned by youtu.agentic)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(kw_only=True)
class SynthConfig:
    """Agentic trajectory synthesis: domains, sizes, teachers, workers."""

    out: str = ""
    """Output folder for trajectory shards; empty = `<run_dir>/synth`."""
