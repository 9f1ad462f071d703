"""Agent runtime: the tool loop, limits, Agentic-CoT phases, env tasks checked and written as
schema-valid trajectories, against the in-process engine and over HTTP."""

from __future__ import annotations

import json

import pytest

from youtu.agentic.envs import ENVIRONMENTS
from youtu.agentic.trajectory import Trajectory
from youtu.config import ConfigError, RunConfig, replace
from youtu.serve import agent as agent_mod
from youtu.serve.agent import AGENT_SYSTEM, record_phases, run_agent
from youtu.serve.client import EngineChat, OpenAIChat
from youtu.serve.config import ServeConfig
from youtu.serve.engine import Engine
from youtu.serve.server import create_app
from youtu.serve.tools import Tool, ToolSet


def _engine(model, tok) -> Engine:
    return Engine(model, max_batch=2, max_seq_len=2048, eos_ids=[tok.eos_id], detokenize=tok.decode)


def _echo_tool(log):
    return Tool({"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"key": {"type": "string"}}}}},
        lambda args: log.append(args) or f"value of {args['key']} is 42")


def _two_step_script(tok):
    response = tok.special("<tool_response>")

    def script(before, thinking):
        if before.count(response) >= 1:
            return ("<think>\n<reflection>\nThe lookup says 42.\n</reflection>\n</think>\n\n"
                    "The answer is \\boxed{42}.")
        return ('<think>\nI need the value.\n<plan>\nLook it up.\n</plan>\n</think>\n\n'
                '<tool_call>{"name": "lookup", "arguments": {"key": "x"}}</tool_call>')
    return script


def test_run_agent_loop_and_phases(scripted, tok):
    log = []
    backend = EngineChat(_engine(scripted(_two_step_script(tok)), tok), tok, temperature=0)
    run = run_agent(backend, "What is x?", ToolSet([_echo_tool(log)]), max_steps=5)
    assert run.stop == "final" and run.steps == 2 and log == [{"key": "x"}]
    assert [m["role"] for m in run.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert run.messages[0]["content"] == AGENT_SYSTEM
    assert run.messages[3]["content"] == "value of x is 42"
    assert run.final_content == "The answer is \\boxed{42}."
    phases = record_phases(run.messages)
    assert [(p.name, p.text, p.message) for p in phases] == [
        ("analysis", "I need the value.", 2), ("plan", "Look it up.", 2),
        ("reflection", "The lookup says 42.", 4)]


def test_run_agent_limits(scripted, tok):
    def forever(before, thinking):
        return '<think>\n\n</think>\n\n<tool_call>{"name": "lookup", "arguments": {"key": "y"}}</tool_call>'

    backend = EngineChat(_engine(scripted(forever), tok), tok, temperature=0)
    run = run_agent(backend, "loop", ToolSet([_echo_tool([])]), max_steps=3, thinking=False)
    assert run.stop == "step_limit" and run.steps == 3
    run = run_agent(backend, "loop", ToolSet([_echo_tool([])]), max_steps=10, max_tokens=40,
                    thinking=False)
    assert run.stop == "token_limit" and run.completion_tokens >= 40 and run.steps < 10


@pytest.fixture
def math_task():
    env = ENVIRONMENTS["math"]
    return env, env.generate(1_000_001)


def _env_script(tok, env, task):
    """A scripted model that answers an env task correctly after one tool call."""
    response = tok.special("<tool_response>")
    name = env.tools_for(task)[0]["function"]["name"]
    props = env.tools_for(task)[0]["function"]["parameters"]["properties"]
    args = {k: "1" for k in props}

    def script(before, thinking):
        if response in before:
            return f"<think>\nChecked.\n</think>\n\nFinal: \\boxed{{{task.answer}}}"
        return (f"<think>\nAnalyse first.\n</think>\n\n<tool_call>"
                f"{json.dumps({'name': name, 'arguments': args})}</tool_call>")
    return script


def test_agent_main_writes_a_checked_trajectory(scripted, tok, math_task, tmp_path, monkeypatch):
    env, task = math_task
    engine = _engine(scripted(_env_script(tok, env, task)), tok)
    monkeypatch.setattr("youtu.serve.engine.engine_from_config", lambda cfg: (engine, tok))
    out = tmp_path / "traj.jsonl"
    cfg = replace(RunConfig(), ["--serve.agent_env=math", "--serve.agent_seed=1000001",
                                f"--serve.agent_out={out}", "--serve.temperature=0"])
    assert agent_mod.main(cfg) == 0
    [line] = out.read_text().splitlines()
    traj = Trajectory.from_dict(json.loads(line))  # schema-valid
    assert traj.domain == "math" and traj.task.id == task.id
    assert traj.outcome.verified and traj.outcome.reward == 1.0 and traj.outcome.answer == task.answer
    assert traj.provenance["stop"] == "final" and traj.provenance["steps"] == 2
    assert [p.name for p in traj.phases] == ["analysis", "summary"]
    assert len(traj.tool_calls()) == 1


def test_agent_main_free_task_over_http(scripted, tok, tmp_path, live_server, capsys):
    engine = _engine(scripted(_two_step_script(tok)), tok)
    app = create_app(engine, tok, ServeConfig(served_model_name="m", temperature=0.0))
    with live_server(app) as server:
        backend = OpenAIChat(server.url + "/v1", temperature=0.0)
        assert backend.model == "m"
        log = []
        run = run_agent(backend, "What is x?", ToolSet([_echo_tool(log)]))
        assert run.stop == "final" and log == [{"key": "x"}]
        assert run.messages[2]["reasoning_content"].startswith("I need the value.")
        assert run.final_content == "The answer is \\boxed{42}."


def test_agent_main_refuses_bad_configs():
    with pytest.raises(ConfigError, match="task"):
        agent_mod.main(RunConfig())
    with pytest.raises(ConfigError, match="unknown environment"):
        agent_mod.main(replace(RunConfig(), ["--serve.agent_env=chess"]))
