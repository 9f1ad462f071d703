"""Terminal chat fed from a string: streaming, thinking toggle, /reset, tool use."""

from __future__ import annotations

import io
import json

import pytest

from youtu.config import ConfigError, RunConfig, replace
from youtu.serve import chat as chat_mod
from youtu.serve.chat import run_chat
from youtu.serve.client import EngineChat
from youtu.serve.engine import Engine
from youtu.serve.tools import Tool, ToolSet


def _engine(model, tok) -> Engine:
    return Engine(model, max_batch=2, max_seq_len=1024, eos_ids=[tok.eos_id], detokenize=tok.decode)


def test_chat_streams_toggles_thinking_and_resets(scripted, tok):
    turns = []

    def script(before, thinking):
        n_users = before.count(tok.special("<|User|>"))
        turns.append(n_users)
        if thinking:
            return f"<think>\nponder {n_users}\n</think>\n\nanswer {n_users}"
        return f"<think>\n\n</think>\n\nquick {n_users}"

    backend = EngineChat(_engine(scripted(script), tok), tok, temperature=0)
    out = io.StringIO()
    messages = run_chat(backend, stdin=io.StringIO("hello\n/think\nagain\n/reset\nfresh\n/bogus\n"),
                        stdout=out)
    text = out.getvalue()
    assert "assistant> [thinking] ponder 1\nanswer 1\n" in text
    assert "(thinking off)" in text and "assistant> quick 2\n" in text
    assert "(conversation cleared)" in text and "assistant> quick 1\n" in text  # history gone
    assert "unknown command /bogus" in text
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["content"] == "quick 1"


def test_chat_runs_tool_calls_until_an_answer(scripted, tok):
    response = tok.special("<tool_response>")

    def script(before, thinking):
        if response in before:
            return "<think>\n\n</think>\n\nThe sum is 5."
        return ('<think>\n\n</think>\n\n<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}'
                "</tool_call>")

    calls = []
    add = Tool({"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}},
        lambda args: calls.append(args) or str(args["a"] + args["b"]))
    backend = EngineChat(_engine(scripted(script), tok), tok, temperature=0)
    out = io.StringIO()
    messages = run_chat(backend, tools=ToolSet([add]), thinking=False,
                        stdin=io.StringIO("add 2 and 3\n"), stdout=out)
    assert calls == [{"a": 2, "b": 3}]
    assert '[tool add({"a": 2, "b": 3})]\n5\n' in out.getvalue()
    assert "assistant> The sum is 5.\n" in out.getvalue()
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert json.loads(messages[1]["tool_calls"][0]["function"]["arguments"]) == {"a": 2, "b": 3}


def test_chat_with_the_real_tiny_model_survives_a_full_context(model, tok):
    engine = Engine(model, max_batch=1, max_seq_len=48, eos_ids=[tok.eos_id], detokenize=tok.decode)
    out = io.StringIO()
    run_chat(EngineChat(engine, tok, temperature=0), max_tokens=8, thinking=False,
             stdin=io.StringIO("hi\n" + "many words " * 40 + "\nhi\n"), stdout=out)
    text = out.getvalue()
    assert text.count("assistant> ") == 3
    assert "error: the conversation has" in text and "/reset" in text


def test_chat_refuses_env_tools_pointing_at_youtu_agent(monkeypatch):
    def no_engine(cfg):
        raise AssertionError("the config error must come before loading a model")

    monkeypatch.setattr("youtu.serve.engine.engine_from_config", no_engine)
    cfg = replace(RunConfig(), ['--serve.tools=["python", "env"]', "--serve.agent_env=math"])
    with pytest.raises(ConfigError, match=r"serve.tools.*`youtu agent --serve.agent_env=<name>`"):
        chat_mod.main(cfg)
