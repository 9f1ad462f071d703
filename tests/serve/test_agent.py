"""Agent runtime: the tool loop, limits, Agentic-CoT phases, env tasks checked and written as
schema-valid trajectories, against the in-process engine and over HTTP."""

from __future__ import annotations

import json

import pytest

from youtu.agentic.envs import ENVIRONMENTS
from youtu.agentic.trajectory import Outcome, Trajectory, load_trajectories
from youtu.config import ConfigError, RunConfig, replace
from youtu.serve import agent as agent_mod
from youtu.serve.agent import AGENT_SYSTEM, agent_trajectory, free_task, record_phases, run_agent
from youtu.serve.client import EngineChat, OpenAIChat
from youtu.serve.config import ServeConfig
from youtu.serve.engine import Engine
from youtu.serve.protocol import build_chat_prompt
from youtu.serve.server import create_app
from youtu.serve.tools import Tool, ToolSet, python_tool


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


class _Scripted:
    """A chat backend replaying fixed assistant messages (what a server returns)."""

    model = "scripted"

    def __init__(self, messages):
        self.replies, self.seen = list(messages), []

    def complete(self, messages, *, tools=None, max_tokens=1024, thinking=True, on_text=None):
        from youtu.serve.client import Reply

        self.seen.append([dict(m) for m in messages])
        msg = self.replies.pop(0)
        return Reply(msg, 5, "tool_calls" if msg.get("tool_calls") else "stop")


def test_malformed_tool_calls_are_fed_back_not_taken_as_the_answer():
    """Issue 19: unparsed <tool_call> text and a call to a tool that was not offered each get an
    error observation, and the model's next try counts; neither ends the run as 'final'."""
    log = []
    call = lambda name, k: {"id": f"c{k}", "type": "function",  # noqa: E731
                            "function": {"name": name, "arguments": '{"key": "x"}'}}
    backend = _Scripted([
        {"role": "assistant", "content": '<tool_call>{"name": "lookup", "arguments": {"key": }'
                                         "</tool_call>"},
        {"role": "assistant", "content": "", "tool_calls": [call("web_search", 1)]},
        {"role": "assistant", "content": "", "tool_calls": [call("lookup", 2)]},
        {"role": "assistant", "content": "The answer is \\boxed{42}."}])
    run = run_agent(backend, "What is x?", ToolSet([_echo_tool(log)]), max_steps=6)
    assert run.stop == "final" and run.steps == 4 and run.malformed == 2
    assert [m["role"] for m in run.messages] == ["system", "user", "assistant", "user",
                                                 "assistant", "tool", "assistant", "tool",
                                                 "assistant"]
    note = run.messages[3]["content"]
    assert "could not be read" in note and "lookup" in note
    assert "unknown tool 'web_search'" in run.messages[5]["content"]
    assert run.messages[7]["content"] == "value of x is 42" and log == [{"key": "x"}]
    assert backend.seen[1][-1] == run.messages[3]  # the model saw the error before retrying


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
    monkeypatch.setattr("youtu.serve.engine.engine_from_config", lambda *a, **k: (engine, tok))
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


def _forever(before, thinking):
    return ('<think>\n\n</think>\n\n'
            '<tool_call>{"name": "lookup", "arguments": {"key": "y"}}</tool_call>')


def _trajectory(run, tools):
    outcome = Outcome(verified=False, reward=0.0, checker="", detail=run.stop_note())
    return agent_trajectory(run, free_task("loop"), tools, "tools", outcome, {"stop": run.stop})


def test_runs_stopped_by_a_limit_end_as_valid_trajectories(scripted, tok):
    tools = ToolSet([_echo_tool([])])
    backend = EngineChat(_engine(scripted(_forever), tok), tok, temperature=0)
    step = run_agent(backend, "loop", tools, max_steps=2, thinking=False)
    per_reply = step.completion_tokens // 2  # the budget runs out right after a tool result
    budget = run_agent(backend, "loop", tools, max_steps=10, max_tokens=2 * per_reply,
                       thinking=False)
    for run, stop in [(step, "step_limit"), (budget, "token_limit")]:
        assert run.stop == stop and run.messages[-1]["role"] == "tool"  # the run ends on a result
        traj = _trajectory(run, tools)
        traj.validate()
        assert traj.messages[:-1] == run.messages and traj.messages[-1]["role"] == "assistant"
        assert traj.messages[-1]["content"] == run.stop_note()
        assert "before a final answer" in run.stop_note()
    assert "step limit (2 model calls)" in step.stop_note()

    # a reply cut at its token limit right after a complete call: the call never ran
    def cut(before, thinking):
        return _forever(before, thinking) + " and then a long tail " * 20
    backend = EngineChat(_engine(scripted(cut), tok), tok, temperature=0)
    run = run_agent(backend, "loop", tools, max_reply_tokens=60, thinking=False)
    assert run.stop == "length" and run.messages[-1]["tool_calls"]
    traj = _trajectory(run, tools)
    traj.validate()
    assert "tool_calls" not in traj.messages[-2] and traj.tool_calls() == []
    assert run.messages[-1]["tool_calls"]  # the run itself keeps what the model wrote


