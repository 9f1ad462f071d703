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


def _survive(chat):
    try:
        return chat()
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C ended the chat session")


def test_ctrl_c_stops_the_reply_not_the_session(model, tok):
    engine = Engine(model, max_batch=1, max_seq_len=512, eos_ids=[tok.eos_id], detokenize=tok.decode)
    backend = EngineChat(engine, tok, temperature=0)
    pieces = []
    real_complete = backend.complete

    def complete(messages, **kw):
        if len(messages) > 1:  # the second turn answers normally
            return real_complete(messages, **kw)
        on_text = kw["on_text"]

        def interrupt_after_first(kind, text):  # the user presses Ctrl-C mid-reply
            on_text(kind, text)
            pieces.append(text)
            raise KeyboardInterrupt
        return real_complete(messages, **{**kw, "on_text": interrupt_after_first})

    backend.complete = complete
    aborted = engine.metrics()["requests_abort_total"]
    out = io.StringIO()
    messages = _survive(lambda: run_chat(backend, max_tokens=200, thinking=False, stdout=out,
                                         stdin=io.StringIO("tell me a long story\nand again\n")))
    assert len(pieces) == 1 and "(stopped)" in out.getvalue()
    m = engine.metrics()
    assert m["requests_abort_total"] == aborted + 1 and m["free_rows"] == 1
    assert [x["role"] for x in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1]["content"].startswith(pieces[0].strip())  # the text so far is kept
    assert out.getvalue().count("assistant> ") == 2


def test_ctrl_c_at_the_prompt_and_in_a_remote_backend_keep_the_session():
    class Remote:  # an HTTP backend: the interrupt surfaces from the blocking call
        model = "remote"
        calls = 0

        def complete(self, messages, **kw):
            Remote.calls += 1
            if Remote.calls == 1:
                raise KeyboardInterrupt
            from youtu.serve.client import Reply
            return Reply({"role": "assistant", "content": "fine"}, 1, "stop")

    class Stdin(io.StringIO):
        def readline(self, *a):
            if not getattr(self, "interrupted", False):
                self.interrupted = True
                raise KeyboardInterrupt
            return super().readline(*a)

    out = io.StringIO()
    messages = _survive(lambda: run_chat(Remote(), stdin=Stdin("first\nsecond\n"), stdout=out))
    text = out.getvalue()
    assert "/quit or Ctrl-D leaves" in text and "(stopped)" in text
    assert messages == [{"role": "user", "content": "second"}, {"role": "assistant", "content": "fine"}]


def test_a_terminal_gets_readline_editing_and_a_history_file(scripted, tok, monkeypatch, tmp_path):
    import sys

    class Tty(io.StringIO):
        def isatty(self):
            return True

    lines = iter(["first question", "/quit"])
    prompts = []

    def fake_input(prompt):  # input() is what readline edits; it sees the prompt
        prompts.append(prompt)
        return next(lines)

    tty = Tty()
    monkeypatch.setattr(sys, "stdin", tty)
    monkeypatch.setattr("builtins.input", fake_input)
    monkeypatch.setenv("HOME", str(tmp_path))
    readline = pytest.importorskip("readline")
    readline.clear_history()
    readline.add_history("first question")  # what input() records on a real terminal
    backend = EngineChat(_engine(scripted(lambda b, t: "<think>\n\n</think>\n\nok"), tok), tok)
    out = io.StringIO()
    messages = run_chat(backend, thinking=False, stdout=out)
    assert prompts == ["you> ", "you> "] and messages[-1]["content"] == "ok"
    assert (tmp_path / ".youtu_chat_history").read_text().strip().endswith("first question")
