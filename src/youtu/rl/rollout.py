"""RL rollouts: episodes sampled through the serving engine, token in / token out.

    episodes = rollout(engine, tok, env, tasks, group_size=8, params=SamplingParams(max_tokens=64),
                       max_turns=4, max_seq_len=1024, seed=step)
    batch = collate(episodes, pad_id=tok.pad_id)     # input_ids / targets / mask / sampler_logprobs

An episode is one token sequence: the chat prompt, then for each turn the tokens the policy
sampled (loss mask 1, with the log-probs the engine recorded while sampling them) and, when the
turn called tools, the tool results rendered by the chat template (mask 0). The sampled tokens
are never decoded and re-encoded into the sequence: what is trained is exactly what was sampled.
Decoded text is only used to parse tool calls and to score rewards.

Sampling goes through `youtu.serve.engine.Engine.generate` (anything with that method works, which
is how tests script a sampler): the same sampler as serving, so the recorded log-probs are those
of the distribution the tokens were drawn from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from youtu.agentic.envs import ToolError
from youtu.tokenizer.chat import encode_chat, parse_tool_calls
from youtu.rl.rewards import RewardInput



class Sampler(Protocol):
    """What rollouts need from the engine: `youtu.serve.engine.Engine` satisfies it."""

    def generate(self, prompts: list[list[int]], params: Any) -> list[Any]: ...


@dataclass
class Episode:
    """One rollout: a conversation as a single token sequence with its loss mask."""

    task: Any
    """The task the episode answers."""
    group: int
    """Index of the task in this rollout batch (episodes of one group share a prompt)."""
    token_ids: list[int]
    """Prompt + every sampled turn + every tool-result turn, in order."""
    loss_mask: list[int]
    """1 on tokens the policy sampled, 0 on the prompt, template and tool results."""
    sampler_logprobs: list[float]
    """Log-prob the sampler recorded for each token (0.0 where loss_mask is 0)."""
    messages: list[dict]
    """The conversation as chat messages (assistant turns parsed), for rewards and logs."""
    turns: list[str] = field(default_factory=list)
    """Raw decoded text of each sampled turn (markup kept, EOS removed)."""
    tools: list[dict] | None = None
    """Tool schemas offered in the prompt."""
    answer: str = ""
    """The final answer as the environment reads it (`env.final_answer`, taken while the
    episode's state was open)."""
    finish_reason: str = ""
    """'stop' (the policy ended its answer), 'length' (token limit) or 'max_turns'."""
    reward: float = 0.0
    """Total reward (weighted sum of `reward_terms`)."""
    reward_terms: dict[str, float] = field(default_factory=dict)
    """Unweighted value of each reward function."""

    @property
    def prompt_len(self) -> int:
        """Tokens before the first sampled token."""
        return self.loss_mask.index(1) if 1 in self.loss_mask else len(self.token_ids)

    @property
    def completion_tokens(self) -> int:
        """Tokens the policy sampled (all turns)."""
        return sum(self.loss_mask)

    @property
    def truncated(self) -> bool:
        return self.finish_reason != "stop"

    def reward_input(self, env: Any, env_name: str) -> RewardInput:
        return RewardInput(task=self.task, env=env, messages=self.messages, turns=self.turns,
                           answer=self.answer, tools=self.tools, truncated=self.truncated,
                           env_name=env_name)


def tool_turn_ids(tok: Any, messages: list[dict], tool_messages: list[dict],
                  tools: list[dict] | None, enable_thinking: bool) -> list[int]:
    """Token ids the chat template puts after an assistant turn for `tool_messages`, up to and
    including the next generation prompt (`<|User|><tool_response>...</tool_response>
    <|Assistant|>` for the Youtu template).

    Taken as the difference of two `encode_chat` encodings, so it follows whatever the template
    does (tool results encoded as untrusted text, the non-thinking pre-fill, ...). `messages`
    ends with an assistant turn, whose EOS is a special token, so the shorter encoding is a
    token-exact prefix of the longer one.
    """
    before, _ = encode_chat(tok, messages, tools=tools, enable_thinking=enable_thinking)
    after, _ = encode_chat(tok, messages + tool_messages, tools=tools,
                           enable_thinking=enable_thinking, add_generation_prompt=True)
    if after[:len(before)] != before:
        raise RuntimeError("the chat template re-renders earlier turns when a tool result is "
                           "appended, so a multi-turn episode cannot be extended token by token")
    return after[len(before):]


def call_tools(env: Any, task: Any, state: dict, calls: list[dict]) -> list[dict]:
    """Run each OpenAI-format tool call in `env`; one `tool` message per call. A malformed call
    gets an error message as its result (the policy should learn from it, not crash the run)."""
    results = []
    for call in calls:
        function = call.get("function") or {}
        name = function.get("name", "")
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except json.JSONDecodeError as e:
            content = f"error: arguments are not valid JSON ({e})"
        else:
            try:
                content = env.call_tool(task, state, name, arguments)
            except (ToolError, KeyError, ValueError, TypeError) as e:
                content = f"error: {e}"
        results.append({"role": "tool", "tool_call_id": call.get("id", ""), "name": name,
                        "content": str(content)})
    return results


def rollout_seed(seed: int, step: int, index: int, turn: int) -> int:
    """A distinct, reproducible sampler seed per (run seed, step, episode, turn), in the
    63-bit range `torch.Generator.manual_seed` takes."""
    return (((seed * 1_000_003 + step) * 1_048_573 + index) * 64 + turn) % (2**63 - 1)


def rollout(sampler: Sampler, tok: Any, env: Any, tasks: list[Any], *, group_size: int,
            params: Any, max_turns: int = 1, max_seq_len: int = 2048,
            enable_thinking: bool = True, seed: int = 0, step: int = 0,
            system_prompt: str = "", index_offset: int = 0) -> list[Episode]:
    """Sample `group_size` episodes per task, with up to `max_turns` policy turns each.

    Args:
        sampler: the engine (its `generate(prompts, params)` returns completions with
            `token_ids`, `logprobs` and `finish_reason`).
        tok: the policy's tokenizer.
        env: the task environment (a `youtu.agentic.envs.Env`); its tools for the task are
            offered when max_turns > 1, each episode gets its own tool state (`env.episode`),
            and its `final_answer` reads the answer while that state is open.
        tasks: tasks to answer; episodes come out group by group in this order.
        group_size: episodes per task (G).
        params: a `SamplingParams` template; `max_tokens` caps each turn, `seed` is set per
            episode and turn from (seed, step, episode, turn).
        max_turns: policy turns per episode (1 = a single answer, no tools).
        max_seq_len: token budget of a whole episode (the engine's context).
        enable_thinking: the chat template's thinking mode.
        seed / step: make the sampling reproducible and different every step.
        system_prompt: system message before the task (default: the environment's).
        index_offset: global index of the first episode (its rank's offset under torchrun), so
            sampling seeds do not depend on how episodes are split over processes.

    Returns:
        len(tasks) * group_size episodes, group members contiguous.
    """
    system_prompt = system_prompt or getattr(env, "system_prompt", "")
    episodes: list[Episode] = []
    for group, task in enumerate(tasks):
        tools = (env.tools_for(task) or None) if max_turns > 1 else None
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else [])
        messages.append({"role": "user", "content": task.prompt})
        ids, _ = encode_chat(tok, messages, tools=tools, enable_thinking=enable_thinking,
                             add_generation_prompt=True)
        if len(ids) >= max_seq_len:
            raise ValueError(f"task {task.id}: the prompt has {len(ids)} tokens, more than "
                             f"rl.max_seq_len={max_seq_len}; raise it or use shorter tasks")
        for _ in range(group_size):
            episodes.append(Episode(task=task, group=group, token_ids=list(ids),
                                    loss_mask=[0] * len(ids), sampler_logprobs=[0.0] * len(ids),
                                    messages=[dict(m) for m in messages], tools=tools))
    # Per-episode tool state (a sandbox, a database), open until the answers are read.
    with contextlib.ExitStack() as stack:
        states = [stack.enter_context(env.episode(ep.task)) for ep in episodes]
        _run_turns(sampler, tok, env, episodes, states, params=params, max_turns=max_turns,
                   max_seq_len=max_seq_len, enable_thinking=enable_thinking, seed=seed, step=step,
                   index_offset=index_offset)
        for ep, state in zip(episodes, states):
            last = ep.messages[-1] if ep.messages[-1]["role"] == "assistant" else {}
            ep.answer = env.final_answer(ep.task, state, last.get("content") or "")
    for ep in episodes:
        assert len(ep.token_ids) == len(ep.loss_mask) == len(ep.sampler_logprobs)
    return episodes


