"""Code environment: Python function tasks with hidden unit tests, solved with tools in a sandbox.

    env = CodeEnv()
    task = env.generate(seed=5, difficulty=2)         # 1 implement, 2 fix a bug, 3 fix a repo
    with env.episode(task) as box:                    # one sandbox process per episode
        env.call_tool(task, box, "run_tests", {})
    env.check(task, fixed_source)                     # hidden tests in a fresh sandbox

Tasks are drawn from the families of `code_tasks.FAMILIES` (`code_tasks.variant`: names,
spec phrasing, solution strategy) inside a per-task file layout (module and test file names, a
module docstring, an unrelated helper); the injected bug is one of the family's bugs that the
visible tests catch. The scripted teacher is `code_teacher.teach`.

Tools (bash is the primitive, as in the paper's code trajectories): `bash` (a shell command in
the workdir), `read_file`, `write_file`, `run_tests` (the visible tests under tests/). Every tool
runs inside the episode's `Sandbox` as its unprivileged uid; the session costs one sandbox
process per episode rather than one per step.

Verification writes the candidate file into a fresh sandbox with the task's other files (no
test file) and runs `VERIFIER` on the hidden tests (the visible ones plus more random inputs),
which it carries in its own code. The verdict rests on positive evidence only: the verifier
prints a summary tagged with a fresh random nonce after every test ran, and a task passes only
on that line with every test passed. The candidate never runs in the verifier's process: a
fresh interpreter imports it and evaluates each test's call, and sends back the values
(`marshal`: plain built-in data only, so no object with a forged `__eq__`); the verifier, which
is not ptrace-able and whose tests and nonce exist nowhere else, compares them with the expected
values. So exiting early (`sys.exit(0)`, `os._exit(0)`, `raise SystemExit(0)`), printing a
forged summary, or patching the test harness from the candidate's module earns nothing.
"""

from __future__ import annotations

import contextlib
import random
import re
import secrets
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from youtu.agentic.envs import code_teacher
from youtu.agentic.envs.base import Env, function_schema
from youtu.agentic.envs.code_tasks import FAMILIES, Family, call_repr, rename, variant
from youtu.agentic.sandbox import Sandbox, SandboxError, SandboxLimits
from youtu.agentic.trajectory import Step, Task, Trajectory, Verdict

if TYPE_CHECKING:
    from youtu.agentic.teachers import TrajectoryBuilder

HARNESS = '''
import os


def _run(folder):
    files = sorted(f for f in os.listdir(folder) if f.startswith("test") and f.endswith(".py"))
    passed, failed = 0, []
    for f in files:
        path = os.path.join(folder, f)
        mod = {"__name__": f[:-3], "__file__": path}
        try:
            with open(path) as src:
                exec(compile(src.read(), path, "exec"), mod)
        except Exception as e:
            failed.append((f, "could not import: %s: %s" % (type(e).__name__, e)))
            continue
        for name in sorted(n for n in mod if n.startswith("test")):
            try:
                mod[name]()
                passed += 1
            except AssertionError as e:
                failed.append(("%s::%s" % (f, name), str(e) or "assertion failed"))
            except Exception as e:
                failed.append(("%s::%s" % (f, name), "%s: %s" % (type(e).__name__, e)))
    for name, why in failed:
        print("FAILED %s: %s" % (name, why))
    print("%d passed, %d failed" % (passed, len(failed)))
    return 1 if failed or not passed else 0
'''
"""The test runner (stdlib only; runs inside the sandbox): pytest-style output, exit 1 on
failure. Test files are exec'd, not imported (importlib.util costs ~3 ms per run)."""

