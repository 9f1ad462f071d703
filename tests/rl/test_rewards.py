"""Reward registry: built-in verifier and format rewards, user extension, weighted scoring."""

from __future__ import annotations

import json

import pytest

from youtu.errors import ConfigError
from youtu.rl import rewards
from youtu.rl.rewards import (REWARDS, RewardInput, get_reward, register_reward, score,
                                 tool_call_errors)
from youtu.rl.envs import DigitAddEnv


def _call(name, **args):
    return {"id": "c", "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)}}


def _sample(turns, messages=None, truncated=False, task_seed=3):
    env = DigitAddEnv()
    task = env.generate(task_seed)
    if messages is None:
        from youtu.tokenizer.chat import parse_tool_calls

        messages = [{"role": "user", "content": task.prompt}]
        for text in turns:
            parsed = parse_tool_calls(text)
            messages.append({"role": "assistant", "content": parsed.content,
                             "tool_calls": parsed.tool_calls})
    final = next(m for m in reversed(messages) if m["role"] == "assistant")["content"]
    return RewardInput(task=task, env=env, messages=messages, turns=turns, truncated=truncated,
                       answer=env.final_answer(task, {}, final), tools=env.tools,
                       env_name="digit_add"), task


def test_env_reward_uses_the_environments_checker():
    sample, task = _sample(["<think>\nadd them\n</think>\n\n" + task_answer(3)])
    assert get_reward("env")(sample) == 1.0
    wrong, _ = _sample(["<think>\n\n</think>\n\n" + str((int(task.answer) + 1) % 10)])
    assert get_reward("env")(wrong) == 0.0


def task_answer(seed):
    return DigitAddEnv().generate(seed).answer


def test_format_think():
    fmt = get_reward("format_think")
    assert fmt(_sample(["<think>\nok\n</think>\n\n5"])[0]) == 1.0
    assert fmt(_sample(["5"])[0]) == 0.0  # no think block
    assert fmt(_sample(["<think>\nok\n</think>\n\n"])[0]) == 0.0  # no answer after it
    assert fmt(_sample(["<think>\nok <think> again\n</think>\n\n5"])[0]) == 0.0  # stray tag
    assert fmt(_sample(["<think>\nok\n</think>\n\n5"], truncated=True)[0]) == 0.0


def test_format_tool_call():
    fmt = get_reward("format_tool_call")
    good = '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
    assert fmt(_sample([good, "3"])[0]) == 1.0
    assert fmt(_sample(["just an answer"])[0]) == 1.0
    assert fmt(_sample(['<tool_call>{"name": "add", "arguments": {"a": 1</tool_call>'])[0]) == 0.0
    assert fmt(_sample(['<tool_call>{"name": "add", "arguments": {}}'])[0]) == 0.0  # unterminated
    assert fmt(_sample([good, '</tool_call>'])[0]) == 0.0  # a later turn is malformed


def test_tool_call_errors_against_the_schema():
    tools = DigitAddEnv().tools
    assert tool_call_errors(_call("add", a=1, b=2), tools) == []
    assert "unknown tool 'mul'" in tool_call_errors(_call("mul", a=1, b=2), tools)[0]
    assert "misses required 'b'" in tool_call_errors(_call("add", a=1), tools)[0]
    assert "no parameter 'c'" in tool_call_errors(_call("add", a=1, b=2, c=3), tools)[0]
    bad = {"function": {"name": "add", "arguments": "{nope"}}
    assert "not JSON" in tool_call_errors(bad, tools)[0]


def test_tools_reward_needs_valid_calls_and_a_correct_answer():
    task = DigitAddEnv().generate(3)
    a, b = task.meta["a"], task.meta["b"]
    user = {"role": "user", "content": task.prompt}

    def episode(calls, answer):
        msgs = [user, {"role": "assistant", "content": "", "tool_calls": calls},
                {"role": "tool", "content": str(a + b)},
                {"role": "assistant", "content": answer}]
        return _sample(["x", answer], messages=msgs)[0]

    tools = get_reward("tools")
    assert tools(episode([_call("add", a=a, b=b)], task.answer)) == 1.0
    assert tools(episode([_call("add", a=a, b=b), _call("add", a=a)], task.answer)) == 0.5
    assert tools(episode([_call("add", a=a, b=b)], "x")) == 0.0  # wrong final answer
    # No calls: the environment's verifier decides (digit_add only checks the answer).
    answer_only = [user, {"role": "assistant", "content": task.answer}]
    no_calls = _sample([task.answer], messages=answer_only)[0]
    assert tools(no_calls) == 1.0


def _from_trajectory(env, traj, answer=None):
    turns = [m.get("content") or "" for m in traj.messages if m["role"] == "assistant"]
    return RewardInput(task=traj.task, env=env, messages=traj.messages, turns=turns,
                       answer=traj.outcome.answer if answer is None else answer,
                       tools=traj.tools, env_name=env.name)


@pytest.mark.parametrize("name", ["math", "tools", "research"])
def test_verifier_rewards_accept_the_teacher_and_reject_a_wrong_answer(name):
    import random

    from youtu.agentic.envs import ENVIRONMENTS

    env = ENVIRONMENTS[name]
    task = env.generate(11)
    traj = env.solve(task, random.Random(0))
    reward = get_reward(name if name != "tools" else "tools")
    assert reward(_from_trajectory(env, traj)) == 1.0
    assert get_reward("env")(_from_trajectory(env, traj)) == 1.0
    wrong = traj.task.near_misses[0] if traj.task.near_misses else "definitely wrong"
    assert reward(_from_trajectory(env, traj, answer=wrong)) == 0.0


def test_tools_reward_replays_calls_against_the_gold_state():
    import copy
    import random

    from youtu.agentic.envs import ENVIRONMENTS

    env = ENVIRONMENTS["tools"]
    for seed in range(40):  # a task whose gold solution changes state
        task = env.generate(seed, difficulty=2)
        traj = env.solve(task, random.Random(0))
        if any(c["name"].startswith("kv_set") for c in traj.tool_calls()):
            break
    else:
        pytest.skip("no state-changing tools task in the first 40 seeds")
    assert get_reward("tools")(_from_trajectory(env, traj)) == 1.0
    tampered = copy.deepcopy(traj)
    for m in tampered.messages:  # the policy wrote a different value: final state differs
        for call in m.get("tool_calls") or []:
            if call["function"]["name"] == "kv_set":
                args = json.loads(call["function"]["arguments"])
                args["value"] = str(args["value"]) + "-oops"
                call["function"]["arguments"] = json.dumps(args)
    assert get_reward("tools")(_from_trajectory(env, tampered)) == 0.0


def test_code_reward_runs_hidden_tests_in_the_sandbox():
    import random

    from youtu.agentic.envs import ENVIRONMENTS

    env = ENVIRONMENTS["code"]
    task = env.generate(5)
    traj = env.solve(task, random.Random(0))
    assert get_reward("code")(_from_trajectory(env, traj)) == 1.0
    assert get_reward("code")(_from_trajectory(env, traj, answer="def broken(:\n")) == 0.0


def test_registry_is_extendable_and_scores_a_weighted_sum(monkeypatch):
    monkeypatch.setattr(rewards, "REWARDS", dict(REWARDS))

    @register_reward("short")
    def short(sample: RewardInput) -> float:
        return 1.0 if len(sample.answer) <= 1 else 0.0

    assert rewards.REWARDS["short"] is short
    with pytest.raises(ValueError, match="already registered"):
        register_reward("short")(short)
    register_reward("short", overwrite=True)(lambda s: 0.25)
    sample, task = _sample(["<think>\n\n</think>\n\n" + task_answer(3)])
    total, terms = score(sample, {"env": 1.0, "format_think": 0.5, "short": 2.0})
    assert terms == {"env": 1.0, "format_think": 1.0, "short": 0.25}
    assert total == pytest.approx(1.0 + 0.5 + 0.5)


def test_unknown_reward_lists_the_registered_ones():
    with pytest.raises(ValueError, match="registered rewards: .*format_think"):
        get_reward("nope")


def test_env_reward_without_env_is_a_clear_error():
    sample, _ = _sample(["5"])
    sample.env = None
    with pytest.raises(ValueError, match="needs the episode's environment"):
        get_reward("env")(sample)


def test_a_reward_module_on_the_old_import_path_is_told_where_it_moved(tmp_path, monkeypatch):
    (tmp_path / "old_style_rewards.py").write_text(
        "from youtu.train.rewards import register_reward\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="moved to youtu.rl.rewards"):
        rewards.load_reward_modules(["old_style_rewards"])
