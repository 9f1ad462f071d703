"""Tool-use environment: a registry of real tools, single / parallel / multi-step calls and
irrelevance cases, verified by re-executing the calls and comparing results and state.

    env = ToolsEnv()
    task = env.generate(seed=3, difficulty=2)
    with env.episode(task) as state:                      # a fresh SQLite db + key-value store
        env.call_tool(task, state, "sql_query", {"query": "SELECT COUNT(*) FROM products"})

Tools: calculator, convert_units, date_add, date_diff, weekday, sql_query (an in-memory SQLite
shop database per episode, read/write, no schema changes), kv_get / kv_set / kv_delete /
kv_list. Task kinds: `single` (one call), `parallel` (independent calls in one turn),
`multi_step` (a result feeds the next call, state changes), `irrelevance` (no offered tool
applies: the right behaviour is to call nothing and say so with \\boxed{none}).

`verify` replays every call of a trajectory on a fresh state, requires each recorded
observation to equal the replayed one, the final database and key-value store to equal the
state the gold steps produce, and the answer to match (integers exactly, decimals to 1e-4:
the tools print 4 decimals).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from youtu.agentic.envs.base import Env, function_schema, normalize_text
from youtu.agentic.envs.math import calculate
from youtu.agentic.envs.tools_world import (CITY_ZONES, PRODUCTS, REAL_RECIPES, SCHEMA,
                                            convert_time, episode_db, tables, utc_offset)
from youtu.agentic.envs.tools_world import Group as _Group
from youtu.agentic.envs.tools_world import Recipe as _Recipe
from youtu.agentic.envs.tools_world import fixed as _fixed
from youtu.agentic.envs.tools_world import last as _last
from youtu.agentic.trajectory import Step, Task, Trajectory, Verdict

if TYPE_CHECKING:
    from youtu.agentic.teachers import TrajectoryBuilder

# Exact factors to the base unit of each dimension (NIST SP 811 definitions).
_UNITS: dict[str, tuple[str, Fraction]] = {
    "mm": ("length", Fraction(1, 1000)), "cm": ("length", Fraction(1, 100)),
    "m": ("length", Fraction(1)), "km": ("length", Fraction(1000)),
    "in": ("length", Fraction("0.0254")), "ft": ("length", Fraction("0.3048")),
    "yd": ("length", Fraction("0.9144")), "mi": ("length", Fraction("1609.344")),
    "g": ("mass", Fraction(1, 1000)), "kg": ("mass", Fraction(1)),
    "lb": ("mass", Fraction("0.45359237")), "oz": ("mass", Fraction("0.028349523125")),
    "ml": ("volume", Fraction(1, 1000)), "l": ("volume", Fraction(1)),
    "gal": ("volume", Fraction("3.785411784")),
    "s": ("time", Fraction(1)), "min": ("time", Fraction(60)), "h": ("time", Fraction(3600)),
    "day": ("time", Fraction(86400)), "week": ("time", Fraction(604800)),
    "nmi": ("length", Fraction(1852)),
    "m2": ("area", Fraction(1)), "km2": ("area", Fraction(10**6)), "ha": ("area", Fraction(10**4)),
    "acre": ("area", Fraction("4046.8564224")), "ft2": ("area", Fraction("0.09290304")),
    "m/s": ("speed", Fraction(1)), "km/h": ("speed", Fraction(1000, 3600)),
    "mph": ("speed", Fraction("0.44704")), "kn": ("speed", Fraction(1852, 3600)),
    "Pa": ("pressure", Fraction(1)), "kPa": ("pressure", Fraction(1000)),
    "bar": ("pressure", Fraction(100000)), "atm": ("pressure", Fraction(101325)),
    # psi = lbf / in^2 = 0.45359237 kg * 9.80665 m/s^2 / 0.0254^2 m^2 (exact by definition)
    "psi": ("pressure", Fraction("0.45359237") * Fraction("9.80665") / Fraction("0.0254") ** 2),
    "J": ("energy", Fraction(1)), "kJ": ("energy", Fraction(1000)),
    "cal": ("energy", Fraction("4.184")), "kcal": ("energy", Fraction(4184)),
    "kWh": ("energy", Fraction(3600000)), "Btu": ("energy", Fraction("1055.05585262")),
}
_TEMPS = ("C", "F", "K")
_UNIT_NAMES = {"mi": "miles", "km": "kilometers", "lb": "pounds", "kg": "kilograms",
               "ft": "feet", "m": "meters", "in": "inches", "cm": "centimeters", "oz": "ounces",
               "g": "grams", "gal": "gallons", "l": "liters", "yd": "yards", "h": "hours",
               "min": "minutes", "week": "weeks", "day": "days", "C": "degrees Celsius",
               "F": "degrees Fahrenheit", "K": "kelvin", "mm": "millimeters", "ml": "milliliters",
               "s": "seconds", "nmi": "nautical miles", "m2": "square meters",
               "km2": "square kilometers", "ha": "hectares", "acre": "acres",
               "ft2": "square feet", "m/s": "meters per second", "km/h": "kilometers per hour",
               "mph": "miles per hour", "kn": "knots", "Pa": "pascals", "kPa": "kilopascals",
               "bar": "bar", "atm": "atmospheres", "psi": "pounds per square inch",
               "J": "joules", "kJ": "kilojoules", "cal": "calories", "kcal": "kilocalories",
               "kWh": "kilowatt-hours", "Btu": "British thermal units"}
_PRODUCTS = PRODUCTS
_IRRELEVANT = [  # requests no offered tool can serve (templates x fillers: thousands of prompts)
    ("Write a {form} about {topic}.", {"form": ["haiku", "limerick", "short poem", "toast"],
                                       "topic": ["autumn leaves", "the sea", "coffee", "trains",
                                                 "a lost umbrella", "mountains"]}),
    ("Translate '{phrase}' into {language}.", {"phrase": ["good morning", "thank you",
                                                          "where is the station", "see you soon"],
                                               "language": ["Japanese", "French", "Swahili",
                                                            "Portuguese", "Finnish"]}),
    ("Book a table for {n} at {place} {when}.", {"n": ["two", "four", "six"],
                                                 "place": ["an Italian restaurant", "a sushi bar",
                                                           "the hotel bistro"],
                                                 "when": ["tonight", "on Friday",
                                                          "tomorrow at 8"]}),
    ("Send an email to {who} saying {msg}.", {"who": ["my manager", "the landlord", "Dana"],
                                              "msg": ["I will be late", "the report is done",
                                                      "thanks for the help"]}),
    ("What will the weather be in {city} {when}?", {"city": ["Oslo", "Lima", "Perth", "Riga"],
                                                    "when": ["tomorrow", "this weekend"]}),
    ("Play some {genre} music.", {"genre": ["relaxing", "jazz", "classical", "upbeat"]}),
    ("Remind me to {task} at {time}.", {"task": ["call mum", "water the plants", "stretch",
                                                 "take the pills", "pay the rent"],
                                        "time": ["6 pm", "noon", "9:30", "7 am", "midnight"]}),
    ("Summarise the plot of {book} in {n} sentences.", {
        "book": ["Moby-Dick", "Pride and Prejudice", "Don Quixote", "War and Peace", "Dune",
                 "The Odyssey", "Frankenstein"], "n": ["two", "three", "five"]}),
    ("Order {n} {item} from {shop} for delivery {when}.", {
        "n": ["two", "a dozen", "three"], "item": ["pizzas", "bagels", "coffees", "roses"],
        "shop": ["the corner shop", "an online store", "the bakery"],
        "when": ["today", "tomorrow morning", "on Saturday"]}),
    ("Draw a picture of {thing} in the style of {artist}.", {
        "thing": ["a lighthouse", "a cat", "a city at night", "a forest"],
        "artist": ["Monet", "Hokusai", "Van Gogh", "Klimt", "Frida Kahlo"]}),
    ("Call {who} and tell them {msg}.", {"who": ["the plumber", "my sister", "the dentist",
                                                  "the bank"],
                                         "msg": ["I'm running late", "to reschedule",
                                                 "the door code changed"]}),
    ("Who won the {event} in {year}?", {"event": ["World Cup", "Tour de France", "Eurovision",
                                                  "Nobel Prize in Physics"],
                                        "year": ["1998", "2006", "2014", "2019", "2022"]}),
    ("Recommend a {genre} film similar to {film}.", {
        "genre": ["sci-fi", "comedy", "thriller", "animated"],
        "film": ["Alien", "Amelie", "Heat", "Spirited Away", "Arrival"]}),
]
_LEADS = ["", "", "", "Hi! ", "Quick one: ", "Please help: ", "For a report: ", "Can you check: ",
          "I need this: ", "Question: "]
"""Ways a user opens a request (the request itself is the recipe's)."""
_TAILS = ["", "", "", " Thanks!", " Thank you.", " It's urgent.", " No rush.", " Keep it short.",
          " This is for a colleague.", " I'll wait."]
"""... and closes it."""
_CITIES = ["Lisbon", "Oslo", "Quito", "Hanoi", "Accra", "Tartu", "Cusco", "Hobart", "Izmir",
           "Nagoya", "Porto", "Tromso"]
_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _fmt(x: Fraction | float) -> str:
    """A number as the tools print it: exact integers, otherwise 4 decimals, no trailing zeros."""
    x = Fraction(x)
    if x.denominator == 1:
        return str(x.numerator)
    return f"{float(x):.4f}".rstrip("0").rstrip(".")


def convert_units(value: float, from_unit: str, to_unit: str) -> str:
    """`value` in `from_unit` expressed in `to_unit`; 'error: ...' on unknown/incompatible units."""
    v = Fraction(str(value))
    if from_unit in _TEMPS or to_unit in _TEMPS:
        if from_unit not in _TEMPS or to_unit not in _TEMPS:
            return f"error: cannot convert {from_unit} to {to_unit}"
        kelvin = {"C": v + Fraction("273.15"), "F": (v - 32) * Fraction(5, 9) + Fraction("273.15"),
                  "K": v}[from_unit]
        out = {"C": kelvin - Fraction("273.15"), "K": kelvin,
               "F": (kelvin - Fraction("273.15")) * Fraction(9, 5) + 32}[to_unit]
        return _fmt(out)
    for unit in (from_unit, to_unit):
        if unit not in _UNITS:
            return f"error: unknown unit {unit!r}; known units: {', '.join([*_UNITS, *_TEMPS])}"
    (dim_a, fa), (dim_b, fb) = _UNITS[from_unit], _UNITS[to_unit]
    if dim_a != dim_b:
        return f"error: cannot convert {dim_a} ({from_unit}) to {dim_b} ({to_unit})"
    return _fmt(v * fa / fb)


def _date(text: Any) -> dt.date:
    if not isinstance(text, str):
        raise ValueError(f"date must be a string YYYY-MM-DD, got {text!r}")
    return dt.date.fromisoformat(text)


_WRITES = {sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE}
_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
            sqlite3.SQLITE_TRANSACTION} | _WRITES