def _run_turns(sampler: Sampler, tok: Any, env: Any, episodes: list[Episode], states: list[Any],
               *, params: Any, max_turns: int, max_seq_len: int, enable_thinking: bool, seed: int,
               step: int, index_offset: int) -> None:
    """Sample turn after turn for every episode still going; run its tool calls in between."""
    eos_text = tok.decode([tok.eos_id])
    active = list(range(len(episodes)))
    for turn in range(max_turns):
        if not active:
            break
        requests = []
        for i in active:
            budget = max_seq_len - len(episodes[i].token_ids)
            seed_i = rollout_seed(seed, step, index_offset + i, turn)
            requests.append(dataclasses.replace(params, max_tokens=min(params.max_tokens, budget),
                                                seed=seed_i))
        completions = sampler.generate([episodes[i].token_ids for i in active], requests)
        still_active = []
        for i, completion in zip(active, completions):
            if completion.finish_reason in ("error", "abort"):
                raise RuntimeError(f"the engine failed an RL rollout ({completion.finish_reason}): "
                                   f"{getattr(completion, 'error', None)}")
            ep = episodes[i]
            new = list(completion.token_ids)
            ep.token_ids += new
            ep.loss_mask += [1] * len(new)
            ep.sampler_logprobs += [float(x) for x in completion.logprobs]
            text = tok.decode(new)
            text = text[: -len(eos_text)] if text.endswith(eos_text) else text
            ep.turns.append(text)
            parsed = parse_tool_calls(text)
            message: dict[str, Any] = {"role": "assistant", "content": parsed.content}
            if parsed.reasoning is not None:
                message["reasoning_content"] = parsed.reasoning
            if parsed.tool_calls:
                message["tool_calls"] = parsed.tool_calls
            ep.finish_reason = completion.finish_reason
            if completion.finish_reason != "stop" or not parsed.tool_calls or ep.tools is None:
                ep.messages.append(message)
                continue
            if turn == max_turns - 1:
                ep.messages.append(message)
                ep.finish_reason = "max_turns"
                continue
            results = call_tools(env, ep.task, states[i], parsed.tool_calls)
            suffix = tool_turn_ids(tok, ep.messages + [message], results, ep.tools, enable_thinking)
            ep.messages += [message, *results]
            if len(ep.token_ids) + len(suffix) >= max_seq_len:
                ep.finish_reason = "length"
                continue
            ep.token_ids += suffix
            ep.loss_mask += [0] * len(suffix)
            ep.sampler_logprobs += [0.0] * len(suffix)
            still_active.append(i)
        active = still_active


