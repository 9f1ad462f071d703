"""Agent runtime: `youtu agent "<task>"` runs a tool loop and writes the episode as a trajectory.

    youtu agent "How many primes are below 1000?" --serve.checkpoint=runs/tiny/sft
    youtu agent --serve.agent_env=math --serve.agent_seed=1000003        # a checked env task
    youtu agent "Summarise the docs on RoPE" --serve.tools='["search"]' --serve.docs=docs/ \\
        --serve.agent_endpoint=http://127.0.0.1:8000/v1                  # any OpenAI server

The loop (`youtu.agentic.toolloop`, the one the synthesis teacher runs too): system prompt (the
environment's, or one asking for Agentic-CoT phases) + task -> model reply -> run its tool calls
(sandboxed Python, local document search, or the tools of a synthesis environment) -> tool
results -> ... until a reply without tool calls, the step limit, the token budget or a full
context. A malformed tool call (unparsed `<tool_call>` text, a tool not offered) is answered
with an error observation and the model tries again. The episode is validated and appended in the project's
schema (`youtu.agentic.trajectory.Trajectory`), so agent runs can feed synthesis and training:

- phases: each assistant reasoning becomes Agentic-CoT blocks. Blocks the model wrote itself
  (`<analysis>...</analysis>`, ...) are kept; untagged reasoning is labelled by its place in
  the loop: the first turn 'analysis', turns after a tool result 'reflection', the final turn
  'summary' (the tool calls themselves are the actions).
- outcome: an environment task is checked with the environment's checker; a free-form task is
  recorded unverified (nothing can check it).
- a run stopped by a limit ends with an assistant note naming the limit (the schema wants an
  assistant reply last, and every tool call answered: tool calls of a reply cut at a limit never
  ran and are dropped); its outcome is unverified and `provenance.stop` says which limit.
- a call to a tool that was not offered, or one that does not parse, is answered with an error
  (the engine and our server report it in `tool_call_errors`); it stays in the record as the
  model's text, never as a call. An episode that still breaks the schema is not appended; it
  goes to `<agent_out>.rejected` for inspection and the command returns 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from youtu.agentic.toolloop import ContextFull, ToolLoopRun, run_tool_loop
from youtu.agentic.trajectory import (PHASES, Outcome, Phase, Task, Trajectory, format_phases,
                                      parse_phases, trajectory_id, validation_errors)
from youtu.errors import ConfigError
from youtu.serve.client import ChatBackend, EngineChat, OpenAIChat
from youtu.serve.protocol import APIError
from youtu.serve.tools import DocSearch, Tool, ToolSet, env_tools, python_tool, search_tool

if TYPE_CHECKING:
    from youtu.config import RunConfig

logger = logging.getLogger(__name__)

AGENT_SYSTEM = (
    "You are an agent that solves tasks with tools. Think in phases: <analysis> of the task, a "
    "<plan>, the <action> you take next, <reflection> on each tool result, and a final "
    "<summary>. Call tools when they help; check results before relying on them. Give the final "
    "answer in your last reply, inside \\boxed{} when it is a value.")

_TAGGED = re.compile(r"<(%s)>.*?</\1>" % "|".join(PHASES), re.S)


AgentRun = ToolLoopRun
"""A finished agent run (messages, stop reason, steps, tokens): the shared tool loop's result."""


class _EngineLoopBackend:
    """A `youtu.serve.client` backend (engine in-process or an OpenAI endpoint) as the tool
    loop's async backend: the same thinking mode for every reply, and a context overflow
    reported as the loop's `ContextFull`."""

    def __init__(self, backend: ChatBackend, thinking: bool):
        self.backend, self.thinking = backend, thinking

    async def complete(self, messages, *, tools, max_tokens):
        try:
            return self.backend.complete(messages, tools=tools, max_tokens=max_tokens,
                                         thinking=self.thinking)
        except APIError as e:
            if e.code != "context_length_exceeded":
                raise
            raise ContextFull(e.message) from e