VERIFIER = r'''
import ast
import marshal
import os
import subprocess
import sys

_CANDIDATE = """
import marshal, os, sys
sys.path.insert(0, "")
out = os.fdopen(int(sys.argv[1]), "wb")
setup, calls = marshal.loads(sys.stdin.buffer.read())
ns = {"__name__": "verify"}
try:
    exec(setup, ns)
except BaseException as e:
    results = [("err", "could not import: %s: %s" % (type(e).__name__, e))] * len(calls)
else:
    results = []
    for call in calls:
        try:
            results.append(("ok", marshal.dumps(eval(call, ns))))
        except BaseException as e:
            results.append(("err", "%s: %s" % (type(e).__name__, e)))
out.write(marshal.dumps(results))
out.close()
"""


def _case(node):
    """(call source, expected value) of `def test_x(): got = <call>; assert got == <literal>`,
    or None for any other shape (it then counts as a failed test, never as a crash)."""
    body = node.body
    if len(body) != 2 or not isinstance(body[0], ast.Assign) or not isinstance(body[1], ast.Assert):
        return None
    test = body[1].test
    if (len(body[0].targets) != 1 or not isinstance(test, ast.Compare) or len(test.ops) != 1
            or not isinstance(test.ops[0], ast.Eq) or len(test.comparators) != 1):
        return None
    try:
        return ast.unparse(body[0].value), ast.literal_eval(test.comparators[0])
    except ValueError:
        return None


def _cases(tests):
    """(setup source, cases) of the test files: setup = their imports and helper functions
    (top-level `def`s not named test*); cases = (name, call source, expected value) per test
    function, call None for a test of another shape."""
    setup, cases = [], []
    for fname in sorted(tests):
        for node in ast.parse(tests[fname]).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                setup.append(ast.unparse(node))
            elif isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
                call, want = _case(node) or (None, None)
                cases.append(("%s::%s" % (fname, node.name), call, want))
            elif isinstance(node, ast.FunctionDef):
                setup.append(ast.unparse(node))
    return "\n".join(dict.fromkeys(setup)), cases


def _verify(tests, tag):
    setup, cases = _cases(tests)
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", _CANDIDATE, str(w)], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, pass_fds=[w])
    os.close(w)
    try:
        proc.stdin.write(marshal.dumps((setup, [c[1] or "None" for c in cases])))
        proc.stdin.close()
    except BrokenPipeError:
        pass
    with os.fdopen(r, "rb") as f:
        data = f.read()
    proc.wait()
    try:
        results = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        results = []
    if not isinstance(results, list) or len(results) != len(cases):
        results = [("err", "the candidate process ended before reporting (exit %s)"
                    % proc.returncode)] * len(cases)
    passed, failed = 0, []
    for (name, call, expected), res in zip(cases, results):
        try:
            kind, payload = res
            got = marshal.loads(payload) if kind == "ok" else None
            good = kind == "ok" and got == expected  # plain data: a built-in ==
        except Exception:
            kind, payload, good = "err", "malformed result", False
        if call is None:
            kind, payload, good = "err", "not a `got = call(...); assert got == value` test", False
        if good:
            passed += 1
        elif kind == "ok":
            failed.append((name, "%s returned %r, expected %r" % (call, got, expected)))
        else:
            failed.append((name, str(payload)[:300]))
    for name, why in failed:
        print("FAILED %s: %s" % (name, why))
    print("%s%d passed, %d failed" % (tag, passed, len(failed)), flush=True)
'''
"""The hidden-test verifier (stdlib only; runs inside the sandbox, in a fork of the session
server: not dumpable, so the candidate's process cannot read its memory). `_verify(tests, tag)`
prints FAILED lines and then `<tag>N passed, M failed`."""

_VISIBLE, _HIDDEN = 3, 8
_PACKAGES = ["textkit", "listutils", "mathbits", "toolbox", "helpers", "coreutils", "datatools",
             "strops", "numkit", "common"]
_MODULE_DOCS = ["Small helpers used across the project.", "Utility functions.",
                "Pure functions over plain data (no I/O).", "Helpers for the report generator.",
                "Data-cleaning routines.", "Shared building blocks; keep them dependency-free.",
                "Functions used by the command-line tools.", None, None]
