"""Serving configuration (owned by youtu.serve): engine, server, agent, chat."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(kw_only=True)
class ServeConfig:
    """Engine and OpenAI-compatible server."""

    checkpoint: str = ""
    """Checkpoint folder to serve; empty = the run's latest."""
    host: str = "127.0.0.1"
    """Bind address."""
    port: int = 8000
    """Bind port."""
