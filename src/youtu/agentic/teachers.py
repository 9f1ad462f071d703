"""Scripted teachers: programs that solve generated tasks and emit Agentic-CoT trajectories.

    traj = scripted_trajectory(ENVIRONMENTS["code"], task, random.Random(0), mistake=True)
    traj.outcome.verified, traj.provenance["mistakes"]

Each environment's `teach()` drives a `TrajectoryBuilder`: `think(phase, text)` adds an
Agentic-CoT block (analysis, plan, action, reflection, summary) to the pending assistant turn,
`call()` / `call_parallel()` close the turn with real tool calls, executes them through the
environment and appends the observations, and `finish()` writes the final reply. With
`mistake=True` the teacher takes one controlled wrong step, observes the real failure (a
residual that is not 0, a failing test, a tool error, a document that does not say what it
needed), reflects and corrects: the trajectory holds the failed branch and the recovered one,
and the phases of the failed branch are marked `mistake=True`. The wrong answer the mistake
would have produced is recorded in `provenance["mistakes"]`, and tests check that the verifier
rejects it. Every trajectory is verified by the environment's checker before it is returned.
"""

from __future__ import annotations

import json
import random
from typing import TYPE_CHECKING, Any

from youtu.agentic.trajectory import (Outcome, Phase, Task, Trajectory, format_phases,
                                      trajectory_id)

if TYPE_CHECKING:
    from youtu.agentic.envs.base import Env


class TrajectoryBuilder:
    """Accumulates one episode's messages and phases while executing its tool calls for real."""

    def __init__(self, env: Env, task: Task, state: Any):
        self.env, self.task, self.state = env, task, state
        self.tools = env.tools_for(task)
        self.messages: list[dict[str, Any]] = []
        if env.system_prompt:
            self.messages.append({"role": "system", "content": env.system_prompt})
        self.messages.append({"role": "user", "content": task.prompt})
        self.phases: list[Phase] = []
        self.mistakes: list[dict[str, Any]] = []
        self._pending: list[tuple[str, str, bool]] = []
        self._n_calls = 0

    def think(self, phase: str, text: str, mistake: bool = False) -> None:
        """Add a phase block to the assistant turn being written."""
        self._pending.append((phase, text.strip(), mistake))

    def mistake(self, kind: str, answer: str | None = None, note: str = "") -> None:
        """Record the controlled mistake just made (and the wrong answer it leads to, if any)."""
        last = max(i for i, m in enumerate(self.messages) if m["role"] == "assistant")
        self.mistakes.append({"kind": kind, "answer": answer, "note": note, "message": last})

    def _assistant(self, content: str, calls: list[tuple[str, dict[str, Any]]],
                   mistake: bool) -> None:
        index = len(self.messages)
        blocks = [(name, text) for name, text, _ in self._pending]
        self.phases += [Phase(name, text, index, m or mistake) for name, text, m in self._pending]
        self._pending = []
        msg: dict[str, Any] = {"role": "assistant", "content": content,
                               "reasoning_content": format_phases(blocks)}
        if calls:
            msg["tool_calls"] = []
            for name, args in calls:
                msg["tool_calls"].append({"id": f"call_{self._n_calls}", "type": "function",
                                          "function": {"name": name, "arguments":
                                                       json.dumps(args, ensure_ascii=False)}})
                self._n_calls += 1
        self.messages.append(msg)

    def call_parallel(self, calls: list[tuple[str, dict[str, Any]]],
                      mistake: bool = False) -> list[str]:
        """One assistant turn with several tool calls; returns their observations in order."""
        self._assistant("", calls, mistake)
        out = []
        for call, (name, args) in zip(self.messages[-1]["tool_calls"], calls):
            obs = self.env.call_tool(self.task, self.state, name, args)
            self.messages.append({"role": "tool", "tool_call_id": call["id"], "name": name,
                                  "content": obs})
            out.append(obs)
        return out

    def call(self, name: str, arguments: dict[str, Any], mistake: bool = False) -> str:
        """One assistant turn with one tool call; returns the observation."""
        return self.call_parallel([(name, arguments)], mistake)[0]

    def finish(self, content: str) -> None:
        """The final assistant reply (pending phases go into its reasoning)."""
        self._assistant(content, [], False)


def scripted_trajectory(env: Env, task: Task, rng: random.Random, mistake: bool = False,
                        ) -> Trajectory:
    """Run `env`'s scripted teacher on `task` and verify the result with the env's checker."""
    with env.episode(task) as state:
        b = TrajectoryBuilder(env, task, state)
        content = env.teach(task, b, rng, mistake)
        b.finish(content)
        answer = env.final_answer(task, state, content)
        traj = Trajectory(
            id=trajectory_id(env.name, task.id, b.messages), domain=env.name, task=task,
            tools=b.tools, messages=b.messages, phases=b.phases,
            outcome=Outcome(verified=False, reward=0.0, checker="", answer=answer),
            provenance={"teacher": "scripted", "seed": task.seed, "difficulty": task.difficulty,
                        "env_version": env.version, "mistakes": b.mistakes,
                        "branch": "recovered" if b.mistakes else "direct"})
        verdict = env.verify_episode(task, state, traj)
    traj.outcome = Outcome(verified=verdict.correct, reward=verdict.reward,
                           checker=verdict.checker, detail=verdict.detail, answer=answer)
    return traj
