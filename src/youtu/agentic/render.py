"""Trajectory renderers and importers.

    text = render_text(traj)                    # mid-training text, Youtu chat/tool format
    messages, tools = render_sft(traj)          # for youtu.tokenizer.chat.encode_chat
    traj2 = from_text(text)                     # and back (round trip)
    from_hermes(to_hermes(traj)), from_react(to_react(traj)), from_openai(messages, tools)

Mid-training text is `render_chat(messages, tools, enable_thinking=True)` from the tokenizer
(the one implementation of the template): the Agentic-CoT phases sit inside `<think>` as
`<analysis>...</analysis>` blocks, tool calls as `<tool_call>` JSON, tool results as
`<tool_response>` user turns. SFT conversations are the same messages; `encode_chat` gives the
loss mask (assistant reasoning, content and calls trained; prompts and tool results masked).

Importers turn other transcript formats into trajectories: OpenAI messages, Hermes
(`<|im_start|>` ChatML with `<tool_call>` / `<tool_response>`), ReAct (Thought / Action /
Action Input / Observation / Final Answer) and our own rendered text. Imported trajectories
are unverified (outcome.verified = False) until an environment checks them. Tool-call ids are
renumbered `call_0, call_1, ...` in order (the scripted teachers use the same scheme), so a
trajectory survives every exporter/importer pair unchanged. ReAct has no separate assistant
content on tool-calling turns; content there is dropped by `to_react`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from youtu.agentic.trajectory import (Outcome, Phase, Task, Trajectory, format_phases,
                                      parse_phases)
from youtu.tokenizer.chat import (ASSISTANT, BOS, END_TOOL_RESPONSE, END_TOOLS, EOS,
                                  TOOL_RESPONSE, TOOLS, TOOLS_HEADER, USER, parse_tool_calls,
                                  render_chat)

if TYPE_CHECKING:
    from youtu.tokenizer import Tokenizer


def render_text(traj: Trajectory) -> str:
    """Mid-training text: the conversation in the Youtu chat format, thinking kept."""
    return render_chat(traj.messages, tools=traj.tools or None, enable_thinking=True)


def render_sft(traj: Trajectory) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """(messages, tools) for `encode_chat`: the loss mask follows the roles."""
    return [dict(m) for m in traj.messages], (list(traj.tools) or None)


def encode_sft_file(tok: Tokenizer, path: str | Path, verified_only: bool = True,
                    enable_thinking: bool = True, chunk: int = 2048
                    ) -> list[tuple[list[int], list[int]]]:
    """SFT examples (ids, loss mask) of one trajectory JSONL file, in file order; unverified
    trajectories are skipped when `verified_only`. Each `chunk` conversations are encoded in
    one tokenizer batch (`encode_chats`). Imports no torch: it is the SFT encoding pool's entry."""
    from youtu.agentic.trajectory import load_trajectories
    from youtu.tokenizer.chat import encode_chats

    pairs = [render_sft(traj) for traj in load_trajectories(path)
             if traj.outcome.verified or not verified_only]
    out: list[tuple[list[int], list[int]]] = []
    for start in range(0, len(pairs), chunk):
        out += encode_chats(tok, pairs[start:start + chunk], enable_thinking=enable_thinking)
    return out


# ---------------------------------------------------------------------------------------------
# OpenAI messages


def from_openai(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, *,
                domain: str = "tools", task: Task | None = None, source: str = "openai",
                ) -> Trajectory:
    """A trajectory from OpenAI chat messages (phases parsed from tagged reasoning).

    Args:
        messages: system/user/assistant/tool messages; assistant `reasoning_content` may hold
            Agentic-CoT blocks, or free text (then the message gets no phases).
        tools: the OpenAI tool schemas offered.
        domain: trajectory domain (math, code, tools, research).
        task: the task, when known; else one is made from the first user message.
        source: recorded as provenance["imported_from"].
    """
    msgs: list[dict[str, Any]] = []
    ids: dict[str, str] = {}
    n_calls = 0
    for m in messages:
        role = m.get("role")
        out: dict[str, Any] = {"role": role, "content": _text(m.get("content"))}
        if role == "assistant":
            out["reasoning_content"] = m.get("reasoning_content") or ""
            if m.get("tool_calls"):
                out["tool_calls"] = []
                for call in m["tool_calls"]:
                    fn = call.get("function", call)
                    args = fn.get("arguments", {})
                    if isinstance(args, str):
                        args = json.loads(args) if args.strip() else {}
                    new_id = f"call_{n_calls}"
                    ids[call.get("id", new_id)] = new_id
                    n_calls += 1
                    out["tool_calls"].append({"id": new_id, "type": "function", "function": {
                        "name": fn["name"], "arguments": json.dumps(args, ensure_ascii=False)}})
        elif role == "tool":
            out["tool_call_id"] = ids.get(m.get("tool_call_id", ""), m.get("tool_call_id", ""))
            if m.get("name"):
                out["name"] = m["name"]
        msgs.append(out)
    _name_tool_results(msgs)
    phases = []
    for i, m in enumerate(msgs):
        blocks = parse_phases(m.get("reasoning_content", ""))
        if blocks and format_phases(blocks) == m["reasoning_content"]:
            phases += [Phase(name, text, i) for name, text in blocks]
    if task is None:
        prompt = next((m["content"] for m in msgs if m["role"] == "user"), "")
        digest = hashlib.sha256(json.dumps(msgs, sort_keys=True).encode()).hexdigest()[:12]
        task = Task(id=f"imported-{digest}", env=domain, seed=-1, difficulty=0, prompt=prompt,
                    answer="")
    traj = Trajectory(id=f"{domain}-{task.id}", domain=domain, task=task, tools=list(tools or []),
                      messages=msgs, phases=phases,
                      outcome=Outcome(verified=False, reward=0.0, checker=""),
                      provenance={"teacher": "imported", "imported_from": source})
    traj.validate()
    return traj


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def _name_tool_results(msgs: list[dict[str, Any]]) -> None:
    """Give each tool message the `name` of the call it answers (formats that omit it)."""
    names = {c["id"]: c["function"]["name"] for m in msgs for c in m.get("tool_calls") or []}
    for m in msgs:
        if m["role"] == "tool" and m["tool_call_id"] in names:
            m["name"] = names[m["tool_call_id"]]


