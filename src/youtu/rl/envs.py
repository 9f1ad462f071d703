"""Task environments for RL: the agentic environments plus a smoke task a tiny model can learn.

    env = get_env("math")          # youtu.agentic.envs.ENVIRONMENTS["math"]
    env = get_env("digit_add")     # "3+4=" -> "7": learnable on CPU in seconds (tests, demos)

Every environment is a `youtu.agentic.envs.Env`: `generate(seed, difficulty) -> Task`, tools
(OpenAI function schemas, `tools_for(task)`), per-episode state (`episode(task)`),
`call_tool(task, state, name, arguments) -> str`, `final_answer(task, state, reply)` and
`check(task, answer) -> Verdict`. RL never trains on seeds >= `HELDOUT_SEED` (the synthesis
environments' `EVAL_SEED_MIN`): those tasks are kept for held-out evaluation.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from youtu.agentic.envs import EVAL_SEED_MIN, Env
from youtu.agentic.trajectory import Task, Verdict

if TYPE_CHECKING:
    from youtu.agentic.teachers import TrajectoryBuilder

HELDOUT_SEED = EVAL_SEED_MIN
"""Task seeds from here on are held out for evaluation."""


class DigitAddEnv(Env):
    """Add two small numbers whose sum is one digit: `"3+4="` -> `"7"`.

    The answer is a single digit token (the tokenizer splits every digit), so a tiny policy that
    has learnt to answer with one digit has a ~1/10 chance of being right and RL has signal from
    the first step. With `max_turns > 1` the tool `add(a, b)` is offered (multi-turn episodes).
    Difficulty 1 draws operands from 0..4, difficulty >= 2 from 0..9 (sum still <= 9).
    """

    name = "digit_add"
    max_difficulty = 2
    TOOLS: list[dict] = [{
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

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self.TOOLS

    def generate(self, seed: int, difficulty: int = 1) -> Task:
        rng = random.Random(seed)
        top = 4 if self._difficulty(difficulty) == 1 else 9
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

    def teach(self, task: Task, b: TrajectoryBuilder, rng: random.Random, mistake: bool) -> str:
        a, c = task.meta["a"], task.meta["b"]
        b.think("analysis", f"Add {a} and {c}.")
        return task.answer


SMOKE_ENVS: dict[str, Env] = {"digit_add": DigitAddEnv()}
"""Environments defined here for RL smoke runs (not used by synthesis)."""


def get_env(name: str) -> Env:
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
