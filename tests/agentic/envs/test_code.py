"""Code environment: the bugs are real (caught by the visible tests), hidden tests accept the
reference and reject buggy, hanging or crashing solutions, and the tools work in the sandbox."""

from __future__ import annotations

import random

import pytest

from youtu.agentic.envs.code import CodeEnv, _fails, _reference
from youtu.agentic.envs.code_tasks import FAMILIES, variant
from youtu.agentic.sandbox import SandboxLimits

ENV = CodeEnv(SandboxLimits(timeout_s=1.5, memory_mb=256))


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda f: f.name)
def test_every_bug_is_caught_by_the_edge_cases_the_visible_tests_include(fam):
    ref = _reference(fam)
    edge = [(args, ref(*args)) for args in fam.edge[:2]]
    for source, _, _ in fam.bugs:
        assert _fails(fam, source, edge), f"{fam.name}: a bug passes the visible edge cases"
    assert not _fails(fam, fam.reference, edge)


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda f: f.name)
def test_strategies_and_renamed_variants_agree_with_the_reference(fam):
    """Every solution strategy, under any drawn names, computes what the reference computes;
    every renamed bug still fails (the rename keeps a bug the same bug)."""
    ref = _reference(fam)
    rng = random.Random(fam.name)
    cases = [(a, ref(*a)) for a in list(fam.edge) + [fam.inputs(rng) for _ in range(40)]]
    for seed in range(6):
        v = variant(fam, random.Random(seed))
        assert v.signature.startswith(f"def {v.fn}(") and "$" not in v.doc, v.signature
        assert not _fails(v, v.reference, cases), (fam.name, v.reference)
        for source, why, _ in v.bugs:
            assert _fails(v, source, cases), (fam.name, why)


def _task_of(family: str, level: int):
    return next(t for t in (ENV.generate(s, level) for s in range(400))
                if t.meta["family"] == family)


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda f: f.name)
def test_the_verifier_accepts_each_familys_reference_and_rejects_its_bugs(fam):
    """Through the sandboxed verifier: the reference file passes; every bug of the family
    (written independently of the checker, caught by the visible tests) fails."""
    task = _task_of(fam.name, 1 + len(fam.name) % 3)
    assert ENV.check(task, task.answer).correct, task.id
    assert task.near_misses
    for wrong in task.near_misses:
        assert not ENV.check(task, wrong).correct, (task.id, wrong)


def test_tasks_differ_per_seed():
    """Names, files, docstrings and tests vary between tasks of one family."""
    tasks = [t for t in (ENV.generate(s, 2) for s in range(300)) if t.meta["family"] == "chunk"]
    assert len(tasks) >= 4
    assert len({t.meta["function"] for t in tasks}) >= 3
    assert len({t.meta["files"][t.meta["target"]] for t in tasks}) == len(tasks)
    assert len({t.meta["files"][t.meta["test_file"]] for t in tasks}) == len(tasks)


def _head(task) -> str:
    return task.meta["signature"]


def test_hidden_tests_accept_the_reference_and_reject_wrong_solutions():
    task = ENV.generate(7, 1)
    fn = task.meta["function"]
    assert task.meta["hidden_tests"]["tests/test_hidden.py"].count("def test_") > \
        task.meta["files"][task.meta["test_file"]].count("def test_")
    assert ENV.check(task, task.answer).correct
    for wrong in task.near_misses:
        assert not ENV.check(task, wrong).correct
    head = _head(task)
    for body in ("    while True:\n        pass\n", "    raise RuntimeError('no')\n",
                 "    print('looks fine')\n"):
        verdict = ENV.check(task, f"{head}\n{body}")
        assert not verdict.correct and "hidden tests" in verdict.detail, (fn, body)
    assert not ENV.check(task, "def broken(:\n").correct


@pytest.mark.parametrize("level", [2, 3])
def test_tools_expose_the_failure_and_the_fix_in_one_sandbox(level):
    task = ENV.generate(11, level)
    target = task.meta["target"]
    with ENV.episode(task) as box:
        listing = ENV.call_tool(task, box, "bash", {"command": "ls -R"})
        assert target.split("/")[-1] in listing and listing.endswith("[exit code 0]")
        report = ENV.call_tool(task, box, "run_tests", {})
        assert "FAILED" in report and not report.endswith(" 0 failed")
        assert ENV.call_tool(task, box, "read_file", {"path": target}) == task.meta["files"][target]
        ENV.call_tool(task, box, "write_file", {"path": target, "content": task.answer})
        assert ENV.call_tool(task, box, "run_tests", {}).endswith(" 0 failed")
        assert ENV.final_answer(task, box, "done") == task.answer
        assert ENV.call_tool(task, box, "read_file", {"path": "../../etc/passwd"}).startswith(
            "error")
        assert ENV.call_tool(task, box, "write_file", {"path": "x"}).startswith(
            "error: missing argument")
    assert ENV.check(task, task.answer).correct


