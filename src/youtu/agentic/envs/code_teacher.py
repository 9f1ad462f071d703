"""The scripted teacher of the code environment (`code.CodeEnv.teach`).

    text = teach(task, builder, random.Random(0), mistake=True)

Every reflection quotes what a tool printed (the first FAILED line, a probe's value), not the
task's metadata. Surface variety: phrasing banks per phase and level, several plan orders (read
first or run the tests first), three ways to explore, three ways to read, an optional probe of
the failing call, and two ways to save the fix (the write_file tool or a shell heredoc). Mistakes
come from a catalogue, each really executed and observed before the recovery:

- wrong_fix / off_by_one / forgot_edge_case: a plausible but wrong version of the function (one
  of the family's bugs of that kind, caught by the visible tests) is saved and tested;
- tests_before_saving: the tests are re-run after deciding on the fix but before writing it;
- misread_failure: a passing test's call is probed as if it were the failing one;
- wrong_test_command: a test file run as a script instead of through the test runner.
"""

from __future__ import annotations

import random
import shlex
from typing import TYPE_CHECKING

from youtu.agentic.envs.swe_teacher import _last
from youtu.agentic.trajectory import Task

if TYPE_CHECKING:
    from youtu.agentic.teachers import TrajectoryBuilder

_ANALYSIS = {
    1: ["Task: implement {fn} in {path}. Spec: {doc} The tests under tests/ define the expected "
        "behaviour.", "{path} holds a stub of `{fn}` that raises NotImplementedError. I need a "
        "real implementation: {doc}", "I have to write `{fn}`. What it must do: {doc} I will "
        "check the tests for the exact expectations.", "A new function, {fn}, in {path}. "
        "Before writing it I want to see how the tests call it."],
    2: ["`{fn}` in {path} is buggy. The spec says: {doc} The failing tests should point at "
        "the inputs it gets wrong.", "Bug fix in {path}: {fn} returns wrong values for some "
        "inputs. I will reproduce with the tests, find the faulty logic and fix it.",
        "The function {fn} does not meet its contract ({doc}). First, see which tests fail.",
        "Something in `{fn}` is wrong. The tests know the expected values; I will compare "
        "them with what the code does."],
    3: ["The {pkg} package has failing tests, and I do not know yet which function is at "
        "fault. I will run the suite and follow the first failure.", "Failing tests in "
        "`{pkg}`. The tests are right by assumption, so the library code is wrong somewhere.",
        "Task: make the {pkg} test suite pass without editing tests/. Step one is finding "
        "which function breaks.", "A regression somewhere in {pkg}. The package has a few "
        "modules and tests; the failing test names will tell me where to look."],
}
_PLANS = {
    1: [["Look at the repository", "Read the stub and the tests", "Write {fn}",
         "Run the tests"],
        ["Read the tests to see the expected values", "Implement {fn} in {path}",
         "Run the test suite and fix anything that fails"],
        ["Read {path}", "Read the tests", "Write the implementation", "Run the tests",
         "Summarise"]],
    2: [["Explore the repository", "Read the code and the tests", "Run the tests",
         "Fix the code", "Re-run the tests until they pass"],
        ["Run the tests to see what fails", "Read {fn}", "Find the bug", "Patch {path}",
         "Run the tests again"],
        ["Read {path} and its tests", "Reproduce the failure", "Fix {fn}", "Confirm with the "
         "tests"]],
    3: [["List the package", "Run the tests", "Read the module the failing test imports",
         "Fix the faulty function", "Re-run all tests"],
        ["Run the test suite first", "Locate the failing function", "Read it next to its "
         "tests", "Patch it", "Check that every test passes, the other module's too"]],
}
_EXPLORE = ["ls -R", "find . -name '*.py' | sort", "ls && ls tests"]
_SAW = ["Failing: {quote}", "The run says: {quote}", "First failure: {quote}", "Observed: {quote}"]
_DIAGNOSE = ["So {fn} is wrong here: {why}.", "Reading {fn} with that input in mind: {why}.",
             "That points at the bug: {why}.", "The cause: {why}."]
_PASS = ["The tests pass: {report}.", "All green: {report}.", "{report}: done.",
         "Now it reports {report}."]
_SUMMARY = {
    1: ["I implemented {fn} in {path}; {report}.", "{fn} is written ({path}) and the whole "
        "suite passes ({report}).", "Implemented `{fn}` following the spec; {report}."],
    2: ["Fixed {fn} in {path} (the bug: {why}); {report}.", "{fn} is repaired: {why}. "
        "{report}.", "The bug in {fn} was that {why}. After the fix: {report}."],
    3: ["The failure came from {fn} in {path}: {why}. Fixed; {report}.", "Located the bug "
        "in {path} ({fn}: {why}) and fixed it; {report}.", "{fn} in {path} was at fault "
        "({why}). {report} after the patch."],
}
_FINAL = ["I {what} `{fn}` in `{path}`. {report}.", "Done: `{fn}` {what} in {path}; {report}.",
          "`{path}`: {fn} {what}. Tests: {report}."]