@dataclass
class RolloutBatch:
    """Episodes as padded next-token tensors (row b predicts targets[b, t] at position t)."""

    input_ids: torch.Tensor
    """[B, T] token ids (padded with pad_id)."""
    targets: torch.Tensor
    """[B, T] the next token at each position; -100 on padding."""
    mask: torch.Tensor
    """[B, T] float, 1 where the target is a token the policy sampled."""
    sampler_logprobs: torch.Tensor
    """[B, T] log-prob of each target recorded by the sampler (0 where mask is 0)."""
    advantages: torch.Tensor
    """[B] one advantage per episode."""

    def to(self, device: torch.device | str) -> RolloutBatch:
        return RolloutBatch(*(t.to(device) for t in dataclasses.astuple(self)))

    def rows(self, index: slice | list[int] | torch.Tensor) -> RolloutBatch:
        """A sub-batch of rows, trimmed to its longest row."""
        parts = [t[index] for t in dataclasses.astuple(self)]
        width = int((parts[1] != -100).sum(dim=1).max()) if parts[1].numel() else 0
        return RolloutBatch(*(p[:, :width] if p.dim() == 2 else p for p in parts))


def collate(episodes: list[Episode], advantages: torch.Tensor, pad_id: int) -> RolloutBatch:
    """Right-padded tensors for the training forward: inputs are ids[:-1], targets ids[1:]."""
    width = max(len(ep.token_ids) for ep in episodes) - 1
    B = len(episodes)
    input_ids = torch.full((B, width), pad_id, dtype=torch.long)
    targets = torch.full((B, width), -100, dtype=torch.long)
    mask = torch.zeros(B, width)
    sampler_lp = torch.zeros(B, width)
    for b, ep in enumerate(episodes):
        n = len(ep.token_ids) - 1
        ids = torch.tensor(ep.token_ids, dtype=torch.long)
        input_ids[b, :n] = ids[:-1]
        targets[b, :n] = ids[1:]
        mask[b, :n] = torch.tensor(ep.loss_mask[1:], dtype=torch.float32)
        sampler_lp[b, :n] = torch.tensor(ep.sampler_logprobs[1:], dtype=torch.float32)
    return RolloutBatch(input_ids, targets, mask, sampler_lp, advantages.float())
