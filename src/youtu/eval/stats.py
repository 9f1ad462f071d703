"""Uncertainty for evaluation scores: 95% intervals and paired differences between models.

    lo, hi = wilson_interval(correct=37, n=100)                # one model's accuracy
    d = paired_difference(base, other)                         # same items, two models
    d.diff, d.lo, d.hi, d.p_value                              # other - base, 95% CI, McNemar

The arms of the agentic ablation answer the same items, so their difference is judged item by
item (a paired test), which is far tighter than comparing two independent intervals: two
30%-accurate models on 200 items have intervals +-6.4 points each, while their paired difference
is limited only by the items on which they disagree. Items are matched by id, so a model that
skipped an item is compared on the shared ones only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Z95 = 1.959963984540054
"""Two-sided 95% quantile of the standard normal."""


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (sane at 0% and 100%, unlike +-1.96 SE)."""
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class PairedDiff:
    """`other - base` accuracy on the items both answered."""

    n: int
    base: float
    other: float
    diff: float
    lo: float
    hi: float
    gained: int
    """Items `other` got right and `base` wrong."""
    lost: int
    """Items `base` got right and `other` wrong."""
    p_value: float
    """Exact two-sided McNemar test (binomial on the discordant items)."""

    @property
    def significant(self) -> bool:
        """The 95% interval of the difference excludes zero."""
        return self.lo > 0 or self.hi < 0


def mcnemar_p(gained: int, lost: int) -> float:
    """Exact two-sided McNemar p-value: under no difference each discordant item is a coin flip."""
    m = gained + lost
    if m == 0:
        return 1.0
    k = min(gained, lost)
    tail = sum(math.comb(m, i) for i in range(k + 1)) / 2**m
    return min(1.0, 2 * tail)


def paired_difference(base: dict[str, bool], other: dict[str, bool], z: float = Z95) -> PairedDiff:
    """Paired accuracy difference over the ids both dicts hold ({item id: correct}).

    The interval is the normal one on the per-item differences d_i in {-1, 0, 1} (sample
    variance), which is what a paired t-test uses at these item counts."""
    ids = sorted(base.keys() & other.keys())
    n = len(ids)
    if n == 0:
        raise ValueError("the two result sets share no item ids: nothing to compare")
    d = [int(bool(other[i])) - int(bool(base[i])) for i in ids]
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / (n - 1) if n > 1 else 0.0
    half = z * math.sqrt(var / n)
    gained, lost = d.count(1), d.count(-1)
    return PairedDiff(n=n, base=sum(bool(base[i]) for i in ids) / n,
                      other=sum(bool(other[i]) for i in ids) / n, diff=mean, lo=mean - half,
                      hi=mean + half, gained=gained, lost=lost, p_value=mcnemar_p(gained, lost))


def _read_rows(path: str | Path) -> dict[str, bool]:
    """{id: correct} of a predictions JSONL (the last row of an id wins: resumed runs append)."""
    out: dict[str, bool] = {}
    p = Path(path)
    if not p.is_file():
        return out
    for line in p.read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        if isinstance(row, dict) and "id" in row and "correct" in row:
            out[str(row["id"])] = bool(row["correct"])
    return out


def item_outcomes(result: dict[str, Any], group: str) -> dict[str, bool]:
    """Per-item correctness of one score group ('probe', 'aptbench', 'cloze') of a result set
    from `youtu.eval.runner.evaluate`, read from the predictions files its details name; ids are
    prefixed by their task so items of different tasks never collide."""
    out: dict[str, bool] = {}
    details = result.get("details") if isinstance(result.get("details"), dict) else {}
    for section in details.values():
        if not isinstance(section, dict):
            continue
        if group == "cloze" and isinstance(section.get("tasks"), dict) and section.get("predictions"):
            out.update({f"cloze:{k}": v for k, v in _read_rows(section["predictions"]).items()})
        for key, task in (section.get("details") or {}).items():
            if key.startswith(group + "/") and isinstance(task, dict) and task.get("predictions"):
                out.update({f"{key}:{k}": v for k, v in _read_rows(task["predictions"]).items()})
    return out
