"""Fixtures for eval tests: the APTBench folder (skip when absent) and scripted fake models."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from youtu.eval.aptbench import aptbench_dir
from youtu.eval.harness import LM, GenerationRequest


@pytest.fixture
def aptbench_root():
    root = aptbench_dir()
    if not (root / "data").is_dir():
        pytest.skip(f"APTBench data not found at {root} (set YOUTU_APTBENCH_DIR)")
    return root


class ScriptedLM(LM):
    """A fake model: `reply(prompt) -> generated text`; counts the prompts it saw."""

    def __init__(self, reply: Callable[[str], str], max_length: int = 1 << 20):
        self.reply, self.max_length, self.name = reply, max_length, "scripted"
        self.seen: list[str] = []

    def generate_until(self, requests: Sequence[GenerationRequest]) -> list[str]:
        self.seen += [r.prompt for r in requests]
        return [self.reply(r.prompt) for r in requests]


@pytest.fixture
def scripted_lm():
    return ScriptedLM