"""The target module's docstring (None: no docstring), drawn per task."""
_HELPERS = [
    ("_is_blank", "def _is_blank(s):\n    return not s.strip()\n"),
    ("_sign", "def _sign(x):\n    return (x > 0) - (x < 0)\n"),
    ("_pairwise", "def _pairwise(xs):\n    return list(zip(xs, xs[1:]))\n"),
    ("_mean", "def _mean(xs):\n    return sum(xs) / len(xs) if xs else 0.0\n"),
    ("_first", "def _first(xs, default=None):\n    return xs[0] if xs else default\n"),
    ("_squeeze", "def _squeeze(s):\n    return ' '.join(s.split())\n"),
    ("VERSION", "VERSION = '{v}'\n"),
    ("__all__", "__all__ = [{names}]\n"),
]
"""Unrelated module contents (a helper, a constant) that vary what the target file holds."""


def _reference(fam: Family, source: str | None = None) -> Any:
    ns: dict[str, Any] = {}
    exec(compile(source or fam.reference, f"<{fam.name}>", "exec"), ns)  # our own code
    return ns[fam.fn]


def _cases(fam: Family, rng: random.Random, n: int, seen: set[str]) -> list[tuple[tuple, Any]]:
    ref = _reference(fam)
    out = []
    for _ in range(n * 4):
        args = fam.inputs(rng)
        key = repr(args)
        if key not in seen:
            seen.add(key)
            out.append((args, ref(*args)))
        if len(out) == n:
            break
    return out


def _test_file(import_line: str, fam: Family, cases: list[tuple[tuple, Any]], tag: str) -> str:
    lines = [import_line, ""]
    for i, (args, expected) in enumerate(cases):
        call = call_repr(fam.fn, args)
        lines += [f"def test_{fam.fn}_{tag}{i}():", f"    got = {call}",
                  f"    assert got == {expected!r}, {call!r} + ' returned ' + repr(got) + "
                  f"', expected ' + {repr(expected)!r}", "", ""]
    return "\n".join(lines).rstrip() + "\n"


def _fails(fam: Family, source: str, cases: list[tuple[tuple, Any]]) -> bool:
    fn = _reference(fam, source)
    for args, expected in cases:
        try:
            if fn(*args) != expected:
                return True
        except Exception:  # a crash is a failure too (our own buggy variants)
            return True
    return False


def _stub(fam: Family) -> str:
    return f'{fam.signature}\n    """{fam.doc}"""\n    raise NotImplementedError\n'


def _with_doc(fam: Family, source: str) -> str:
    """`source` with the spec as the docstring of its `def fam.fn` (imports may come first)."""
    lines = source.split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith(f"def {fam.fn}("))
    return "\n".join(lines[:at + 1] + [f'    """{fam.doc}"""'] + lines[at + 1:])


def _layout(rng: random.Random, fns: list[str]) -> tuple[str, str]:
    """(head, tail) framing a target module: an optional docstring, and an unrelated helper
    or constant before or after the functions."""
    doc = rng.choice(_MODULE_DOCS)
    head = f'"""{doc}"""\n\n' if doc else ""
    if rng.random() < 0.35:
        return head, ""
    name, helper = rng.choice(_HELPERS)
    helper = helper.format(v=f"{rng.randint(0, 3)}.{rng.randint(0, 12)}.{rng.randint(0, 9)}",
                           names=", ".join(repr(f) for f in fns))
    if name == "__all__" or rng.random() < 0.5:
        return head + helper + "\n\n", ""
    return head, "\n\n" + helper