def run_agent(backend: ChatBackend, task: str, tools: ToolSet, *, system: str = AGENT_SYSTEM,
              max_steps: int = 8, max_tokens: int = 8192, max_reply_tokens: int = 1024,
              thinking: bool = True, on_step: Callable[[dict[str, Any]], None] | None = None) -> AgentRun:
    """Run the tool loop (`youtu.agentic.toolloop`) until a final reply or a limit.

    Args:
        backend: where replies come from (`EngineChat` or `OpenAIChat`).
        task: the user's task text.
        tools: tools offered to the model (and executed here).
        system: system prompt ('' = none).
        max_steps: most model calls.
        max_tokens: most generated tokens over the whole run.
        max_reply_tokens: most tokens of one reply.
        thinking: ask for a think block in each reply.
        on_step: called with every message appended (assistant replies, tool results and the
            error notes that answer a malformed tool call).
    """
    messages: list[dict[str, Any]] = ([{"role": "system", "content": system}] if system else [])
    messages.append({"role": "user", "content": task})

    async def call_tool(name: str, arguments: dict[str, Any]) -> str:
        return tools.call(name, arguments)

    return asyncio.run(run_tool_loop(_EngineLoopBackend(backend, thinking), messages,
                                     tools=tools.schemas or None, call_tool=call_tool,
                                     max_steps=max_steps, max_tokens=max_tokens,
                                     max_reply_tokens=max_reply_tokens, on_step=on_step))


def record_phases(messages: list[dict[str, Any]]) -> list[Phase]:
    """Turn each assistant reasoning into Agentic-CoT blocks (module docstring); rewrites the
    messages' `reasoning_content` to the blocks' canonical text, as the schema requires."""
    phases: list[Phase] = []
    assistants = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    for k, i in enumerate(assistants):
        msg = messages[i]
        reasoning = (msg.get("reasoning_content") or "").strip()
        if not reasoning:
            msg.pop("reasoning_content", None)
            continue
        if k == 0:
            label = "analysis"
        elif not msg.get("tool_calls"):
            label = "summary"
        else:
            label = "reflection"
        blocks = parse_phases(reasoning)
        untagged = _TAGGED.sub("", reasoning).strip()
        if untagged:
            blocks = [(label, untagged)] + blocks
        msg["reasoning_content"] = format_phases(blocks)
        phases += [Phase(name, text, i) for name, text in blocks]
    return phases


def free_task(prompt: str) -> Task:
    """A `Task` for a free-form prompt (no reference answer, nothing to check)."""
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:12]
    return Task(id=f"free-{digest}", env="free", seed=0, difficulty=1, prompt=prompt, answer="")


def build_tools(names: list[str], *, docs: str = "", env: Any = None, task: Any = None,
                state: Any = None) -> ToolSet:
    """Tools by config name: 'python', 'search' (needs `docs`), 'env' (needs an env task)."""
    tools: list[Tool] = []
    for name in names:
        if name == "python":
            tools.append(python_tool())
        elif name == "search":
            if not docs:
                raise ValueError("the 'search' tool needs a document folder: --serve.docs=<folder>")
            tools.append(search_tool(DocSearch.from_folder(docs)))
        elif name == "env":
            if env is None:
                raise ValueError("the 'env' tools belong to an environment's generated task: run "
                                 "`youtu agent --serve.agent_env=math|code|tools|research` "
                                 "(with no task text)")
            tools += env_tools(env, task, state)
        else:
            raise ValueError(f"unknown tool {name!r}; choose from python, search, env")
    return ToolSet(tools)


def agent_trajectory(run: AgentRun, task: Task, tools: ToolSet, domain: str, outcome: Outcome,
                     provenance: dict[str, Any]) -> Trajectory:
    """The run as a `Trajectory` (not validated: `main` checks it before writing).

    A run that stopped at a limit is ended the way the schema requires: tool calls of a reply
    cut at the limit are dropped (they never ran, so nothing answers them), then an assistant
    note (`AgentRun.stop_note`) closes the conversation.
    """
    messages = [dict(m) for m in run.messages]
    phases = record_phases(messages)  # before the note: it has no reasoning and moves no index
    if run.stop != "final":
        if messages[-1]["role"] == "assistant":
            messages[-1].pop("tool_calls", None)
        messages.append({"role": "assistant", "content": run.stop_note()})
    return Trajectory(id=trajectory_id(domain, task.id, messages), domain=domain, task=task,
                      tools=tools.schemas, messages=messages, phases=phases, outcome=outcome,
                      provenance=provenance)


