"""Tokenizer configuration (owned by youtu.tokenizer)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(kw_only=True)
class TokenizerConfig:
    """Multi-stage byte-level BPE training and evaluation."""

    path: str = ""
    """Existing tokenizer folder to use; empty = train one into `<run_dir>/tokenizer`."""
