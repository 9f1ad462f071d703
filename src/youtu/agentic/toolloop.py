"""The message-level tool loop: model reply -> tool calls -> observations -> ... -> final reply.

    run = asyncio.run(run_tool_loop(backend, messages, tools=schemas, call_tool=call,
                                    max_steps=8, max_tokens=8192))
    run.stop, run.messages, run.final_content

One loop for every consumer: `youtu agent` (`youtu.serve.agent`, over the serving engine or
any OpenAI endpoint) and the LLM teacher of synthesis (`llm_teacher.py`, over an
OpenAI-compatible HTTP endpoint). It is async so the teacher runs many episodes concurrently
on one event loop; a synchronous backend or tool is wrapped by its caller.

A reply whose tool call is malformed - `<tool_call>` text that did not parse into a call, a
call to a tool that was not offered, arguments that are not a JSON object - is not an answer:
the loop feeds the error back to the model as an observation (a tool result for a call it
could read, a user message for what it could not: the server's `tool_call_errors` or unparsed
text) and lets it try again, within the same step limit.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from youtu.tokenizer.chat import TOOL_CALL, parse_tool_calls


class ContextFull(Exception):
    """The backend cannot fit the conversation (plus a reply) in the model's context."""


class LoopReply(Protocol):
    message: dict[str, Any]
    """OpenAI assistant message: content, optional reasoning_content and tool_calls."""
    completion_tokens: int
    finish_reason: str
    """'stop', 'tool_calls' or 'length' (cut at its token limit)."""


class ChatBackend(Protocol):
    """Where replies come from. `youtu.serve.client`'s backends fit behind a thin adapter."""

    async def complete(self, messages: list[dict[str, Any]], *,
                       tools: list[dict[str, Any]] | None, max_tokens: int) -> LoopReply: ...


ToolCaller = Callable[[str, dict[str, Any]], Awaitable[str]]
"""call_tool(name, arguments) -> observation text (errors as text, for the model to read)."""


@dataclass
class ToolLoopRun:
    messages: list[dict[str, Any]]
    stop: str
    """'final' (a reply without tool calls), 'step_limit', 'token_limit' (the run's budget ran
    out), 'length' (a reply hit its token limit) or 'context' (the conversation filled the
    context before the next reply)."""
    steps: int
    completion_tokens: int
    malformed: int = 0
    """Replies whose tool calls were fed back as errors (unparsed, unknown tool, bad arguments)."""

    def stop_note(self) -> str:
        """Why a run without a final reply ended, in words ('' for a final reply)."""
        why = {"final": "", "step_limit": f"the step limit ({self.steps} model calls)",
               "token_limit": f"the token budget ({self.completion_tokens} tokens generated)",
               "length": "a reply cut at its token limit",
               "context": "the conversation filling the model's context"}[self.stop]
        return f"[agent stopped by {why} before a final answer]" if why else ""

    @property
    def final_content(self) -> str:
        last = self.messages[-1]
        return (last.get("content") or "") if last["role"] == "assistant" else ""


def call_errors(message: dict[str, Any], reported: list[str] | None = None) -> str | None:
    """What was wrong with the tool calls of a reply, or None: the server's report (`reported`,
    the `tool_call_errors` youtu.serve's backends attach), else the parse error of `<tool_call>`
    text left in a reply that has no parsed call (servers that drop what they cannot parse)."""
    if reported:
        return "; ".join(str(e) for e in reported)
    content = message.get("content") or ""
    if message.get("tool_calls") or TOOL_CALL not in content:
        return None
    errors = parse_tool_calls(content).errors
    return "; ".join(errors) if errors else "the <tool_call> block was not read as a call"


def _arguments(call: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """(arguments, '') or (None, why they are unusable)."""
    args = call["function"].get("arguments", "{}")
    try:
        args = json.loads(args) if isinstance(args, str) else args
    except json.JSONDecodeError as e:
        return None, f"arguments are not valid JSON ({e.msg})"
    if not isinstance(args, dict):
        return None, "arguments must be a JSON object"
    return args, ""


async def observe(call: dict[str, Any], offered: set[str],
                  call_tool: ToolCaller) -> tuple[str, bool]:
    """(observation, whether the call was malformed) for one parsed tool call."""
    name = call["function"]["name"]
    if name not in offered:
        return (f"error: unknown tool {name!r}; the tools offered are: "
                f"{', '.join(sorted(offered)) or 'none'}"), True
    args, why = _arguments(call)
    if args is None:
        return f"error: {name}: {why}", True
    return await call_tool(name, args), False


async def run_tool_loop(backend: ChatBackend, messages: list[dict[str, Any]], *,
                        tools: list[dict[str, Any]] | None, call_tool: ToolCaller,
                        max_steps: int, max_tokens: int | None = None,
                        max_reply_tokens: int = 1024,
                        on_step: Callable[[dict[str, Any]], None] | None = None) -> ToolLoopRun:
    """Run the tool loop from `messages` (system + task, ...) until a final reply or a limit.

    Args:
        backend: where replies come from.
        messages: the conversation so far; extended in place with replies and observations.
        tools: OpenAI function schemas offered to the model (None = none).
        call_tool: runs one well-formed call of an offered tool.
        max_steps: most model calls.
        max_tokens: most generated tokens over the whole run; None = no budget.
        max_reply_tokens: most tokens of one reply.
        on_step: called with every message appended (replies, tool results, error notes).
    """
    offered = {t["function"]["name"] for t in tools or []}
    used, steps, stop, malformed = 0, 0, "step_limit", 0

    def add(msg: dict[str, Any]) -> None:
        messages.append(msg)
        if on_step:
            on_step(msg)

    while steps < max_steps:
        budget = (max_reply_tokens if max_tokens is None
                  else min(max_reply_tokens, max_tokens - used))
        if budget <= 0:
            stop = "token_limit"
            break
        try:
            reply = await backend.complete(messages, tools=tools or None, max_tokens=budget)
        except ContextFull:
            stop = "context"
            break
        steps += 1
        used += reply.completion_tokens
        msg = {**reply.message, "content": reply.message.get("content") or ""}
        reported = msg.pop("tool_call_errors", None)  # a report, not a field to send back
        add(msg)
        if reply.finish_reason == "length":  # cut off: whatever it was doing is incomplete
            stop = "token_limit" if max_tokens is not None and used >= max_tokens else "length"
            break
        calls = msg.get("tool_calls") or []
        error = call_errors(msg, reported) if offered else None
        if not calls and error is None:
            stop = "final"
            break
        for call in calls:
            observation, bad = await observe(call, offered, call_tool)
            malformed += bad
            add({"role": "tool", "tool_call_id": call["id"], "name": call["function"]["name"],
                 "content": observation})
        if error is not None:  # after the results of the calls that were read, if any
            malformed += 1
            add({"role": "user", "content": (
                f"error: a tool call could not be read ({error}). Write each call as "
                '<tool_call>{"name": "<tool>", "arguments": {...}}</tool_call> with one of '
                f"the offered tools ({', '.join(sorted(offered))}), or give the final answer.")})
    return ToolLoopRun(messages, stop, steps, used, malformed)
