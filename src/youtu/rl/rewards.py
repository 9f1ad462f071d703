"""Reward functions for RL: a registry of verifiable rewards that users can extend.

    from youtu.rl.rewards import register_reward, score

    @register_reward("short")
    def short_answer(sample: RewardInput) -> float:      # any function of the finished episode
        return 1.0 if len(sample.answer) < 20 else 0.0

    total, terms = score(sample, {"env": 1.0, "format_think": 0.1, "short": 0.05})

Built in:
- `env`      the verifier of the environment the task came from (`env.check(task, answer)`);
- `math`     the math environment's answer checker;
- `code`     the code environment's checker, which runs the task's tests in the sandbox;
- `tools`    tool-call correctness: the environment's trajectory verifier (the tools environment
             replays the calls and compares the final state with the gold one), times the
             share of calls that name an offered tool with the arguments its schema requires;
- `research` the research environment's answer checker;
- `format_think`      the final turn is `<think>...</think>` then a non-empty answer;
- `format_tool_call`  every `<tool_call>` block the policy wrote parses as a call.

`rl.rewards` in the config is a {name: weight} table over this registry; the episode's reward is
the weighted sum. A reward function takes a `RewardInput` and returns a float (usually in [0, 1]).
Rewards of your own reach the command line through `rl.reward_modules`: modules imported before
the weights are checked, whose import registers them:

    youtu rl configs/tiny.toml --rl.reward_modules='["mypkg.rewards"]' --rl.rewards='{mine = 1.0}'
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from youtu.errors import ConfigError
from youtu.tokenizer.chat import parse_tool_calls


@dataclass
class RewardInput:
    """What a reward function sees: one finished episode, as text and messages."""

    task: Any
    """The task (`youtu.agentic.trajectory.Task`: id, prompt, answer, meta)."""
    env: Any
    """The environment the task came from (a `youtu.agentic.envs.Env`), or None."""
    messages: list[dict]
    """The whole conversation: prompt, the policy's assistant turns (parsed), tool results."""
    turns: list[str]
    """Raw text of each policy turn, markup (`<think>`, `<tool_call>`) kept, EOS removed."""
    answer: str = ""
    """The episode's answer as its environment reads it (`env.final_answer`: the last
    \\boxed{} of the final reply, the target file for code, ...), taken while the episode's
    state was still open."""
    tools: list[dict] | None = None
    """Tool schemas offered to the policy (None = none)."""
    truncated: bool = False
    """The episode hit the token or turn limit before the policy finished."""
    env_name: str = ""
    """Name of `env` in the environment registry."""
    cache: dict[str, Any] = field(default_factory=dict)
    """Scratch space shared by the reward functions of one episode (e.g. one verdict)."""

    @property
    def completion(self) -> str:
        """Raw text of the policy's final turn."""
        return self.turns[-1] if self.turns else ""

    @property
    def tool_calls(self) -> list[dict]:
        """Every tool call the policy made, in order (OpenAI format)."""
        return [call for m in self.messages if m.get("role") == "assistant"
                for call in (m.get("tool_calls") or [])]


RewardFn = Callable[[RewardInput], float]

REWARDS: dict[str, RewardFn] = {}
"""The registry: name -> reward function. Add to it with `register_reward`."""


def register_reward(name: str, *, overwrite: bool = False) -> Callable[[RewardFn], RewardFn]:
    """Decorator adding a reward function to `REWARDS` under `name`.

    Args:
        name: the key used in `rl.rewards`.
        overwrite: replace an existing entry instead of raising.
    """
    def add(fn: RewardFn) -> RewardFn:
        if name in REWARDS and not overwrite:
            raise ValueError(f"reward {name!r} is already registered; pass overwrite=True to "
                             "replace it")
        REWARDS[name] = fn
        return fn
    return add


def get_reward(name: str) -> RewardFn:
    """The registered reward `name`; ValueError listing the valid names otherwise."""
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; registered rewards: "
                         f"{', '.join(sorted(REWARDS))} "
                         "(add one with youtu.rl.rewards.register_reward in a module named "
                         "in rl.reward_modules)")
    return REWARDS[name]


def load_reward_modules(modules: Sequence[str]) -> None:
    """Import each module (`rl.reward_modules`); importing one registers its rewards.

    Modules are found on sys.path and in the working directory (as `python -m` would; the
    `youtu` console script does not put the working directory on sys.path by itself).

    Raises:
        ConfigError: naming a module that cannot be imported, and how to make it importable.
    """
    if modules and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            if getattr(e, "name", None) == "youtu.train.rewards":
                raise ConfigError(f"rl.reward_modules: {name!r} imports youtu.train.rewards, "
                                  "which moved to youtu.rl.rewards: change the import to `from "
                                  "youtu.rl.rewards import register_reward`") from e
            raise ConfigError(f"rl.reward_modules: cannot import {name!r} ({e}); give a module "
                              "path such as 'mypkg.rewards' that Python can import: install "
                              "the package or add its folder to PYTHONPATH") from e


