"""LLM teacher: episodes from a model behind any OpenAI-compatible endpoint, kept only if verified.

    teacher = LLMTeacher(LLMTeacherConfig(base_url="http://127.0.0.1:8000/v1", model="qwen"))
    trajs, stats = teacher.solve_many(ENVIRONMENTS["math"], tasks)

For each task the teacher runs up to `samples_per_task` episodes (rejection sampling): the model
sees the task and the environment's tools, its tool calls run through `env.call_tool` (the code
environment's sandbox included), and the episode ends at a reply without tool calls. The loop is
the agent runtime's (`toolloop.py`): a malformed call (unparsed `<tool_call>` text, a tool not
offered) is answered with an error observation, and the episode is then rejected like a wrong
answer (`stats["malformed_calls"]`, `stats["unknown_tool"]`): kept text never holds a broken call. The
environment's verifier judges it; the first verified episode is kept. Requests run
`concurrency` at a time (asyncio + httpx) with a timeout and retries with exponential backoff on
timeouts, connection errors, 429/5xx and malformed replies (bad JSON, no choices, structured
tool calls whose arguments are not a JSON object). Replies may use structured `tool_calls` or carry Hermes
`<tool_call>` / `<think>` text in `content` (servers without a tool parser): both are read.

A task whose request still fails after its retries (or is refused with a 4xx) is abandoned, not
judged: `stats["request_errors"]` counts such tasks, `stats["errored"]` lists their positions in
`tasks` and `stats["last_error"]` says what went wrong (the endpoint and model included), so a
synthesis run can solve them again later instead of counting them as failures.

Agentic-CoT rewriting: a kept episode's free-form reasoning is sent back to the model with the
turn structure, asking for the same reasoning as <analysis>/<plan>/<action>/<reflection>/
<summary> blocks, one string per turn. A rewrite that is not valid JSON, has the wrong number of
turns or breaks the phase rules is retried, then replaced by a deterministic segmentation
(first turn -> analysis + plan, tool turns -> reflection + action, last -> summary).
`provenance["cot"]` says which one happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from youtu.agentic.config import LLMTeacherConfig
from youtu.agentic.envs.base import Env
from youtu.agentic.render import from_openai
from youtu.agentic.toolloop import run_tool_loop
from youtu.agentic.trajectory import (Outcome, Task, Trajectory, format_phases, parse_phases,
                                      trajectory_id)
from youtu.tokenizer.chat import parse_tool_calls

logger = logging.getLogger(__name__)

REWRITE_PROMPT = (
    "You rewrite an agent's reasoning into Agentic-CoT phases. You get the task and the agent's "
    "turns as JSON: each turn has its free-form reasoning, the action it took and what it "
    "observed next. Return ONLY a JSON list with one string per turn, in order. Each string is "
    "a sequence of blocks <analysis>...</analysis>, <plan>...</plan>, <action>...</action>, "
    "<reflection>...</reflection>, <summary>...</summary>: the first turn starts with analysis "
    "and plan, a turn after an observation reflects on it, a turn that calls a tool says why in "
    "action, and the last turn ends with summary. Keep every fact and number of the original; "
    "add none.")


class TeacherError(RuntimeError):
    """A request failed after all retries, or the server refused it (HTTP 4xx)."""


class _Malformed(ValueError):
    """The server answered, but not with a usable chat completion."""


class LLMTeacher:
    """Rejection-sampled episodes from an OpenAI-compatible chat endpoint."""

    def __init__(self, cfg: LLMTeacherConfig, transport: httpx.AsyncBaseTransport | None = None):
        self.cfg = cfg
        self._transport = transport
        key = os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else ""
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}

    # -----------------------------------------------------------------------------------------
    # requests

    async def chat(self, client: httpx.AsyncClient, messages: list[dict[str, Any]],
                   tools: list[dict[str, Any]] | None, stats: Counter,
                   temperature: float | None = None) -> dict[str, Any]:
        """One chat completion -> an assistant message (content, reasoning_content, tool_calls)."""
        body: dict[str, Any] = {"model": self.cfg.model, "max_tokens": self.cfg.max_tokens,
                                "temperature": self.cfg.temperature if temperature is None
                                else temperature,
                                "messages": [_wire(m) for m in messages]}
        if tools:
            body["tools"] = tools
        delay = self.cfg.backoff_s
        for attempt in range(self.cfg.max_retries + 1):
            stats["requests"] += 1
            try:
                resp = await client.post("/chat/completions", json=body)
                if resp.status_code == 429 or resp.status_code >= 500:
                    raise httpx.HTTPStatusError(f"HTTP {resp.status_code}", request=resp.request,
                                                response=resp)
                if resp.status_code >= 400:  # the request itself is wrong: retrying won't help
                    raise TeacherError(
                        f"HTTP {resp.status_code} from {self._where()}: {resp.text[:200]!r}; "
                        "check synth.llm.model, synth.llm.base_url and the API key (read from "
                        f"the environment variable synth.llm.api_key_env="
                        f"{self.cfg.api_key_env!r})")
                return _assistant_message(resp)
            except (httpx.TimeoutException, httpx.TransportError, httpx.HTTPStatusError,
                    _Malformed) as e:
                kind = ("timeouts" if isinstance(e, httpx.TimeoutException) else
                        "malformed" if isinstance(e, _Malformed) else "http_errors")
                stats[kind] += 1
                if attempt == self.cfg.max_retries:
                    raise TeacherError(f"request to {self._where()} failed after {attempt + 1} "
                                       f"attempts: {type(e).__name__}: {e}") from e
                stats["retries"] += 1
                logger.debug("retrying after %s: %s", type(e).__name__, e)
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _where(self) -> str:
        return (f"the teacher at synth.llm.base_url={self.cfg.base_url!r} "
                f"(synth.llm.model={self.cfg.model!r})")

    # -----------------------------------------------------------------------------------------
    # episodes

    async def episode(self, client: httpx.AsyncClient, env: Env, task: Task, sample: int,
                      stats: Counter) -> Trajectory | None:
        """One attempt at `task`; the trajectory (verified or not), or None if it broke off."""
        tools = env.tools_for(task)
        msgs: list[dict[str, Any]] = []
        if env.system_prompt:
            msgs.append({"role": "system", "content": env.system_prompt})
        msgs.append({"role": "user", "content": task.prompt})
        stack = contextlib.ExitStack()
        state = await asyncio.to_thread(stack.enter_context, env.episode(task))
        try:
            async def call_tool(name: str, arguments: dict[str, Any]) -> str:
                return await asyncio.to_thread(env.call_tool, task, state, name, arguments)

            run = await run_tool_loop(_HTTPBackend(self, client, stats), msgs, tools=tools,
                                      call_tool=call_tool, max_steps=self.cfg.max_turns)
            if run.stop != "final":
                stats["out_of_turns"] += 1
                return None
            names = {t["function"]["name"] for t in tools}
            if any(c["function"]["name"] not in names
                   for m in msgs for c in m.get("tool_calls") or []):
                stats["unknown_tool"] += 1
                return None
            if run.malformed:
                # The model read the error and went on, but the episode holds the broken call:
                # training text must not teach it. The next sample tries again.
                stats["malformed_calls"] += 1
                return None
            answer = await asyncio.to_thread(env.final_answer, task, state, run.final_content)
            try:
                traj = from_openai(msgs, tools, domain=env.name, task=task, source="llm")
            except ValueError as e:  # e.g. an empty final reply after tool results
                stats["invalid"] += 1
                logger.debug("%s: invalid episode: %s", task.id, e)
                return None
            traj.id = trajectory_id(env.name, task.id, traj.messages)
            traj.outcome = Outcome(verified=False, reward=0.0, checker="", answer=answer)
            verdict = await asyncio.to_thread(env.verify_episode, task, state, traj)
        finally:
            await asyncio.to_thread(stack.close)
        traj.outcome = Outcome(verified=verdict.correct, reward=verdict.reward,
                               checker=verdict.checker, detail=verdict.detail, answer=answer)
        traj.provenance = {"teacher": f"llm:{self.cfg.model}", "seed": task.seed,
                           "difficulty": task.difficulty, "env_version": env.version,
                           "sample": sample, "mistakes": [], "branch": "sampled"}
        return traj

    async def solve_task(self, client: httpx.AsyncClient, env: Env, task: Task,
                         stats: Counter) -> Trajectory | None:
        """Rejection sampling: the first verified episode (CoT rewritten), or None.

        Raises:
            TeacherError: a request failed after its retries; the task was not judged.
        """
        for sample in range(self.cfg.samples_per_task):
            stats["samples"] += 1
            traj = await self.episode(client, env, task, sample, stats)
            if traj is None:
                continue
            if not traj.outcome.verified:
                stats["rejected"] += 1
                continue
            if self.cfg.rewrite_cot:
                traj = await self.rewrite_cot(client, traj, stats)
            return traj
        return None

    def solve_many(self, env: Env, tasks: list[Task]) -> tuple[list[Trajectory], dict[str, Any]]:
        """Solve `tasks`, `cfg.concurrency` at a time.

        Returns:
            (verified trajectories in task order, stats). In stats, `attempted` = `verified` +
            `failed` (no verified episode) + `request_errors` (abandoned on a failed request;
            their positions in `tasks` in `errored`, the last message in `last_error`).
        """
        return asyncio.run(self._solve_many(env, tasks))

    async def _solve_many(self, env: Env, tasks: list[Task]):
        stats: Counter = Counter()
        sem = asyncio.Semaphore(self.cfg.concurrency)
        limits = httpx.Limits(max_connections=self.cfg.concurrency)
        async with httpx.AsyncClient(base_url=self.cfg.base_url.rstrip("/"),
                                     timeout=self.cfg.timeout_s, headers=self._headers,
                                     limits=limits, transport=self._transport) as client:
            errored: list[int] = []
            last_error = ""

            async def one(k: int, task: Task) -> Trajectory | None:
                nonlocal last_error
                async with sem:
                    try:
                        return await self.solve_task(client, env, task, stats)
                    except TeacherError as e:
                        logger.warning("%s: %s", task.id, e)
                        errored.append(k)
                        last_error = str(e)
                        return None
            results = await asyncio.gather(*(one(k, t) for k, t in enumerate(tasks)))
        kept = [t for t in results if t is not None]
        stats["attempted"] = len(tasks)
        stats["verified"] = len(kept)
        stats["request_errors"] = len(errored)
        stats["failed"] = len(tasks) - len(kept) - len(errored)
        out: dict[str, Any] = dict(stats)
        if errored:
            out["errored"], out["last_error"] = sorted(errored), last_error
        return kept, out

    # -----------------------------------------------------------------------------------------
    # Agentic-CoT rewriting

    async def rewrite_cot(self, client: httpx.AsyncClient, traj: Trajectory,
                          stats: Counter) -> Trajectory:
        """`traj` with every assistant turn's reasoning as Agentic-CoT phase blocks."""
        turns = [i for i, m in enumerate(traj.messages) if m["role"] == "assistant"]
        if traj.phases and {p.message for p in traj.phases} == set(turns):
            traj.provenance["cot"] = "native"
            return traj
        payload = json.dumps({"task": traj.task.prompt, "turns": [
            {"reasoning": traj.messages[i].get("reasoning_content", ""),
             "action": _action_text(traj.messages[i]),
             "observation": "\n".join(m["content"][:500] for m in traj.messages[i + 1:]
                                      if m["role"] == "tool")[:1500]} for i in turns]},
            ensure_ascii=False)
        prompt = [{"role": "system", "content": REWRITE_PROMPT},
                  {"role": "user", "content": payload}]
        blocks = None
        for _ in range(self.cfg.max_retries + 1):
            try:
                reply = await self.chat(client, prompt, None, stats, temperature=0.0)
            except TeacherError:
                break
            blocks = _parse_rewrite(reply["content"], len(turns))
            if blocks is not None:
                break
            stats["bad_rewrites"] += 1
        how = "llm-rewrite"
        if blocks is None:
            how = "heuristic"
            blocks = [heuristic_phases(traj.messages[i], k, len(turns))
                      for k, i in enumerate(turns)]
        msgs = [dict(m) for m in traj.messages]
        for i, phases in zip(turns, blocks):
            msgs[i]["reasoning_content"] = format_phases(phases)
        new = from_openai(msgs, traj.tools, domain=traj.domain, task=traj.task, source="llm")
        new.id, new.outcome = traj.id, traj.outcome
        new.provenance = {**traj.provenance, "cot": how}
        stats[f"cot_{how}"] += 1
        return new


