"""Agentic cloze: multiple choice by log-likelihood over held-out environment tasks, in the exact
chat/tool format of agentic mid-training.

    items = build_items(("math", "tools"), ("action", "tool", "args", "answer"), n_items=20)
    res = run_cloze(lm, items)
    res["scores"]["cloze/math/action"], res["scores"]["cloze/math"], res["scores"]["cloze"]
    res["chance"]["cloze/math/action"]                      # 0.25

Why: a base model of a few million parameters never writes a well-formed letter, JSON line or
`\\boxed{}` answer, so the generation-based APTBench items and probes score 0% with or without
agentic mid-training. Comparing the log-likelihood of a few candidate continuations (lm-eval's
`acc` / `acc_norm`, the way HellaSwag or ARC score base models) registers what such a model has
learned long before it can generate it. The items are APTBench's action, tool-selection,
parameter and answer questions, asked in the format the model was trained on instead of a
templated prompt.

Items. For each environment and held-out seed `seed + i` (default seed 2,000,000: synthesis uses
seeds below 1,000,000, the probes `[probe_seed, probe_seed + 1,000,000)`; difficulty cycles
1..max as in synthesis), the scripted teacher's gold trajectory without injected mistakes
(`env.solve(task, rng, mistake_rate=0.0)`) is rendered with `render_chat(messages, tools,
enable_thinking=True)`, as `youtu.agentic.render.render_text` renders mid-training text.

Step kinds ask at one tool call of the trajectory, chosen at random per seed (one call is
changed in turns with parallel calls). Context = the conversation up to that assistant turn and
its own thinking (`<|Assistant|><think>...</think>`: the plan naming the next step, as
APTBench's action items give "Next step: ..."); candidates = the rest of the turn
(`\\n\\n<tool_call>...</tool_call><|end_of_text|>`), the gold calls against:

- action: one of each distractor kind below (spares fill in where one is missing);
- tool: 3 wrong tools with the gold arguments (other tools offered for the task first, then
  tools the task does not offer); only for environments with at least
  `youtu.eval.probes.MIN_SELECT_TOOLS` tools (math offers one, so its gold tool would be the
  same on every item and a model preferring that name would score 100%);
- args: 3 near-miss arguments for the gold tool (another call of the same tool in this
  trajectory: the right call at the wrong moment; then a value the argument takes in other
  tasks; a changed digit, an off-by-one, a dropped word); asked at the first call, in the same
  random order, that has 3;
- (in action only) other_task: a gold step of another task of the environment, at the same
  stage of its solution.

The answer kind asks at the assistant turn that gives the final answer (the `\\boxed{}` reply;
code: the `write_file` of the fixed source). Context = the conversation up to its
`<|Assistant|>`; candidates = the whole turn (thinking, reply, calls, `<|end_of_text|>`) with the
answer as given vs. replaced everywhere in the turn by up to 3 of `task.near_misses` (sign slips,
off-by-one, distractor entities, the unfixed code), padded with other tasks' answers to 4.

Candidates are shuffled per item (deterministically) and every item has 4, so chance is 25%.
Contexts longer than the token budget (the model's max_length, or `max_tokens`) lose their
oldest turns (an assistant turn with its tool results) first; system prompt, tools and task stay
unless they alone exceed the budget (then their first lines go).

Scoring: one batched `lm.loglikelihood` call over every (context, candidate) pair; items asked
at the same point share their context, which the local backend computes once. The headline
accuracy (`cloze/<env>/<kind>`) is `acc_norm`: the share of items whose gold candidate has the
highest log-likelihood per UTF-8 byte of the candidate (ties go to the first candidate, as
numpy's argmax). `acc` (highest summed log-likelihood), the mean probability of gold among the
candidates (softmax of the sums) and how often gold beats each kind of distractor (pairwise, per
byte) are in the details. `cloze/<env>` is the mean over kinds, `cloze` the mean over
environments; chance rates are aggregated the same way.
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from youtu.eval.config import CLOZE_KINDS
from youtu.eval.harness import LM
from youtu.eval.probes import MIN_SELECT_TOOLS
from youtu.tokenizer.chat import ASSISTANT, BOS, EOS, render_chat

SEED = 2_000_000
"""Default first seed: held out from synthesis (< 1,000,000) and from the probes (1,000,000+)."""
OTHER_OFFSET = 500_000
"""Distractor steps and answers come from tasks `seed + OTHER_OFFSET + j`: never an item."""
N_CANDIDATES = 4
STEP_KINDS = {"action": "", "tool": "wrong_tool", "args": "near_args"}
"""Kinds asked at a tool-calling turn -> the one distractor kind they use ('' = all three)."""


@dataclass(frozen=True)
class ClozeItem:
    """One multiple-choice item: `head + turns + tail` is the context, then one candidate."""

    id: str
    env: str
    kind: str
    seed: int
    head: str
    """System prompt, tools block and task, rendered (starts with the BOS text)."""
    turns: tuple[str, ...]
    """Earlier turns, oldest first: an assistant turn with its tool results, rendered."""
    tail: str
    """The open assistant turn up to where the candidates start."""
    candidates: tuple[str, ...]
    gold: int
    sources: tuple[str, ...]
    """What each candidate is: gold, wrong_tool, near_args, other_task, near_miss, other_answer."""

    def context(self, drop: int = 0) -> str:
        """The context without the `drop` oldest turns."""
        return self.head + "".join(self.turns[drop:]) + self.tail


# ---------------------------------------------------------------------------------------------
# building items


def _render(messages: Sequence[dict], tools: Sequence[dict]) -> str:
    return render_chat(messages, tools=list(tools) or None, enable_thinking=True)


@functools.lru_cache(maxsize=4096)
def _trajectory(env_name: str, seed: int, difficulty: int) -> Any:
    """The scripted teacher's trajectory without mistakes (None if it did not verify)."""
    from youtu.agentic.envs import ENVIRONMENTS

    env = ENVIRONMENTS[env_name]
    task = env.generate(seed, difficulty)
    traj = env.solve(task, random.Random(f"cloze/{env_name}/{seed}"), mistake_rate=0.0)
    return traj if traj.outcome.verified else None


