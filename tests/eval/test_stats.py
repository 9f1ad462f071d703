"""95% intervals and paired differences (youtu.eval.stats), checked against values computed
independently (scipy's exact binomial test, textbook Wilson numbers) and on planted effects."""

from __future__ import annotations

import json
import math
import random

import pytest

from youtu.eval.report import write_report
from youtu.eval.stats import item_outcomes, mcnemar_p, paired_difference, wilson_interval


def test_wilson_matches_the_textbook_values():
    # Wilson 95% for 81/263 (Newcombe 1998, table I example): 0.2553 to 0.3662
    lo, hi = wilson_interval(81, 263)
    assert lo == pytest.approx(0.2553, abs=1e-4) and hi == pytest.approx(0.3662, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and 0.25 < wilson_interval(0, 10)[1] < 0.35


def test_mcnemar_is_the_exact_binomial_test():
    scipy_stats = pytest.importorskip("scipy.stats")
    for gained, lost in [(12, 3), (5, 5), (0, 7), (30, 18)]:
        want = scipy_stats.binomtest(min(gained, lost), gained + lost, 0.5).pvalue
        assert mcnemar_p(gained, lost) == pytest.approx(want, rel=1e-9)


def test_paired_difference_finds_a_planted_effect_and_not_a_null_one():
    rng = random.Random(0)
    ids = [str(i) for i in range(400)]
    base = {i: rng.random() < 0.3 for i in ids}
    better = {i: base[i] or rng.random() < 0.2 for i in ids}  # ~+14 points, never worse
    same = {i: base[i] if rng.random() < 0.9 else rng.random() < 0.3 for i in ids}
    d = paired_difference(base, better)
    assert d.significant and d.lo > 0 and d.lost == 0 and d.p_value < 1e-6
    assert d.diff == pytest.approx(d.other - d.base)
    null = paired_difference(base, same)
    assert not null.significant and null.p_value > 0.05
    # the interval is the normal one on the per-item differences
    diffs = [int(same[i]) - int(base[i]) for i in ids]
    m = sum(diffs) / len(diffs)
    sd = math.sqrt(sum((x - m) ** 2 for x in diffs) / (len(diffs) - 1))
    assert null.hi - null.lo == pytest.approx(2 * 1.96 * sd / math.sqrt(len(diffs)), rel=1e-3)
    with pytest.raises(ValueError, match="share no item ids"):
        paired_difference({"a": True}, {"b": True})


def _result(tmp_path, name: str, correct: dict[str, bool]) -> dict:
    pred = tmp_path / f"{name}.jsonl"
    pred.write_text("".join(json.dumps({"id": k, "correct": v}) + "\n" for k, v in correct.items()))
    acc = sum(correct.values()) / len(correct)
    return {"scores": {"cloze": acc}, "details": {"cloze": {"tasks": {}, "predictions": str(pred)}}}


def test_report_shows_intervals_and_the_paired_difference(tmp_path):
    ids = [str(i) for i in range(100)]
    a = {i: int(i) % 4 == 0 for i in ids}           # 25%
    b = {i: a[i] or int(i) % 4 == 1 for i in ids}   # 50%, gains 25 items, loses none
    results = {"without": _result(tmp_path, "a", a), "with": _result(tmp_path, "b", b)}
    assert set(item_outcomes(results["with"], "cloze")) == {f"cloze:{i}" for i in ids}
    text = write_report(results, tmp_path / "report", "t").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| with |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:4] == ["100", "50.0", "[40.4, 59.6]"]
    assert cells[4] == "+25.0 *" and cells[6] == "25 / 0"