def main(cfg: RunConfig) -> int:
    """`youtu agent`: run `serve.agent_task` (or an `agent_env` task), append the trajectory."""
    from youtu.agentic.envs import ENVIRONMENTS
    s = cfg.serve
    if bool(s.agent_task) == bool(s.agent_env):
        raise ConfigError('give a task (youtu agent "<task>") or an environment '
                          "(--serve.agent_env=math|code|tools|research), not both or neither")
    env = None
    if s.agent_env:
        if s.agent_env not in ENVIRONMENTS:
            raise ConfigError(f"serve.agent_env: unknown environment {s.agent_env!r}; choose from "
                              f"{', '.join(ENVIRONMENTS)}")
        env = ENVIRONMENTS[s.agent_env]
    if s.agent_endpoint:
        backend: ChatBackend = OpenAIChat(s.agent_endpoint, model=s.agent_model,
                                          api_key=s.api_key or os.environ.get("YOUTU_API_KEY", ""),
                                          temperature=s.temperature, top_p=s.top_p)
    else:
        from youtu.serve.engine import engine_from_config

        engine, tok = engine_from_config(cfg.serve, run_dir=cfg.run_dir, device=cfg.device,
                                     seed=cfg.seed)
        backend = EngineChat(engine, tok, temperature=s.temperature, top_p=s.top_p, seed=cfg.seed)

    task = env.generate(s.agent_seed) if env is not None else free_task(s.agent_task)
    names = s.tools or (["env"] if env is not None else ["python"] + (["search"] if s.docs else []))
    episode = env.episode(task) if env is not None else contextlib.nullcontext()
    with episode as state:
        try:
            tools = build_tools(names, docs=s.docs, env=env, task=task, state=state)
        except (ValueError, FileNotFoundError) as e:
            raise ConfigError(str(e)) from e
        run = run_agent(backend, task.prompt, tools,
                        system=env.system_prompt if env is not None else AGENT_SYSTEM,
                        max_steps=s.agent_max_steps, max_tokens=s.agent_max_tokens,
                        max_reply_tokens=s.max_new_tokens,
                        thinking=s.enable_thinking,
                        on_step=lambda m: logger.info("%s: %s", m["role"], _brief(m)))
        answer = env.final_answer(task, state, run.final_content) if env is not None else run.final_content
    if env is not None and run.stop == "final":
        verdict = env.check(task, answer)
        outcome = Outcome(verified=verdict.correct, reward=verdict.reward, checker=verdict.checker,
                          detail=verdict.detail, answer=answer)
    else:  # stopped at a limit, or a free-form task that nothing can check
        why = run.stop_note() or "no checker for a free-form task"
        outcome = Outcome(verified=False, reward=0.0, checker="", detail=why, answer=answer)
    traj = agent_trajectory(run, task, tools, env.name if env is not None else "tools", outcome, {
        "teacher": f"agent:{backend.model}", "seed": task.seed, "difficulty": task.difficulty,
        "env_version": env.version if env is not None else "", "stop": run.stop,
        "steps": run.steps, "completion_tokens": run.completion_tokens,
        "endpoint": s.agent_endpoint or "in-process"})
    out = Path(s.agent_out) if s.agent_out else cfg.run_dir / "agent" / "trajectories.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    problems = validation_errors(traj)
    # `load_trajectories` reads *.jsonl and raises on an invalid line, so one bad episode in the
    # file would make the whole file unreadable as training data: it goes beside it instead
    target = out.with_name(out.name + ".rejected") if problems else out
    with target.open("a") as f:
        f.write(json.dumps(traj.to_dict(), ensure_ascii=False) + "\n")
    print(run.final_content or f"(no final answer: {run.stop})")
    print(f"[{run.stop} after {run.steps} step(s), {run.completion_tokens} tokens; "
          f"verified={outcome.verified}; trajectory -> {target}]", file=sys.stderr)
    if problems:
        print(f"error: the episode breaks the trajectory schema ({'; '.join(problems)}), so it "
              f"was not appended to {out}; it is kept in {target} for inspection", file=sys.stderr)
        return 1
    return 0


def _brief(msg: dict[str, Any], limit: int = 160) -> str:
    text = msg.get("content") or ""
    if msg.get("tool_calls"):
        text += " " + ", ".join(f"{c['function']['name']}({c['function']['arguments']})"
                                for c in msg["tool_calls"])
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "")