def _authorizer(written: set[str]) -> Callable[..., int]:
    """Reads and row writes only (no schema changes); the tables a statement may write are
    noted in `written` (SQLite authorizes every write with its table name), so the verifier
    compares those instead of reading all ~1,900 rows twice per episode."""
    def authorize(action: int, arg1: Any, arg2: Any, db: Any, trigger: Any) -> int:
        if action in _WRITES:
            written.add(arg1)
        return sqlite3.SQLITE_OK if action in _ALLOWED else sqlite3.SQLITE_DENY
    return authorize


def _shop(seed: int, written: set[str]) -> sqlite3.Connection:
    """The episode's database (tools_world.episode_db), read/write, no schema changes."""
    db = episode_db(seed)
    db.set_authorizer(_authorizer(written))
    return db


def _kv_seed(seed: int) -> dict[str, str]:
    rng = random.Random(f"kv/{seed}")
    return {"trip:distance_mi": str(rng.randint(10, 999) / 10),
            "user:ana:city": rng.choice(_CITIES),
            "user:ana:start_date": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "parcel:weight_lb": str(rng.randint(4, 400) / 4),
            "budget:total": str(rng.randint(5, 500) * 100)}


class ToolsEnv(Env):
    """Function calling over a registry of real tools with a database and a key-value store."""

    name = "tools"
    version = "1"
    sql_budget_s: float = 1.0
    """Wall-clock budget of one sql_query call, seconds (checked by a progress handler)."""
    system_prompt = ("You are an assistant with tools. Call tools when they help (several at "
                     "once when the calls are independent), check the results, and end with "
                     "the final answer in \\boxed{}. If no available tool can do what is asked, "
                     "call nothing and answer \\boxed{none}.")

    @property
    def tools(self) -> list[dict[str, Any]]:
        s, n, i = {"type": "string"}, {"type": "number"}, {"type": "integer"}
        return [
            function_schema("calculator", "Evaluate a math expression exactly.",
                            {"expression": {**s, "description": "e.g. (3 + 4) * 2"}}),
            function_schema("convert_units", "Convert a quantity between units of length, mass,"
                            " volume, time or temperature.",
                            {"value": n, "from_unit": {**s, "description": "e.g. mi, kg, C"},
                             "to_unit": s}),
            function_schema("date_add", "The date a number of days after (or before, if "
                            "negative) a date.", {"date": {**s, "description": "YYYY-MM-DD"},
                                                  "days": i}),
            function_schema("date_diff", "Days from start to end (end - start).",
                            {"start": {**s, "description": "YYYY-MM-DD"}, "end": s}),
            function_schema("weekday", "The day of the week of a date.", {"date": s}),
            function_schema("sql_query", f"Run SQL (SQLite) on the company database: {SCHEMA}.",
                            {"query": s}),
            function_schema("convert_time", "Convert a local time between IANA time zones "
                            "(daylight saving applied).",
                            {"time": {**s, "description": "YYYY-MM-DD HH:MM"},
                             "from_tz": {**s, "description": "e.g. Europe/Berlin"},
                             "to_tz": s}),
            function_schema("utc_offset", "The UTC offset of a time zone on a date.",
                            {"zone": {**s, "description": "IANA name"},
                             "date": {**s, "description": "YYYY-MM-DD"}}),
            function_schema("kv_get", "Read a key from the key-value store.", {"key": s}),
            function_schema("kv_set", "Write a key in the key-value store.",
                            {"key": s, "value": s}),
            function_schema("kv_delete", "Delete a key from the key-value store.", {"key": s}),
            function_schema("kv_list", "List keys starting with a prefix.",
                            {"prefix": s}, required=[]),
        ]

    @contextlib.contextmanager
    def episode(self, task: Task) -> Iterator[dict[str, Any]]:
        state = self.new_state(task)
        try:
            yield state
        finally:
            state["db"].close()

    def new_state(self, task: Task) -> dict[str, Any]:
        written: set[str] = set()
        return {"db": _shop(task.seed, written), "kv": _kv_seed(task.seed), "written": written}

    def call_tool(self, task: Task, state: Any, name: str, arguments: dict[str, Any]) -> str:
        try:
            return self._call(state, name, arguments)
        except (KeyError, TypeError, ValueError) as e:
            return f"error: {type(e).__name__}: {e}"

    def _call(self, state: dict[str, Any], name: str, a: dict[str, Any]) -> str:
        kv: dict[str, str] = state["kv"]
        if name == "calculator":
            return calculate(str(a["expression"]))
        if name == "convert_units":
            return convert_units(float(a["value"]), str(a["from_unit"]), str(a["to_unit"]))
        if name == "date_add":
            return (_date(a["date"]) + dt.timedelta(days=int(a["days"]))).isoformat()
        if name == "date_diff":
            return str((_date(a["end"]) - _date(a["start"])).days)
        if name == "weekday":
            return _WEEKDAYS[_date(a["date"]).weekday()]
        if name == "sql_query":
            return self._sql(state["db"], str(a["query"]))
        if name == "convert_time":
            return convert_time(a["time"], a["from_tz"], a["to_tz"])
        if name == "utc_offset":
            return utc_offset(a["zone"], a["date"])
        if name == "kv_get":
            key = str(a["key"])
            return kv[key] if key in kv else f"error: no key {key!r}"
        if name == "kv_set":
            kv[str(a["key"])] = str(a["value"])
            return "ok"
        if name == "kv_delete":
            if kv.pop(str(a["key"]), None) is None:
                return f"error: no key {a['key']!r}"
            return "ok"
        if name == "kv_list":
            prefix = str(a.get("prefix", ""))
            return json.dumps(sorted(k for k in kv if k.startswith(prefix)))
        return f"error: unknown tool {name!r}"

    def _sql(self, db: sqlite3.Connection, query: str) -> str:
        deadline = time.monotonic() + self.sql_budget_s
        # SQLite calls the handler every 1,000 VM instructions (~10 us); a nonzero return
        # aborts the statement with "interrupted", so a runaway cross join costs the host at
        # most the budget instead of hours (a 7-way join of 12-row tables is 3.6e7 rows).
        db.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
        try:
            cur = db.execute(query)
            rows = cur.fetchmany(21) if cur.description is not None else []
        except sqlite3.OperationalError as e:
            if str(e) == "interrupted":
                return (f"error: query stopped after its {self.sql_budget_s:g} s budget; "
                        "narrow it (a WHERE clause, a LIMIT, fewer joins)")
            return f"error: {e}"
        except sqlite3.Error as e:
            return f"error: {e}"
        finally:
            db.set_progress_handler(None, 0)
        if cur.description is None:
            db.commit()
            return f"ok: {cur.rowcount} row(s) changed"
        header = " | ".join(d[0] for d in cur.description)
        lines = [header, *(" | ".join(str(v) for v in r) for r in rows[:20])]
        if len(rows) > 20:
            lines.append("... (more rows)")
        return "\n".join(lines)

    # -----------------------------------------------------------------------------------------
    # generation

    def generate(self, seed: int, difficulty: int = 1) -> Task:
        level = self._difficulty(difficulty)
        rng = random.Random(f"tools/{seed}/{difficulty}")
        # every kind at every difficulty; the difficulty sets joins, calls per turn, chain length
        kind = rng.choices(KINDS, weights=[3, 2, 3, 1])[0]
        if kind == "irrelevance":
            recipe = _irrelevance(rng, level)
        elif rng.random() < 0.6:  # company database, time zones (tools_world)
            recipe = rng.choice(REAL_RECIPES[kind])(rng, level)
        else:
            recipe = rng.choice(_LEGACY[kind][level])(rng)
        task = Task(id=f"tools-{seed}-{difficulty}", env=self.name, seed=seed,
                    difficulty=difficulty, answer="",
                    prompt=rng.choice(_LEADS) + recipe.prompt + rng.choice(_TAILS),
                    meta={"kind": kind, "groups": [], "plan": [g.plan for g in recipe.groups],
                          **recipe.meta})
        with self.episode(task) as state:  # run the gold calls for their results
            for group in recipe.groups:
                results = []
                for name, args in group.calls(task.steps):
                    obs = self.call_tool(task, state, name, args)
                    assert not obs.startswith("error"), (name, args, obs)
                    task.steps.append(Step(description=_describe(name, args, group.plan),
                                           tool=name,
                                           arguments=args, result=obs))
                    results.append(len(task.steps) - 1)
                task.meta["groups"].append(results)
        task.answer = recipe.answer(task.steps)
        task.meta["answer_kind"] = "list" if ";" in task.answer else "value"
        used = {s.tool for s in task.steps}
        others = [t["function"]["name"] for t in self.tools if t["function"]["name"] not in used]
        # 2-5 distractors, in a random order: the tool block is most of a short episode's text
        spare = rng.sample(others, min(len(others), rng.randint(3 if kind == "irrelevance"
                                                                 else 2, 5)))
        offered = [*sorted(used), *spare]
        rng.shuffle(offered)
        task.meta["tools"] = offered
        task.meta["real"] = bool(used & _REAL_TOOLS)
        task.near_misses = _near_misses(task)
        return task

    # -----------------------------------------------------------------------------------------
    # checking

    def check(self, task: Task, answer: str) -> Verdict:
        want = [w.strip() for w in task.answer.split(";")]
        got = [g.strip() for g in answer.split(";")]
        ok = len(got) == len(want) and all(_same_value(g, w) for g, w in zip(got, want))
        return Verdict(ok, float(ok), f"{answer!r} {'matches' if ok else 'does not match'} "
                       f"{task.answer!r}", "tools/answer")

    def gold_state(self, task: Task) -> dict[str, Any]:
        """The key-value store and every table after the gold steps."""
        with self.episode(task) as state:
            for step in task.steps:
                self.call_tool(task, state, step.tool, step.arguments)
            return _snapshot(state)

    def verify(self, task: Task, traj: Trajectory) -> Verdict:
        calls = traj.tool_calls()
        if task.meta["kind"] == "irrelevance" and calls:
            return Verdict(False, 0.0, f"{len(calls)} tool call(s) on an irrelevance task",
                           "tools/replay")
        observed = [m["content"] for m in traj.messages if m["role"] == "tool"]
        with self.episode(task) as state:
            for k, (call, seen) in enumerate(zip(calls, observed)):
                replay = self.call_tool(task, state, call["name"], call["arguments"])
                if replay != seen:
                    return Verdict(False, 0.0, f"call {k} ({call['name']}) replays to {replay!r},"
                                   f" the trajectory recorded {seen!r}", "tools/replay")
            with self.episode(task) as gold:
                for step in task.steps:
                    self.call_tool(task, gold, step.tool, step.arguments)
                # tables neither episode could have written are the same by construction
                names = state["written"] | gold["written"]
                same = _snapshot(state, names) == _snapshot(gold, names)
        if not same:
            return Verdict(False, 0.0, "final database/key-value state differs from the gold "
                           "state", "tools/replay+state")
        verdict = self.check(task, traj.outcome.answer)
        verdict.checker = "tools/replay+state+answer"
        verdict.detail = f"{len(calls)} call(s) replayed, state equal; {verdict.detail}"
        return verdict

    # -----------------------------------------------------------------------------------------
    # scripted teacher

    def teach(self, task: Task, b: TrajectoryBuilder, rng: random.Random, mistake: bool) -> str:
        from youtu.agentic.envs.tools_teacher import teach

        return teach(self, task, b, rng, mistake)


