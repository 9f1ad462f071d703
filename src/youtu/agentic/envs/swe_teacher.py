"""The scripted teacher of the issue-fixing environment (`swe.SWEEnv.teach`).

    text = teach(task, builder, random.Random(0), mistake=True)

Every episode reproduces the issue in the sandbox and reasons from what the tools printed:
reflections quote the observed output, not the task's metadata. Surface variety comes from
phrasing banks per phase, several plan orders, two exploration commands, two ways to read the
code (the whole file, or its `def` lines and then only the function at issue: 70%), three ways
to patch (a one-line scripted replacement, the function swapped for a corrected one, or the
file rewritten: 15%) and a catalogue of mistakes, each really
executed and observed: reading a file that does not exist, a reproduction call with the wrong
arguments, a fix written to the wrong file (the stale behaviour is then observed again), a
premature guess of the faulty function, and a regression test that asserts the buggy value.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from youtu.agentic.trajectory import Task

if TYPE_CHECKING:
    from youtu.agentic.teachers import TrajectoryBuilder

_ANALYSIS = {
    "locate": ["The report gives one input, {args}, on which some function of {path} disagrees "
               "with the real `{module}`. I do not know which one yet: {n} candidates.",
               "Something in {path} returns {got} where `{module}` returns {want}. The file has "
               "{n} functions; I need the one that is wrong.",
               "Task: find the faulty function among the {n} in {path}, given the input {args}."],
    "fix_patch": ["The issue: `{call}` gives {got} instead of {want}. The code is in {path}; "
                  "the standard library is installed, so it is a reference.",
                  "{fn} in {path} misbehaves on {args}: it should match `{module}.{fn}`, which "
                  "gives {want}.",
                  "A regression in `{fn}`: {got} where {want} is expected. I will reproduce it, "
                  "find the faulty line, fix it and run the tests."],
    "test_patch": ["I must write a test for the reported behaviour of `{fn}` ({got} instead of "
                   "{want}), not fix it.",
                   "The deliverable is tests/test_issue.py: a test that fails now (the code "
                   "gives {got}) and passes once `{fn}` gives {want} again.",
                   "Reproduce `{call}` as a failing test; pylib/ stays as it is."],
}
_PLANS = {
    "locate": [["List the repository", "Read {path}", "Run each function on the reported "
                "input next to the standard library", "Name the one that differs"],
               ["Read {path} to see which functions it has", "Compare each with `{module}` "
                "on {args}", "Answer with the faulty function"]],
    "fix_patch": [["Look at the repository", "Read {path}", "Reproduce the issue",
                   "Find the faulty line of {fn}", "Patch it", "Re-run the reproduction and "
                   "the tests"],
                  ["Reproduce the issue first", "Read {fn} in {path}", "Compare with the "
                   "standard library's behaviour", "Fix the line", "Run the tests"],
                  ["Read the file", "Reproduce", "Fix", "Verify with the tests"]],
    "test_patch": [["Read {path}", "Reproduce the issue", "Write tests/test_issue.py",
                    "Run the tests: the new test must fail"],
                   ["Reproduce the behaviour", "Write a test asserting the correct value",
                    "Check that it fails on the current code"]],
}
_EXPLORE = ["ls -R", "find . -name '*.py' | sort"]
_SUMMARY = {
    "locate": ["Only {fn} disagrees with `{module}` on the reported input: it is the faulty "
               "function.", "The faulty function is {fn}; the others match the standard "
               "library."],
    "fix_patch": ["Fixed {fn} (the bug: {what}). The reproduction now gives {want} and the "
                  "tests pass.", "{fn} is repaired; the bug was that {what}. {report}."],
    "test_patch": ["tests/test_issue.py reproduces the issue: it fails on the current code "
                   "({report}).", "Added a failing regression test for {fn} ({report})."],
}


def _probe(m: dict, args: str | None = None) -> str:
    call = m["call"] if args is None else f"{m['function']}({args})"
    return (f"python3 -c \"from pylib.{m['local']} import {m['function']}; "
            f"print(repr({call}))\"")


def _reference_probe(m: dict) -> str:
    return f"python3 -c \"import {m['module']}; print(repr({m['module']}.{m['call']}))\""


def _compare_script(m: dict, names: list[str]) -> str:
    return (f"python3 - <<'EOF'\nimport copy\nimport {m['module']} as ref\n"
            f"import pylib.{m['local']} as ours\nARGS = {m['witness']}\n\n\n"
            "def run(fn):\n    args = copy.deepcopy(ARGS)\n    try:\n        out = fn(*args)\n"
            "        out = list(out) if hasattr(out, '__next__') else out\n"
            "        return repr(out), repr(args)\n    except Exception as e:\n"
            "        return 'raises ' + type(e).__name__, repr(args)\n\n\n"
            f"for name in {names!r}:\n"
            "    a, b = run(getattr(ours, name)), run(getattr(ref, name))\n"
            "    print(name, 'same' if a == b else 'DIFFERS: ' + a[0] + ' vs ' + b[0])\nEOF")


def function_lines(text: str, name: str) -> tuple[int, int, str]:
    """(first line, last line, text) of the top-level function `name` in a file's `text`
    (1-based, as sed numbers them; up to the line before the next top-level statement)."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(f"def {name}("))
    last = first + 1
    while last < len(lines) and (not lines[last] or lines[last][0] in " \t"):
        last += 1
    while last > first + 1 and not lines[last - 1].strip():
        last -= 1
    return first + 1, last, "\n".join(lines[first:last])


def _last(text: str) -> str:
    """The last line a command printed (not the bash tool's '[exit code N]' trailer)."""
    lines = [line for line in text.strip().splitlines()
             if line.strip() and not line.startswith("[exit code")]
    return lines[-1] if lines else "(no output)"


def teach(task: Task, b: TrajectoryBuilder, rng: random.Random, mistake: bool) -> str:
    m = task.meta
    kind, path, fn = m["kind"], m["path"], m["function"]
    fill = {"args": m["witness"].strip("(),") if m["witness"].count(",") == 1 else
            m["witness"], "path": path, "module": m["module"], "got": m["got_text"],
            "want": m["want_text"], "call": m["call"], "fn": fn, "n": len(m["functions"]),
            "what": m["bug"]}
    b.think("analysis", rng.choice(_ANALYSIS[kind]).format(**fill))
    plan = rng.choice(_PLANS[kind])
    b.think("plan", "\n".join(f"{i + 1}. {p.format(**fill)}" for i, p in enumerate(plan)))
    slip = rng.choice({"locate": ["premature_answer", "wrong_file"],
                       "fix_patch": ["wrong_file", "wrong_argument", "stale_observation"],
                       "test_patch": ["wrong_assertion", "wrong_file"]}[kind]) if mistake else ""
    if slip == "wrong_file":
        wrong = rng.choice([f"{m['module']}.py", f"src/{m['module']}.py", f"lib/{m['module']}.py"])
        b.think("action", f"Open {wrong}.", mistake=True)
        obs = b.call("read_file", {"path": wrong}, mistake=True)
        b.mistake("wrong_file", note=f"read {wrong}, which does not exist")
        b.think("reflection", f"That failed ({_last(obs)[:120]}). I guessed the path; list the "
                "files instead.")
    b.think("action", rng.choice(["Look at the layout.", "List the Python files.",
                                  "See what the repository holds."]))
    b.call("bash", {"command": rng.choice(_EXPLORE)})
    faulty = m["files"][path]
    if rng.random() < 0.3:  # the whole file; else only what the task needs (see the docstring)
        b.think("action", f"Read {path}.")
        source = b.call("read_file", {"path": path})
        defs = [line.split("(")[0][4:] for line in source.splitlines() if line.startswith("def ")]
    else:
        b.think("action", rng.choice([f"List the functions defined in {path}.",
                                      f"See which functions {path} holds.",
                                      f"Find the definitions in {path}."]))
        listing = b.call("bash", {"command": f"grep -n '^def ' {path}"})
        defs = [line.split("def ", 1)[1].split("(")[0] for line in listing.splitlines()
                if ":def " in line]
        if kind != "locate":
            first, last, _ = function_lines(faulty, fn)
            b.think("action", rng.choice([f"Show {fn} (lines {first}-{last}).",
                                          f"Print the body of {fn}.", f"Read only {fn}."]))
            b.call("bash", {"command": f"sed -n '{first},{last}p' {path}"})
    if kind == "locate":
        return _locate(task, b, rng, slip, fill, defs)
    if slip == "wrong_argument":
        b.think("action", f"Reproduce with {fn}() and no arguments.", mistake=True)
        obs = b.call("bash", {"command": _probe(m, "")}, mistake=True)
        b.mistake("wrong_argument", note="called the function without its arguments")
        b.think("reflection", f"{_last(obs)[:160]}: I dropped the arguments. The report's call "
                f"is `{m['call']}`.")
    b.think("action", rng.choice(["Reproduce the issue.", f"Run `{m['call']}`.",
                                  "Confirm the reported behaviour."]))
    seen = b.call("bash", {"command": _probe(m)})
    b.think("reflection", f"It prints {_last(seen)[:160]}: the report is right, the expected "
            f"result is {m['want_text']}.")
    if rng.random() < 0.5:
        b.think("action", f"Ask the real `{m['module']}` for comparison.")
        ref = b.call("bash", {"command": _reference_probe(m)})
        b.think("reflection", f"The standard library gives {_last(ref)[:160]}.")
    if kind == "test_patch":
        return _test_patch(task, b, rng, slip, fill)
    b.think("reflection", f"In {fn}, the line `{m['bug_line']}` is the culprit: {m['bug']}. "
            f"The original reads `{m['fixed_line']}`.")
    if slip == "stale_observation":
        wrong = f"pylib/{m['local']}_fixed.py"
        b.think("action", f"Write the corrected module to {wrong}.", mistake=True)
        b.call("write_file", {"path": wrong, "content": m["reference"]}, mistake=True)
        again = b.call("bash", {"command": _probe(m)}, mistake=True)
        b.mistake("stale_observation", answer=m["files"][path],  # the target is still faulty
                  note=f"wrote the fix to {wrong}; {path} is unchanged")
        b.think("reflection", f"Still {_last(again)[:120]}: the import reads {path}, which I "
                "did not change. The fix must go into that file.")
    scripted = (m["bug_kind"] != "dropped_branch" and faulty.count(m["bug_line"]) == 1
                and faulty.replace(m["bug_line"], m["fixed_line"], 1) == m["reference"])
    old_fn, new_fn = function_lines(faulty, fn)[2], function_lines(m["reference"], fn)[2]
    whole = faulty.count(old_fn) != 1 or faulty.replace(old_fn, new_fn) != m["reference"]
    how = rng.random()
    if scripted and how < 0.6:
        b.think("action", f"Replace the faulty line in {path}.")
        b.call("bash", {"command": f"python3 - <<'EOF'\nfrom pathlib import Path\np = Path("
                        f"{path!r})\ntext = p.read_text()\np.write_text(text.replace("
                        f"{m['bug_line']!r}, {m['fixed_line']!r}, 1))\nEOF"})
    elif not whole and how < 0.85:
        b.think("action", f"Swap in a corrected {fn}, leaving the rest of {path} as it is.")
        b.call("bash", {"command": f"python3 - <<'EOF'\nfrom pathlib import Path\np = Path("
                        f"{path!r})\nold = {old_fn!r}\nnew = {new_fn!r}\n"
                        "p.write_text(p.read_text().replace(old, new, 1))\nEOF"})
    else:
        b.think("action", f"Rewrite {path} with {fn} corrected.")
        b.call("write_file", {"path": path, "content": m["reference"]})
    b.think("action", "Check the reported call again.")
    now = b.call("bash", {"command": _probe(m)})
    b.think("reflection", f"Now it prints {_last(now)[:160]}.")
    report = b.call("run_tests", {})
    b.think("reflection", f"The test run ends with: {_last(report)}.")
    fill["report"] = _last(report)
    b.think("summary", rng.choice(_SUMMARY["fix_patch"]).format(**fill))
    return f"Fixed `{fn}` in `{path}` (the bug: {m['bug']}). {_last(report)}."


def _locate(task: Task, b: TrajectoryBuilder, rng: random.Random, slip: str, fill: dict,
            defs: list[str]) -> str:
    m, fn = task.meta, task.meta["function"]
    names = [d for d in defs if d in m["functions"]] or list(m["functions"])
    if slip == "premature_answer":
        guess = rng.choice([n for n in names if n != fn])
        b.think("action", f"The symptom looks like {guess}; check only that one.", mistake=True)
        obs = b.call("bash", {"command": _compare_script(m, [guess])}, mistake=True)
        b.mistake("premature_answer", answer=guess, note=f"guessed {guess} without checking")
        b.think("reflection", f"{_last(obs)}: {guess} matches the standard library, so it is "
                "not the culprit. Check every function.")
    order = names[:]
    rng.shuffle(order)
    b.think("action", f"Run all {len(order)} functions on the reported input next to `"
            f"{m['module']}`.")
    obs = b.call("bash", {"command": _compare_script(m, order)})
    differs = [line.split()[0] for line in obs.splitlines() if "DIFFERS" in line]
    assert fn in differs, obs
    line = next(x for x in obs.splitlines() if x.startswith(fn + " "))
    also = ", ".join(d for d in differs if d != fn)
    b.think("reflection", f"{line}." + (f" Also differing: {also}; they depend on {fn}."
                                        if also else ""))
    b.think("summary", rng.choice(_SUMMARY["locate"]).format(**fill))
    return f"The faulty function is `{fn}`. \\boxed{{{fn}}}"


def _test_patch(task: Task, b: TrajectoryBuilder, rng: random.Random, slip: str,
                fill: dict) -> str:
    m = task.meta
    if slip == "wrong_assertion":
        wrong = task.near_misses[0]
        b.think("action", "Write a test that pins down the current output.", mistake=True)
        b.call("write_file", {"path": m["target"], "content": wrong}, mistake=True)
        obs = b.call("run_tests", {}, mistake=True)
        b.mistake("wrong_assertion", answer=wrong, note="the test asserts the buggy value")
        b.think("reflection", f"{_last(obs)}: the new test passes on the buggy code, so it "
                f"asserts {m['got_text']}; it must expect {m['want_text']}.")
    b.think("action", f"Write {m['target']} expecting {m['want_text']}.")
    b.call("write_file", {"path": m["target"], "content": m["reference"]})
    report = b.call("run_tests", {})
    failed = [line for line in report.splitlines() if line.startswith("FAILED")]
    assert failed, report
    b.think("reflection", f"{failed[0][:200]} -- it fails on the current code, as it must.")
    fill["report"] = _last(report)
    b.think("summary", rng.choice(_SUMMARY["test_patch"]).format(**fill))
    return f"Added `{m['target']}`; it reproduces the issue ({_last(report)})."
