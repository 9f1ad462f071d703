"""Chat backends for `youtu chat` and `youtu agent`: our engine in-process, or any
OpenAI-compatible endpoint (our server, vLLM, SGLang), behind one small interface.

    backend = EngineChat(engine, tok)                      # or OpenAIChat("http://host:8000/v1")
    reply = backend.complete(messages, tools=tools, max_tokens=512, thinking=True,
                             on_text=lambda kind, text: print(text, end=""))
    reply.message   # OpenAI assistant message: content, reasoning_content, tool_calls

Both return the same OpenAI message dict the server would, so an agent run against the local
engine and one against a remote server produce the same trajectory format; a tool call that
did not parse or names a tool not offered comes back as content plus `tool_call_errors`
(`protocol.assistant_message`) from both. Ctrl-C during `EngineChat.complete` cancels the
request and returns what was generated so far with finish_reason 'abort'.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from youtu.serve.protocol import APIError, assistant_message, build_chat_prompt
from youtu.serve.sampling import SamplingParams
from youtu.serve.textstream import ChatStreamSplitter, TextStream

if TYPE_CHECKING:
    from youtu.serve.engine import Engine
    from youtu.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

TextCallback = Callable[[str, str], None]
"""on_text(kind, text): kind is 'reasoning' or 'content'; called as text streams in."""


@dataclass
class Reply:
    message: dict[str, Any]
    """OpenAI assistant message (content, optional reasoning_content and tool_calls)."""
    completion_tokens: int
    finish_reason: str


class ChatBackend(Protocol):
    model: str

    def complete(self, messages: list[dict], *, tools: list[dict] | None = None,
                 max_tokens: int = 1024, thinking: bool = True,
                 on_text: TextCallback | None = None) -> Reply: ...


class EngineChat:
    """Chat completions straight from an `Engine` (no HTTP), streaming through `on_text`.

    Args:
        engine, tok: the engine and its tokenizer.
        temperature, top_p: sampling settings of every reply.
        seed: seed of the first reply (incremented per reply), None = unseeded.
    """

    def __init__(self, engine: Engine, tok: Tokenizer, *, temperature: float = 0.7,
                 top_p: float = 0.95, seed: int | None = None, model: str = "local"):
        self.engine, self.tok = engine, tok
        self.temperature, self.top_p, self.seed, self.model = temperature, top_p, seed, model

    def complete(self, messages: list[dict], *, tools: list[dict] | None = None,
                 max_tokens: int = 1024, thinking: bool = True,
                 on_text: TextCallback | None = None) -> Reply:
        prompt = build_chat_prompt(self.tok, messages, tools, "auto" if tools else None, thinking)
        room = self.engine.max_seq_len - len(prompt.ids)
        if room < 1:
            raise APIError(400, f"the conversation has {len(prompt.ids)} tokens, the context "
                           f"is {self.engine.max_seq_len}; /reset or shorten it",
                           code="context_length_exceeded")
        params = SamplingParams(temperature=self.temperature, top_p=self.top_p,
                                max_tokens=min(max_tokens, room), seed=self.seed)
        if self.seed is not None:
            self.seed += 1
        stop_ids = set(self.engine.eos_ids)
        text = TextStream(self.tok.decode)
        split = ChatStreamSplitter(prompt.prefix, prompt.tools_active)
        completion = None
        handle = self.engine.submit(prompt.ids, params)
        deltas = iter(handle)
        interrupted = False
        while completion is None:
            try:
                for delta in deltas:
                    parts = split.feed(text.push([t for t in delta.token_ids if t not in stop_ids]))
                    if delta.completion is not None:
                        completion = delta.completion
                        parts += split.feed(text.finish()) + split.finish()
                    if on_text is not None and not interrupted:
                        for kind, piece in parts:
                            on_text(kind, piece)
            except KeyboardInterrupt:
                # Ctrl-C stops this reply, not the caller: cancel (the row is freed at the next
                # step) and keep what was generated; the reply finishes with 'abort'.
                interrupted = True
                handle.cancel()
                deltas = iter(handle)
        assert completion is not None
        if completion.finish_reason == "error":
            raise RuntimeError(f"generation failed: {completion.error}")
        message, finish = assistant_message(prompt.prefix + text.final_text, prompt.tools_active,
                                            completion.finish_reason, prompt.tool_names)
        return Reply(message, len(completion.token_ids), finish)


class OpenAIChat:
    """Chat completions from an OpenAI-compatible endpoint (thinking via chat_template_kwargs,
    reasoning read from `reasoning_content` as vLLM and our server return it)."""

    def __init__(self, base_url: str, *, api_key: str = "", model: str = "",
                 temperature: float = 0.7, top_p: float = 0.95, timeout_s: float = 600.0):
        import openai

        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "none",
                                    timeout=timeout_s, max_retries=2)
        self.model = model or self.client.models.list().data[0].id
        self.temperature, self.top_p = temperature, top_p

    def complete(self, messages: list[dict], *, tools: list[dict] | None = None,
                 max_tokens: int = 1024, thinking: bool = True,
                 on_text: TextCallback | None = None) -> Reply:
        import openai

        kw: dict[str, Any] = {"tools": tools} if tools else {}
        request = dict(model=self.model, messages=messages, temperature=self.temperature,
                       top_p=self.top_p, extra_body={"chat_template_kwargs": {"enable_thinking": thinking}},
                       **kw)
        try:
            resp = self.client.chat.completions.create(max_tokens=max_tokens, **request)
        except openai.BadRequestError as e:
            body = e.body if isinstance(e.body, dict) else {}
            if body.get("code") != "context_length_exceeded":
                raise
            if body.get("param") != "max_tokens":  # the conversation alone fills the context
                raise APIError(400, str(body.get("message") or e), param=body.get("param"),
                               code="context_length_exceeded") from e
            # The prompt left less room than asked: let the server use what is left.
            resp = self.client.chat.completions.create(**request)
        choice = resp.choices[0]
        raw = choice.message.model_dump(exclude_none=True)
        message: dict[str, Any] = {"role": "assistant", "content": raw.get("content")}
        reasoning = raw.get("reasoning_content") or raw.get("reasoning")
        if reasoning:
            message["reasoning_content"] = reasoning
        if raw.get("tool_calls"):
            message["tool_calls"] = [{"id": c["id"], "type": "function",
                                      "function": {"name": c["function"]["name"],
                                                   "arguments": c["function"]["arguments"]}}
                                     for c in raw["tool_calls"]]
        if raw.get("tool_call_errors"):  # our server's report of calls that did not parse
            message["tool_call_errors"] = list(raw["tool_call_errors"])
        if on_text is not None:
            if reasoning:
                on_text("reasoning", reasoning)
            if message["content"]:
                on_text("content", message["content"])
        tokens = resp.usage.completion_tokens if resp.usage else 0
        return Reply(message, tokens, choice.finish_reason or "stop")