def score(sample: RewardInput, weights: dict[str, float]) -> tuple[float, dict[str, float]]:
    """Weighted sum of the named rewards for one episode.

    Returns:
        (total, {name: unweighted value}).
    """
    terms = {name: float(get_reward(name)(sample)) for name in weights}
    return sum(weights[name] * value for name, value in terms.items()), terms


# ---------------------------------------------------------------------------------------------
# verifier rewards (the synthesis environments' checkers)


def _environment(name: str) -> Any:
    from youtu.agentic.envs import ENVIRONMENTS  # lazy: rewards that need no env stay importable

    return ENVIRONMENTS[name]


def _check(sample: RewardInput, env: Any) -> float:
    """Reward of the env's verdict on the final answer (cached per env for the episode)."""
    key = f"verdict:{id(env)}"
    if key not in sample.cache:
        sample.cache[key] = env.check(sample.task, sample.answer)
    return float(sample.cache[key].reward)


@register_reward("env")
def env_reward(sample: RewardInput) -> float:
    """The verifier of the task's own environment."""
    if sample.env is None:
        raise ValueError("the 'env' reward needs the episode's environment (RewardInput.env)")
    return _check(sample, sample.env)


@register_reward("math")
def math_reward(sample: RewardInput) -> float:
    """1 when the math checker accepts the final answer (numeric / symbolic equivalence)."""
    return _check(sample, _environment("math"))


@register_reward("code")
def code_reward(sample: RewardInput) -> float:
    """The code checker's reward: the task's tests run on the answer's code in the sandbox."""
    return _check(sample, _environment("code"))


@register_reward("research")
def research_reward(sample: RewardInput) -> float:
    """The research checker's reward for the final answer."""
    return _check(sample, _environment("research"))


def tool_call_errors(call: dict, tools: list[dict]) -> list[str]:
    """Why one OpenAI-format call does not fit the offered tool schemas ([] when it does)."""
    function = call.get("function") or {}
    name = function.get("name")
    schemas = {t.get("function", t).get("name"): t.get("function", t) for t in tools}
    if name not in schemas:
        return [f"unknown tool {name!r}"]
    try:
        args = json.loads(function.get("arguments") or "{}")
    except json.JSONDecodeError as e:
        return [f"arguments of {name} are not JSON: {e}"]
    if not isinstance(args, dict):
        return [f"arguments of {name} are not an object"]
    params = schemas[name].get("parameters") or {}
    missing = [k for k in params.get("required", []) if k not in args]
    known = params.get("properties")
    unknown = [k for k in args if known is not None and k not in known]
    return ([f"{name} misses required {k!r}" for k in missing]
            + [f"{name} has no parameter {k!r}" for k in unknown])


@register_reward("tools")
def tools_reward(sample: RewardInput) -> float:
    """Tool-call correctness: the environment's trajectory verifier (the tools environment
    replays every call, compares the final database / key-value state with the gold one and
    checks the answer; other environments check the answer), times the share of calls that fit
    the offered schemas. A task that needs no tool (irrelevance) is passed by calling none."""
    from youtu.agentic.trajectory import Outcome, Trajectory

    env = sample.env if sample.env is not None else _environment("tools")
    calls = sample.tool_calls
    offered = sample.tools if sample.tools is not None else env.tools
    valid = sum(not tool_call_errors(c, offered) for c in calls) / len(calls) if calls else 1.0
    if valid == 0.0:
        return 0.0
    traj = Trajectory(id=f"rl-{sample.task.id}", domain=sample.env_name or env.name,
                      task=sample.task, tools=offered, messages=sample.messages, phases=[],
                      outcome=Outcome(verified=False, reward=0.0, checker="", answer=sample.answer))
    return valid * float(env.verify(sample.task, traj).reward)


# ---------------------------------------------------------------------------------------------
# format rewards

_THINK = re.compile(r"^\s*<think>(.*?)</think>(.*)$", re.DOTALL)
_TAGS = ("<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>",
         "</tool_response>")


@register_reward("format_think")
def format_think(sample: RewardInput) -> float:
    """1 when the final turn is one `<think>...</think>` block followed by a non-empty answer with
    no stray markup; 0 otherwise (also when truncated)."""
    if sample.truncated:
        return 0.0
    match = _THINK.match(sample.completion)
    if match is None:
        return 0.0
    reasoning, answer = match.groups()
    if any(tag in reasoning or tag in answer for tag in _TAGS) or not answer.strip():
        return 0.0
    return 1.0


@register_reward("format_tool_call")
def format_tool_call(sample: RewardInput) -> float:
    """1 when every tool-call block of every policy turn parses (balanced tags, JSON with a name
    and an arguments object); 0 on any error. A turn without tool calls is well-formed."""
    for text in sample.turns:
        if text.count("<tool_call>") != text.count("</tool_call>"):
            return 0.0
        if parse_tool_calls(text).errors:
            return 0.0
    return 1.0