_SLIP_KIND = {"wrong_fix": "wrong_logic", "off_by_one": "off_by_one",
              "forgot_edge_case": "edge_case"}


def _failed_lines(report: str) -> list[str]:
    return [line[len("FAILED "):] for line in report.splitlines() if line.startswith("FAILED")]


def _quote(report: str) -> str:
    """The first FAILED line of a test report (or its last line), shortened."""
    failed = _failed_lines(report)
    line = failed[0] if failed else _last(report)
    return f"`{line[:220]}`"


def _probe(m: dict, call: str) -> str:
    code = f"from {m['module']} import {m['function']}; print(repr({call}))"
    return f"python3 -c {shlex.quote(code)}"


def _save(b: TrajectoryBuilder, rng: random.Random, path: str, content: str,
          mistake: bool = False) -> None:
    if rng.random() < 0.7 or "EOF" in content:
        b.call("write_file", {"path": path, "content": content}, mistake=mistake)
    else:
        b.call("bash", {"command": f"cat > {path} <<'EOF'\n{content}EOF"}, mistake=mistake)


def _slip(task: Task, rng: random.Random, mistake: bool, passing: list[str]) -> str:
    """The catalogue entry for this episode ('' for none): only mistakes this task allows."""
    if not mistake:
        return ""
    m = task.meta
    here = m["files"][m["target"]]
    kinds = {kind for src, _, kind in m["bugs"] if src != here}
    options = [s for s, k in _SLIP_KIND.items() if k in kinds] * 2 + ["tests_before_saving",
                                                                      "wrong_test_command"]
    if m["level"] > 1 and passing:
        options.append("misread_failure")
    return rng.choice(options)


def teach(task: Task, b: TrajectoryBuilder, rng: random.Random, mistake: bool) -> str:
    m = task.meta
    level, fn, path, tests = m["level"], m["function"], m["target"], m["test_file"]
    fill = {"fn": fn, "path": path, "doc": _doc(m), "pkg":
            path.split("/")[0], "why": m["bug"]}
    b.think("analysis", rng.choice(_ANALYSIS[level]).format(**fill))
    plan = [p.format(**fill) for p in rng.choice(_PLANS[level])]
    b.think("plan", "\n".join(f"{i + 1}. {p}" for i, p in enumerate(plan)) if rng.random() < 0.75
            else "Plan: " + "; then ".join(p[0].lower() + p[1:] for p in plan) + ".")
    if level == 3 or rng.random() < 0.6:
        b.think("action", rng.choice(["Look at the repository layout.", "List the files.",
                                      "See what is in the repository."]))
        b.call("bash", {"command": rng.choice(_EXPLORE)})
    report = ""
    if level > 1 and rng.random() < 0.5:
        b.think("action", rng.choice(["Run the tests first.", "See what fails before reading.",
                                      "Start from the failing tests."]))
        report = b.call("run_tests", {})
        b.think("reflection", rng.choice(_SAW).format(quote=_quote(report)))
    way = rng.random()
    b.think("action", rng.choice([f"Read {path} and {tests}.", "Read the code and its tests.",
                                  f"Open {path} together with the tests."]))
    if way < 0.5:
        b.call_parallel([("read_file", {"path": path}), ("read_file", {"path": tests})])
    elif way < 0.8:
        b.call("read_file", {"path": path})
        b.call("read_file", {"path": tests})
    else:
        b.call("bash", {"command": f"cat {path} {tests}"})
    if level == 1:
        slip = _slip(task, rng, mistake, [])
        return _implement(task, b, rng, slip, fill)
    if not report:
        b.think("action", rng.choice(["Run the tests to see what fails.", "Run the suite.",
                                      "Now run the tests."]))
        report = b.call("run_tests", {})
        b.think("reflection", rng.choice(_SAW).format(quote=_quote(report)))
    failed = _failed_lines(report)
    calls = [(c, want) for c, want in m["visible"]]
    failing = [c for c, _ in calls if any(c in line for line in failed)]
    passing = [c for c, _ in calls if not any(c in line for line in failed)]
    slip = _slip(task, rng, mistake, passing)
    if slip == "wrong_test_command":
        _wrong_test_command(b, tests)
    if slip == "misread_failure":
        call = rng.choice(passing)
        b.think("action", f"The failing call should be `{call}`; check what it returns.",
                mistake=True)
        out = b.call("bash", {"command": _probe(m, call)}, mistake=True)
        b.mistake("misread_failure", answer=m["files"][path],
                  note=f"probed {call}, a passing test, as if it failed")
        want = dict(calls)[call]
        b.think("reflection", f"It prints {_last(out)[:160]}, which is the expected {want}: I "
                f"misread the report. The failing line is {_quote(report)}.")
    if failing and (slip == "misread_failure" or rng.random() < 0.5):
        call = failing[0]
        b.think("action", rng.choice([f"Probe `{call}` directly.", "Reproduce the failing "
                                      "call by hand.", f"What does `{call}` give right now?"]))
        out = b.call("bash", {"command": _probe(m, call)})
        b.think("reflection", f"`{call}` gives {_last(out)[:160]}, but the test expects "
                f"{dict(calls)[call]}. " + rng.choice(_DIAGNOSE).format(**fill))
    else:
        b.think("reflection", rng.choice(_DIAGNOSE).format(**fill))
    return _fix(task, b, rng, slip, fill)