def _answer_calls(msgs: list[dict[str, Any]], results: list[str]) -> None:
    """Append tool messages for `results`, matched in order to the last assistant's calls."""
    last = next(m for m in reversed(msgs) if m["role"] == "assistant")
    answered = sum(1 for m in msgs[msgs.index(last) + 1:] if m["role"] == "tool")
    calls = last.get("tool_calls") or []
    for k, content in enumerate(results, start=answered):
        cid = calls[k]["id"] if k < len(calls) else f"unmatched_{k}"
        msgs.append({"role": "tool", "tool_call_id": cid, "content": content})


# ---------------------------------------------------------------------------------------------
# our own rendered text


def from_text(text: str, domain: str = "tools") -> Trajectory:
    """Inverse of `render_text`: a Youtu chat transcript back into a trajectory."""
    body = text[len(BOS):] if text.startswith(BOS) else text
    parts = re.split(f"({re.escape(USER)}|{re.escape(ASSISTANT)})", body)
    head, msgs, tools = parts[0], [], []
    if TOOLS_HEADER in head:
        system, rest = head.split(TOOLS_HEADER, 1)
        system = system[:-2] if system.endswith("\n\n") else system
        block = rest.split(TOOLS, 1)[1].split(END_TOOLS, 1)[0]
        tools = [json.loads(line) for line in block.splitlines() if line.strip()]
    else:
        system = head
    if system:
        msgs.append({"role": "system", "content": system})
    for marker, chunk in zip(parts[1::2], parts[2::2]):
        if marker == USER and chunk.startswith(TOOL_RESPONSE):
            pattern = f"{re.escape(TOOL_RESPONSE)}(.*?){re.escape(END_TOOL_RESPONSE)}"
            _answer_calls(msgs, re.findall(pattern, chunk, re.S))
        elif marker == USER:
            msgs.append({"role": "user", "content": chunk})
        else:
            msgs.append(_assistant_from(chunk.removesuffix(EOS)))
    return from_openai(msgs, tools, domain=domain, source="youtu-chat")


def _assistant_from(text: str) -> dict[str, Any]:
    parsed = parse_tool_calls(text)
    if parsed.errors:
        raise ValueError(f"assistant turn does not parse: {'; '.join(parsed.errors)}")
    msg: dict[str, Any] = {"role": "assistant", "content": parsed.content,
                           "reasoning_content": parsed.reasoning or ""}
    if parsed.tool_calls:
        msg["tool_calls"] = parsed.tool_calls
    return msg


# ---------------------------------------------------------------------------------------------
# Hermes (NousResearch function-calling ChatML)

