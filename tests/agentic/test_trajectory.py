"""Trajectory schema: JSON round trip, validation naming each problem, folder loading."""

from __future__ import annotations

import copy
import json
import random

import pytest

from youtu.agentic.envs import ENVIRONMENTS
from youtu.agentic.trajectory import (Trajectory, format_phases, load_trajectories,
                                      parse_phases, validation_errors)

TRAJ = ENVIRONMENTS["tools"].solve(ENVIRONMENTS["tools"].generate(2, 3), random.Random(0), 1.0)


def test_dict_round_trip_keeps_everything():
    d = json.loads(json.dumps(TRAJ.to_dict()))
    assert set(d) == {"id", "domain", "task", "tools", "messages", "phases", "outcome",
                      "provenance"}
    again = Trajectory.from_dict(d)
    assert again.to_dict() == TRAJ.to_dict() and again.task.steps == TRAJ.task.steps
    assert validation_errors(TRAJ) == []


def test_phase_blocks_round_trip():
    blocks = [("analysis", "a\nb"), ("plan", "1. x"), ("summary", "done")]
    assert parse_phases(format_phases(blocks)) == blocks
    assert parse_phases("free text") == []


def _broken(edit) -> list[str]:
    d = copy.deepcopy(TRAJ.to_dict())
    edit(d)
    return validation_errors(Trajectory.from_dict(d, validate=False))


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(domain="poetry"), "domain 'poetry'"),
    (lambda d: d["messages"].append({"role": "robot", "content": "x"}), "role 'robot'"),
    (lambda d: d["messages"].insert(3, {"role": "system", "content": "x"}), "only come first"),
    (lambda d: d["messages"].pop(3), "never answered"),
    (lambda d: d["messages"][2]["tool_calls"][0]["function"].update(name="rm"), "unknown tool"),
    (lambda d: d["messages"][2]["tool_calls"][0]["function"].update(arguments="{x"), "not JSON"),
    (lambda d: d["phases"][0].update(text="edited"), "does not match its phases"),
    (lambda d: d["phases"][0].update(name="musing"), "'musing' is not one of"),
    (lambda d: d["phases"][0].update(message=1), "not an assistant message"),
    (lambda d: d["outcome"].update(reward=2.0), "outside [0, 1]"),
    (lambda d: d["outcome"].update(checker=""), "must name its checker"),
])
def test_validation_names_the_problem(edit, message):
    errors = _broken(edit)
    assert any(message in e for e in errors), errors
    d = copy.deepcopy(TRAJ.to_dict())
    edit(d)
    with pytest.raises(ValueError, match="invalid trajectory"):
        Trajectory.from_dict(d)


def test_load_trajectories_reads_nested_jsonl_and_reports_the_bad_line(tmp_path):
    (tmp_path / "tools").mkdir()
    line = json.dumps(TRAJ.to_dict())
    (tmp_path / "tools" / "shard_00000.jsonl").write_text(line + "\n\n" + line + "\n")
    assert len(list(load_trajectories(tmp_path))) == 2
    (tmp_path / "tools" / "shard_00001.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(ValueError, match=r"shard_00001.jsonl:1: .*missing required keys"):
        list(load_trajectories(tmp_path))
    with pytest.raises(FileNotFoundError, match="youtu synth"):
        list(load_trajectories(tmp_path / "nope"))