def _calls(msg: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in msg.get("tool_calls") or []]


def _with_calls(msg: dict[str, Any], calls: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    return {**msg, "tool_calls": [
        {"id": f"call_{i}", "type": "function",
         "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}}
        for i, (name, args) in enumerate(calls)]}


def _perturb(value: Any, pool: list[Any], rng: random.Random) -> list[Any]:
    """Near misses of one argument value, best first: other values the same argument takes in
    this or other tasks, then a changed digit, an off-by-one, a dropped word."""
    out = [json.loads(v) for v in sorted({json.dumps(v) for v in pool
                                          if v != value and type(v) is type(value)})]
    rng.shuffle(out)
    if isinstance(value, bool):
        out.append(not value)
    elif isinstance(value, int):
        out += [value + 1, value - 1]
    elif isinstance(value, float):
        out += [round(value * 10, 6), round(value + 1, 6)]
    elif isinstance(value, str) and value:
        digits = [i for i, ch in enumerate(value) if ch.isdigit()]
        for i in rng.sample(digits, min(2, len(digits))):
            out.append(value[:i] + str((int(value[i]) + rng.randrange(1, 10)) % 10)
                       + value[i + 1:])
        words = value.split()
        if len(words) > 1:
            out.append(" ".join(words[:-1]))
    return out


def _foreign_tools(env_name: str) -> list[str]:
    from youtu.agentic.envs import ENVIRONMENTS
    from youtu.eval.probes import DISTRACTOR_TOOLS

    return sorted({t["function"]["name"] for name, env in ENVIRONMENTS.items()
                   if name != env_name for t in env.tools}
                  | {t["name"] for t in DISTRACTOR_TOOLS})


def _step_variants(traj: Any, k: int, j: int, others: list[Any], rng: random.Random
                   ) -> dict[str, list[list[tuple[str, dict[str, Any]]]]]:
    """Wrong versions of the calls of assistant turn `k` of `traj` (call `j` changes), best
    first, by kind: `wrong_tool` (same arguments), `near_args` (same tool) and `other_task` (a
    gold step of `others[0]`; `others` are other Tasks of the environment)."""
    msgs = traj.messages
    gold = _calls(msgs[k])
    name, args = gold[j]

    def swap(call: tuple[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        return gold[:j] + [call] + gold[j + 1:]

    offered = sorted({t["function"]["name"] for t in traj.tools} - {name})
    wrong = rng.sample(offered, len(offered)) + rng.sample(_foreign_tools(traj.domain), 3)
    steps = [i for i, m in enumerate(msgs) if m["role"] == "assistant" and m.get("tool_calls")]
    near = [a for i in steps for n, a in _calls(msgs[i]) if n == name and a != args]
    rng.shuffle(near)  # another call of the same tool in this trajectory: the wrong moment
    theirs = [[(s.tool, s.arguments) for s in t.steps if s.tool] for t in others]
    values = defaultdict(list)  # (tool, argument) -> values seen in this and the other tasks
    for n, a in [c for i in steps for c in _calls(msgs[i])] + [c for t in theirs for c in t]:
        for key, v in a.items():
            values[(n, key)].append(v)
    for key in rng.sample(sorted(args), len(args)):
        near += [{**args, key: v} for v in _perturb(args[key], values[(name, key)], rng)]
    stage = sum(len(_calls(msgs[i])) for i in steps if i < k)  # the other task's step at the
    by_stage = sorted(range(len(theirs[0])), key=lambda x: (abs(x - stage), x))  # same stage
    variants = {"wrong_tool": [swap((w, args)) for w in wrong],
                "near_args": [swap((name, a)) for a in near],
                "other_task": [swap(theirs[0][x]) for x in by_stage]}
    # no call twice in a turn: a repeated call is wrong for a reason a model of any skill sees
    # (and tiny models prefer repeated text: code/tools action items fell below chance)
    return {kind: [calls for calls in v if len({json.dumps(c, sort_keys=True) for c in calls})
                   == len(calls)] for kind, v in variants.items()}


def _answer_pattern(answer: str) -> re.Pattern[str]:
    """`answer` as a whole token: '23' does not match inside 'd0231' or '23.5'."""
    pattern = re.escape(answer)
    if re.match(r"\w", answer):
        pattern = r"(?<![\w.])" + pattern
    if re.search(r"\w$", answer):
        pattern += r"(?!\w|\.\d)"
    return re.compile(pattern)


def _texts(msg: dict[str, Any]) -> list[str]:
    """The texts of an assistant message an answer can appear in: content, reasoning and the
    string arguments of its calls."""
    return [msg.get("content") or "", msg.get("reasoning_content") or ""] + [
        v for _, a in _calls(msg) for v in a.values() if isinstance(v, str)]


def _replace_answer(msg: dict[str, Any], answer: str, new: str) -> dict[str, Any]:
    """`msg` with `answer` replaced by `new` in its text and string arguments."""
    pattern = _answer_pattern(answer)

    def sub(text: str) -> str:
        return pattern.sub(lambda _: new, text)

    out = {**msg, "content": sub(msg.get("content") or ""),
           "reasoning_content": sub(msg.get("reasoning_content") or "")}
    if msg.get("tool_calls"):
        out = _with_calls(out, [(n, {k: sub(v) if isinstance(v, str) else v for k, v in a.items()})
                                for n, a in _calls(msg)])
    return out


def _pieces(traj: Any, k: int) -> tuple[str, tuple[str, ...], str]:
    """(head, earlier turns, rendered conversation before message k) of a trajectory."""
    msgs, tools = traj.messages, traj.tools
    first = next(i for i, m in enumerate(msgs) if m["role"] == "user") + 1
    head = _render(msgs[:first], tools)
    bounds = sorted({first, k} | {i for i in range(first, k) if msgs[i]["role"] == "assistant"})
    turns, before = [], head
    for b in bounds[1:]:
        text = _render(msgs[:b], tools)
        assert text.startswith(before), "chat rendering must be prefix-stable across turns"
        turns.append(text[len(before):])
        before = text
    return head, tuple(turns), before


def _item(env_name: str, kind: str, seed: int, traj: Any, k: int, tail: str,
          variants: list[tuple[str, dict[str, Any]]], rng: random.Random) -> ClozeItem | None:
    """An item from (source, assistant message) variants of turn `k`, gold first; None when
    fewer than N_CANDIDATES distinct candidates come out."""
    head, turns, before = _pieces(traj, k)
    cands: dict[str, str] = {}
    for source, msg in variants:
        text = _render(traj.messages[:k] + [msg], traj.tools)
        assert text.startswith(before + tail), "the candidate must continue the context"
        cands.setdefault(text[len(before) + len(tail):], source)
        if len(cands) == N_CANDIDATES:
            break
    if len(cands) < N_CANDIDATES:
        return None
    order = list(cands.items())
    gold_text = order[0][0]
    rng.shuffle(order)
    return ClozeItem(id=f"{env_name}-{kind}-{seed}", env=env_name, kind=kind, seed=seed,
                     head=head, turns=turns, tail=tail, candidates=tuple(t for t, _ in order),
                     gold=[t for t, _ in order].index(gold_text),
                     sources=tuple(s for _, s in order))


def make_item(env_name: str, kind: str, seed: int, difficulty: int = 1) -> ClozeItem | None:
    """The `kind` item of the task of `seed`, or None when that task cannot give one.

    Args:
        env_name: A key of `youtu.agentic.envs.ENVIRONMENTS`.
        kind: One of CLOZE_KINDS.
        seed: Environment seed (held out: >= 1,000,000).
        difficulty: Task difficulty.
    """
    from youtu.agentic.envs import ENVIRONMENTS

    traj = _trajectory(env_name, seed, difficulty)
    if traj is None:
        return None
    rng = random.Random(f"cloze/{env_name}/{kind}/{seed}")
    msgs, task = traj.messages, traj.task
    if kind in STEP_KINDS:
        calls = [(i, j) for i, m in enumerate(msgs) if m["role"] == "assistant"
                 for j in range(len(m.get("tool_calls") or []))]
        if not calls:
            return None
        others = [ENVIRONMENTS[env_name].generate(seed + OTHER_OFFSET + x, difficulty)
                  for x in range(3)]
        # action and tool items of a seed ask at the same call, so they share one context
        # (scored once); args items at the first call, from there on, with enough near misses
        order = random.Random(f"cloze/{env_name}/turn/{seed}").sample(calls, len(calls))
        for k, j in order if kind == "args" else order[:1]:
            by_kind = _step_variants(traj, k, j, others, rng)
            if kind == "action":  # one of each kind first, then spares
                wrong = [(s, v[0]) for s, v in by_kind.items() if v]
                wrong += [(s, c) for s, v in by_kind.items() for c in v[1:]]
            else:
                wrong = [(STEP_KINDS[kind], c) for c in by_kind[STEP_KINDS[kind]]]
            open_turn = _render(msgs[:k] + [{**msgs[k], "content": "", "tool_calls": []}],
                                traj.tools)
            tail = open_turn[len(_render(msgs[:k], traj.tools)):]
            assert tail.endswith(EOS)
            variants = [("gold", msgs[k])] + [(s, _with_calls(msgs[k], c)) for s, c in wrong]
            # the context ends on `</think>`: its "\n\n" opens every candidate, so the boundary
            # is a special token (no whitespace for the harness to move across it)
            tail = tail.removesuffix(EOS).rstrip()
            item = _item(env_name, kind, seed, traj, k, tail, variants, rng)
            if item is not None:
                return item
        return None
    if kind != "answer":
        raise ValueError(f"cloze kind must be one of {', '.join(CLOZE_KINDS)}, got {kind!r}")
    pattern = _answer_pattern(task.answer)
    k = next((i for i in range(len(msgs) - 1, -1, -1) if msgs[i]["role"] == "assistant"
              and any(pattern.search(t) for t in _texts(msgs[i]))), None)
    if k is None:
        return None
    misses = [m for m in dict.fromkeys(task.near_misses) if m != task.answer]
    wrong = [("near_miss", m) for m in rng.sample(misses, min(len(misses), N_CANDIDATES - 1))]
    for j in range(8):  # other tasks' answers fill up tasks with fewer near misses
        if len(wrong) == N_CANDIDATES - 1:
            break
        answer = ENVIRONMENTS[env_name].generate(seed + OTHER_OFFSET + j, difficulty).answer
        if answer not in {task.answer, *misses, *(a for _, a in wrong)}:
            wrong.append(("other_answer", answer))
    variants = [("gold", msgs[k])] + [(s, _replace_answer(msgs[k], task.answer, a))
                                      for s, a in wrong]
    return _item(env_name, kind, seed, traj, k, ASSISTANT, variants, rng)


SCAN_CHUNK = 8
"""Seeds per job when items are built in worker processes (a job asks every kind at each of
its seeds, so the kinds share the seed's trajectory as in the serial scan)."""


def item_workers() -> int:
    """Processes for building items: `YOUTU_EVAL_WORKERS`, else this machine's cores when it
    has at least 4 (on fewer, starting the processes costs about what they save)."""
    if os.environ.get("YOUTU_EVAL_WORKERS"):
        return max(1, int(os.environ["YOUTU_EVAL_WORKERS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores if (cores or 1) >= 4 else 1


def _scan(env_name: str, kinds: tuple[str, ...], seed: int, offsets: range, levels: int
          ) -> list[tuple[str, int, ClozeItem | None]]:
    """make_item for every kind at seeds `seed + i`, i in `offsets` (a worker's job)."""
    return [(kind, i, make_item(env_name, kind, seed + i, 1 + i % levels))
            for i in offsets for kind in kinds]


def _prefetch(jobs: dict[str, tuple[str, ...]], levels: dict[str, int], n_items: int, seed: int,
              workers: int) -> dict[tuple[str, str, int], ClozeItem | None]:
    """The items at the first seeds each (environment, kind) scans, made by `workers`
    processes: the seeds up to n_items * 1.25 + 4 (most kinds find their items there; the
    serial scan makes any further ones itself)."""
    import concurrent.futures as cf
    import multiprocessing

    from youtu.errors import RunError

    span = n_items + n_items // 4 + 4
    chunks = [(name, kinds, seed, range(a, min(a + SCAN_CHUNK, span)), levels[name])
              for name, kinds in jobs.items() if kinds for a in range(0, span, SCAN_CHUNK)]
    found: dict[tuple[str, str, int], ClozeItem | None] = {}
    # forkserver, not fork: inside `youtu run` this process holds CUDA and threads
    ctx = multiprocessing.get_context("forkserver")
    with cf.ProcessPoolExecutor(min(workers, len(chunks)), mp_context=ctx) as pool:
        try:
            for (name, *_), made in zip(chunks, pool.map(_scan, *zip(*chunks))):
                for kind, i, item in made:
                    found[(name, kind, i)] = item
        except cf.process.BrokenProcessPool as e:
            raise RunError(f"a process building cloze items died ({e}; most often out of "
                           "memory): re-run with YOUTU_EVAL_WORKERS=1 to build them in this "
                           "one") from e
    return found


@functools.lru_cache(maxsize=8)
def build_items(envs: tuple[str, ...], kinds: tuple[str, ...], n_items: int,
                seed: int = SEED, workers: int | None = None) -> tuple[ClozeItem, ...]:
    """`n_items` items per (environment, kind) from seeds `seed, seed + 1, ...` (those whose
    task cannot give an item are skipped; the tool kind is skipped for environments with fewer
    than MIN_SELECT_TOOLS tools). Deterministic, whatever `workers`; cached per process, so
    evaluating several checkpoints builds the items once.

    Args:
        envs: Environment names (keys of `youtu.agentic.envs.ENVIRONMENTS`).
        kinds: Item kinds (subset of CLOZE_KINDS).
        n_items: Items per (environment, kind).
        seed: First held-out seed (>= 1,000,000).
        workers: Processes that make the items of the first seeds (the code environment's
            trajectories run in the sandbox: ~16 s for the small config's 750 items in one
            process on the H100 machine); None = `item_workers()`, 1 = this process only.
    """
    from youtu.agentic.envs import ENVIRONMENTS

    if seed < 1_000_000:
        raise ValueError(f"cloze seeds must be >= 1,000,000 (held out from synthesis), got {seed}")
    unknown = [e for e in envs if e not in ENVIRONMENTS] + [k for k in kinds
                                                            if k not in CLOZE_KINDS]
    if unknown:
        raise ValueError(f"cloze: unknown environment(s) or kind(s) {unknown}; environments: "
                         f"{sorted(ENVIRONMENTS)}, kinds: {list(CLOZE_KINDS)}")
    jobs = {name: tuple(k for k in kinds if k != "tool"
                        or len(ENVIRONMENTS[name].tools) >= MIN_SELECT_TOOLS) for name in envs}
    levels = {name: ENVIRONMENTS[name].max_difficulty for name in envs}
    workers = item_workers() if workers is None else workers
    found = _prefetch(jobs, levels, n_items, seed, workers) if workers > 1 else {}
    items = []
    for name in envs:
        for kind in jobs[name]:
            hits, i = 0, 0
            while hits < n_items:
                if i > 20 * n_items + 100:
                    raise ValueError(f"environment {name!r} yields no cloze {kind} items (tried "
                                     f"seeds {seed}..{seed + i})")
                key = (name, kind, i)
                item = (found[key] if key in found
                        else make_item(name, kind, seed + i, 1 + i % levels[name]))
                if item is not None:
                    items.append(item)
                    hits += 1
                i += 1
    return tuple(items)


# ---------------------------------------------------------------------------------------------
# scoring


def fit_context(lm: LM, item: ClozeItem, max_tokens: int = 0, reserve: int | None = None,
                count: Callable[[str], int] | None = None) -> tuple[str, int]:
    """(context, turns dropped) for `lm`: BOS + context + `reserve` tokens (default: the
    longest candidate) fit the budget (`max_tokens`, 0 = the model's max_length; at most that).

    The oldest turns go first. If system prompt, tools and task alone are still too long, their
    first lines go too, the task's last line and the open turn always stay (a model trained on
    sequences shorter than a trajectory saw it in such windows). Backends without a tokenizer
    get the whole context. The BOS text is left out when the backend adds BOS (`lm.adds_bos`).
    `count(text)` = its length in tokens (default: `len(lm.encode(text))`)."""
    strip = lm.adds_bos
    head = item.head.removeprefix(BOS) if strip else item.head
    encode = getattr(lm, "encode", None)
    if encode is None:
        return item.context().removeprefix(BOS) if strip else item.context(), 0
    count = count or (lambda text: len(encode(text)))
    budget = min(lm.max_length, max_tokens or lm.max_length)
    if reserve is None:
        reserve = max(count(c) for c in item.candidates)
    fixed = int(strip) + count(item.tail) + reserve
    turns = [count(t) for t in item.turns]
    drop, n_head = 0, count(head)
    while drop < len(turns) and fixed + n_head + sum(turns[drop:]) > budget:
        drop += 1
    if fixed + n_head > budget:
        lines = head.splitlines(keepends=True)
        lo, hi = 0, len(lines) - 1  # the fewest first lines to cut
        while lo < hi:
            mid = (lo + hi) // 2
            if fixed + count("".join(lines[mid:])) <= budget:
                hi = mid
            else:
                lo = mid + 1
        head = "".join(lines[lo:])
    return head + "".join(item.turns[drop:]) + item.tail, drop


def _argmax(xs: Sequence[float]) -> int:
    return max(range(len(xs)), key=lambda i: (xs[i], -i))


def run_cloze(lm: LM, items: Sequence[ClozeItem], max_tokens: int = 0) -> dict[str, Any]:
    """Score `items` with `lm.loglikelihood`.

    Args:
        lm: The model (any harness backend with log-likelihoods).
        items: From `build_items`.
        max_tokens: Token budget of context + candidate (0 = the model's max_length).

    Returns:
        {'scores': {'cloze/<env>/<kind>', 'cloze/<env>', 'cloze': acc_norm}, 'chance': same keys,
        'tasks': {'<env>/<kind>': {acc_norm, acc, gold_prob, chance, items, beats}}, 'rows'}.
    """
    # items asked at the same point (action, tool, args at one turn) get the same context, so
    # the backend computes it once: room is reserved for the longest candidate of them all
    reserve: dict[tuple[str, ...], int] = defaultdict(int)
    encode = getattr(lm, "encode", None)
    lengths: dict[str, int] = {}
    if hasattr(lm, "encode_many"):  # the lengths of every text fit_context asks, in one call
        texts = list(dict.fromkeys(t for it in items for t in (
            it.head, it.head.removeprefix(BOS), *it.turns, it.tail, *it.candidates)))
        lengths = dict(zip(texts, map(len, lm.encode_many(texts))))
    count = functools.lru_cache(maxsize=None)(  # texts recur
        lambda text: lengths[text] if text in lengths else len(encode(text)))
    for it in items:
        key = (it.head, *it.turns, it.tail)
        if encode is not None:
            reserve[key] = max(reserve[key], *(count(c) for c in it.candidates))
    contexts = [fit_context(lm, it, max_tokens, reserve.get((it.head, *it.turns, it.tail)),
                            count if encode is not None else None) for it in items]
    requests = [(ctx, cand) for (ctx, _), it in zip(contexts, items) for cand in it.candidates]
    results = iter(lm.loglikelihood(requests))
    rows, by_task = [], defaultdict(list)
    for it, (ctx, dropped) in zip(items, contexts):
        sums = [next(results).logprob for _ in it.candidates]
        norm = [lp / max(len(c.encode("utf-8")), 1) for lp, c in zip(sums, it.candidates)]
        top = max(sums)
        probs = [math.exp(s - top) for s in sums]
        row = {"id": it.id, "env": it.env, "kind": it.kind, "seed": it.seed, "gold": it.gold,
               "sources": list(it.sources), "logprob": sums, "logprob_per_byte": norm,
               "pred": _argmax(norm), "pred_sum": _argmax(sums),
               "gold_prob": probs[it.gold] / sum(probs), "chance": 1 / len(it.candidates),
               "dropped_turns": dropped, "context_chars": len(ctx),
               "candidates": list(it.candidates)}
        row["correct"], row["correct_sum"] = row["pred"] == it.gold, row["pred_sum"] == it.gold
        row["beats"] = {s: norm[it.gold] > norm[i] for i, s in enumerate(it.sources)
                        if i != it.gold}
        rows.append(row)
        by_task[(it.env, it.kind)].append(row)
    tasks: dict[str, dict[str, Any]] = {}
    for (env, kind), rs in by_task.items():
        beats = defaultdict(list)
        for r in rs:
            for source, won in r["beats"].items():
                beats[source].append(won)
        tasks[f"{env}/{kind}"] = {
            "acc_norm": statistics.fmean(r["correct"] for r in rs),
            "acc": statistics.fmean(r["correct_sum"] for r in rs),
            "gold_prob": statistics.fmean(r["gold_prob"] for r in rs),
            "chance": statistics.fmean(r["chance"] for r in rs), "items": len(rs),
            "dropped_turns": sum(r["dropped_turns"] for r in rs),
            "beats": {s: statistics.fmean(v) for s, v in sorted(beats.items())}}
    scores, chance = _aggregate(tasks, "acc_norm"), _aggregate(tasks, "chance")
    return {"scores": scores, "chance": chance, "tasks": tasks, "rows": rows}


def _aggregate(tasks: dict[str, dict[str, Any]], field: str) -> dict[str, float]:
    """Per task, per environment (mean over kinds) and overall (mean over environments)."""
    out = {f"cloze/{key}": t[field] for key, t in tasks.items()}
    envs = defaultdict(list)
    for key, t in tasks.items():
        envs[key.split("/")[0]].append(t[field])
    out.update({f"cloze/{env}": statistics.fmean(v) for env, v in envs.items()})
    if envs:
        out["cloze"] = statistics.fmean(out[f"cloze/{env}"] for env in envs)
    return out