_IM = re.compile(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>", re.S)
_HERMES_TOOLS = re.compile(r"\n*<tools>\n(.*?)\n</tools>$", re.S)


def to_hermes(traj: Trajectory) -> str:
    """The trajectory as a Hermes ChatML transcript."""
    out = []
    for m in traj.messages:
        role, content = m["role"], m.get("content") or ""
        if role == "system" and traj.tools:
            content += "\n\n<tools>\n" + "\n".join(json.dumps(t, ensure_ascii=False)
                                                  for t in traj.tools) + "\n</tools>"
        elif role == "assistant":
            pieces = []
            if m.get("reasoning_content"):
                pieces.append(f"<think>\n{m['reasoning_content']}\n</think>")
            if content:
                pieces.append(content)
            for c in m.get("tool_calls") or []:
                call = {"name": c["function"]["name"],
                        "arguments": json.loads(c["function"]["arguments"])}
                pieces.append(f"<tool_call>\n{json.dumps(call, ensure_ascii=False)}\n</tool_call>")
            content = "\n".join(pieces)
        elif role == "tool":
            payload = {"name": m.get("name", ""), "content": content}
            payload_text = json.dumps(payload, ensure_ascii=False)
            content = f"<tool_response>\n{payload_text}\n</tool_response>"
        out.append(f"<|im_start|>{role}\n{content}<|im_end|>")
    if traj.tools and not any(m["role"] == "system" for m in traj.messages):
        tools = "\n".join(json.dumps(t, ensure_ascii=False) for t in traj.tools)
        out.insert(0, f"<|im_start|>system\n\n\n<tools>\n{tools}\n</tools><|im_end|>")
    return "\n".join(out)


def from_hermes(text: str, domain: str = "tools") -> Trajectory:
    """A trajectory from a Hermes ChatML transcript (`to_hermes` output or real Hermes data)."""
    msgs: list[dict[str, Any]] = []
    tools: list[dict[str, Any]] = []
    for role, content in _IM.findall(text):
        if role == "system":
            found = _HERMES_TOOLS.search(content)
            if found:
                tools = [json.loads(line) for line in found.group(1).splitlines() if line.strip()]
                content = content[:found.start()]
            if content:
                msgs.append({"role": "system", "content": content})
        elif role == "assistant":
            msgs.append(_assistant_from(content))
        elif role == "tool":
            results = re.findall(r"<tool_response>\n?(.*?)\n?</tool_response>", content, re.S)
            _answer_calls(msgs, [_hermes_result(r) for r in results] or [content])
        else:
            msgs.append({"role": role, "content": content})
    return from_openai(msgs, tools, domain=domain, source="hermes")


def _hermes_result(payload: str) -> str:
    try:
        obj = json.loads(payload)
    except json.JSONDecodeError:
        return payload.strip()
    if isinstance(obj, dict) and "content" in obj:
        content = obj["content"]
        return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return payload.strip()


# ---------------------------------------------------------------------------------------------
# ReAct

_REACT_KEYS = ("System", "Tools", "Question", "Thought", "Action", "Action Input", "Observation",
               "Final Answer")
_KEYS_RE = "|".join(sorted(map(re.escape, _REACT_KEYS), key=len, reverse=True))
_REACT = re.compile(rf"^({_KEYS_RE}):[ ]?", re.M)
_ESCAPED = re.compile(rf"^(\\*)(?=(?:{_KEYS_RE}):)", re.M)


def _esc(value: str) -> str:
    """Backslash-escape lines of a field that would read as a ReAct key ("Question: ...")."""
    return _ESCAPED.sub(lambda m: "\\" + m.group(1), value)


def _unesc(value: str) -> str:
    return re.sub(rf"^\\(\\*)(?=(?:{_KEYS_RE}):)", r"\1", value, flags=re.M)


def to_react(traj: Trajectory) -> str:
    """The trajectory as a ReAct transcript (one `Thought:` opens every assistant turn)."""
    out = []
    for m in traj.messages:
        role = m["role"]
        if role == "system":
            out.append(f"System: {_esc(m['content'])}")
            if traj.tools:
                out.append("Tools: " + json.dumps(traj.tools, ensure_ascii=False))
        elif role == "user":
            out.append(f"Question: {_esc(m['content'])}")
        elif role == "assistant":
            out.append(f"Thought: {_esc(m.get('reasoning_content', ''))}")
            for c in m.get("tool_calls") or []:
                out.append(f"Action: {c['function']['name']}")
                out.append(f"Action Input: {c['function']['arguments']}")
            if not m.get("tool_calls"):
                out.append(f"Final Answer: {_esc(m.get('content', ''))}")
        else:
            out.append(f"Observation: {_esc(m['content'])}")
    return "\n".join(out)


def from_react(text: str, domain: str = "tools") -> Trajectory:
    """A trajectory from a ReAct transcript (`to_react` output, or Thought/Action/... text)."""
    fields = _REACT.split(text)
    pairs = list(zip(fields[1::2], (_unesc(v.removesuffix("\n")) for v in fields[2::2])))
    msgs: list[dict[str, Any]] = []
    tools: list[dict[str, Any]] = []
    for key, value in pairs:
        if key == "System":
            msgs.append({"role": "system", "content": value})
        elif key == "Tools":
            tools = json.loads(value)
        elif key == "Question":
            msgs.append({"role": "user", "content": value})
        elif key == "Thought":
            msgs.append({"role": "assistant", "content": "", "reasoning_content": value})
        elif key == "Action":
            turn = msgs[-1]
            turn.setdefault("tool_calls", []).append(
                {"id": f"react_{len(msgs)}_{len(turn.get('tool_calls', []))}", "type": "function",
                 "function": {"name": value.strip(), "arguments": "{}"}})
        elif key == "Action Input":
            msgs[-1]["tool_calls"][-1]["function"]["arguments"] = value.strip() or "{}"
        elif key == "Observation":
            _answer_calls(msgs, [value])
        elif key == "Final Answer":
            if not msgs or msgs[-1]["role"] != "assistant" or msgs[-1].get("tool_calls"):
                msgs.append({"role": "assistant", "content": "", "reasoning_content": ""})
            msgs[-1]["content"] = value
    return from_openai(msgs, tools, domain=domain, source="react")
