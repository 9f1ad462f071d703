"""The environment contract every domain implements (math, code, tools, research).

    env = ENVIRONMENTS["math"]
    task = env.generate(seed=42, difficulty=2)
    with env.episode(task) as state:
        obs = env.call_tool(task, state, "calculator", {"expression": "2+2"})
    verdict = env.check(task, "7/3")
    traj = env.solve(task, random.Random(0))          # the scripted teacher

An environment is a seeded task generator (same seed -> same task), a set of tools with
OpenAI JSON schemas, a per-episode state, and a checker. Seeds >= `EVAL_SEED_MIN` are held out
for evaluation probes: synthesis refuses them.
"""

from __future__ import annotations

import contextlib
import random
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from youtu.agentic.trajectory import Task, Trajectory, Verdict

if TYPE_CHECKING:
    from youtu.agentic.teachers import TrajectoryBuilder

EVAL_SEED_MIN = 1_000_000
"""Seeds at or above this are reserved for evaluation probes; synthesis never uses them."""


def function_schema(name: str, description: str, properties: dict[str, dict],
                    required: list[str] | None = None) -> dict[str, Any]:
    """An OpenAI tool schema {"type": "function", "function": {...}}."""
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties,
                       "required": list(properties) if required is None else required}}}


def extract_boxed(text: str) -> str | None:
    r"""Content of the last `\boxed{...}` in `text` (braces balanced), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed{")
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            if depth == 0:
                return text[i:j].strip()
            depth -= 1
    return None


def normalize_text(text: str) -> str:
    """Lowercase, drop punctuation except decimal points/signs, collapse spaces (text answers)."""
    text = text.lower().replace(",", "")
    text = re.sub(r"[^\w\s.\-/]", " ", text)
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)
    text = re.sub(r"\b(the|a|an)\b", " ", text)
    return " ".join(text.split())


class ToolError(Exception):
    """A tool call failed; the message is shown to the agent as the observation."""


class Env(ABC):
    """A task domain. Subclasses set `name`, `version` and `system_prompt`."""

    name: str = ""
    version: str = "1"
    system_prompt: str = ""
    max_difficulty: int = 3

    @property
    @abstractmethod
    def tools(self) -> list[dict[str, Any]]:
        """Every tool of the environment as an OpenAI JSON schema."""

    def tools_for(self, task: Task) -> list[dict[str, Any]]:
        """The tools offered for `task` (default: all), in the order `task.meta["tools"]` names."""
        names = task.meta.get("tools")
        if names is None:
            return self.tools
        by_name = {t["function"]["name"]: t for t in self.tools}
        return [by_name[n] for n in names if n in by_name]

    @abstractmethod
    def generate(self, seed: int, difficulty: int = 1) -> Task:
        """The task of `seed` at `difficulty` (1..max_difficulty); deterministic."""

    @contextlib.contextmanager
    def episode(self, task: Task) -> Iterator[Any]:
        """Per-episode tool state (a database, a sandbox, ...), released afterwards."""
        yield self.new_state(task)

    def new_state(self, task: Task) -> Any:
        return {}

    @abstractmethod
    def call_tool(self, task: Task, state: Any, name: str, arguments: dict[str, Any]) -> str:
        """Execute one tool call; errors come back as text starting with 'error:'."""

    @abstractmethod
    def check(self, task: Task, answer: str) -> Verdict:
        """Is `answer` (the text inside the final \\boxed{}, or the final file) correct?"""

    def final_answer(self, task: Task, state: Any, content: str) -> str:
        """The answer an episode gave: by default the last \\boxed{} of the final reply."""
        boxed = extract_boxed(content)
        return content.strip() if boxed is None else boxed

    def verify(self, task: Task, traj: Trajectory) -> Verdict:
        """Judge a whole trajectory (default: its recorded answer with `check`)."""
        return self.check(task, traj.outcome.answer)

    def verify_episode(self, task: Task, state: Any, traj: Trajectory) -> Verdict:
        """`verify`, called while the episode's state is still open, so an environment may
        reuse its resources for the check (code: the sandbox, reset to a clean one)."""
        return self.verify(task, traj)

    @abstractmethod
    def teach(self, task: Task, b: TrajectoryBuilder, rng: random.Random, mistake: bool) -> str:
        """Scripted teacher: drive builder `b` through the task; return the final reply text.

        With `mistake`, make one controlled mistake, observe the failure, reflect and correct
        (recording the wrong answer with `b.mistake(...)`).
        """

    def solve(self, task: Task, rng: random.Random, mistake_rate: float = 0.0) -> Trajectory:
        """The scripted teacher's verified trajectory for `task`."""
        from youtu.agentic.teachers import scripted_trajectory

        return scripted_trajectory(self, task, rng, mistake=rng.random() < mistake_rate)

    def _difficulty(self, difficulty: int) -> int:
        if not 1 <= difficulty <= self.max_difficulty:
            raise ValueError(f"{self.name}: difficulty must be in 1..{self.max_difficulty}, "
                             f"got {difficulty}")
        return difficulty