def test_a_full_context_stops_the_run_instead_of_raising(scripted, tok):
    tools = ToolSet([_echo_tool([])])
    two = run_agent(EngineChat(_engine(scripted(_forever), tok), tok, temperature=0), "loop",
                    tools, max_steps=2, thinking=False)
    # a context that the conversation after two tool rounds fills exactly
    full = len(build_chat_prompt(tok, two.messages, tools.schemas, "auto", False).ids)
    engine = Engine(scripted(_forever), max_batch=1, max_seq_len=full, eos_ids=[tok.eos_id],
                    detokenize=tok.decode)
    run = run_agent(EngineChat(engine, tok, temperature=0), "loop", tools, max_steps=50,
                    thinking=False)
    assert run.stop == "context" and run.steps == 2 and run.messages == two.messages
    _trajectory(run, tools).validate()


def _patch_engine(monkeypatch, scripted, tok, script):
    engine = _engine(scripted(script), tok)
    monkeypatch.setattr("youtu.serve.engine.engine_from_config", lambda *a, **k: (engine, tok))


def test_agent_main_step_limit_writes_a_valid_unverified_trajectory(scripted, tok, math_task,
                                                                    tmp_path, monkeypatch):
    env, task = math_task
    name = env.tools_for(task)[0]["function"]["name"]
    args = {k: "1" for k in env.tools_for(task)[0]["function"]["parameters"]["properties"]}

    def never_answers(before, thinking):
        return (f"<think>\nOne more call.\n</think>\n\n<tool_call>"
                f"{json.dumps({'name': name, 'arguments': args})}</tool_call>")

    _patch_engine(monkeypatch, scripted, tok, never_answers)
    out = tmp_path / "agent" / "traj.jsonl"
    cfg = replace(RunConfig(), ["--serve.agent_env=math", "--serve.agent_seed=1000001",
                                f"--serve.agent_out={out}", "--serve.temperature=0",
                                "--serve.agent_max_steps=2"])
    assert agent_mod.main(cfg) == 0
    assert agent_mod.main(cfg) == 0  # appended: both lines must load
    trajs = list(load_trajectories(out.parent))  # validates every line
    assert len(trajs) == 2
    traj = trajs[0]
    assert traj.provenance["stop"] == "step_limit" and traj.provenance["steps"] == 2
    assert not traj.outcome.verified and traj.outcome.reward == 0.0
    assert "step limit" in traj.outcome.detail
    assert [m["role"] for m in traj.messages] == ["system", "user", "assistant", "tool",
                                                  "assistant", "tool", "assistant"]
    assert "step limit" in traj.messages[-1]["content"] and len(traj.tool_calls()) == 2
    assert not (out.parent / "traj.jsonl.rejected").exists()


def test_agent_main_feeds_back_a_tool_that_was_not_offered(scripted, tok, tmp_path,
                                                           monkeypatch):
    """A call to a tool never offered is no call (the engine reports it in tool_call_errors):
    the model reads the error and answers; the episode is written, the bad call only as text."""
    def wrong_tool(before, thinking):
        if "could not be read" in tok.decode(before):
            return "<think>\n\n</think>\n\nNo luck."
        return '<think>\n\n</think>\n\n<tool_call>{"name": "browse", "arguments": {}}</tool_call>'

    _patch_engine(monkeypatch, scripted, tok, wrong_tool)
    out = tmp_path / "traj.jsonl"
    cfg = replace(RunConfig(), ["--serve.agent_task=What is x?", f"--serve.agent_out={out}",
                                "--serve.temperature=0"])
    assert agent_mod.main(cfg) == 0
    [traj] = list(load_trajectories(out.parent))  # validates the line
    assert [m["role"] for m in traj.messages] == ["system", "user", "assistant", "user",
                                                  "assistant"]
    assert "'browse'" in traj.messages[3]["content"] and traj.messages[4]["content"] == "No luck."
    assert not any(m.get("tool_calls") for m in traj.messages)


def test_agent_main_keeps_a_schema_breaking_episode_out_of_the_file(scripted, tok, tmp_path,
                                                                    monkeypatch, capsys):
    _patch_engine(monkeypatch, scripted, tok, lambda before, thinking: "<think>\n\n</think>\n\nOk.")
    monkeypatch.setattr(agent_mod, "validation_errors", lambda traj: ["a made-up schema error"])
    out = tmp_path / "traj.jsonl"
    cfg = replace(RunConfig(), ["--serve.agent_task=What is x?", f"--serve.agent_out={out}",
                                "--serve.temperature=0"])
    assert agent_mod.main(cfg) == 1
    assert not out.exists()
    rejected = tmp_path / "traj.jsonl.rejected"
    [line] = rejected.read_text().splitlines()
    assert json.loads(line)["messages"][-1]["content"] == "Ok."
    err = capsys.readouterr().err
    assert "breaks the trajectory schema" in err and str(rejected) in err


def test_env_tools_without_an_env_name_the_agent_command():
    with pytest.raises(ValueError, match="youtu agent --serve.agent_env"):
        agent_mod.build_tools(["env"])
    assert [t for t in agent_mod.build_tools(["python"]).tools] == [python_tool().name]
