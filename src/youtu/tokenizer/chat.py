"""Chat format of Youtu-LLM: rendering, loss masks, the HF Jinja template and the tool-call parser.

    text = render_chat(messages, tools=tools, enable_thinking=True, add_generation_prompt=True)
    ids, mask = encode_chat(tok, messages, tools=tools)      # mask 1 = trained token
    out = parse_tool_calls(completion_text)                   # .content .reasoning .tool_calls .errors

Messages are OpenAI chat dicts: `role` (system / user / assistant / tool), `content` (a string,
None, or a list of {"type": "text", "text": ...} parts), assistant `reasoning_content` and
`tool_calls` ([{"id", "type": "function", "function": {"name", "arguments": <JSON string or
dict>}}]). The rendered text is exactly (S = special token, newlines written as \\n):

    S<|begin_of_text|>{system}{tools block}
    S<|User|>{user}
    S<|Assistant|>{think block}{content}{tool calls}S<|end_of_text|>
    S<|User|>S<tool_response>{result}S</tool_response>\\nS<tool_response>{result 2}S</tool_response>

Decisions (the released model's format where it is known; ours where it is silent):
- System: only a first message may be a system message; its content follows BOS directly.
- Tools: described in the system part, after the system content and "\\n\\n" (if any):
  `TOOLS_HEADER`, then `<tools>` + one JSON schema per line + `</tools>`, then `TOOLS_FOOTER`
  (which shows the call syntax with real `<tool_call>` tokens).
- Tool results: consecutive `tool` messages share one `<|User|>` turn, one
  `<tool_response>...</tool_response>` each, separated by "\\n".
- Thinking, kept only for assistant turns after the last `user` message (the current agentic
  round; like Qwen3 and DeepSeek-R1, reasoning of earlier rounds is dropped and those turns have
  no think block at all):
    enable_thinking and reasoning: `<think>\\n{reasoning}\\n</think>\\n\\n`
    otherwise:                      `<think>\\n\\n</think>\\n\\n`   (the non-thinking pre-fill)
- Tool calls follow the content: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`,
  "\\n" between calls and between non-empty content and the first call. JSON is written as
  `json.dumps(..., ensure_ascii=False)` (transformers' `tojson`); string arguments verbatim.
- Generation prompt: `<|Assistant|>`, plus the pre-fill `<think>\\n\\n</think>\\n\\n` when
  thinking is off (thinking on: the model opens `<think>` itself).
- Loss mask: 1 on assistant content, reasoning, tool calls and `<|end_of_text|>`, and on the
  think block when thinking is on (the model must produce it); 0 on BOS, system, tools, user
  turns, tool results, `<|Assistant|>` and the non-thinking pre-fill (given at inference).
- Message content is untrusted: `encode_chat` encodes it with special strings as plain text, so
  a user typing "<|end_of_text|>" cannot end a turn. (HF `apply_chat_template(tokenize=True)`
  would turn them into special tokens; the rendered TEXT is identical.)

`CHAT_TEMPLATE` is the same format in Jinja; `Tokenizer.save` writes it into
`tokenizer_config.json`, and a test checks that transformers' `apply_chat_template` output equals
`render_chat` on a suite of conversations.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from youtu.tokenizer.tokenizer import Tokenizer

BOS, EOS, USER, ASSISTANT = "<|begin_of_text|>", "<|end_of_text|>", "<|User|>", "<|Assistant|>"
THINK, END_THINK = "<think>", "</think>"
TOOL_CALL, END_TOOL_CALL = "<tool_call>", "</tool_call>"
TOOL_RESPONSE, END_TOOL_RESPONSE = "<tool_response>", "</tool_response>"
TOOLS, END_TOOLS = "<tools>", "</tools>"
EMPTY_THINK_GAP = "\n\n"
"""Text inside the empty think block of the non-thinking pre-fill."""

TOOLS_HEADER = ("# Tools\n\nYou may call one or more functions to assist with the user query. "
                "The available functions, as JSON schemas:\n")
TOOLS_FOOTER_1 = ("\n\nFor each function call, return a JSON object with the function name and "
                  "arguments within ")
TOOLS_FOOTER_2 = " tags:\n"
TOOL_CALL_EXAMPLE = '{"name": <function-name>, "arguments": <args-json-object>}'


@dataclass(frozen=True)
class Part:
    """A piece of rendered chat: `special` pieces are one special token; `train` = loss on it."""

    text: str
    special: bool = False
    train: bool = False


def _content(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(p.get("text", "") for p in value
                       if isinstance(p, dict) and p.get("type") == "text")
    raise ValueError(f"message content must be a string, None or a list of text parts, got "
                     f"{type(value).__name__}")


def _tool_call_json(call: dict) -> str:
    fn = call.get("function", call)
    if "name" not in fn:
        raise ValueError(f"tool call {call!r} has no function name")
    args = fn.get("arguments", {})
    args_text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return '{"name": ' + json.dumps(fn["name"], ensure_ascii=False) + ', "arguments": ' + \
        args_text + "}"


def chat_parts(messages: Sequence[dict], tools: Sequence[dict] | None = None,
               enable_thinking: bool = True, add_generation_prompt: bool = False) -> list[Part]:
    """The rendered conversation as `Part`s (see the module docstring for the format)."""
    parts = [Part(BOS, special=True)]
    messages = list(messages)
    system = ""
    if messages and messages[0].get("role") == "system":
        system = _content(messages[0].get("content"))
    if system:
        parts.append(Part(system))
    if tools:
        parts += [Part(("\n\n" if system else "") + TOOLS_HEADER), Part(TOOLS, special=True),
                  Part("".join("\n" + json.dumps(t, ensure_ascii=False) for t in tools) + "\n"),
                  Part(END_TOOLS, special=True), Part(TOOLS_FOOTER_1), Part(TOOL_CALL, True),
                  Part(END_TOOL_CALL, True), Part(TOOLS_FOOTER_2), Part(TOOL_CALL, True),
                  Part(TOOL_CALL_EXAMPLE), Part(END_TOOL_CALL, True)]
    last_query = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    for i, msg in enumerate(messages):
        role = msg.get("role")
        if role == "system":
            if i != 0:
                raise ValueError(f"messages[{i}]: a system message may only come first")
        elif role == "user":
            parts += [Part(USER, True), Part(_content(msg.get("content")))]
        elif role == "tool":
            if i > 0 and messages[i - 1].get("role") == "tool":
                parts.append(Part("\n"))
            else:
                parts.append(Part(USER, True))
            parts += [Part(TOOL_RESPONSE, True), Part(_content(msg.get("content"))),
                      Part(END_TOOL_RESPONSE, True)]
        elif role == "assistant":
            parts.append(Part(ASSISTANT, True))
            if i > last_query:
                reasoning = msg.get("reasoning_content")
                reasoning = reasoning if isinstance(reasoning, str) else ""
                if enable_thinking and reasoning:
                    parts += [Part(THINK, True, True), Part("\n" + reasoning + "\n", train=True),
                              Part(END_THINK, True, True), Part("\n\n", train=True)]
                else:
                    parts += _empty_think(train=enable_thinking)
            content = _content(msg.get("content"))
            if content:
                parts.append(Part(content, train=True))
            for k, call in enumerate(msg.get("tool_calls") or []):
                if k > 0 or content:
                    parts.append(Part("\n", train=True))
                parts += [Part(TOOL_CALL, True, True), Part(_tool_call_json(call), train=True),
                          Part(END_TOOL_CALL, True, True)]
            parts.append(Part(EOS, True, True))
        else:
            raise ValueError(f"messages[{i}]: unknown role {role!r} (system, user, assistant, "
                             "tool)")
    if add_generation_prompt:
        parts.append(Part(ASSISTANT, True))
        if not enable_thinking:
            parts += _empty_think(train=False)
    return parts


def _empty_think(train: bool) -> list[Part]:
    return [Part(THINK, True, train), Part(EMPTY_THINK_GAP, train=train),
            Part(END_THINK, True, train), Part("\n\n", train=train)]


def render_chat(messages: Sequence[dict], tools: Sequence[dict] | None = None,
                enable_thinking: bool = True, add_generation_prompt: bool = False) -> str:
    """The conversation as text in the Youtu chat format (equal to `CHAT_TEMPLATE`'s output).

    Args:
        messages: OpenAI chat messages (module docstring).
        tools: OpenAI tool schemas ({"type": "function", "function": {...}}), or None.
        enable_thinking: keep reasoning of the current round; off = empty think blocks.
        add_generation_prompt: end with the assistant prompt for generation.
    """
    return "".join(p.text for p in chat_parts(messages, tools, enable_thinking,
                                               add_generation_prompt))


def encode_chat(tok: Tokenizer, messages: Sequence[dict], tools: Sequence[dict] | None = None,
                enable_thinking: bool = True, add_generation_prompt: bool = False
                ) -> tuple[list[int], list[int]]:
    """Token ids of `render_chat(...)` and the loss mask (1 = train on this token).

    Text between two special tokens is encoded in one piece (as the whole string would be, the
    special tokens split it anyway), with special strings inside it kept as plain text. A token
    that straddles a trained and an untrained part is trained.
    """
    return encode_chats(tok, [(messages, tools)], enable_thinking, add_generation_prompt)[0]


def encode_chats(tok: Tokenizer, chats: Sequence[tuple[Sequence[dict], Sequence[dict] | None]],
                 enable_thinking: bool = True, add_generation_prompt: bool = False
                 ) -> list[tuple[list[int], list[int]]]:
    """`encode_chat` of many (messages, tools) pairs: every text run of every conversation goes
    to the tokenizer in one parallel batch (the Rust side's threads), and the loss masks are a
    sorted-span lookup per run, so SFT data preparation is not one Python call per message."""
    texts: list[str] = []
    spans: list[tuple[np.ndarray, np.ndarray]] = []  # per text run: trained char [start, end)
    plans: list[list[tuple[int, int]]] = []  # per chat: (special id, train) or (-1, run index)

    for messages, tools in chats:
        plan: list[tuple[int, int]] = []
        run: list[Part] = []

        def flush() -> None:
            if not run:
                return
            starts, ends, pos = [], [], 0
            for p in run:
                if p.train:
                    starts.append(pos)
                    ends.append(pos + len(p.text))
                pos += len(p.text)
            plan.append((-1, len(texts)))
            texts.append("".join(p.text for p in run))
            spans.append((np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)))
            run.clear()

        for part in chat_parts(messages, tools or None, enable_thinking, add_generation_prompt):
            if part.special:
                flush()
                plan.append((tok.special(part.text), int(part.train)))
            elif part.text:
                run.append(part)
        flush()
        plans.append(plan)

    encoded = tok.encode_batch_with_offsets(texts) if texts else []
    run_masks = [_trained_tokens(offsets, *spans[i]) for i, (_, offsets) in enumerate(encoded)]
    out = []
    for plan in plans:
        ids: list[int] = []
        mask: list[int] = []
        for token, value in plan:
            if token >= 0:
                ids.append(token)
                mask.append(value)
            else:
                ids.extend(encoded[value][0])
                mask.extend(run_masks[value])
        out.append((ids, mask))
    return out


def _trained_tokens(offsets: Sequence[tuple[int, int]], starts: np.ndarray, ends: np.ndarray
                    ) -> list[int]:
    """1 for each token span (s, e) that overlaps a trained span [starts[k], ends[k]). The
    trained spans are sorted and disjoint: the token overlaps one iff the first span ending
    after s starts before e (every later span starts later still)."""
    if not len(offsets):
        return []
    if not len(starts):
        return [0] * len(offsets)
    off = np.asarray(offsets, dtype=np.int64)
    k = np.searchsorted(ends, off[:, 0], side="right")
    hit = k < len(ends)
    hit[hit] = starts[k[hit]] < off[hit, 1]
    return hit.astype(np.int64).tolist()


# ---------------------------------------------------------------------------------------------
# The same format in Jinja, for transformers' apply_chat_template (trim_blocks, lstrip_blocks).
# All literal text is emitted through {{ }} so the template's own layout adds no whitespace.


def _lit(text: str) -> str:
    return "{{- " + json.dumps(text) + " -}}"


CHAT_TEMPLATE = (
    "{%- macro content(c) -%}"
    "{%- if c is string -%}{{- c -}}"
    "{%- elif c is iterable and c is not mapping -%}"
    "{%- for p in c -%}{%- if p is mapping and p.type == 'text' -%}{{- p.text -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}\n"
    "{%- set thinking = enable_thinking if enable_thinking is defined else true -%}\n"
    "{%- set ns = namespace(last_query=-1, system='') -%}\n"
    "{%- for m in messages -%}{%- if m.role == 'user' -%}{%- set ns.last_query = loop.index0 -%}"
    "{%- endif -%}{%- endfor -%}\n"
    "{%- if messages and messages[0].role == 'system' -%}"
    "{%- set ns.system = content(messages[0].content) -%}{%- endif -%}\n"
    + _lit(BOS) + "{{- ns.system -}}\n"
    "{%- if tools -%}"
    "{%- if ns.system -%}" + _lit("\n\n") + "{%- endif -%}"
    + _lit(TOOLS_HEADER + TOOLS) +
    "{%- for t in tools -%}" + _lit("\n") + "{{- t | tojson -}}{%- endfor -%}"
    + _lit("\n" + END_TOOLS + TOOLS_FOOTER_1 + TOOL_CALL + END_TOOL_CALL + TOOLS_FOOTER_2
           + TOOL_CALL + TOOL_CALL_EXAMPLE + END_TOOL_CALL) +
    "{%- endif -%}\n"
    "{%- for m in messages -%}\n"
    "{%- if m.role == 'system' -%}"
    "{%- if not loop.first -%}{{- raise_exception('a system message may only come first') -}}"
    "{%- endif -%}\n"
    "{%- elif m.role == 'user' -%}" + _lit(USER) + "{{- content(m.content) -}}\n"
    "{%- elif m.role == 'tool' -%}"
    "{%- if loop.index0 > 0 and messages[loop.index0 - 1].role == 'tool' -%}" + _lit("\n")
    + "{%- else -%}" + _lit(USER) + "{%- endif -%}"
    + _lit(TOOL_RESPONSE) + "{{- content(m.content) -}}" + _lit(END_TOOL_RESPONSE) + "\n"
    "{%- elif m.role == 'assistant' -%}" + _lit(ASSISTANT) + "\n"
    "{%- if loop.index0 > ns.last_query -%}"
    "{%- if thinking and m.reasoning_content is string and m.reasoning_content -%}"
    + _lit(THINK + "\n") + "{{- m.reasoning_content -}}" + _lit("\n" + END_THINK + "\n\n")
    + "{%- else -%}" + _lit(THINK + EMPTY_THINK_GAP + END_THINK + "\n\n") + "{%- endif -%}"
    "{%- endif -%}\n"
    "{%- set text = content(m.content) -%}{{- text -}}\n"
    "{%- if m.tool_calls -%}{%- for call in m.tool_calls -%}"
    "{%- set fn = call.function if call.function is defined else call -%}"
    "{%- if not loop.first or text -%}" + _lit("\n") + "{%- endif -%}"
    + _lit(TOOL_CALL + '{"name": ') + "{{- fn.name | tojson -}}" + _lit(', "arguments": ')
    + "{%- if fn.arguments is string -%}{{- fn.arguments -}}"
    "{%- elif fn.arguments is defined -%}{{- fn.arguments | tojson -}}"
    "{%- else -%}{{- '{}' -}}{%- endif -%}" + _lit("}" + END_TOOL_CALL) +
    "{%- endfor -%}{%- endif -%}\n"
    + _lit(EOS) + "\n"
    "{%- else -%}{{- raise_exception('unknown role ' ~ m.role) -}}\n"
    "{%- endif -%}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}" + _lit(ASSISTANT)
    + "{%- if not thinking -%}" + _lit(THINK + EMPTY_THINK_GAP + END_THINK + "\n\n")
    + "{%- endif -%}{%- endif -%}"
)
"""Jinja chat template equal to `render_chat` (written to tokenizer_config.json)."""


# ---------------------------------------------------------------------------------------------
# Parsing model output


@dataclass
class ParsedOutput:
    """A completion split into reasoning, visible content and OpenAI-style tool calls."""

    content: str
    """Text outside think and tool-call blocks, stripped."""
    reasoning: str | None = None
    """Text of the think block (stripped), None when there was none."""
    tool_calls: list[dict] = field(default_factory=list)
    """[{"id", "type": "function", "function": {"name", "arguments": <JSON string>}}]."""
    errors: list[str] = field(default_factory=list)
    """What could not be parsed (malformed JSON, unterminated block, ...); never raised."""


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


class _NotStrictJSON(ValueError):
    """A JSON number or constant that has no strict-JSON form (NaN, Infinity, 1e999)."""


def _reject_constant(name: str) -> Any:
    raise _NotStrictJSON(f"{name} is not valid JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # "1e999" parses to inf, which json.dumps writes as Infinity
        raise _NotStrictJSON(f"{literal[:40]} overflows a float")
    return value


def _loads(text: str) -> tuple[Any, str | None]:
    """Strict `json.loads` that reports every failure as a message instead of raising.

    Besides syntax errors, model output can hold nesting deeper than Python's recursion limit
    (RecursionError), integers longer than `sys.get_int_max_str_digits()` (4300 by default,
    ValueError) and NaN / Infinity / overflowing floats, which `json.dumps` would re-emit as
    invalid JSON.
    """
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float), None
    except json.JSONDecodeError as e:
        return None, f"invalid JSON ({e.msg} at char {e.pos})"
    except _NotStrictJSON as e:
        return None, f"invalid JSON ({e})"
    except RecursionError:
        return None, "invalid JSON (nested too deeply)"
    except ValueError as e:  # int longer than sys.get_int_max_str_digits()
        return None, f"invalid JSON ({str(e).split(':')[0]})"


def _parse_call(payload: str, index: int, seed: str) -> tuple[dict | None, str | None]:
    text = payload.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    obj, problem = _loads(text)
    if problem is not None:
        return None, f"tool call {index}: {problem}: {text[:200]!r}"
    if not isinstance(obj, dict):
        return None, f"tool call {index}: expected a JSON object, got {type(obj).__name__}"
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return None, f"tool call {index}: missing or non-string 'name'"
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        args, problem = _loads(args)
        if problem is not None:
            return None, f"tool call {index} ({name}): 'arguments' is a string but not JSON: {problem}"
    if not isinstance(args, dict):
        return None, f"tool call {index} ({name}): 'arguments' must be a JSON object"
    try:
        arguments = json.dumps(args, ensure_ascii=False, allow_nan=False)
    except (RecursionError, ValueError) as e:  # defensive: the encoder has its own depth check
        return None, f"tool call {index} ({name}): 'arguments' cannot be re-encoded ({type(e).__name__})"
    digest = hashlib.sha1(f"{seed}\0{index}\0{text}".encode("utf-8", "surrogatepass")).hexdigest()
    return {"id": f"call_{digest[:24]}", "type": "function",
            "function": {"name": name, "arguments": arguments}}, None


def parse_tool_calls(text: str) -> ParsedOutput:
    """Split a completion (decoded with special tokens kept) into reasoning, content, tool calls.

    Tolerates whitespace around and inside blocks, several calls, a missing `<think>` (when the
    prompt pre-filled it) and ```json fences. Bad blocks become entries of `.errors` (the rest is
    still returned); this function never raises on model output.
    """
    text = text.replace(EOS, "")
    errors: list[str] = []
    reasoning = None
    if END_THINK in text:
        head, text = text.split(END_THINK, 1)
        reasoning = head.split(THINK, 1)[1] if THINK in head else head
        reasoning = reasoning.strip()
    elif text.lstrip().startswith(THINK):
        reasoning = text.lstrip()[len(THINK):].strip()
        errors.append("unterminated <think> block (no </think>)")
        text = ""

    content: list[str] = []
    calls: list[dict] = []
    pos, index = 0, 0
    while True:
        start = text.find(TOOL_CALL, pos)
        if start < 0:
            content.append(text[pos:])
            break
        content.append(text[pos:start])
        body_start = start + len(TOOL_CALL)
        end = text.find(END_TOOL_CALL, body_start)
        next_start = text.find(TOOL_CALL, body_start)
        if end < 0 or 0 <= next_start < end:
            stop = len(text) if end < 0 else next_start
            errors.append(f"tool call {index}: unterminated <tool_call> block at char {start}: "
                          f"{text[body_start:stop][:200]!r}")
            index += 1
            if end < 0:
                break
            pos = next_start
            continue
        call, error = _parse_call(text[body_start:end], index, text)
        if call is not None:
            calls.append(call)
        else:
            errors.append(error or f"tool call {index}: unparseable")
        index += 1
        pos = end + len(END_TOOL_CALL)
    visible = "".join(content)
    if END_TOOL_CALL in visible:
        errors.append("stray </tool_call> without an opening <tool_call>")
        visible = visible.replace(END_TOOL_CALL, "")
    return ParsedOutput(content=visible.strip(), reasoning=reasoning, tool_calls=calls,
                        errors=errors)