# ---------------------------------------------------------------------------------------------
# task recipes. A recipe is the prompt, groups of calls run in order (the calls of one group
# are independent: one parallel turn; a group may use the results of earlier steps), the answer
# as a function of the executed steps, and extra meta.

def _value(step: Step) -> str:
    v = step.result.splitlines()[-1]
    return "0" if v == "None" else v  # SQL SUM over no rows


def _conversion(rng: random.Random) -> tuple[str, dict[str, Any]]:
    pairs = [("mi", "km"), ("km", "mi"), ("lb", "kg"), ("kg", "lb"), ("ft", "m"), ("gal", "l"),
             ("C", "F"), ("F", "C"), ("oz", "g"), ("in", "cm"), ("week", "h"), ("nmi", "km"),
             ("acre", "ha"), ("ha", "acre"), ("ft2", "m2"), ("km2", "acre"), ("mph", "km/h"),
             ("kn", "m/s"), ("km/h", "mph"), ("psi", "kPa"), ("bar", "psi"), ("atm", "Pa"),
             ("kcal", "kJ"), ("kWh", "Btu"), ("cal", "J"), ("K", "C"), ("yd", "m")]
    a, b = rng.choice(pairs)
    value = rng.choice([1.5, 2, 3.2, 5, 7.5, 10, 12.5, 20, 26.2, 42, 100,
                        round(rng.uniform(0.5, 500), rng.choice([0, 1, 2]))])
    return (f"{value} {_UNIT_NAMES[a]} in {_UNIT_NAMES[b]}",
            {"value": value, "from_unit": a, "to_unit": b})