_PROMPTS = {
    1: ["Implement `{fn}` in {path}.\n\n{sig}\n    {doc}\n\nThe tests are in tests/. Make them pass.",
        "{path} has a stub for `{fn}`: {doc} Write it so that the tests under tests/ pass.",
        "Please fill in `{fn}` ({path}).\n\nSpec: {doc}\n\nSignature: `{sig}`",
        "Write the body of {fn} in {path}. It should do this: {doc}",
        "New function needed: `{sig}` in {path}. {doc} Tests are already written."],
    2: ["Bug report: `{fn}` in {path} returns wrong results for some inputs. Spec: {doc} "
        "Find and fix the bug; the tests in tests/ show the expected behaviour.",
        "The tests for `{fn}` fail. It is supposed to do this: {doc} Fix {path}.",
        "`{fn}` ({path}) is broken on some inputs. Expected behaviour: {doc}",
        "Users report wrong output from {fn}. Its contract: {doc} Repair it without "
        "touching the tests.",
        "CI is red: tests for `{fn}` in {path} fail. Please fix the function ({doc})"],
    3: ["The `{pkg}` package has failing tests. Find the cause and fix it without changing "
        "the tests.", "Some tests of `{pkg}` fail after a recent change. Track the bug down "
        "and fix it.", "`{pkg}`: the test suite is red. Make it green again; the tests are "
        "right.", "Fix the failing tests in the {pkg} package (the bug is in the library "
        "code, not in tests/)."],
}
"""Task prompts per level: {fn}, {sig}, {doc}, {path}, {pkg}."""


