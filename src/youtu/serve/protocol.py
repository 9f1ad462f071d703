"""OpenAI API shapes for the server: request models, error bodies, chat prompts and replies.

    req = ChatCompletionRequest.model_validate(body)
    prompt = build_chat_prompt(tok, req.messages, req.tools, req.tool_choice, thinking)
    message, finish = assistant_message(prompt.prefix + text, tools=prompt.tools_active, ...)

Requests accept the fields the OpenAI Python client and vLLM clients send; fields we do not
implement are refused by name (HTTP 400, `param` = the field) when set to a value that would
change the output (a non-zero `presence_penalty`, any `logit_bias`, a `response_format` other
than text, ...: `UNSUPPORTED`) and ignored otherwise (`user`, `metadata`, ...). Errors use
OpenAI's body: `{"error": {"message", "type", "param", "code"}}`.

A reply whose tool call does not parse, or calls a tool that was not offered, is returned the
same way streaming or not (`assistant_message`): no `tool_calls` for it, the model's text as
`content`, and the parse errors in the non-standard message field `tool_call_errors`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from youtu.serve.sampling import SamplingParams
from youtu.tokenizer.chat import (ASSISTANT, END_THINK, EOS, TOOL_CALL, encode_chat,
                                  parse_tool_calls, render_chat)

if TYPE_CHECKING:
    from youtu.tokenizer import Tokenizer


class APIError(Exception):
    """An error answered with an OpenAI-style body."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


# ---------------------------------------------------------------------------------------------
# requests


class StreamOptions(BaseModel):
    include_usage: bool = False


# torch.Generator.manual_seed takes [-2**63, 2**64 - 1]; a choice's seed is `seed + index` mod 2**64.
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1

# Parameters we do not implement: name -> (values that change nothing, what to do instead).
# Any other value is refused by name rather than silently ignored.
UNSUPPORTED: dict[str, tuple[tuple[Any, ...], str]] = {
    "logit_bias": ((None, {}), "token biasing is not implemented; use stop or stop_token_ids"),
    "response_format": ((None, {"type": "text"}), "structured output (json_object, json_schema) "
                        "is not implemented; ask for JSON in the prompt or use tools"),
    "functions": ((None, []), "the legacy functions API is not supported; send tools"),
    "function_call": ((None, "none", "auto"), "the legacy function_call is not supported; send "
                      "tool_choice"),
    "prediction": ((None,), "predicted outputs are not supported"),
    "audio": ((None,), "audio output is not supported"),
    "modalities": ((None, ["text"]), "only the text modality is supported"),
    "web_search_options": ((None,), "web search is not supported"),
    "guided_json": ((None,), "guided decoding is not implemented"),
    "guided_regex": ((None,), "guided decoding is not implemented"),
    "guided_choice": ((None,), "guided decoding is not implemented"),
    "guided_grammar": ((None,), "guided decoding is not implemented"),
    "structured_outputs": ((None,), "guided decoding is not implemented"),
    "min_tokens": ((None, 0), "min_tokens is not implemented"),
    "use_beam_search": ((None, False), "beam search is not implemented"),
    "length_penalty": ((None, 1, 1.0), "length_penalty (beam search) is not implemented"),
    "include_stop_str_in_output": ((None, False), "stop strings are never included in the output"),
    "skip_special_tokens": ((None, True), "special tokens are always skipped in the text"),
    "truncate_prompt_tokens": ((None,), "prompt truncation is not implemented; shorten the prompt"),
    "add_generation_prompt": ((None, True), "the generation prompt is always added"),
    "continue_final_message": ((None, False), "continuing the final message is not implemented"),
}


class _SamplingFields(BaseModel):
    """Sampling fields shared by chat and completions (OpenAI + the vLLM extras)."""

    model_config = ConfigDict(extra="allow")

    model: str
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(None, gt=0.0)
    presence_penalty: float | None = 0.0
    frequency_penalty: float | None = 0.0
    max_tokens: int | None = Field(None, ge=0)
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX)
    n: int = Field(1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> list[str]:
        stops = [v] if isinstance(v, str) else list(v or [])
        if any(not s for s in stops):
            raise ValueError("stop strings must be non-empty")
        if len(stops) > 16:
            raise ValueError("at most 16 stop strings")
        return stops

    @model_validator(mode="after")
    def _unsupported(self):
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name) not in (None, 0, 0.0):
                raise ValueError(f"{name} is not supported; use repetition_penalty")
        return self


def refuse_unsupported(body: dict[str, Any]) -> None:
    """Raise a 400 `APIError` naming the first `UNSUPPORTED` parameter set to a value that
    would change the output."""
    for name, (neutral, hint) in UNSUPPORTED.items():
        if name in body and body[name] not in neutral:
            raise APIError(400, f"{name} is not supported by this server: {hint}", param=name,
                           code="unsupported_parameter")


