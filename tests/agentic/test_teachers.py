"""Scripted teachers: 100% verified on their own tasks, with and without controlled mistakes;
a mistake is really wrong (the verifier rejects its answer, or its tool call really failed) and
is followed by reflection and a correction; phases follow the Agentic-CoT order."""

from __future__ import annotations

import random

import pytest

from youtu.agentic.envs import ENVIRONMENTS
from youtu.agentic.envs.code import CodeEnv
from youtu.agentic.envs.swe import SWEEnv
from youtu.agentic.sandbox import SandboxLimits
from youtu.agentic.trajectory import PHASES

ENVS = {**ENVIRONMENTS, "code": CodeEnv(SandboxLimits(timeout_s=5)),
        "swe": SWEEnv(SandboxLimits(timeout_s=5))}
COUNTS = {"math": 24, "tools": 30, "research": 24, "code": 6, "swe": 6, "pydocs": 24}


@pytest.mark.parametrize("name", sorted(ENVS))
@pytest.mark.parametrize("mistake", [False, True])
def test_scripted_teacher_is_always_verified(name, mistake):
    env = ENVS[name]
    n_mistakes = 0
    for i in range(COUNTS[name]):
        task = env.generate(i, 1 + i % env.max_difficulty)
        traj = env.solve(task, random.Random(i), mistake_rate=float(mistake))
        traj.validate()
        assert traj.outcome.verified, (task.id, traj.outcome.detail)
        assert traj.outcome.checker.startswith(name)
        names = [p.name for p in traj.phases]
        assert names[:2] == ["analysis", "plan"] and names[-1] == "summary"
        assert set(names) <= set(PHASES)
        for m in traj.provenance["mistakes"]:
            n_mistakes += 1
            _assert_really_wrong(env, task, traj, m)
        if not mistake:
            assert traj.provenance["mistakes"] == [] and not any(p.mistake for p in traj.phases)
    if mistake:
        assert n_mistakes >= COUNTS[name] // 3  # most task kinds have a controlled mistake


def _assert_really_wrong(env, task, traj, m):
    """The mistake's answer fails the verifier, or the mistaken call's observation shows the
    failure; a reflection follows it, and its phases are marked."""
    k = m["message"]
    observed = [msg["content"] for msg in traj.messages[k + 1:] if msg["role"] == "tool"][0]
    if m["answer"] is not None:
        assert not env.check(task, m["answer"]).correct, (task.id, m)
    elif env.name == "research":  # the document opened is not on the question's path
        path_titles = {env.world(task).entities[i].name for i in task.meta["path"]}
        assert observed.splitlines()[0] not in path_titles, (task.id, m)
    else:
        assert observed.startswith("error") or "Error" in observed or "exit code 1" in observed, (
            task.id, m, observed)
    marked = [p for p in traj.phases if p.mistake]
    assert marked and all(p.message <= m["message"] for p in marked)
    after = [p.name for p in traj.phases if p.message > m["message"]]
    assert "reflection" in after[:2], (task.id, after)


def test_teacher_is_deterministic():
    env = ENVS["research"]
    task = env.generate(4, 3)
    a = env.solve(task, random.Random(1), 0.5)
    b = env.solve(task, random.Random(1), 0.5)
    assert a.to_dict() == b.to_dict()