def _a_date(rng: random.Random) -> str:
    return (dt.date(2023, 1, 1) + dt.timedelta(days=rng.randint(0, 900))).isoformat()


def _single_convert(rng: random.Random) -> _Recipe:
    text, args = _conversion(rng)
    return _Recipe(f"What is {text}?", [_fixed("Convert with convert_units",
                                               ("convert_units", args))],
                   _last, {"unit": args["to_unit"]})


def _single_date(rng: random.Random) -> _Recipe:
    a, b = sorted([_a_date(rng), _a_date(rng)])
    return _Recipe(f"How many days are there from {a} to {b}?",
                   [_fixed("Count the days with date_diff", ("date_diff", {"start": a, "end": b}))],
                   _last)


def _single_weekday(rng: random.Random) -> _Recipe:
    d = _a_date(rng)
    return _Recipe(f"What day of the week is {d}?",
                   [_fixed("Look up the weekday", ("weekday", {"date": d}))], _last)


def _single_sql(rng: random.Random) -> _Recipe:
    cat = rng.choice(["tools", "food", "office"])
    price = rng.randint(20, 60)
    q, text = rng.choice([
        (f"SELECT SUM(stock) FROM products WHERE category = '{cat}'",
         f"What is the total stock of all products in the '{cat}' category?"),
        (f"SELECT COUNT(*) FROM products WHERE price > {price}",
         f"How many products cost more than {price}?"),
        ("SELECT SUM(o.quantity) FROM orders o JOIN products p ON p.id = o.product_id "
         f"WHERE p.category = '{cat}'",
         f"How many units of '{cat}' products were ordered in total?"),
    ])
    return _Recipe(text + " Use the shop database.",
                   [_fixed("Query the shop database", ("sql_query", {"query": q}))], _last,
                   {"sql": q})


