"""Task environments for RL: the agentic environments plus a smoke task a tiny model can learn.

    env = get_env("math")          # youtu.agentic.envs.ENVIRONMENTS["math"]
    env = get_env("digit_add")     # "3+4=" -> "7": learnable on CPU in seconds (tests, demos)

An environment has the `youtu.agentic.envs` interface: `generate(seed, difficulty) -> Task`,
`tools` (OpenAI function schemas), `call_tool(task, state, name, arguments) -> str` and
`check(task, answer) -> Verdict`. RL never trains on seeds >= `HELDOUT_SEED` (the convention the
synthesis environments share): those tasks are kept for held-out evaluation.
"""

from __future__ import annotations

import random
from typing import Any

from youtu.agentic.trajectory import Task, Verdict

HELDOUT_SEED = 1_000_000
"""Task seeds from here on are held out for evaluation."""


class DigitAddEnv:
    """Add two small numbers whose sum is one digit: `"3+4="` -> `"7"`.

    The answer is a single digit token (the tokenizer splits every digit), so a tiny policy that
    has learnt to answer with one digit has a ~1/10 chance of being right and RL has signal from
    the first step. With `max_turns > 1` the tool `add(a, b)` is offered (multi-turn episodes).
    Difficulty 1 draws operands from 0..4, difficulty >= 2 from 0..9 (sum still <= 9).
    """

    name = "digit_add"
    tools: list[dict] = [{
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    }]

    def generate(self, seed: int, difficulty: int = 1) -> Task:
        rng = random.Random(seed)
        top = 4 if difficulty <= 1 else 9
        while True:
            a, b = rng.randint(0, top), rng.randint(0, top)
            if a + b <= 9:
                break
        return Task(id=f"digit_add-{seed}", env=self.name, seed=seed, difficulty=difficulty,
                    prompt=f"{a}+{b}=", answer=str(a + b), meta={"a": a, "b": b})

    def call_tool(self, task: Task, state: dict, name: str, arguments: dict[str, Any]) -> str:
        if name != "add":
            raise ValueError(f"unknown tool {name!r}; the only tool is 'add'")
        state["calls"] = state.get("calls", 0) + 1
        return str(int(arguments["a"]) + int(arguments["b"]))

    def check(self, task: Task, answer: str) -> Verdict:
        correct = answer.strip() == task.answer
        return Verdict(correct=correct, reward=float(correct),
                       detail=f"expected {task.answer}, got {answer.strip()[:20]!r}",
                       checker="digit_add/exact")


SMOKE_ENVS: dict[str, Any] = {"digit_add": DigitAddEnv()}
"""Environments defined here for RL smoke runs (not used by synthesis)."""


def get_env(name: str) -> Any:
    """The environment `name`: a smoke task above, else `youtu.agentic.envs.ENVIRONMENTS[name]`."""
    if name in SMOKE_ENVS:
        return SMOKE_ENVS[name]
    from youtu.agentic.envs import ENVIRONMENTS

    if name not in ENVIRONMENTS:
        valid = sorted([*ENVIRONMENTS, *SMOKE_ENVS])
        raise ValueError(f"rl.env: unknown environment {name!r}; valid: {', '.join(valid)}")
    return ENVIRONMENTS[name]


def task_seed(run_seed: int, step: int, index: int, per_step: int) -> int:
    """Training task seed of task `index` in round `step`: distinct across rounds, always below
    `HELDOUT_SEED` (wraps around after ~1M tasks)."""
    return (run_seed * 7919 + step * per_step + index) % HELDOUT_SEED
