"""BFCL-style call matching: structural comparison, possible answers, real BFCL items."""

from __future__ import annotations

import json

from youtu.eval.tasks.function_calling import (args_match, bfcl_items, build_prompt, call_matches,
                                               env_items, run_function_calling, value_matches)


def test_value_matching_rules():
    assert value_matches("New York", "new york")           # BFCL string standardisation
    assert value_matches("San-Francisco", "san francisco")
    assert not value_matches("Boston", "new york")
    assert value_matches(3, 3.0) and not value_matches(3.5, 3)   # int accepted for float only
    assert not value_matches(True, 1) and value_matches(False, False)
    assert value_matches([1, 2], [1.0, 2]) and not value_matches([2, 1], [1, 2])
    assert value_matches({"min": 3}, {"min": [3, 4]})      # nested possible answer
    assert value_matches({"a": [1, 2]}, {"a": [1, 2]})     # or a literal dict value
    assert not value_matches({"min": 5}, {"min": [3, 4]})


def test_call_matching():
    possible = {"city": ["Paris", "paris, france"], "unit": ["", "C"]}
    assert call_matches({"name": "w", "arguments": {"city": "Paris"}}, "w", possible)[0]
    assert call_matches({"name": "w", "arguments": {"city": "Paris, France", "unit": "C"}},
                        "w", possible)[0]
    assert call_matches({"name": "x", "arguments": {"city": "Paris"}}, "w", possible) == \
        (False, "called 'x', expected 'w'")
    assert "missing parameter 'city'" in args_match({"unit": "C"}, possible)[1]
    assert "unexpected parameters ['days']" in args_match({"city": "Paris", "days": 3}, possible)[1]
    assert not args_match({"city": "Paris", "unit": "F"}, possible)[0]


def _canonical(possible):
    def first(values):
        v = next(x for x in values if x != "")
        if isinstance(v, dict) and all(isinstance(x, list) for x in v.values()):
            return {k: first(x) for k, x in v.items() if any(y != "" for y in x)}
        return v
    return {k: first(v) for k, v in possible.items() if any(x != "" for x in v)}


def test_real_bfcl_items_accept_their_canonical_call(aptbench_root, scripted_lm):
    items = bfcl_items(aptbench_root)
    assert len(items) == 197
    for it in items:
        call = {"name": it["name"], "arguments": _canonical(it["arguments"])}
        assert call_matches(call, it["name"], it["arguments"])[0], it["id"]
    few = items[:6]
    calls = {build_prompt(it["tools"], it["query"]):
             json.dumps({"name": it["name"], "arguments": _canonical(it["arguments"])})
             for it in few}
    oracle = run_function_calling(scripted_lm(lambda p: calls[p] + "</tool_call>"), few)
    assert oracle["score"] == 1.0
    wrong = run_function_calling(scripted_lm(lambda p: '{"name": "nope", "arguments": {}}'), few)
    assert wrong["score"] == 0.0 and wrong["rows"][0]["detail"].startswith("called 'nope'")
    broken = run_function_calling(scripted_lm(lambda p: '{"name": '), few)
    assert broken["score"] == 0.0 and "invalid JSON" in broken["rows"][0]["detail"]


def test_env_items_come_from_held_out_gold_steps():
    from youtu.agentic.envs import ENVIRONMENTS

    env = ENVIRONMENTS["math"]
    items = env_items(env, 5)
    assert len(items) == 5
    for it in items:
        seed = int(it["id"].split("-")[1])
        assert seed >= 1_000_000
        step = next(s for s in env.generate(seed, it["difficulty"]).steps if s.tool)
        assert it["name"] == step.tool
        assert call_matches({"name": step.tool, "arguments": step.arguments}, it["name"],
                            it["arguments"])[0]


def test_env_items_span_difficulties_and_kinds_and_accept_any_parallel_first_call():
    from youtu.agentic.envs import ENVIRONMENTS

    env = ENVIRONMENTS["tools"]
    items = env_items(env, 40)
    assert {it["difficulty"] for it in items} == {1, 2, 3}
    assert {"single", "parallel", "multi_step"} <= {it["task_kind"] for it in items}
    parallel = next(it for it in items if it["alternatives"])
    alt = parallel["alternatives"][0]
    call = {"name": alt["name"], "arguments": {k: v[0] for k, v in alt["arguments"].items()}}
    assert not call_matches(call, parallel["name"], parallel["arguments"])[0]


def test_a_parallel_turns_other_call_scores_as_right(scripted_lm):
    from youtu.agentic.envs import ENVIRONMENTS

    items = [it for it in env_items(ENVIRONMENTS["tools"], 40) if it["alternatives"]][:3]
    second = [json.dumps({"name": it["alternatives"][0]["name"], "arguments": {
        k: v[0] for k, v in it["alternatives"][0]["arguments"].items()}}) for it in items]
    replies = iter(second)
    res = run_function_calling(scripted_lm(lambda p: next(replies)), items)
    assert res["score"] == 1.0