def _single_kv(rng: random.Random) -> _Recipe:
    key = rng.choice(["user:ana:city", "budget:total", "trip:distance_mi"])
    return _Recipe(f"What value is stored under the key '{key}'?",
                   [_fixed("Read the key from the key-value store", ("kv_get", {"key": key}))],
                   _last)


def _single_calc(rng: random.Random) -> _Recipe:
    a, b, c = rng.randint(12, 99), rng.randint(2, 19), rng.randint(100, 999)
    expr = f"({c} - {a}) * {b} / 4"
    return _Recipe(f"Compute {expr} exactly.",
                   [_fixed("Evaluate with the calculator", ("calculator", {"expression": expr}))],
                   _last)


def _parallel(rng: random.Random, n: int = 2) -> _Recipe:
    convs: list[tuple[str, dict[str, Any]]] = []
    while len(convs) < n:
        t, a = _conversion(rng)
        if a not in [c[1] for c in convs]:
            convs.append((t, a))
    texts = [t for t, _ in convs]
    return _Recipe(f"{n} quick conversions: {', '.join(texts[:-1])}, and {texts[-1]}. Answer "
                   "in that order, separated by '; '.",
                   [_fixed("Run the conversions at once", *[("convert_units", a)
                                                            for _, a in convs])],
                   lambda s: "; ".join(x.result for x in s))


