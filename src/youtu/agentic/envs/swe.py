"""Issue-fixing environment over real code (SWE-smith style): standard-library functions with an
injected bug, an issue describing the symptom, hidden differential tests against the original.

    env = SWEEnv()
    task = env.generate(seed=7, difficulty=2)   # task.meta["kind"]: locate, fix_patch, test_patch
    with env.episode(task) as box:              # the repository in a sandbox, as in CodeEnv
        env.call_tool(task, box, "bash", {"command": "python3 -c 'import pylib'"})
    env.check(task, answer)

The repository is `pylib/<module>.py` holding 1-7 functions of one standard-library module
(`swe_corpus`), one of them with a bug found by an AST mutation that really changes behaviour.
The issue text comes from a witness input on which the faulty and original functions differ.
APTBench issue_fix's three shapes:

- `locate`: which function of the file is faulty? Answer its name in \\boxed{}; checked exactly.
- `fix_patch`: make the issue go away; the final file must pass hidden tests: the witness, 12
  more generated inputs and the function's own doctests (all computed with the original), and
  a few cases of every other function of the file (a patch must not break them).
- `test_patch`: write `tests/test_issue.py` reproducing the issue; it must fail on the faulty
  file and pass once the original function is restored.

Tools, sandboxing and the hidden-test run are `CodeEnv`'s (the same public Sandbox API and
verdict); this module only builds tasks and teaches them. Expected values come from the host's
standard library and the files import the module's helpers in the sandbox, so the sandbox's
interpreter (ours, or the system python3 where a dropped uid cannot reach ours) must be the
same minor Python version as the host's; on the development machine they are 3.11.7 and 3.11.2.
"""

from __future__ import annotations

import ast
import doctest
import functools
import random
from typing import TYPE_CHECKING, Any

from youtu.agentic.envs.base import Env, normalize_text
from youtu.agentic.envs.code import CodeEnv
from youtu.agentic.sandbox import Sandbox, SandboxError, SandboxLimits, run_python
from youtu.agentic.envs.swe_corpus import (RUNNER, TARGETS, Function, bounded, cases,
                                           changed_lines, header, inject_bug, load,
                                           module_functions)
from youtu.agentic.trajectory import Step, Task, Trajectory, Verdict

if TYPE_CHECKING:
    from youtu.agentic.teachers import TrajectoryBuilder

KINDS = ("locate", "fix_patch", "test_patch")
_FILE_SIZE = {1: 2, 2: 4, 3: 7}
"""Functions in the faulty file per difficulty (locate has that many candidates)."""
_HIDDEN_CASES = 12

_ISSUE = [  # symptom phrasing banks: {call}, {got}, {want}, {module}
    "`{call}` returns {got}, but the standard library's `{module}` gives {want}.",
    "Bug: calling `{call}` yields {got}; expected {want} (as `{module}` does).",
    "After the last refactor `{call}` produces {got} instead of {want}.",
    "Our CI caught a regression: `{call}` -> {got}, should be {want}.",
    "I get {got} from `{call}`. The upstream `{module}` module returns {want} for the same "
    "input, which is what the docs promise.",
    "Unexpected result: {got} for `{call}` (wanted {want}).",
]
_LOCATE = [
    "One function in {path} misbehaves: on the input {args} it gives {got} where "
    "the standard library's `{module}` gives {want}. Which function is it? Answer with its "
    "name in \\boxed{{}}.",
    "A user reports that something in {path} is broken: for arguments {args} the "
    "result is {got} rather than {want} (the real `{module}` answer). Find the faulty function "
    "and give its name in \\boxed{{}}.",
    "Locate the bug. {path} mirrors part of `{module}`; for the arguments {args} "
    "one of its functions returns {got} instead of {want}. Reply with the function's name in "
    "\\boxed{{}}.",
]
_FIX_ASK = ["Fix the bug in {path} without changing its behaviour otherwise.",
            "Please patch {path} so that it behaves like the standard library.",
            "Make the smallest change to {path} that resolves this.",
            "Repair `{fn}` in {path}; the other functions there are fine."]
_TEST_ASK = ["Write tests/test_issue.py with a test that reproduces this issue (it must fail "
             "on the current code and pass once the bug is fixed). Do not fix the code.",
             "Before anyone fixes it, add a regression test in tests/test_issue.py that fails "
             "now and will pass after the fix. Leave pylib/ unchanged.",
             "Capture this report as a failing test: tests/test_issue.py, one test function. "
             "Do not modify {path}."]


