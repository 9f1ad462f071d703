"""RL episodes: multi-turn tool episodes token by token against `encode_chat`, collation, limits."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from youtu.serve.sampling import SamplingParams
from youtu.tokenizer.chat import encode_chat
from youtu.tokenizer.train import train_from_texts
from youtu.rl.envs import DigitAddEnv
from youtu.rl.rollout import call_tools, collate, rollout


@pytest.fixture(scope="module")
def tok():
    texts = [f'{a}+{b}={a + b} {{"name": "add", "arguments": {{"a": {a}, "b": {b}}}}} '
             "the sum of two numbers is a number. I should add them." for a in range(10)
             for b in range(10)] * 3
    return train_from_texts(texts, 1024)


@dataclass
class FakeCompletion:
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str


class ScriptedSampler:
    """Answers turn k of every episode with `script[k]` (text with special tokens), ending with
    EOS; log-probs are distinct numbers so tests can find where each one landed."""

    def __init__(self, tok, script, finish_reason="stop", max_tokens=None):
        self.tok, self.script, self.finish_reason = tok, script, finish_reason
        self.calls: list[tuple[list[list[int]], list[SamplingParams]]] = []
        self.counter = 0

    def generate(self, prompts, params):
        self.calls.append(([list(p) for p in prompts], params))
        turn = len(self.calls) - 1
        out = []
        for p in params:
            ids = self.tok.encode(self.script[turn], allow_special=True)
            if self.finish_reason == "stop":
                ids = ids + [self.tok.eos_id]
            ids = ids[:p.max_tokens]
            lps = [-(self.counter + i + 1) / 100 for i in range(len(ids))]
            self.counter += len(ids)
            out.append(FakeCompletion(ids, lps, self.finish_reason))
        return out


@pytest.mark.parametrize("thinking", [False, True])
def test_multi_turn_tool_episode_matches_encode_chat_token_by_token(tok, thinking):
    env = DigitAddEnv()
    task = env.generate(3)
    a, b = task.meta["a"], task.meta["b"]
    think = "<think>\nI should add them.\n</think>\n\n" if thinking else ""
    call = f'<tool_call>{{"name": "add", "arguments": {{"a": {a}, "b": {b}}}}}</tool_call>'
    script = [think + call, think + task.answer]
    sampler = ScriptedSampler(tok, script)
    [ep] = rollout(sampler, tok, env, [task], group_size=1, params=SamplingParams(max_tokens=64),
                   max_turns=3, max_seq_len=512, enable_thinking=thinking)

    assert ep.finish_reason == "stop" and len(ep.turns) == 2
    assert [m["role"] for m in ep.messages] == ["user", "assistant", "tool", "assistant"]
    assert ep.messages[2]["content"] == str(a + b)  # the env ran the tool
    assert ep.messages[1]["tool_calls"][0]["function"]["name"] == "add"
    assert ep.messages[3]["content"] == task.answer

    ids, mask = encode_chat(tok, ep.messages, tools=env.tools, enable_thinking=thinking)
    assert ep.token_ids == ids  # the episode IS the rendered conversation
    assert ep.loss_mask == mask  # and trains exactly what SFT on it would train
    # Token by token: mask 1 exactly on the two sampled turns; the tool result and the
    # prompt/template tokens between them are masked.
    sampled = [tok.encode(t, allow_special=True) + [tok.eos_id] for t in script]
    first = ep.prompt_len
    assert ep.token_ids[first:first + len(sampled[0])] == sampled[0]
    tool_start = first + len(sampled[0])
    second = len(ep.token_ids) - len(sampled[1])
    assert ep.token_ids[second:] == sampled[1]
    assert all(m == 1 for m in ep.loss_mask[first:tool_start])
    assert all(m == 0 for m in ep.loss_mask[:first])
    assert all(m == 0 for m in ep.loss_mask[tool_start:second])
    assert all(m == 1 for m in ep.loss_mask[second:])
    tool_turn = tok.decode(ep.token_ids[tool_start:second])
    assert tool_turn.startswith("<|User|><tool_response>" + str(a + b) + "</tool_response>")
    assert tool_turn.endswith("<|Assistant|>" + ("" if thinking else "<think>\n\n</think>\n\n"))
    # The sampler's log-probs sit on their tokens, in order, and nowhere else.
    n = sum(len(s) for s in sampled)
    recorded = [lp for lp, m in zip(ep.sampler_logprobs, ep.loss_mask) if m]
    assert recorded == [-(i + 1) / 100 for i in range(n)]
    assert all(lp == 0.0 for lp, m in zip(ep.sampler_logprobs, ep.loss_mask) if not m)
    # Turn 2 was prompted with everything so far (token in, token out).
    assert sampler.calls[1][0][0] == ep.token_ids[:second]


def test_collate_shifts_targets_mask_and_logprobs(tok):
    env = DigitAddEnv()
    tasks = [env.generate(s) for s in (1, 2)]
    sampler = ScriptedSampler(tok, ["7"])
    eps = rollout(sampler, tok, env, tasks, group_size=2, params=SamplingParams(max_tokens=8),
                  enable_thinking=False, seed=5)
    assert [e.group for e in eps] == [0, 0, 1, 1]
    batch = collate(eps, torch.arange(4.0), tok.pad_id)
    for b, ep in enumerate(eps):
        n = len(ep.token_ids) - 1
        assert batch.input_ids[b, :n].tolist() == ep.token_ids[:-1]
        assert batch.targets[b, :n].tolist() == ep.token_ids[1:]
        assert (batch.targets[b, n:] == -100).all()
        on = batch.mask[b].nonzero().squeeze(1).tolist()
        assert [ep.token_ids[t + 1] for t in on] == ep.token_ids[ep.prompt_len:]
        assert batch.sampler_logprobs[b, on].tolist() == pytest.approx(
            ep.sampler_logprobs[ep.prompt_len:])
    assert batch.advantages.tolist() == [0.0, 1.0, 2.0, 3.0]
    sub = batch.rows([1, 3])
    assert sub.targets.shape[0] == 2 and sub.advantages.tolist() == [1.0, 3.0]


def test_every_request_gets_its_own_seed_and_the_token_budget(tok):
    env = DigitAddEnv()
    sampler = ScriptedSampler(tok, ["1"])
    rollout(sampler, tok, env, [env.generate(0), env.generate(1)], group_size=3,
            params=SamplingParams(max_tokens=9, temperature=0.5), max_seq_len=20, seed=7, step=2)
    (prompts, params), = sampler.calls
    seeds = [p.seed for p in params]
    assert len(set(seeds)) == 6 and all(p.temperature == 0.5 for p in params)
    assert all(p.max_tokens == min(9, 20 - len(q)) for p, q in zip(params, prompts))


def test_truncated_turn_ends_the_episode(tok):
    env = DigitAddEnv()
    call = '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
    sampler = ScriptedSampler(tok, [call], finish_reason="length")
    [ep] = rollout(sampler, tok, env, [env.generate(0)], group_size=1,
                   params=SamplingParams(max_tokens=64), max_turns=3)
    assert ep.finish_reason == "length" and ep.truncated and len(sampler.calls) == 1


def test_turn_limit_stops_a_tool_loop(tok):
    env = DigitAddEnv()
    call = '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
    sampler = ScriptedSampler(tok, [call, call])
    [ep] = rollout(sampler, tok, env, [env.generate(0)], group_size=1,
                   params=SamplingParams(max_tokens=64), max_turns=2)
    assert ep.finish_reason == "max_turns" and len(ep.turns) == 2
    assert ep.messages[-1]["role"] == "assistant"


def test_tool_errors_become_results_not_crashes():
    env = DigitAddEnv()
    task = env.generate(0)
    calls = [{"id": "1", "function": {"name": "add", "arguments": "{bad json"}},
             {"id": "2", "function": {"name": "mul", "arguments": "{}"}},
             {"id": "3", "function": {"name": "add", "arguments": '{"a": 2, "b": 5}'}}]
    results = call_tools(env, task, {}, calls)
    assert results[0]["content"].startswith("error: arguments are not valid JSON")
    assert "unknown tool 'mul'" in results[1]["content"]
    assert results[2]["content"] == "7" and results[2]["tool_call_id"] == "3"


def test_prompt_longer_than_the_episode_budget_is_refused(tok):
    env = DigitAddEnv()
    with pytest.raises(ValueError, match="max_seq_len"):
        rollout(ScriptedSampler(tok, ["1"]), tok, env, [env.generate(0)], group_size=1,
                params=SamplingParams(), max_seq_len=5)


def test_a_failed_engine_request_stops_the_round(tok):
    env = DigitAddEnv()
    with pytest.raises(RuntimeError, match="engine failed an RL rollout"):
        rollout(ScriptedSampler(tok, ["1"], finish_reason="error"), tok, env, [env.generate(0)],
                group_size=1, params=SamplingParams())
