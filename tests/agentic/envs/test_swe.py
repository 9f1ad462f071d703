"""Issue-fixing environment over real standard-library code: injected bugs really change
behaviour, the three task shapes verify their gold answers, and wrong answers built here (not
by the generator) are rejected."""

from __future__ import annotations

import random
import statistics

import pytest

from youtu.agentic.envs.swe import SWEEnv
from youtu.agentic.envs.swe_corpus import (TARGETS, bounded, function, inject_bug, load,
                                           module_functions)

ENV = SWEEnv()
TASKS = [ENV.generate(seed, 1 + seed % 3) for seed in range(30)]


def _of(kind: str, n: int = 2) -> list:
    return [t for t in TASKS if t.meta["kind"] == kind][:n]


def test_corpus_is_real_stdlib_code_and_bugs_really_differ():
    assert sum(len(module_functions(m)) for m in TARGETS) >= 45
    fn = function("statistics", "median")
    # the copied source computes what the real module does
    assert bounded(load(fn.source, fn.name, fn.module, fn.imports), ([1, 3, 2, 8],))[0] == \
        repr(statistics.median([1, 3, 2, 8]))
    for seed in range(10):
        bug = inject_bug(fn, random.Random(seed))
        assert bug is not None and bug.source != fn.source
        mutant = load(bug.source, fn.name, fn.module, fn.imports)
        assert bounded(mutant, bug.witness) != bounded(
            load(fn.source, fn.name, fn.module, fn.imports), bug.witness)


def test_kinds_and_difficulties_all_occur():
    assert {t.meta["kind"] for t in TASKS} == {"locate", "fix_patch", "test_patch"}
    size = {d: max(len(t.meta["functions"]) for t in TASKS if t.difficulty == d) for d in (1, 3)}
    assert size[1] <= 2 < size[3]  # more functions to read (and to choose from) when harder


def test_locate_accepts_the_faulty_function_only():
    for task in _of("locate"):
        assert ENV.check(task, task.meta["function"]).correct
        for name in task.meta["functions"]:  # every other function of the file, listed here
            if name != task.meta["function"]:
                assert not ENV.check(task, name).correct


def test_fix_patch_hidden_tests_reject_wrong_patches_built_here():
    task = next(t for t in TASKS if t.meta["kind"] == "fix_patch"
                and t.meta["hidden_tests"]["tests/test_hidden.py"].count("witness") >= 4)
    m = task.meta
    assert ENV.check(task, m["good"]).correct
    faulty = m["files"][m["path"]]
    assert not ENV.check(task, faulty).correct
    # special-casing the reported input only: the other differing inputs still fail
    hack = faulty + (f"\n\n_buggy = {m['function']}\n\n\ndef {m['function']}(*args):\n"
                     f"    if args == {m['witness']}:\n        return {m['want']}\n"
                     f"    return _buggy(*args)\n")
    assert not ENV.check(task, hack).correct
    assert not ENV.check(task, "").correct
    # (early-exit hacks, sys.exit(0) in the module: the verdict is CodeEnv's, hardened there)


def test_test_patch_needs_a_test_that_fails_on_the_bug_and_passes_on_the_fix():
    task = _of("test_patch", 1)[0]
    m = task.meta
    assert ENV.check(task, task.answer).correct
    fn, module = m["function"], m["module"]
    passing = f"from pylib.{module} import {fn}\n\n\ndef test_nothing():\n    assert {fn}\n"
    failing = "def test_always_fails():\n    assert False\n"
    for wrong in (passing, failing):
        assert not ENV.check(task, wrong).correct


@pytest.mark.parametrize("mistake", [False, True])
def test_scripted_teacher_verifies_every_shape(mistake):
    for kind in ("locate", "fix_patch", "test_patch"):
        task = _of(kind, 1)[0]
        traj = ENV.solve(task, random.Random(1), mistake_rate=float(mistake))
        assert traj.outcome.verified, (kind, traj.outcome.detail)
        assert any(m["role"] == "tool" for m in traj.messages)
        if mistake:
            assert traj.provenance["mistakes"]
            for slip in traj.provenance["mistakes"]:
                if slip["answer"] is not None:
                    assert not ENV.check(task, slip["answer"]).correct


def test_a_mutant_that_spins_forever_is_reported_as_not_terminating():
    fn = function("bisect", "bisect_left")
    spinning = fn.source.replace("lo = mid + 1", "lo = mid - 1")
    assert spinning != fn.source
    mutant = load(spinning, fn.name, fn.module, fn.imports)
    assert bounded(mutant, ([0, 4, 6, 18], 6))[0] == "does not terminate"


EXITS = ["import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n", "raise SystemExit(0)\n"]


@pytest.mark.parametrize("hack", EXITS)
def test_early_exits_pass_neither_fix_patch_nor_test_patch(hack):
    """Both shapes go through the nonce-tagged verifier: a patched module or a test file that
    exits before the checks run is rejected (the swe tests once did not fit that verifier)."""
    fix = _of("fix_patch", 1)[0]
    assert not ENV.check(fix, hack + fix.answer).correct
    assert not ENV.check(fix, fix.answer + "\n" + hack).correct
    test = _of("test_patch", 1)[0]
    assert not ENV.check(test, hack).correct
    # top-level statements of a test file never run in the verifier: the real test still counts
    assert ENV.check(test, test.answer + "\n" + hack).correct


def test_a_test_file_of_another_shape_is_no_evidence():
    """test_patch counts only `got = call; assert got == value` tests: one that merely raises
    on the faulty code (and so 'fails' there) is not a reproduction of the bug."""
    task = _of("test_patch", 1)[0]
    raising = "def test_issue():\n    raise AssertionError('fails everywhere')\n"
    assert not ENV.check(task, raising).correct
    assert not ENV.check(task, "").correct  # no test at all never passes


def test_more_targets_stand_alone_and_yield_real_bugs():
    """The parsers and encoders of swe_targets: each loads from its module's source and has a
    mutant that differs from the original on a generated input."""
    from youtu.agentic.envs.swe_targets import MORE_TARGETS

    names = [(m, n) for m, fns in MORE_TARGETS.items() for n in fns]
    assert len(names) >= 30
    for k, (m, n) in enumerate(names[::3]):  # a third of them: ~1 s
        fn = function(m, n)
        assert fn is not None, (m, n)
        bug = inject_bug(fn, random.Random(k))
        assert bug is not None, (m, n)
        original = load(fn.source, fn.name, fn.module, fn.imports)
        assert bounded(load(bug.source, fn.name, fn.module, fn.imports), bug.witness) != \
            bounded(original, bug.witness)


def test_fix_episodes_patch_in_place_without_reprinting_the_file():
    """Most fix_patch episodes read only the function at issue and patch a line or the
    function (not the whole file) and still pass the hidden tests."""
    tasks = [ENV.generate(seed, 2) for seed in range(200, 260)]
    fixes = [t for t in tasks if t.meta["kind"] == "fix_patch"][:6]
    partial = 0
    for k, task in enumerate(fixes):
        traj = ENV.solve(task, random.Random(k), mistake_rate=0.0)
        assert traj.outcome.verified, traj.outcome.detail
        calls = traj.tool_calls()
        whole = [c for c in calls if c["name"] in ("read_file", "write_file")
                 and c["arguments"].get("path") == task.meta["path"]]
        partial += not whole
    assert partial >= 2