class ChatCompletionRequest(_SamplingFields):
    messages: list[dict[str, Any]] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    chat_template_kwargs: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    @field_validator("messages")
    @classmethod
    def _messages(cls, msgs: list[dict]) -> list[dict]:
        for i, m in enumerate(msgs):
            if m.get("role") not in ("system", "user", "assistant", "tool", "developer"):
                raise ValueError(f"messages[{i}].role must be system, user, assistant or tool, "
                                 f"got {m.get('role')!r}")
            content = m.get("content")
            if isinstance(content, list):
                for part in content:
                    if not isinstance(part, dict) or part.get("type") != "text":
                        raise ValueError(f"messages[{i}].content: only text parts are supported")
            elif content is not None and not isinstance(content, str):
                raise ValueError(f"messages[{i}].content must be a string or a list of text parts")
            if m["role"] == "tool" and not (isinstance(m.get("tool_call_id"), str)
                                            and m["tool_call_id"]):
                raise ValueError(f"messages[{i}]: a tool message needs the tool_call_id of the "
                                 "call it answers")
            calls = m.get("tool_calls")
            if calls is not None:
                if m["role"] != "assistant" or not isinstance(calls, list):
                    raise ValueError(f"messages[{i}].tool_calls must be a list, on an assistant "
                                     "message")
                for k, call in enumerate(calls):
                    fn = call.get("function") if isinstance(call, dict) else None
                    if not (isinstance(fn, dict) and isinstance(fn.get("name"), str) and fn["name"]
                            and isinstance(fn.get("arguments", "{}"), (str, dict))):
                        raise ValueError(f"messages[{i}].tool_calls[{k}] must be {{'id': ..., "
                                         "'type': 'function', 'function': {'name': <string>, "
                                         "'arguments': <JSON string>}}")
        # "developer" is the newer OpenAI name of the system role.
        return [{**m, "role": "system"} if m["role"] == "developer" else m for m in msgs]

    @field_validator("tools")
    @classmethod
    def _tools(cls, tools: list[dict] | None) -> list[dict] | None:
        for i, t in enumerate(tools or []):
            fn = t.get("function")
            if t.get("type") != "function" or not isinstance(fn, dict) or not fn.get("name"):
                raise ValueError(f"tools[{i}] must be {{'type': 'function', 'function': "
                                 "{'name': ..., 'parameters': {...}}}")
        return tools

    @model_validator(mode="after")
    def _tool_choice(self):
        choice = self.tool_choice
        names = {t["function"]["name"] for t in self.tools or []}
        if isinstance(choice, str):
            if choice not in ("none", "auto", "required"):
                raise ValueError(f"tool_choice must be none, auto, required or a function, got {choice!r}")
            if choice == "required" and not names:
                raise ValueError("tool_choice 'required' needs tools")
        elif isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            if name not in names:
                raise ValueError(f"tool_choice names function {name!r}, which is not in tools")
        return self

    @property
    def enable_thinking(self) -> bool | None:
        kw = self.chat_template_kwargs or {}
        value = kw.get("enable_thinking", kw.get("thinking"))
        return None if value is None else bool(value)


class CompletionRequest(_SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=0)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=20)
    suffix: str | None = None
    best_of: int | None = None

    @model_validator(mode="after")
    def _checks(self):
        if self.suffix:
            raise ValueError("suffix (insertion) is not supported")
        if self.best_of not in (None, 1, self.n):
            raise ValueError("best_of is not supported")
        if isinstance(self.prompt, list) and not self.prompt:
            raise ValueError("prompt is empty")
        return self

    def prompts(self, tok: Tokenizer) -> list[list[int]]:
        """Prompt token ids, one list per prompt: strings are encoded after BOS (every training
        document starts with BOS, as with vLLM's default for Llama-style tokenizers; the eval
        harness scores the same way), ids are used as given."""
        p = self.prompt
        if isinstance(p, str):
            return [[tok.bos_id, *tok.encode(p)]]
        if all(isinstance(x, int) for x in p):
            return [list(p)]  # type: ignore[arg-type]
        return [[tok.bos_id, *tok.encode(x)] if isinstance(x, str) else list(x)  # type: ignore[union-attr]
                for x in p]


def _wrap_seed(seed: int) -> int:
    return seed - 2**64 if seed > SEED_MAX else seed