def _show(outcome: tuple[str, str]) -> str:
    """An outcome as an issue states it: a `value`, or 'a TypeError'."""
    if outcome[0].startswith("raises "):
        name = outcome[0].split(" ", 1)[1]
        return f"{'an' if name[0] in 'AEIOU' else 'a'} {name}"
    return f"`{outcome[0]}`"


def _call(fn: str, args: tuple) -> str:
    return f"{fn}({', '.join(repr(a) for a in args)})"


def _test(fn: str, tag: str, args: tuple, want: tuple[str, str]) -> str:
    return (f"def test_{fn}_{tag}():\n    got = _outcome({fn}, {args!r})\n"
            f"    assert got == {want!r}, {_call(fn, args)!r} + ' gave ' + repr(got)\n")


_DOCTESTS = '''
def _doctest_failures(name, text):
    """Failures of the doctests `text` run against this file's globals (the function under test)."""
    import doctest
    test = doctest.DocTestParser().get_doctest(text, dict(globals()), name, None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=lambda s: None)
    return runner.failures
'''
"""Helper of the doctest test: the verifier takes only `got = call; assert got == value` tests,
with helper functions of the test file evaluated beside the candidate."""


def _doctest_test(fn: Function, text: str) -> str:
    return (f"def test_{fn.name}_doctests():\n    got = _doctest_failures({fn.name!r}, {text!r})\n"
            f"    assert got == 0, 'the doctests of {fn.name} fail'\n")


def _doctests_pass(fn: Function, text: str, source: str) -> bool:
    # only the function itself: the hidden test file's globals hold at least that
    ns = {"__name__": "check", fn.name: load(source, fn.name, fn.module, fn.imports)}
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(doctest.DocTestParser().get_doctest(text, ns, fn.name, None, 0),
               out=lambda s: None)
    return runner.failures == 0 and runner.tries > 0


def _test_file(module: str, names: list[str], body: list[str]) -> str:
    # the doctest helper only where a doctest test uses it: ~60 words of boilerplate that every
    # written test file would otherwise repeat verbatim
    helper = f"{_DOCTESTS}\n" if any("_doctest_failures(" in t for t in body) else ""
    return (f"from pylib.{_local(module)} import {', '.join(sorted(set(names)))}\n{RUNNER}\n"
            f"{helper}\n" + "\n\n".join(body))