@dataclass
class _Reply:
    message: dict[str, Any]
    completion_tokens: int = 0
    finish_reason: str = "stop"


class _HTTPBackend:
    """The teacher's chat endpoint as the tool loop's backend (`max_tokens` is the teacher's
    own `synth.llm.max_tokens`, sent with every request)."""

    def __init__(self, teacher: LLMTeacher, client: httpx.AsyncClient, stats: Counter):
        self.teacher, self.client, self.stats = teacher, client, stats

    async def complete(self, messages, *, tools, max_tokens):
        return _Reply(await self.teacher.chat(self.client, messages, tools, self.stats))


def _wire(m: dict[str, Any]) -> dict[str, Any]:
    """A message as sent to the server: earlier reasoning is not sent back (it is ours)."""
    return {k: v for k, v in m.items() if k != "reasoning_content"}


def _assistant_message(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
        msg = data["choices"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise _Malformed(f"not a chat completion: {resp.text[:200]!r}") from e
    if not isinstance(msg, dict):
        raise _Malformed(f"message is not an object: {msg!r}")
    content = msg.get("content") or ""
    reasoning = msg.get("reasoning_content") or msg.get("reasoning") or ""
    calls = msg.get("tool_calls") or []
    if not calls and ("<tool_call>" in content or "<think>" in content or "</think>" in content):
        parsed = parse_tool_calls(content)  # raw Hermes / Youtu text from a server without parsers
        if parsed.errors and "<tool_call>" in content:
            # A call the model wrote badly is the model's mistake, not the server's: the text
            # stays, and the tool loop feeds the parse error back to the model.
            return {"role": "assistant", "content": content.strip(),
                    "reasoning_content": reasoning.strip()}
        if parsed.errors:
            raise _Malformed("; ".join(parsed.errors))
        content, calls = parsed.content, parsed.tool_calls
        reasoning = reasoning or parsed.reasoning or ""
    out_calls = []
    for k, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _Malformed(f"tool call {k} has no function name: {call!r}")
        args = fn.get("arguments", "{}")
        try:
            parsed_args = json.loads(args) if isinstance(args, str) else args
        except json.JSONDecodeError as e:
            raise _Malformed(f"tool call {k} ({fn['name']}): arguments are not JSON") from e
        if not isinstance(parsed_args, dict):
            raise _Malformed(f"tool call {k} ({fn['name']}): arguments are not an object")
        out_calls.append({"id": call.get("id") or f"call_{k}", "type": "function",
                          "function": {"name": fn["name"],
                                       "arguments": json.dumps(parsed_args, ensure_ascii=False)}})
    out: dict[str, Any] = {"role": "assistant", "content": content.strip(),
                           "reasoning_content": reasoning.strip()}
    if out_calls:
        out["tool_calls"] = out_calls
    return out


def _action_text(m: dict[str, Any]) -> str:
    calls = m.get("tool_calls") or []
    if not calls:
        return f"final answer: {m.get('content', '')}"
    return "; ".join(f"call {c['function']['name']}({c['function']['arguments']})" for c in calls)


def _parse_rewrite(text: str, n_turns: int) -> list[list[tuple[str, str]]] | None:
    """The rewrite reply as phase blocks per turn, or None if it breaks any rule."""
    text = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    try:
        items = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(items, list) or len(items) != n_turns or not all(isinstance(s, str)
                                                                      for s in items):
        return None
    blocks = [parse_phases(s) for s in items]
    if any(not b for b in blocks):
        return None
    first = [name for name, _ in blocks[0]]
    if first[:2] != ["analysis", "plan"] or blocks[-1][-1][0] != "summary":
        return None
    return blocks


def heuristic_phases(m: dict[str, Any], k: int, n: int) -> list[tuple[str, str]]:
    """Deterministic Agentic-CoT segmentation of one turn's free-form reasoning."""
    paras = [p.strip() for p in re.split(r"\n\s*\n", m.get("reasoning_content") or "") if p.strip()]
    action = _action_text(m)
    phases: list[tuple[str, str]] = []
    if k == 0:
        phases.append(("analysis", paras[0] if paras else f"Task received; next: {action}."))
        phases.append(("plan", "\n".join(paras[1:]) or f"Start with: {action}."))
    elif paras:
        phases.append(("reflection", "\n".join(paras)))
    if m.get("tool_calls"):
        phases.append(("action", action[0].upper() + action[1:] + "."))
    if k == n - 1:
        phases.append(("summary", f"Final answer: {m.get('content', '').strip()}"))
    return phases