def sampling_params(req: _SamplingFields, max_tokens: int, *, default_temperature: float,
                    default_top_p: float, logprobs: int = 0, prompt_logprobs: bool = False,
                    seed_offset: int = 0) -> SamplingParams:
    """The engine's parameters for one choice of a request (`seed + index` for choice index)."""
    try:
        return SamplingParams(
            temperature=default_temperature if req.temperature is None else req.temperature,
            top_p=default_top_p if req.top_p is None else req.top_p,
            top_k=max(0, req.top_k or 0),
            min_p=req.min_p or 0.0,
            repetition_penalty=req.repetition_penalty or 1.0,
            max_tokens=max_tokens,
            stop=list(req.stop or []),  # type: ignore[arg-type]
            stop_token_ids=list(req.stop_token_ids or []),
            ignore_eos=req.ignore_eos,
            seed=None if req.seed is None else _wrap_seed(req.seed + seed_offset),
            top_logprobs=logprobs,
            prompt_logprobs=prompt_logprobs,
        )
    except ValueError as e:
        raise APIError(400, str(e)) from e


# ---------------------------------------------------------------------------------------------
# chat prompts and replies


@dataclass
class ChatPrompt:
    ids: list[int]
    prefix: str
    """Assistant text the prompt already holds (think pre-fill, forced `<tool_call>`)."""
    tools_active: bool
    """Whether the reply is parsed for tool calls."""
    tool_names: frozenset[str] = frozenset()
    """Names of the tools the prompt offers; calls to any other name are refused."""


def build_chat_prompt(tok: Tokenizer, messages: list[dict], tools: list[dict] | None,
                      tool_choice: str | dict | None, enable_thinking: bool) -> ChatPrompt:
    """Render the conversation for generation.

    `tool_choice`: "none" hides the tools; "auto" (default) shows them; "required" and a named
    function force a call by pre-filling `<tool_call>` (and the name) after an empty think
    block, so the constraint holds whatever the model would have preferred.
    """
    if tool_choice == "none":
        tools = None
    forced = bool(tools) and (tool_choice == "required" or isinstance(tool_choice, dict))
    thinking = enable_thinking and not forced
    try:
        ids, _ = encode_chat(tok, messages, tools=tools or None, enable_thinking=thinking,
                             add_generation_prompt=True)
        text = render_chat(messages, tools=tools or None, enable_thinking=thinking,
                           add_generation_prompt=True)
    except ValueError as e:
        raise APIError(400, f"messages: {e}", param="messages") from e
    prefix = text[text.rfind(ASSISTANT) + len(ASSISTANT):]
    if forced:
        ids = ids + [tok.special(TOOL_CALL)]
        prefix += TOOL_CALL
        if isinstance(tool_choice, dict):
            # No trailing space: ' {' is one token in JSON the model was trained on (token healing).
            head = '{"name": ' + json.dumps(tool_choice["function"]["name"]) + ', "arguments":'
            ids += tok.encode(head)
            prefix += head
    names = frozenset(t["function"]["name"] for t in tools or [])
    return ChatPrompt(ids, prefix, bool(tools), names)


def assistant_message(text: str, tools_active: bool, finish_reason: str | None,
                      tool_names: frozenset[str] | set[str] | None = None) -> tuple[dict, str]:
    """Assistant text (prompt prefix + generated, special tokens kept) -> (OpenAI message,
    finish_reason). The server's two modes and `EngineChat` all build the reply here.

    The think block becomes `reasoning_content`. With tools active, parsed calls to offered
    tools (`tool_names`; None = any name) become `tool_calls` and the reply finishes with
    'tool_calls'. A call that does not parse, or names a tool that was not offered, is never
    passed on as a call: its error goes to the message's `tool_call_errors` (a list of
    strings, absent when there is none), and when no valid call remains, `content` is the
    reply as the model wrote it (the `<tool_call>` text included, so a client or agent loop
    can show it and feed the error back) and the finish is the engine's ('stop' or 'length').
    Without tools, call-like text is plain content.
    """
    parsed = parse_tool_calls(text)
    message: dict[str, Any] = {"role": "assistant", "content": parsed.content}
    if parsed.reasoning:
        message["reasoning_content"] = parsed.reasoning
    finish = finish_reason or "stop"
    body = text.replace(EOS, "")
    if END_THINK in body:
        body = body.split(END_THINK, 1)[1]
    elif parsed.reasoning is not None:
        body = ""
    if not tools_active:  # no tools offered: call-like text is plain content
        message["content"] = body.strip()
        return message, finish
    calls, errors = [], [e for e in parsed.errors if e.startswith(("tool call", "stray"))]
    for call in parsed.tool_calls:
        name = call["function"]["name"]
        if tool_names is not None and name not in tool_names:
            offered = ", ".join(sorted(tool_names)) or "none"
            errors.append(f"tool call {name!r}: not one of the offered tools ({offered})")
        else:
            calls.append(call)
    if calls:
        message["tool_calls"] = calls
        message["content"] = parsed.content or None
        if finish == "stop":
            finish = "tool_calls"
    elif errors:
        message["content"] = body.strip()
    if errors:
        message["tool_call_errors"] = errors
    return message, finish
