"""The scripted teacher of the tools environment (`tools.ToolsEnv.teach`).

    text = teach(env, task, builder, random.Random(0), mistake=True)

Surface variety: phrasing banks per phase and task kind, plans written as a numbered list or
as prose, reflections that quote what each tool actually returned, and a catalogue of mistakes,
each really executed (or really contradicted by the next observation) before the recovery:

- wrong_tool: an offered tool that does not do the job, called with the step's arguments;
- wrong_argument: a unit name instead of its symbol, a guessed column, a misspelled key,
  from_unit and to_unit swapped;
- stale_observation: a later step fed the value of an earlier observation instead of the one
  it needs (the replayed call shows the difference);
- arithmetic_slip: a mental calculation that the calculator then contradicts;
- premature_answer: an answer given after the first turn of a multi-step task.
"""

from __future__ import annotations

import random
import re
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from youtu.agentic.envs.tools import (_REQUIRED, _UNIT_NAMES, _WEEKDAYS, _date, _fmt, _number,
                                      convert_units)
from youtu.agentic.trajectory import Task

if TYPE_CHECKING:
    from youtu.agentic.envs.tools import ToolsEnv
    from youtu.agentic.teachers import TrajectoryBuilder

_ANALYSIS = {
    "single": ["The request: {prompt} One call should answer it; {needed} fits.",
               "{prompt} This is a single lookup with {needed}.",
               "Asked: {prompt} Of the tools offered ({offered}), only {needed} is needed.",
               "I need one value here. {prompt} I will use {needed} and report what it returns."],
    "parallel": ["{prompt} The parts are independent, so I can issue the calls in one turn.",
                 "Several independent questions: {prompt} No call needs another's result.",
                 "The request: {prompt} I will run the {n} calls side by side with {needed}."],
    "multi_step": ["{prompt} Each step feeds the next, so the calls go one after another.",
                   "The request: {prompt} This is a chain: {needed}, in order.",
                   "Asked: {prompt} I need {n} call(s); later ones use earlier results."],
    "irrelevance": ["The request: {prompt} The offered tools are {offered}.",
                    "{prompt} Let me check whether any of {offered} can do this.",
                    "Asked: {prompt} Tools at hand: {offered}."],
}
_NOT_ABLE = ["None of these tools can do this, so I should not call any of them.",
             "No offered tool covers this request; calling one would only produce noise.",
             "Nothing here fits: {offered} do other things. I will say so."]
_ACTION = {"single": ["{what}.", "Call the tool: {what}.", "{what}, then read the result."],
           "parallel": ["These are independent: {what}, all in one turn.",
                        "Run them together: {what}.", "{what} (in parallel)."],
           "multi_step": ["Next: {what}.", "{what}.", "Step {k}: {what}."]}
_SEEN = ["{tool} returned {value}.", "The result is {value}.", "Got {value} from {tool}.",
         "{tool} says {value}."]
_SUMMARY = ["All steps are done; the answer is {answer}.",
            "Every call succeeded; answer: {answer}.",
            "The results give {answer}.", "Done after {calls} call(s): {answer}."]
_FINAL = ["Done. \\boxed{{{answer}}}", "The answer is \\boxed{{{answer}}}.",
          "\\boxed{{{answer}}}", "Result: \\boxed{{{answer}}}"]


def _plan(task: Task, rng: random.Random) -> str:
    lines = task.meta["plan"]
    if len(lines) > 1 and rng.random() < 0.4:
        words = ["First", "Then", "Then", "Then", "Finally"]
        return " ".join(f"{words[min(i, 3) if i < len(lines) - 1 else 4]}, {p[0].lower()}{p[1:]}."
                        for i, p in enumerate(lines))
    return "\n".join(f"{i + 1}. {p}" for i, p in enumerate(lines))


def _value(obs: str) -> str:
    return obs.strip().splitlines()[-1] if obs.strip() else "(nothing)"