def _multi_weekday(rng: random.Random) -> _Recipe:
    d, n = _a_date(rng), rng.randint(10, 400)
    return _Recipe(f"What day of the week will it be {n} days after {d}?",
                   [_fixed("Add the days to the date", ("date_add", {"date": d, "days": n})),
                    _Group("Look up the weekday of the new date",
                           lambda s: [("weekday", {"date": s[-1].result})])], _last)


def _multi_store_stock(rng: random.Random) -> _Recipe:
    cat = rng.choice(["tools", "food", "office"])
    q = f"SELECT SUM(stock) FROM products WHERE category = '{cat}'"
    key = f"stock:{cat}"
    return _Recipe(f"Look up the total stock of the '{cat}' category in the shop database and "
                   f"save it in the key-value store under '{key}'. Reply with the number.",
                   [_fixed("Sum the stock of the category in the database",
                           ("sql_query", {"query": q})),
                    _Group("Store the total in the key-value store",
                           lambda s: [("kv_set", {"key": key, "value": _last(s)})])],
                   lambda s: _last(s[:1]), {"sql": q})


def _multi_convert_stored(rng: random.Random) -> _Recipe:
    src, dst, unit_a, unit_b = rng.choice([("trip:distance_mi", "trip:distance_km", "mi", "km"),
                                           ("parcel:weight_lb", "parcel:weight_kg", "lb", "kg")])
    return _Recipe(
        f"Read '{src}' from the key-value store, convert it from {_UNIT_NAMES[unit_a]} to "
        f"{_UNIT_NAMES[unit_b]}, and store the result under '{dst}'. Reply with the converted "
        "value.",
        [_fixed("Read the stored value", ("kv_get", {"key": src})),
         _Group("Convert it", lambda s: [("convert_units", {
             "value": float(_last(s)), "from_unit": unit_a, "to_unit": unit_b})]),
         _Group("Store the converted value",
                lambda s: [("kv_set", {"key": dst, "value": _last(s)})])],
        lambda s: s[1].result, {"unit": unit_b})


