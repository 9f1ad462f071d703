"""APTBench-style probes generated from our own environments, at held-out seeds.

    specs = generate_probes("runs/tiny/eval/probes", ["math", "tools"], n_items=50)
    scores = run_tasks(lm, specs, "runs/tiny/eval/probes", out, prefix="probe")["scores"]
    scores["probe/math/planning"], scores["probe/math"]

Each environment task (`env.generate(seed, difficulty)`, seeds >= 1,000,000, which synthesis
refuses; the difficulty cycles 1..max with the seed, as in synthesis, so every family spans
every difficulty and task kind: multi-hop research, parallel and multi-step tool calls) comes
with its gold solution steps (description, tool, arguments, result) and plausible wrong answers
(`near_misses`). From them, five kinds of few-shot items in the APTBench formats:

- planning: task, steps so far, 2-5 candidate next steps -> a letter (letter_a_e, equal);
- action: task, steps so far, the next step and its tool -> the call's arguments as one line
  of JSON (first_line, json_equal);
- feedback: task and a proposed final answer, the right one or a near miss (half each) ->
  correct / wrong (correct_wrong, equal);
- tool_select: task, next step, the environment's tools plus distractor tools -> a tool name
  (first_line, equal); only for environments with at least `MIN_SELECT_TOOLS` tools (math has
  one, `calculator`, so every item's answer would be the same name and a constant reply would
  score 100%);
- tool_param: the same plus the chosen tool and one parameter name -> its JSON value
  (first_line, json_equal).

`generate_probes` writes an APTBench-format folder (`data/<env>/<kind>.jsonl`,
`prompts/<env>_<kind>.txt` with two solved examples from other held-out seeds, `tasks.toml`)
and returns the task specs, so the APTBench runner scores probes and the real benchmark with
the same code. Generation is deterministic in (environment version, seed).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from pathlib import Path
from typing import Any

import tomli_w

from youtu.eval.aptbench import TaskSpec

logger = logging.getLogger(__name__)

SHOT_OFFSET = 500_000
"""Few-shot examples come from seeds `seed + SHOT_OFFSET + i`: held out, never an item."""
LETTERS = "ABCDE"

DISTRACTOR_TOOLS = [
    {"name": name, "description": desc, "parameters": {
        "type": "object", "properties": {arg: {"type": "string", "description": arg_desc}},
        "required": [arg]}}
    for name, desc, arg, arg_desc in [
        ("send_email", "Send an email message.", "to", "Recipient address."),
        ("get_weather", "Current weather for a city.", "city", "City name."),
        ("translate_text", "Translate text into English.", "text", "Text to translate."),
        ("play_music", "Play a song by title.", "title", "Song title."),
        ("set_alarm", "Set an alarm clock.", "time", "Time as HH:MM."),
    ]]
"""Tools no environment task needs, so that tool selection is a real choice everywhere."""

MIN_SELECT_TOOLS = 2
"""Fewest tools an environment needs for tool_select items (below it the answer is constant)."""

SPEC = {  # kind -> (max_new_tokens, extraction rule, judge)
    "planning": (10, "letter_a_e", "equal"),
    "action": (96, "first_line", "json_equal"),
    "feedback": (10, "correct_wrong", "equal"),
    "tool_select": (30, "first_line", "equal"),
    "tool_param": (64, "first_line", "json_equal"),
}


def _history(steps: list[Any]) -> str:
    if not steps:
        return "(none yet)"
    lines = []
    for i, s in enumerate(steps, 1):
        call = f" -> {s.tool}({json.dumps(s.arguments, ensure_ascii=False)})" if s.tool else ""
        lines.append(f"{i}. {s.description}{call} -> {s.result}")
    return "\n".join(lines)


def _step_text(step: Any) -> str:
    return f"{step.description} [{step.tool}]" if step.tool else step.description


# Prompt blocks: an item's fields fill the $PLACEHOLDERS$; a solved shot appends its answer.
BLOCKS = {
    "planning": ("Task: $TASK$\nSteps taken so far:\n$HISTORY$\nChoose the correct next step. "
                 "Put your answer after \"(\".\nChoices: $CHOICES$\nThe next step is ("),
    "action": ("Task: $TASK$\nSteps taken so far:\n$HISTORY$\nNext step: $STEP$\nWrite the "
               "arguments of the `$TOOL$` call as one line of JSON.\nArguments:\n```\n"),
    "feedback": ("Task: $TASK$\nProposed final answer: $PROPOSED$\nJudge whether the answer is "
                 "correct or wrong. If correct, just answer \"##correct##\"; if wrong, just "
                 "answer \"##wrong##\".\nThe judgement result is ##"),
    "tool_select": ("Request: Select the correct tool function name from the given tool function "
                    "list according to user query.\nUser query: $TASK$ Next step: $STEP$\nTool "
                    "functions: $FUNCS$\nThe selected tool name:\n```\n"),
    "tool_param": ("Request: Write the correct parameters to pass according to user query and "
                   "selected function.\nUser query: $TASK$ Next step: $STEP$\nTool functions: "
                   "$FUNCS$\nThe selected tool name is $TOOL$\nInput value for parameter "
                   "`$PARAM$` should be:\n```\n"),
}
SOLVED = {"planning": "{})\n\n", "action": "{}\n```\n\n", "feedback": "{}##\n\n",
          "tool_select": "{}\n```\n\n", "tool_param": "{}\n```\n\n"}


def _fill(kind: str, item: dict[str, Any]) -> str:
    text = BLOCKS[kind]
    for key, value in item["fields"].items():
        text = text.replace(f"${key}$", value)
    return text


def difficulty_of(env: Any, seed: int) -> int:
    """The difficulty probes use for `seed`: 1..env.max_difficulty in turn."""
    return 1 + seed % env.max_difficulty


def make_item(env: Any, kind: str, seed: int, pool: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One probe item of `kind` from the task of `seed`, or None if that task cannot give one.

    Args:
        env: The environment.
        kind: A key of `BLOCKS`.
        seed: Environment seed (>= 1,000,000); it also sets the difficulty (`difficulty_of`).
        pool: Function schemas offered besides the environment's own (distractors).
    """
    level = difficulty_of(env, seed)
    task = env.generate(seed, level)
    rng = random.Random(f"{env.name}/{kind}/{seed}")
    tool_steps = [i for i, s in enumerate(task.steps) if s.tool]
    fields = {"TASK": task.prompt}
    if kind == "feedback":
        wrong = rng.random() < 0.5
        if wrong and not task.near_misses:
            return None
        fields["PROPOSED"] = rng.choice(task.near_misses) if wrong else task.answer
        answer = "wrong" if wrong else "correct"
    elif kind == "planning":
        if not task.steps:
            return None
        k = rng.randrange(len(task.steps))
        gold = _step_text(task.steps[k])
        others = [_step_text(s) for i, s in enumerate(task.steps) if i != k]
        for other_seed in (seed + 1, seed + 2, seed + 3):  # steps of other tasks
            others += [_step_text(s) for s in env.generate(other_seed, level).steps]
        others = [o for o in dict.fromkeys(others) if o != gold]
        choices = rng.sample(others, min(4, len(others))) + [gold]
        rng.shuffle(choices)
        fields["HISTORY"] = _history(task.steps[:k])
        fields["CHOICES"] = "; ".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))
        answer = LETTERS[choices.index(gold)]
    else:
        if not tool_steps:
            return None
        # a tool first, then one of its steps: tasks that open five documents after one search
        # would otherwise make 'open' the answer to most tool_select items
        tool = rng.choice(sorted({task.steps[i].tool for i in tool_steps}))
        k = rng.choice([i for i in tool_steps if task.steps[i].tool == tool])
        step = task.steps[k]
        fields.update(HISTORY=_history(task.steps[:k]), STEP=step.description, TOOL=step.tool)
        if kind == "action":
            answer = json.dumps(step.arguments, ensure_ascii=False)
        else:
            own = [t["function"] for t in env.tools_for(task)]
            names = {t["name"] for t in own}
            funcs = own + rng.sample([t for t in pool if t["name"] not in names],
                                     min(3, len([t for t in pool if t["name"] not in names])))
            rng.shuffle(funcs)
            fields["FUNCS"] = json.dumps(funcs, ensure_ascii=False)
            if kind == "tool_select":
                del fields["TOOL"]  # the answer
                answer = step.tool
            else:
                if not step.arguments:
                    return None
                param = rng.choice(sorted(step.arguments))
                fields["PARAM"] = param
                answer = json.dumps(step.arguments[param], ensure_ascii=False)
    return {"uuid": f"{env.name}-{kind}-{seed}", "fields": fields, "answer": answer,
            "difficulty": level, "task_kind": task.meta.get("kind", task.meta.get("fact", ""))}


