"""What a code task family is (`Family`), and small helpers for writing one.

    Family(name, fn, signature, doc, reference, bugs, inputs, edge, names=..., docs=...,
           strategies=...)

The families themselves are in `code_families_core.py` and `code_families.py`; drawing a task
from one is `code_tasks.variant`.
"""

from __future__ import annotations

import random
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

BUG_KINDS = ("off_by_one", "edge_case", "wrong_logic")
"""What a bug is, as the teacher's mistake catalogue names it."""


@dataclass(frozen=True)
class Family:
    name: str
    fn: str
    signature: str
    doc: str
    """The spec; `$name` stands for an identifier of the reference (renamed by `variant`)."""
    reference: str
    bugs: tuple[tuple[str, str, str], ...]
    """(source, why it is wrong, kind: one of BUG_KINDS)."""
    inputs: Callable[[random.Random], tuple]
    edge: tuple[tuple, ...] = ()
    """Inputs always tested (the edge cases the bugs trip on)."""
    names: tuple[str, ...] = ()
    """Other names the function may get."""
    docs: tuple[str, ...] = ()
    """Other phrasings of the spec."""
    strategies: tuple[str, ...] = ()
    """Other correct implementations (other solution strategies)."""


def _src(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


def _ints(rng: random.Random, n: int, lo: int = -20, hi: int = 40) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(n)]