def _multi_restock(rng: random.Random) -> _Recipe:
    name, n = rng.choice(_PRODUCTS)[0], rng.randint(5, 40)
    update = f"UPDATE products SET stock = stock + {n} WHERE name = '{name}'"
    read = f"SELECT stock FROM products WHERE name = '{name}'"
    return _Recipe(f"We received {n} more units of '{name}'. Update its stock in the shop "
                   "database, then report the new stock.",
                   [_fixed("Add the units to the product's stock (UPDATE)",
                           ("sql_query", {"query": update})),
                    _fixed("Read the new stock back", ("sql_query", {"query": read}))], _last)


def _multi_revenue_budget(rng: random.Random) -> _Recipe:
    day = rng.randint(1, 7)
    q = ("SELECT SUM(o.quantity * p.price) FROM orders o JOIN products p ON p.id = o.product_id "
         f"WHERE o.day = {day}")
    return _Recipe(
        f"What share of the stored budget ('budget:total') is the revenue of day {day}? Get "
        "both numbers (they are independent), then compute revenue / budget exactly and store "
        "the fraction under 'report:share'. Reply with the fraction.",
        [_fixed("Get the day's revenue from the database and the budget from the store",
                ("sql_query", {"query": q}), ("kv_get", {"key": "budget:total"})),
         _Group("Divide revenue by budget with the calculator",
                lambda s: [("calculator", {"expression": f"{_value(s[0])} / {s[1].result}"})]),
         _Group("Store the fraction",
                lambda s: [("kv_set", {"key": "report:share", "value": _last(s)})])],
        lambda s: s[2].result, {"sql": q})


def _irrelevance(rng: random.Random, level: int = 1) -> _Recipe:
    # harder: requests that sound like an offered tool's job but are not (no currency rates,
    # no ephemeris, no nutrition table, no schema changes)
    bank = _IRRELEVANT if level == 1 or rng.random() < 0.3 else _NEAR_IRRELEVANT
    template, fillers = rng.choice(bank)
    prompt = template.format(**{k: rng.choice(v) for k, v in fillers.items()})
    return _Recipe(prompt, [], lambda s: "none")


_NEAR_IRRELEVANT = [
    ("Convert {n} {cur} to {cur2} at today's rate.", {"n": ["20", "150", "3.5", "1000"],
                                                      "cur": ["US dollars", "euros", "yen"],
                                                      "cur2": ["pounds", "rupees", "pesos"]}),
    ("At what time does the sun set in {city} on {day}?", {"city": sorted(CITY_ZONES)[:12],
                                                           "day": ["2024-06-21", "2025-01-03"]}),
    ("How many kilocalories are there in {food}?", {"food": [
        "an apple", "a bowl of rice", "100 g of cheese", "a croissant", "a banana", "a latte",
        "two eggs", "a slice of pizza", "a cup of lentils", "an avocado"]}),
    ("Add a '{col}' column to the {table} table.", {
        "col": ["email", "discount", "notes", "phone", "rating", "vat_id", "region"],
        "table": ["customers", "products", "employees", "suppliers", "sales"]}),
    ("Create a new table for {what} in the database.", {"what": [
        "invoices", "refunds", "warehouse bins", "loyalty points", "coupons", "returns"]}),
    ("How long does it take to fly from {city} to {city2}?", {
        "city": sorted(CITY_ZONES)[12:20], "city2": sorted(CITY_ZONES)[20:]}),
    ("Which flights leave {city} for {city2} tomorrow?", {"city": ["Berlin", "Tokyo", "Lima"],
                                                          "city2": ["Oslo", "Cairo", "Seoul"]}),
    ("What is the current stock price of {co}?", {"co": [
        "a car maker", "the company", "our main supplier", "the largest airline",
        "a chip designer", "our logistics partner"]}),
    ("What is the exchange rate between the {a} and the {b} right now?", {
        "a": ["euro", "yen", "rand", "real", "rupee"], "b": ["dollar", "pound", "franc", "won"]}),
]