def teach(env: ToolsEnv, task: Task, b: TrajectoryBuilder, rng: random.Random,
          mistake: bool) -> str:
    kind = task.meta["kind"]
    offered = ", ".join(task.meta["tools"])
    needed = sorted({s.tool for s in task.steps})
    fill = {"prompt": task.prompt, "offered": offered, "needed": " and ".join(needed) or "none",
            "n": len(task.steps)}
    b.think("analysis", rng.choice(_ANALYSIS[kind]).format(**fill))
    if kind == "irrelevance":
        b.think("plan", rng.choice(_NOT_ABLE).format(**fill))
        b.think("summary", rng.choice(["No tool applies; I say so instead of calling a tool.",
                                       "I answer without tools: none can help."]))
        return rng.choice(["None of the available tools can do this for you (I only have: "
                           f"{offered}). \\boxed{{none}}",
                           f"I can't do that with {offered}. \\boxed{{none}}",
                           "That is outside what my tools can do. \\boxed{none}"])
    b.think("plan", _plan(task, rng))
    slip = mistake_for(task, rng) if mistake else None
    if slip is not None and slip.get("answer") is not None and env.check(task,
                                                                         slip["answer"]).correct:
        slip["answer"] = None  # the slip happens to land on the right value: nothing to reject
    calls = 0
    premature = None
    for gi, group in enumerate(task.meta["groups"]):
        steps = [task.steps[k] for k in group]
        if premature is not None:  # said before this turn's call: recorded once it is closed
            b.think("action", f"Actually, {premature} is only the first step's result; the task "
                    "asks for more. Continue.")
        if slip is not None and slip["group"] == gi and slip.get("tool"):
            b.think("action", slip["action"], mistake=True)
            obs = b.call(slip["tool"], slip["arguments"], mistake=True)
            calls += 1
            b.mistake(slip["kind"], answer=slip.get("answer"), note=slip["why"])
            b.think("reflection", slip["reflection"].format(obs=_value(obs)[:200]))
        if slip is not None and slip["group"] == gi and not slip.get("tool"):
            b.think("action", slip["action"], mistake=True)  # a thought the next call checks
        what = " and ".join(s.description[0].lower() + s.description[1:] for s in steps)
        b.think("action", rng.choice(_ACTION[kind]).format(what=what, k=gi + 1).capitalize())
        results = b.call_parallel([(s.tool, s.arguments) for s in steps])
        calls += len(steps)
        if premature is not None:
            b.mistake("premature_answer", answer=premature,
                      note="answered after the first step of a chain")
            b.think("reflection", f"Right to continue: {premature} was not the final answer.")
            premature = None
        assert results == [s.result for s in steps], (results, steps)
        seen = " ".join(rng.choice(_SEEN).format(tool=s.tool, value=_value(r))
                        for s, r in zip(steps, results))
        if slip is not None and slip["group"] == gi and not slip.get("tool"):
            b.mistake(slip["kind"], answer=slip.get("answer"), note=slip["why"])
            seen += " " + slip["reflection"].format(obs=_value(results[0]))
        b.think("reflection", seen)
        early = _value(results[0])
        if (slip is not None and slip["kind"] == "premature_answer" and gi == 0
                and len(task.meta["groups"]) > 1 and not env.check(task, early).correct):
            b.think("summary", f"So the answer is {early}.", mistake=True)
            premature = early
    b.think("summary", rng.choice(_SUMMARY).format(answer=task.answer, calls=calls))
    return rng.choice(_FINAL).format(answer=task.answer)


def wrong_tool(task: Task, gi: int, rng: random.Random,
               required: dict[str, list[str]]) -> dict[str, Any] | None:
    """An offered tool that cannot do step `gi`'s job, called with its arguments: one missing
    a required parameter there, so the call visibly fails (and writes nothing)."""
    step = task.steps[task.meta["groups"][gi][0]]
    spare = [t for t in task.meta["tools"] if t not in {s.tool for s in task.steps}
             and not set(required[t]) <= set(step.arguments)]
    if not spare:
        return None
    tool = rng.choice(spare)
    return {"group": gi, "kind": "wrong_tool", "tool": tool, "arguments": step.arguments,
            "action": f"Use {tool} for this.", "why": f"called {tool} instead of {step.tool}",
            "reflection": f"{tool} is the wrong tool here (it returned: {{obs}}); the step needs "
                          f"{step.tool}."}