def _doc(m: dict) -> str:
    """The spec as the target file states it (the docstring line of the function)."""
    src = m["reference"]
    at = src.find(f"def {m['function']}(")
    line = src[at:].split("\n")[1].strip()
    return line.strip('"') if line.startswith('"""') else ""


def _wrong_test_command(b: TrajectoryBuilder, tests: str) -> None:
    b.think("action", f"Run {tests} directly with Python.", mistake=True)
    out = b.call("bash", {"command": f"python3 {tests}"}, mistake=True)
    b.mistake("wrong_test_command", note="ran a test file as a script")
    b.think("reflection", f"That did not run the suite ({_last(out)[:160]}). As a script, "
            "tests/ is first on sys.path, so the code under test is not importable and the "
            "test functions are never called. The run_tests tool runs the suite from the "
            "repository root.")


def _wrong_code(task: Task, b: TrajectoryBuilder, rng: random.Random, slip: str) -> None:
    m = task.meta
    here = m["files"][m["target"]]
    wrong, why, _ = rng.choice([bug for bug in m["bugs"]
                                if bug[2] == _SLIP_KIND[slip] and bug[0] != here])
    b.think("action", rng.choice([f"Write a first version of {m['function']}.",
                                  f"Save my version of {m['function']}.",
                                  "Write the code I have in mind."]), mistake=True)
    _save(b, rng, m["target"], wrong, mistake=True)
    b.think("action", rng.choice(["Run the tests.", "Test it.", "See if the tests pass now."]),
            mistake=True)
    report = b.call("run_tests", {}, mistake=True)
    b.mistake(slip, answer=wrong, note=why)
    b.think("reflection", f"Not right: {_quote(report)}. My version was wrong: {why}.")


def _before_saving(task: Task, b: TrajectoryBuilder) -> None:
    b.think("action", f"That is the fix for {task.meta['function']}; run the tests to "
            "confirm.", mistake=True)
    report = b.call("run_tests", {}, mistake=True)
    b.mistake("tests_before_saving", answer=task.meta["files"][task.meta["target"]],
              note="ran the tests before saving the fix")
    b.think("reflection", f"Still {_quote(report)}, the same as before: I never wrote the "
            f"file, so the tests ran the old {task.meta['target']}.")


def _finish(task: Task, b: TrajectoryBuilder, rng: random.Random, fill: dict) -> str:
    m = task.meta
    b.think("action", rng.choice([f"Save the {'implementation' if m['level'] == 1 else 'fix'}"
                                  f" to {m['target']}.", f"Write {m['target']}.",
                                  f"Update {m['function']} in {m['target']}."]))
    _save(b, rng, m["target"], m["reference"])
    b.think("action", rng.choice(["Re-run the tests.", "Run the tests again.",
                                  "Check with the test suite."]))
    report = b.call("run_tests", {})
    assert report.endswith(" 0 failed"), report
    fill["report"] = _last(report)
    b.think("reflection", rng.choice(_PASS).format(**fill))
    b.think("summary", rng.choice(_SUMMARY[m["level"]]).format(**fill))
    what = "implemented" if m["level"] == 1 else "fixed"
    return rng.choice(_FINAL).format(what=what, **fill)


def _implement(task: Task, b: TrajectoryBuilder, rng: random.Random, slip: str,
               fill: dict) -> str:
    if slip == "wrong_test_command":
        _wrong_test_command(b, task.meta["test_file"])
    elif slip == "tests_before_saving":
        _before_saving(task, b)
    elif slip:
        _wrong_code(task, b, rng, slip)
    return _finish(task, b, rng, fill)


def _fix(task: Task, b: TrajectoryBuilder, rng: random.Random, slip: str, fill: dict) -> str:
    if slip == "tests_before_saving":
        _before_saving(task, b)
    elif slip in _SLIP_KIND:
        _wrong_code(task, b, rng, slip)
    return _finish(task, b, rng, fill)