KINDS = ("single", "parallel", "multi_step", "irrelevance")
_SINGLE = [_single_convert, _single_date, _single_weekday, _single_sql, _single_kv, _single_calc]
_MULTI = [_multi_weekday, _multi_store_stock, _multi_convert_stored]
_MULTI_HARD = [_multi_restock, _multi_revenue_budget, _multi_convert_stored, _multi_store_stock]
_LEGACY = {"single": {1: _SINGLE, 2: _SINGLE, 3: _SINGLE},
           "parallel": {k: [lambda rng, n=k + 1: _parallel(rng, n)] for k in (1, 2, 3)},
           "multi_step": {1: _MULTI, 2: _MULTI + _MULTI_HARD, 3: _MULTI_HARD}}
"""The original recipes (shop tables, key-value store, dates, units) by kind and difficulty."""
_REQUIRED = {t["function"]["name"]: t["function"]["parameters"]["required"]
             for t in ToolsEnv().tools}
_REAL_TOOLS = {"sql_query", "convert_time", "utc_offset", "convert_units"}
"""Tools over real content: the company database, the tz database, NIST unit factors."""


def _describe(name: str, args: dict[str, Any], plan: str) -> str:
    """The step in words, as intent: the values to pass are for the agent to work out (the
    evaluation probes and cloze items show descriptions before asking for the call)."""
    if name == "convert_units":
        return (f"Convert the quantity from {_UNIT_NAMES.get(args['from_unit'], 'its unit')} to "
                f"{_UNIT_NAMES.get(args['to_unit'], 'the target unit')}")
    return plan


def _snapshot(state: dict[str, Any], names: set[str] | None = None) -> dict[str, Any]:
    """The key-value store and the tables `names` (default: all) of an episode."""
    db = state["db"]
    rows = tables(db) if names is None else {
        n: db.execute(f"SELECT * FROM {n} ORDER BY rowid").fetchall() for n in sorted(names)}
    return {"kv": dict(state["kv"]), "tables": rows}


def _number(text: str) -> float | None:
    try:
        return float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        return None


def _same_value(got: str, want: str) -> bool:
    g, w = _number(got), _number(want)
    if w is not None:
        if g is None:
            return False
        if w.is_integer() and "." not in want and "/" not in want:
            return g == w  # counts, sums, days: exact (a relative 1e-4 let 25201 pass for 25200)
        if "/" in want:  # an exact fraction (the calculator's): its decimal to 6 digits
            return abs(g - w) <= 1e-6 * abs(w)
        return abs(g - w) <= 1e-4  # tools print 4 decimals
    got_n, want_n = normalize_text(got), normalize_text(want)
    if _LOCAL_TIME.fullmatch(want.strip()):  # convert_time output: the zone name is optional
        return got_n in (want_n, normalize_text(want.strip().rsplit(" ", 1)[0]))
    return got_n == want_n


_LOCAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} \S+")


def _near_misses(task: Task) -> list[str]:
    out = []
    for part in [task.answer]:
        w = _number(part) if ";" not in part else None
        if w is not None:
            out += [_fmt(Fraction(str(w)) + 1), _fmt(Fraction(str(w)) * Fraction(101, 100)),
                    _fmt(-Fraction(str(w)))] if w else ["1", "-1"]
        elif ";" in part:
            items = [x.strip() for x in part.split(";")]
            out += ["; ".join([items[1], items[0], *items[2:]]), "; ".join(items[:-1])]
        elif part in _WEEKDAYS:
            out.append(_WEEKDAYS[(_WEEKDAYS.index(part) + 1) % 7])
        elif part in _CITIES:
            out.append(_CITIES[(_CITIES.index(part) + 1) % len(_CITIES)])
        elif part == "none":
            out += ["yes", "done"]
        elif _LOCAL_TIME.fullmatch(part) or re.fullmatch(r"[+-]\d{2}:\d{2}", part):
            hour = re.search(r"(\d{2}):\d{2}", part)
            shifted = f"{(int(hour.group(1)) + 1) % 24:02d}"
            out.append(part[:hour.start(1)] + shifted + part[hour.end(1):])
        else:
            out.append(part + "x")
    return [o for o in out if o != task.answer and not _same_value(o, task.answer)]


def mistake_for(task: Task, rng: random.Random) -> dict[str, Any] | None:
    """A controlled mistake drawn from the catalogue (tools_teacher's docstring) among those
    the task allows, or None if it allows none."""
    from youtu.agentic.envs.tools_teacher import wrong_tool

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