def mistake_for(task: Task, rng: random.Random) -> dict[str, Any] | None:
    """A controlled mistake drawn from the catalogue (tools_teacher's docstring) among those
    the task allows, or None if it allows none."""
    options: list[dict[str, Any]] = []
    groups = task.meta["groups"]
    for gi, group in enumerate(groups):
        step = task.steps[group[0]]
        a = step.arguments
        if step.tool == "convert_units":
            options.append({"group": gi, "kind": "wrong_argument", "tool": "convert_units",
                            "arguments": {**a, "from_unit": _UNIT_NAMES[a["from_unit"]]},
                            "action": f"Convert {a['value']} {_UNIT_NAMES[a['from_unit']]}.",
                            "why": "unit names must be symbols",
                            "reflection": "The tool refused: {obs}. The unit must be given as "
                            f"its symbol, '{a['from_unit']}'."})
            wrong_value = convert_units(float(a["value"]), a["to_unit"], a["from_unit"])
            if len(group) == 1 and gi == len(groups) - 1 and wrong_value != step.result:
                options.append({
                    "group": gi, "kind": "swapped_arguments", "tool": "convert_units",
                    "arguments": {**a, "from_unit": a["to_unit"], "to_unit": a["from_unit"]},
                    "answer": wrong_value, "why": "from_unit and to_unit were swapped",
                    "action": f"Convert {a['value']} between {a['from_unit']} and {a['to_unit']}.",
                    "reflection": "Got {obs}, but that converts " f"{a['value']} {a['to_unit']} "
                    f"to {a['from_unit']}: I swapped from_unit and to_unit."})
        if step.tool == "sql_query" and "stock" in a["query"]:
            options.append({"group": gi, "kind": "wrong_argument", "tool": "sql_query",
                            "arguments": {"query": a["query"].replace("stock",
                                                                      "quantity_in_stock", 1)},
                            "action": "Query the stock column.", "why": "guessed a column name",
                            "reflection": "The database says: {obs}. The schema in the tool "
                            "description names the column 'stock'."})
        if step.tool == "sql_query" and "customers" in a["query"]:
            options.append({"group": gi, "kind": "wrong_argument", "tool": "sql_query",
                            "arguments": {"query": a["query"].replace("customers", "clients", 1)},
                            "action": "Query the clients table.", "why": "guessed a table name",
                            "reflection": "{obs}: there is no such table; the schema calls it "
                            "'customers'."})
        if step.tool == "kv_get":
            wrong_key = a["key"].replace(":", "_")
            options.append({"group": gi, "kind": "wrong_argument", "tool": "kv_get",
                            "arguments": {"key": wrong_key}, "action": f"Read {wrong_key}.",
                            "why": "misspelled the key", "reflection": "Got {obs}. Keys use ':' "
                            f"as the separator: '{a['key']}'."})
        if step.tool == "convert_time":
            options.append({"group": gi, "kind": "wrong_argument", "tool": "convert_time",
                            "arguments": {**a, "from_tz": a["from_tz"].split("/")[-1]},
                            "action": f"Convert from {a['from_tz'].split('/')[-1]}.",
                            "why": "a city instead of an IANA zone name",
                            "reflection": "{obs}. Zones are IANA names such as "
                            f"'{a['from_tz']}'."})
        if step.tool == "weekday" and gi > 0 and gi == len(groups) - 1:
            dates = re.findall(r"\d{4}-\d{2}-\d{2}", task.prompt)
            if dates and _WEEKDAYS[_date(dates[0]).weekday()] != step.result:
                options.append({"group": gi, "kind": "stale_observation", "tool": "weekday",
                                "arguments": {"date": dates[0]},
                                "action": f"Look up the weekday of {dates[0]}.",
                                "answer": _WEEKDAYS[_date(dates[0]).weekday()],
                                "why": "used the date from the request, not the computed one",
                                "reflection": "{obs} is the weekday of " f"{dates[0]}, the date "
                                "I started from; the previous step gave " f"{a['date']}."})
        if step.tool == "calculator" and len(group) == 1 and gi == len(groups) - 1:
            right = _number(step.result)
            if right is not None:
                slipped = _fmt(Fraction(str(right)) + rng.choice([1, -1, 10]))
                options.append({"group": gi, "kind": "arithmetic_slip", "tool": "",
                                "answer": slipped,
                                "action": f"By hand: {a['expression']} is about {slipped}. "
                                "Check it with the calculator.",
                                "why": "mental arithmetic slip",
                                "reflection": "The calculator gives {obs}, not " f"{slipped}: my "
                                "mental arithmetic slipped."})
        spare = wrong_tool(task, gi, rng, _REQUIRED)
        if spare is not None:
            options.append(spare)
    if len(groups) > 1:
        options.append({"group": -1, "kind": "premature_answer", "tool": "", "why": ""})
    if not options:
        return None
    kinds = sorted({o["kind"] for o in options})  # each kind as likely, whatever its count
    kind = rng.choice(kinds)
    return rng.choice([o for o in options if o["kind"] == kind])
