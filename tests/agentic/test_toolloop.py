"""The one message-level tool loop (youtu.agentic.toolloop) over a scripted async backend."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from youtu.agentic.toolloop import ContextFull, call_errors, run_tool_loop

TOOLS = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]


@dataclass
class _Reply:
    message: dict
    completion_tokens: int = 4
    finish_reason: str = "stop"


class _Backend:
    def __init__(self, *replies):
        self.replies = list(replies)

    async def complete(self, messages, *, tools, max_tokens):
        out = self.replies.pop(0)
        if isinstance(out, Exception):
            raise out
        return out


async def _add(name, args):
    return str(args["a"] + args["b"])


def _run(backend, tools=TOOLS, **kw):
    msgs = [{"role": "user", "content": "1+2?"}]
    return asyncio.run(run_tool_loop(backend, msgs, tools=tools, call_tool=_add,
                                     **{"max_steps": 4, **kw}))


def test_calls_then_final_answer_and_bad_arguments_are_fed_back():
    call = lambda args, k: {"id": f"c{k}", "type": "function",  # noqa: E731
                            "function": {"name": "add", "arguments": args}}
    run = _run(_Backend(_Reply({"role": "assistant", "tool_calls": [call("[1, 2]", 0)]}),
                        _Reply({"role": "assistant", "tool_calls": [call('{"a": 1, "b": 2}', 1)]}),
                        _Reply({"role": "assistant", "content": "3"})))
    assert run.stop == "final" and run.final_content == "3" and run.malformed == 1
    assert run.messages[2]["content"] == "error: add: arguments must be a JSON object"
    assert run.messages[4]["content"] == "3" and run.completion_tokens == 12


def test_limits_context_and_length():
    assert _run(_Backend(ContextFull("full"))).stop == "context"
    cut = _run(_Backend(_Reply({"role": "assistant", "content": "1+"}, finish_reason="length")))
    assert cut.stop == "length" and cut.steps == 1
    assert _run(_Backend(), max_tokens=0).stop == "token_limit"


def test_call_text_is_plain_content_when_no_tools_are_offered():
    text = '<tool_call>{"name": "add", "arguments": {"a": }</tool_call>'
    assert call_errors({"content": text}) is not None
    run = _run(_Backend(_Reply({"role": "assistant", "content": text})), tools=None)
    assert run.stop == "final" and run.malformed == 0


def test_the_servers_tool_call_errors_are_fed_back_after_the_calls_it_read():
    """youtu.serve's backends keep the valid calls and report the rest in `tool_call_errors`
    (a reply field the loop must not send back)."""
    good = {"id": "c0", "type": "function",
            "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}
    report = ["tool call 'web': not one of the offered tools (add)"]
    run = _run(_Backend(_Reply({"role": "assistant", "tool_calls": [good],
                                "tool_call_errors": report}),
                        _Reply({"role": "assistant", "content": "3"})))
    assert [m["role"] for m in run.messages] == ["user", "assistant", "tool", "user", "assistant"]
    assert run.messages[2]["content"] == "3" and "'web'" in run.messages[3]["content"]
    assert "tool_call_errors" not in run.messages[1] and run.malformed == 1