class SWEEnv(CodeEnv):
    """Locate, fix or reproduce a bug in real standard-library code (hidden differential tests)."""

    name = "swe"
    version = "2"
    system_prompt = ("You are a software engineer. The repository mirrors part of the Python "
                     "standard library under pylib/. Investigate with bash (the real standard "
                     "library is installed, so you can compare against it), read and write "
                     "files, run the tests, and finish with a short summary.")

    def generate(self, seed: int, difficulty: int = 1) -> Task:
        level = self._difficulty(difficulty)
        rng = random.Random(f"swe/{seed}/{difficulty}")
        kind = rng.choices(KINDS, weights=[3, 5, 3])[0]
        usable = sandbox_usable(self.limits)
        while True:
            module = rng.choice(sorted(TARGETS))
            pool = [f for f in module_functions(module) if f"{module}.{f.name}" in usable]
            if not pool:
                continue
            fn = rng.choice(pool)
            bug = inject_bug(fn, rng)
            if bug is not None:
                break
        # the file: the faulty function among others of the module (locate: ones the witness
        # input is valid for, so that it can be tried on each candidate)
        # (not ones calling the faulty function: their tests would fail, or hang, with it)
        others = [f for f in pool if f.name != fn.name and fn.name not in _called(f)
                  and (kind != "locate" or _valid(f, bug.witness))]
        rng.shuffle(others)
        if kind == "locate" and not others:  # nothing to tell it apart from
            kind = "fix_patch"
        funcs = others[:_FILE_SIZE[level] - 1] + [fn]
        funcs.sort(key=lambda f: f.node.lineno)
        path = f"pylib/{_local(module)}.py"
        good = header(module, funcs) + "\n\n" + "\n\n\n".join(f.source for f in funcs) + "\n"
        faulty = good.replace(fn.source, bug.source, 1)
        call, want, got = _call(fn.name, bug.witness), _show(bug.want), _show(bug.got)
        fill = {"call": call, "got": got, "want": want, "module": module, "fn": fn.name,
                "path": path,
                "args": ", ".join(repr(a) for a in bug.witness)}
        files = {"pylib/__init__.py": "", path: faulty}
        regression = [_test(f.name, str(i), a, want) for f in funcs if f.name != fn.name
                      for i, (a, want) in enumerate(_expected(f, random.Random(f"{seed}/{f.name}"),
                                                              2))]
        if regression:
            files[f"tests/test_{_local(module)}.py"] = _test_file(
                module, [f.name for f in funcs if f.name != fn.name], regression)
        hidden: dict[str, str] = {}
        if kind == "locate":
            prompt, target, answer = rng.choice(_LOCATE).format(**fill), path, fn.name
        elif kind == "fix_patch":
            issue = rng.choice(_ISSUE).format(**fill)
            prompt = f"{issue} {rng.choice(_FIX_ASK).format(**fill)}"
            if level == 1:
                files["tests/test_issue.py"] = _test_file(module, [fn.name], [
                    _test(fn.name, "issue", bug.witness, bug.want)])
            target, answer = path, good
            original = load(fn.source, fn.name, module, fn.imports)
            body = [_test(fn.name, f"witness{i}", a, bounded(original, a))
                    for i, a in enumerate(bug.differing)] + [
                _test(fn.name, str(i), a, want) for i, (a, want) in
                enumerate(_expected(fn, random.Random(f"hidden/{seed}"), _HIDDEN_CASES))]
            doc = ast_doc(fn)
            if doc and ">>>" in doc and _doctests_pass(fn, doc, fn.source):
                body.append(_doctest_test(fn, doc))
            hidden = {k: v for k, v in files.items() if k.startswith("tests/")}
            hidden["tests/test_hidden.py"] = _test_file(module, [fn.name], body)
        else:
            prompt = f"{rng.choice(_ISSUE).format(**fill)} {rng.choice(_TEST_ASK).format(**fill)}"
            target = "tests/test_issue.py"
            answer = _test_file(module, [fn.name], [_test(fn.name, "issue", bug.witness,
                                                          bug.want)])
        old_line, _ = changed_lines(fn.source, bug.source)
        meta: dict[str, Any] = {
            "kind": kind, "module": module, "local": _local(module), "function": fn.name,
            "path": path,
            "functions": [f.name for f in funcs], "bug_kind": bug.kind, "bug": bug.what,
            "bug_line": bug.line, "fixed_line": old_line.strip(), "witness": repr(bug.witness),
            "call": call, "want": bug.want[0], "got": bug.got[0], "want_text": want,
            "got_text": got, "files": files,
            "target": target, "hidden_tests": hidden, "reference": answer, "good": good,
            "level": level, "plan": []}
        task = Task(id=f"swe-{seed}-{difficulty}", env=self.name, seed=seed,
                    difficulty=difficulty, prompt=prompt, answer=answer, meta=meta)
        task.steps = _gold_steps(task)
        if kind == "locate":
            task.near_misses = [f.name for f in funcs if f.name != fn.name]
        elif kind == "fix_patch":
            task.near_misses = [faulty]
        else:  # a test asserting the faulty behaviour, and one that exercises nothing
            task.near_misses = [_test_file(module, [fn.name], [_test(fn.name, "issue",
                                                                     bug.witness, bug.got)])]
        return task

    # -----------------------------------------------------------------------------------------
    # checking

    def final_answer(self, task: Task, state: Any, content: str) -> str:
        if task.meta["kind"] == "locate":
            return Env.final_answer(self, task, state, content)
        return super().final_answer(task, state, content)

    def check(self, task: Task, answer: str) -> Verdict:
        kind = task.meta["kind"]
        if kind == "locate":
            ok = normalize_text(answer) == normalize_text(task.answer)
            return Verdict(ok, float(ok), f"{answer!r} {'is' if ok else 'is not'} the faulty "
                           f"function", "swe/locate")
        if kind == "fix_patch":
            verdict = super().check(task, answer)
            verdict.checker = "swe/hidden-tests"
            return verdict
        # test_patch: the answer is a test file; the verifier runs its tests (only the
        # `got = call; assert got == value` shape counts) on the faulty and on the fixed code.
        # It must run and fail on the first (a crash is no evidence) and pass on the second.
        on_faulty, faulty_counts = self._run_tests(task, answer, task.meta["files"][task.meta["path"]])
        on_fixed, _ = self._run_tests(task, answer, task.meta["good"])
        ok = on_fixed.correct and faulty_counts is not None and faulty_counts[1] > 0
        return Verdict(ok, float(ok), f"faulty code: {on_faulty.detail}; fixed code: "
                       f"{on_fixed.detail}", "swe/test-fails-then-passes")

    def _run_tests(self, task: Task, tests: str, code: str) -> tuple[Verdict, tuple[int, int] | None]:
        """The test file `tests` through the verifier, with `code` as the module under test."""
        files = {k: v for k, v in task.meta["files"].items() if not k.startswith("tests/")}
        files[task.meta["path"]] = code
        with Sandbox(self.limits, files=files) as box:
            return self.run_verifier({task.meta["target"]: tests}, box)

    def verify_episode(self, task: Task, state: Any, traj: Trajectory) -> Verdict:
        if task.meta["kind"] == "fix_patch":
            verdict = super().verify_episode(task, state, traj)
            verdict.checker = "swe/hidden-tests"
            return verdict
        return self.verify(task, traj)

    # -----------------------------------------------------------------------------------------
    # scripted teacher

    def teach(self, task: Task, b: TrajectoryBuilder, rng: random.Random, mistake: bool) -> str:
        from youtu.agentic.envs.swe_teacher import teach

        return teach(task, b, rng, mistake)


