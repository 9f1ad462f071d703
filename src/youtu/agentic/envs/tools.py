"""Tool-use environment: a registry of real tools, single / parallel / multi-step calls and
irrelevance cases, verified by re-executing the calls and comparing results and state.

    env = ToolsEnv()
    task = env.generate(seed=3, difficulty=2)
    with env.episode(task) as state:                      # a fresh SQLite db + key-value store
        env.call_tool(task, state, "sql_query", {"query": "SELECT COUNT(*) FROM products"})

Tools: calculator, convert_units (exact NIST factors: length, mass, volume, time, area, speed,
pressure, energy, temperature), date_add, date_diff, weekday, convert_time / utc_offset (IANA
zones through zoneinfo), sql_query (the 8-table company database of `tools_world`, in memory
per episode, read/write, no schema changes, a 1 s budget per query), kv_get / kv_set /
kv_delete / kv_list. Task kinds, each at every difficulty: `single` (one call), `parallel`
(independent calls in one turn), `multi_step` (a result feeds the next call, state changes),
`irrelevance` (no offered tool applies: the right behaviour is to call nothing and say so with
\\boxed{none}). Recipes: `tools_world` (company database, time zones) and `tools_recipes`
(units, dates, shop tables, key-value store, irrelevance); the scripted teacher and its mistake
catalogue: `tools_teacher`.

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

from youtu.agentic.envs.base import Env, normalize_text
from youtu.agentic.envs.math import calculate
from youtu.agentic.envs.tools_schemas import draw as draw_rendering
from youtu.agentic.envs.tools_schemas import schemas
from youtu.agentic.envs.tools_world import (REAL_RECIPES, convert_time, episode_db, tables,
                                            utc_offset)
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
    version = "2"
    sql_budget_s: float = 1.0
    """Wall-clock budget of one sql_query call, seconds (checked by a progress handler)."""
    system_prompt = ("You are an assistant with tools. Call tools when they help (several at "
                     "once when the calls are independent), check the results, and end with "
                     "the final answer in \\boxed{}. If no available tool can do what is asked, "
                     "call nothing and answer \\boxed{none}.")

    @property
    def tools(self) -> list[dict[str, Any]]:
        return schemas(TOOL_NAMES)

    def tools_for(self, task: Task) -> list[dict[str, Any]]:
        """The offered tools in the task's own wording (`tools_schemas`: one of three
        descriptions each, `sql_query` listing the tables the task needs and a few others)."""
        names = task.meta.get("tools", TOOL_NAMES)
        return schemas([n for n in names if n in TOOL_NAMES], task.meta.get("describe"),
                       task.meta.get("tables"))

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
        from youtu.agentic.envs import tools_recipes as recipes  # (it imports this module)

        kind = rng.choices(KINDS, weights=[3, 2, 3, 1])[0]
        if kind == "irrelevance":
            recipe = recipes.irrelevance(rng, level)
        elif rng.random() < 0.6:  # company database, time zones (tools_world)
            recipe = rng.choice(REAL_RECIPES[kind])(rng, level)
        else:
            recipe = rng.choice(recipes.LEGACY[kind][level])(rng)
        task = Task(id=f"tools-{seed}-{difficulty}", env=self.name, seed=seed,
                    difficulty=difficulty, answer="",
                    prompt=rng.choice(recipes.LEADS) + recipe.prompt + rng.choice(recipes.TAILS),
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
        task.meta.update(draw_rendering(rng, offered, [s.arguments["query"] for s in task.steps
                                                       if s.tool == "sql_query"]))
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


KINDS = ("single", "parallel", "multi_step", "irrelevance")
TOOL_NAMES = ["calculator", "convert_units", "date_add", "date_diff", "weekday", "sql_query",
              "convert_time", "utc_offset", "kv_get", "kv_set", "kv_delete", "kv_list"]
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