def _items(env: Any, kind: str, start: int, n: int, pool: list[dict[str, Any]]) -> list[dict]:
    items, seed = [], start
    while len(items) < n:
        if seed - start > 20 * n + 100:
            raise ValueError(f"environment {env.name!r} yields no {kind} probes (tried seeds "
                             f"{start}..{seed})")
        item = make_item(env, kind, seed, pool)
        if item is not None:
            items.append(item)
        seed += 1
    return items


def generate_probes(out_dir: str | Path, envs: dict[str, Any] | list[str], kinds: list[str],
                    n_items: int, seed: int = 1_000_000, shots: int = 2) -> list[TaskSpec]:
    """Write probe items, prompts and `tasks.toml` under `out_dir`; return the task specs.

    Args:
        out_dir: The probe benchmark folder (the runner's root).
        envs: Environments by name, or names in `youtu.agentic.envs.ENVIRONMENTS`.
        kinds: Probe kinds (keys of `BLOCKS`).
        n_items: Items per (environment, kind).
        seed: First held-out seed.
        shots: Solved examples at the top of each prompt.
    """
    if seed < 1_000_000:
        raise ValueError(f"probe seeds must be >= 1,000,000 (held out from synthesis), got {seed}")
    if isinstance(envs, list):
        from youtu.agentic.envs import ENVIRONMENTS

        missing = [e for e in envs if e not in ENVIRONMENTS]
        if missing:
            logger.warning("probes: environments %s are not available (have %s)", missing,
                           sorted(ENVIRONMENTS))
        envs = {e: ENVIRONMENTS[e] for e in envs if e in ENVIRONMENTS}
    out = Path(out_dir)
    all_tools = [t["function"] for env in envs.values() for t in env.tools]
    specs = []
    for name, env in envs.items():
        pool = DISTRACTOR_TOOLS + [t for t in all_tools
                                   if t["name"] not in {x["function"]["name"] for x in env.tools}]
        for kind in kinds:
            if kind == "tool_select" and len(env.tools) < MIN_SELECT_TOOLS:
                logger.info("probes: no %s/tool_select: %d tool(s), the answer would be constant",
                            name, len(env.tools))
                continue
            shot_items = _items(env, kind, seed + SHOT_OFFSET, shots, pool)
            template = "".join(_fill(kind, it) + SOLVED[kind].format(it["answer"])
                               for it in shot_items) + BLOCKS[kind]
            items = _items(env, kind, seed, n_items, pool)
            data = out / "data" / name / f"{kind}.jsonl"
            data.parent.mkdir(parents=True, exist_ok=True)
            data.write_text("".join(json.dumps({"uuid": it["uuid"], **it["fields"],
                                                "answer": it["answer"],
                                                "difficulty": it["difficulty"],
                                                "task_kind": it["task_kind"]}, ensure_ascii=False)
                                    + "\n" for it in items))
            prompt = out / "prompts" / f"{name}_{kind}.txt"
            prompt.parent.mkdir(parents=True, exist_ok=True)
            prompt.write_text(template)
            new_tokens, rule, judge = SPEC[kind]
            fields = {f"${k}$": k for k in items[0]["fields"]}
            specs.append(TaskSpec(name=kind, category=name, data=str(data.relative_to(out)),
                                  prompt=str(prompt.relative_to(out)), fields=fields,
                                  max_new_tokens=new_tokens, extract=rule, answer="answer",
                                  judge=judge))
    (out / "tasks.toml").write_text(tomli_w.dumps({"task": [dataclasses.asdict(s)
                                                            for s in specs]}))
    return specs