class CodeEnv(Env):
    """Implement or repair Python functions; verified by hidden unit tests in a sandbox."""

    name = "code"
    version = "2"
    system_prompt = ("You are a software engineer working in a sandboxed repository. Explore "
                     "with bash, read and write files, run the tests, and finish when they pass. "
                     "Summarise what you changed.")

    def __init__(self, limits: SandboxLimits | None = None):
        self.limits = limits or SandboxLimits(timeout_s=10, memory_mb=512, max_procs=32)

    @property
    def tools(self) -> list[dict[str, Any]]:
        s = {"type": "string"}
        return [function_schema("bash", "Run a shell command in the repository root.",
                                {"command": s}),
                function_schema("read_file", "Read a file (path relative to the root).",
                                {"path": s}),
                function_schema("write_file", "Create or overwrite a file with `content`.",
                                {"path": s, "content": s}),
                function_schema("run_tests", "Run the test suite under tests/ and report "
                                "failures.", {}, required=[])]

    # -----------------------------------------------------------------------------------------
    # generation

    def generate(self, seed: int, difficulty: int = 1) -> Task:
        level = self._difficulty(difficulty)
        rng = random.Random(f"code/{seed}/{difficulty}")
        fam = variant(rng.choice(FAMILIES), rng)
        seen: set[str] = set()
        ref = _reference(fam)
        visible = [(args, ref(*args)) for args in fam.edge[:2]] + \
            _cases(fam, rng, _VISIBLE, seen | {repr(a) for a in fam.edge})
        rng.shuffle(visible)
        hidden = [(args, ref(*args)) for args in fam.edge] + _cases(fam, rng, _HIDDEN, seen)
        bugs = [(_with_doc(fam, src), why, kind) for src, why, kind in fam.bugs
                if _fails(fam, src, visible)]
        injected = rng.choice(bugs) if bugs else (_with_doc(fam, fam.reference), "", "")
        meta: dict[str, Any] = {"family": fam.name, "function": fam.fn, "signature": fam.signature,
                                "bug": injected[1], "bug_kind": injected[2], "bugs": bugs,
                                "visible": [(call_repr(fam.fn, a), repr(e)) for a, e in visible]}
        good = _with_doc(fam, fam.reference)
        if level < 3:
            module = rng.choice(["solution", "solution", "impl", "library", fam.fn])
            target = f"{module}.py"
            head, tail = _layout(rng, [fam.fn])

            def frame(body: str) -> str:
                return head + body + tail

            final = frame(good)
            if level == 1:
                files = {target: frame(_stub(fam))}
                prompt = rng.choice(_PROMPTS[1]).format(fn=fam.fn, sig=fam.signature, doc=fam.doc,
                                                        path=target)
            else:
                files = {target: frame(injected[0])}
                prompt = rng.choice(_PROMPTS[2]).format(fn=fam.fn, doc=fam.doc, path=target)
        else:
            other = variant(rng.choice([f for f in FAMILIES if f.name != fam.name]), rng)
            if other.fn == fam.fn:
                other = replace(other, fn=other.fn + "_",
                                reference=rename(other.reference, {other.fn: other.fn + "_"}))
            pkg = rng.choice(_PACKAGES)
            leaf = rng.choice(["core", "core", "ops", "funcs", "base"])
            target, module = f"{pkg}/{leaf}.py", f"{pkg}.{leaf}"
            head, tail = _layout(rng, [other.fn, fam.fn])
            first = rng.random() < 0.5
            other_good = _with_doc(other, other.reference)

            def frame(body: str) -> str:
                return head + "\n\n".join([other_good, body] if first else [body, other_good]) + tail

            files = {f"{pkg}/__init__.py": f"from {module} import {other.fn}, {fam.fn}\n",
                     target: frame(injected[0])}
            other_cases = [(a, _reference(other)(*a)) for a in other.edge[:2]]
            files["tests/test_other.py"] = _test_file(f"from {pkg} import {other.fn}",
                                                      other, other_cases, "")
            prompt = rng.choice(_PROMPTS[3]).format(pkg=pkg)
            final = frame(good)
            meta["other"] = other.name
        import_line = f"from {module} import {fam.fn}"
        test_file = rng.choice(["tests/test_solution.py", f"tests/test_{fam.fn}.py",
                                f"tests/test_{module.split('.')[-1]}.py"])
        if test_file == "tests/test_other.py":
            test_file = "tests/test_solution.py"
        files[test_file] = _test_file(import_line, fam, visible, "")
        hidden_files = {k: v for k, v in files.items() if k.startswith("tests/")}
        hidden_files["tests/test_hidden.py"] = _test_file(import_line, fam, hidden, "hidden_")
        meta.update({"files": files, "target": target, "hidden_tests": hidden_files,
                     "reference": final, "module": module, "level": level, "test_file": test_file,
                     "plan": ["Explore the repository", "Read the code and the tests",
                              "Run the tests" if level > 1 else "Write the implementation",
                              "Fix the code" if level > 1 else "Run the tests",
                              "Re-run the tests until they pass"]})
        meta["bugs"] = [(frame(src), why, kind) for src, why, kind in bugs]
        task = Task(id=f"code-{seed}-{difficulty}", env=self.name, seed=seed,
                    difficulty=difficulty, prompt=prompt, answer=final, meta=meta)
        task.steps = self._gold_steps(task)
        task.near_misses = [src for src, _, _ in meta["bugs"]]
        return task

    def _gold_steps(self, task: Task) -> list[Step]:
        m = task.meta
        n_tests = m["files"][m["test_file"]].count("def test_")
        n_tests += m["files"].get("tests/test_other.py", "").count("def test_")
        steps = [Step("List the files", "bash", {"command": "ls -R"}),
                 Step(f"Read {m['target']}", "read_file", {"path": m["target"]},
                      m["files"][m["target"]]),
                 Step("Read the tests", "read_file", {"path": m["test_file"]},
                      m["files"][m["test_file"]])]
        if m["level"] > 1:
            steps.append(Step("Run the tests to see the failure", "run_tests", {}))
        steps += [Step(f"Write the fixed {m['target']}", "write_file",
                       {"path": m["target"], "content": m["reference"]}),
                  Step("Run the tests", "run_tests", {}, f"{n_tests} passed, 0 failed")]
        return steps

    # -----------------------------------------------------------------------------------------
    # tools

    @contextlib.contextmanager
    def episode(self, task: Task) -> Iterator[Sandbox]:
        box = Sandbox(self.limits, files=task.meta["files"])
        try:
            yield box
        finally:
            box.close()

    def new_state(self, task: Task) -> Sandbox:
        return Sandbox(self.limits, files=task.meta["files"])

    def call_tool(self, task: Task, state: Any, name: str, arguments: dict[str, Any]) -> str:
        box: Sandbox = state
        try:
            if name == "bash":
                res = box.run(str(arguments["command"]))
                out = res.stdout + res.stderr
                if res.timed_out:
                    out += f"\n[timed out after {self.limits.timeout_s:g} s]"
                return (out.rstrip() + f"\n[exit code {res.returncode}]").lstrip()
            if name == "read_file":
                return box.read_file(str(arguments["path"]))
            if name == "write_file":
                return box.write_file(str(arguments["path"]), str(arguments["content"]))
            if name == "run_tests":
                res = box.run_python(HARNESS + "\nraise SystemExit(_run('tests'))\n")
                out = (res.stdout + res.stderr).strip()
                return out + ("\n[timed out]" if res.timed_out else "")
        except KeyError as e:
            return f"error: missing argument {e}"
        except (OSError, SandboxError) as e:
            return f"error: {e}"
        return f"error: unknown tool {name!r}; available: bash, read_file, write_file, run_tests"

    def final_answer(self, task: Task, state: Any, content: str) -> str:
        """The episode's answer is the target file as it stands at the end."""
        try:
            return state.read_file(task.meta["target"])
        except OSError:
            return ""

    def _verification_files(self, task: Task, answer: str) -> dict[str, str]:
        """The task's files with `answer` as the target and no test file: the hidden tests
        travel inside the verifier's code, where the candidate cannot read them."""
        files = {k: v for k, v in task.meta["files"].items() if not k.startswith("tests/")}
        files[task.meta["target"]] = answer
        return files

    def _hidden_tests(self, task: Task, box: Sandbox) -> Verdict:
        """Pass only on the verifier's nonce-tagged summary with every hidden test passed."""
        return self.run_verifier(dict(task.meta["hidden_tests"]), box)[0]

    def run_verifier(self, tests: dict[str, str], box: Sandbox) -> tuple[Verdict, tuple[int, int] | None]:
        """Run `tests` ({path: test file}) through the verifier in `box`: the verdict (pass =
        the nonce-tagged summary with every test passed, and at least one test) and the
        (passed, failed) counts when a summary came back."""
        n_tests = sum(src.count("\ndef test_") + src.startswith("def test_")
                      for src in tests.values())
        tag = f"[verdict {secrets.token_hex(16)}] "
        res = box.run_python(VERIFIER + f"\n_verify({tests!r}, {tag!r})\n")
        lines = [line[len(tag):] for line in res.stdout.splitlines() if line.startswith(tag)]
        counts = re.fullmatch(r"(\d+) passed, (\d+) failed", lines[0]) if len(lines) == 1 else None
        ok = (not res.timed_out and counts is not None and n_tests > 0
              and int(counts[1]) == n_tests and counts[2] == "0")
        if counts is not None:
            summary = lines[0]
        elif res.timed_out:
            summary = "timed out"
        else:
            tail = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1][-200:]
            summary = f"no test summary (the run ended before the tests finished: {tail})"
        verdict = Verdict(ok, float(ok), f"hidden tests: {summary}", "code/hidden-tests")
        return verdict, (None if counts is None else (int(counts[1]), int(counts[2])))

    def check(self, task: Task, answer: str) -> Verdict:
        """Run the hidden tests against `answer` (the target file) in a fresh sandbox."""
        with Sandbox(self.limits, files=self._verification_files(task, answer)) as box:
            return self._hidden_tests(task, box)

    def verify_episode(self, task: Task, state: Any, traj: Trajectory) -> Verdict:
        """The hidden tests in the episode's own sandbox, reset first (processes killed, files
        replaced): as clean as a new sandbox, without paying for one (~15 ms of CPU)."""
        if not state.can_reset:
            return self.verify(task, traj)
        state.reset(self._verification_files(task, traj.outcome.answer))
        return self._hidden_tests(task, state)

    # -----------------------------------------------------------------------------------------
    # scripted teacher

    def teach(self, task: Task, b: TrajectoryBuilder, rng: random.Random, mistake: bool) -> str:
        return code_teacher.teach(task, b, rng, mistake)