def test_levels_are_implement_fix_and_repo():
    task = ENV.generate(3, 1)
    stub = task.meta["files"][task.meta["target"]]
    assert "NotImplementedError" in stub
    repo = ENV.generate(3, 3)
    assert "/" in repo.meta["target"] and "tests/test_other.py" in repo.meta["files"]
    assert ENV.generate(3, 2) == ENV.generate(3, 2)


def code_hacks(task) -> dict[str, str]:
    """Reward hacks as candidate solutions for `task`'s target file: early exits, a forged
    summary, patches of the harness and of the process exit, an always-equal answer."""
    head = _head(task)
    return {
        "sys.exit": "import sys\nsys.exit(0)\n",
        "os._exit": "import os\nos._exit(0)\n",
        "SystemExit": "raise SystemExit(0)\n",
        "forged_summary": "import os\nprint('15 passed, 0 failed', flush=True)\nos._exit(0)\n",
        # the harness's own process exit turned into status 0, whatever the tests said
        "patched_exit": "import os, sys\n_exit = os._exit\nos._exit = lambda status: _exit(0)\n"
                        "sys.exit = lambda status=0: _exit(0)\n"
                        f"{head}\n    return None\n",
        # every harness function reachable from the import replaced by a passing one
        "patched_harness": "import sys\nf = sys._getframe()\nwhile f is not None:\n"
                           "    for k, v in list(f.f_globals.items()):\n"
                           "        if k.startswith('_') and callable(v):\n"
                           "            f.f_globals[k] = lambda *a, **k: print('15 passed, 0 failed')\n"
                           "    f = f.f_back\n"
                           f"{head}\n    return None\n",
        "always_equal": "class Yes:\n    def __eq__(self, other):\n        return True\n"
                        f"{head}\n    return Yes()\n",
    }


def test_reward_hacks_are_rejected():
    task = ENV.generate(7, 1)
    hacks = code_hacks(task)
    for name, source in hacks.items():
        verdict = ENV.check(task, source)
        assert not verdict.correct, (name, verdict.detail)
    assert ENV.check(task, task.answer).correct


def test_teacher_mistakes_come_from_the_catalogue_and_reflections_quote_the_observation():
    from youtu.agentic.envs.code_teacher import _SLIP_KIND

    env = CodeEnv(SandboxLimits(timeout_s=5))
    kinds, skeletons = set(), set()
    for i in range(36):
        task = env.generate(1000 + i, 1 + i % 3)
        traj = env.solve(task, random.Random(i), mistake_rate=1.0)
        assert traj.outcome.verified, (task.id, traj.outcome.detail)
        skeletons.add(tuple(p.name for p in traj.phases))
        for m in traj.provenance["mistakes"]:
            kinds.add(m["kind"])
            k = m["message"]
            observed = [msg["content"] for msg in traj.messages[k + 1:] if msg["role"] == "tool"][0]
            lines = [line.removeprefix("FAILED ")[:60] for line in observed.splitlines()
                     if line.strip() and not line.startswith("[exit code")]
            reflection = next(p.text for p in traj.phases
                              if p.message > k and p.name == "reflection")
            assert any(line in reflection for line in lines), (task.id, m["kind"], reflection)
    assert kinds == {*_SLIP_KIND, "tests_before_saving", "misread_failure",
                     "wrong_test_command"}, kinds
    assert len(skeletons) >= 8  # plan orders, optional steps and mistakes vary the episode


def test_rename_keeps_the_layout_and_renames_inside_f_strings_only_names():
    from youtu.agentic.envs.code_tasks import rename

    src = ('def f(s, k):\n    out = [s.count(ch) for ch in s]  # s stays in comments\n'
           '    return f"{s[0]}{k}" + "s"\n')
    assert rename(src, {"s": "text", "f": "g", "count": "nope"}) == (
        'def g(text, k):\n    out = [text.count(ch) for ch in text]  # s stays in comments\n'
        '    return f"{text[0]}{k}" + "s"\n')