def ast_doc(fn: Function) -> str | None:
    """The function's docstring (where its doctests live)."""
    return ast.get_docstring(fn.node, clean=True)


def _expected(f: Function, rng: random.Random, n: int) -> list[tuple[tuple, tuple[str, str]]]:
    """Up to `n` generated inputs of `f` with the original's outcome (those it finishes)."""
    original = load(f.source, f.name, f.module, f.imports)
    out = [(a, bounded(original, a)) for a in cases(f, rng, n)]
    return [(a, w) for a, w in out if w[0] != "does not terminate"]


@functools.cache
def sandbox_usable(limits: SandboxLimits) -> frozenset[str]:
    """'module.function' of the corpus functions whose imports resolve in the sandbox's
    interpreter (one sandboxed run per process): it may be another patch release than ours,
    and private helpers come and go (3.11.2's http.cookies has no _OctalPatt)."""
    checks = [(m, f.name, f.imports) for m in sorted(TARGETS) for f in module_functions(m)]
    code = ("import importlib\nfor m, f, names in %r:\n    try:\n        mod = "
            "importlib.import_module(m)\n        if all(hasattr(mod, n) for n in names):\n"
            "            print(m + '.' + f)\n    except Exception:\n        pass\n" % checks)
    res = run_python(code, timeout_s=max(limits.timeout_s, 30), memory_mb=limits.memory_mb)
    usable = frozenset(res.stdout.split())
    if not usable:
        raise SandboxError("the sandbox could not import the standard library: "
                           f"{res.stderr[-200:]!r}")
    return usable


def _local(module: str) -> str:
    """The repository's module name for a standard-library module: urllib.parse -> urllib_parse."""
    return module.replace(".", "_")


def _called(f: Function) -> set[str]:
    return {n.id for n in ast.walk(f.node) if isinstance(n, ast.Name)}


def _valid(f: Function, args: tuple) -> bool:
    """Does `f` accept `args` without a TypeError (same input shape as the faulty one)?"""
    out = bounded(load(f.source, f.name, f.module, f.imports), args)
    return out[0] != "raises TypeError" and out[0] != "does not terminate"


def _gold_steps(task: Task) -> list[Step]:
    m = task.meta
    probe = f"python3 -c \"from pylib.{_local(m['module'])} import {m['function']}; " \
            f"print(repr({m['call']}))\""
    steps = [Step("List the repository files", "bash", {"command": "ls -R"}),
             Step(f"Read {m['path']}", "read_file", {"path": m["path"]}, m["files"][m["path"]])]
    if m["kind"] == "locate":
        steps.append(Step("Run every function of the file on the reported input and compare "
                          f"with the real {m['module']}", "bash", {"command": probe}))
    elif m["kind"] == "fix_patch":
        steps += [Step("Reproduce the issue", "bash", {"command": probe}),
                  Step(f"Write the fixed {m['path']}", "write_file",
                       {"path": m["path"], "content": m["reference"]}),
                  Step("Run the tests", "run_tests", {})]
    else:
        steps += [Step("Write the regression test", "write_file",
                       {"path": m["target"], "content": m["reference"]}),
                  Step("Run the tests and see the new one fail", "run_tests", {})]
    return steps
