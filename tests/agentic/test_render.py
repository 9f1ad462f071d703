"""Renderers and importers: every exporter/importer pair round-trips trajectories of every
domain; the mid-training text carries the phases; SFT masks train only the assistant."""

from __future__ import annotations

import copy
import json
import random

import pytest

from youtu.agentic.envs import ENVIRONMENTS
from youtu.agentic.render import (from_hermes, from_openai, from_react, from_text, render_sft,
                                  render_text, to_hermes, to_react)

TRAJS = [ENVIRONMENTS[name].solve(ENVIRONMENTS[name].generate(seed, 1 + seed % 3),
                                  random.Random(seed), 0.6)
         for name in ("math", "tools", "research", "code", "swe", "pydocs") for seed in range(4)]


def _same(a, b):
    assert a.messages == b.messages
    assert a.tools == b.tools
    assert [(p.name, p.text, p.message) for p in a.phases] == \
        [(p.name, p.text, p.message) for p in b.phases]


def _to_openai(traj) -> str:
    """An OpenAI-style export: the request's messages and tools as JSON."""
    return json.dumps({"messages": traj.messages, "tools": traj.tools})


def _from_openai(text: str, domain: str):
    data = json.loads(text)
    return from_openai(data["messages"], data["tools"], domain=domain)


@pytest.mark.parametrize("export, load", [(render_text, from_text), (to_hermes, from_hermes),
                                          (to_react, from_react), (_to_openai, _from_openai)],
                         ids=["youtu-text", "hermes", "react", "openai"])
def test_round_trip(export, load):
    assert {t.domain for t in TRAJS} == set(ENVIRONMENTS)  # every domain, code included
    assert any(m["role"] == "tool" for t in TRAJS if t.domain == "code" for m in t.messages)
    for traj in TRAJS:
        back = load(export(traj), domain=traj.domain)
        _same(back, traj)
        assert back.outcome.verified is False and back.provenance["teacher"] == "imported"


def test_openai_import_parses_phases_and_renumbers_ids():
    traj = TRAJS[5]
    msgs = copy.deepcopy(traj.messages)
    for m in msgs:  # foreign ids, as another producer would write them
        for c in m.get("tool_calls") or []:
            c["id"] = "abc" + c["id"]
        if m["role"] == "tool":
            m["tool_call_id"] = "abc" + m["tool_call_id"]
    _same(from_openai(msgs, traj.tools, domain=traj.domain), traj)
    free = from_openai([{"role": "user", "content": "hi"},
                        {"role": "assistant", "content": "hello", "reasoning_content": "think"}])
    assert free.phases == [] and free.messages[1]["reasoning_content"] == "think"


def test_real_hermes_and_react_transcripts_import():
    hermes = ('<|im_start|>user\nWeather in Oslo?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n'
              '{"arguments": {"city": "Oslo"}, "name": "weather"}\n</tool_call><|im_end|>\n'
              '<|im_start|>tool\n<tool_response>\n{"name": "weather", "content": {"temp": 3}}\n'
              '</tool_response>\n<|im_end|>\n<|im_start|>assistant\nIt is 3 C.<|im_end|>')
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {}}}]
    with pytest.raises(ValueError, match="unknown tool"):
        from_hermes(hermes)  # no <tools> block: the call names an unknown tool
    traj = from_hermes(hermes.replace("<|im_start|>user", "<|im_start|>system\n\n<tools>\n"
                                      + json.dumps(tools[0]) + "\n</tools><|im_end|>"
                                      "\n<|im_start|>user", 1))
    assert traj.tool_calls() == [{"name": "weather", "arguments": {"city": "Oslo"}}]
    assert traj.messages[-2]["content"] == '{"temp": 3}'
    react = ("Question: 2+2?\nThought: add\nAction: calculator\nAction Input: {\"expression\": "
             "\"2+2\"}\nObservation: 4\nThought: done\nFinal Answer: 4")
    traj = from_react(react.replace("Question", "Tools: [{\"type\": \"function\", \"function\": "
                                    "{\"name\": \"calculator\"}}]\nQuestion"))
    assert [m["role"] for m in traj.messages] == ["user", "assistant", "tool", "assistant"]
    assert traj.messages[-1]["content"] == "4"


def test_text_has_phases_in_think_and_sft_masks_the_prompt():
    traj = TRAJS[0]
    text = render_text(traj)
    assert text.count("<think>") == sum(1 for m in traj.messages if m["role"] == "assistant")
    assert "<analysis>" in text and "<summary>" in text and "<tool_call>" in text
    assert "<tool_response>" in text
    messages, tools = render_sft(traj)
    assert messages == traj.messages and tools == traj.tools
    from youtu.tokenizer.chat import chat_parts

    parts = chat_parts(messages, tools)
    train = {p.text: p.train for p in parts if not p.special}
    assert train[traj.task.prompt] is False  # the user turn
    for m in messages:
        if m["role"] == "tool":
            assert train[m["content"]] is False  # tool results are observations, not targets
        elif m["role"] == "assistant" and m["reasoning_content"]:
            assert train["\n" + m["reasoning_content"] + "\n"] is True
