"""The JSON schemas of the tools environment's tools, each in several wordings.

    schemas(["sql_query", "weekday"])                          # the canonical wording
    schemas(["sql_query"], {"sql_query": 2}, tables=["sales"])  # a task's own rendering

A short tools episode is mostly its tool block: at 14k tasks, 7.3% of the episodes were
near-duplicates (MinHash Jaccard >= 0.8 on 5-word shingles) of an earlier one, nearly all
because the same 4-7 schemas, word for word, outweighed a one-call conversation (the 8-table
database schema inside `sql_query` alone is ~60 words). So each task draws one of three
descriptions per tool (all true of the tool; names, parameters and required lists never change,
so calls and the verifier are the same), and `sql_query` lists only the tables the task's
queries touch plus 0-2 others (it says "tables include"): what an API catalogue shows a model
in practice, and the slice of the schema the task needs.
"""

from __future__ import annotations

import random
import re
from typing import Any

from youtu.agentic.envs.base import function_schema
from youtu.agentic.envs.tools_world import SCHEMA

_S, _N, _I = {"type": "string"}, {"type": "number"}, {"type": "integer"}
_DATE = {**_S, "description": "YYYY-MM-DD"}
_PARAMS: dict[str, dict[str, dict]] = {
    "calculator": {"expression": {**_S, "description": "e.g. (3 + 4) * 2"}},
    "convert_units": {"value": _N, "from_unit": {**_S, "description": "e.g. mi, kg, C"},
                      "to_unit": _S},
    "date_add": {"date": _DATE, "days": _I},
    "date_diff": {"start": _DATE, "end": _S},
    "weekday": {"date": _S},
    "sql_query": {"query": _S},
    "convert_time": {"time": {**_S, "description": "YYYY-MM-DD HH:MM"},
                     "from_tz": {**_S, "description": "e.g. Europe/Berlin"}, "to_tz": _S},
    "utc_offset": {"zone": {**_S, "description": "IANA name"}, "date": _DATE},
    "kv_get": {"key": _S},
    "kv_set": {"key": _S, "value": _S},
    "kv_delete": {"key": _S},
    "kv_list": {"prefix": _S},
}
_REQUIRED = {"kv_list": []}
"""Tools whose parameters are not all required (kv_list: no prefix lists every key)."""
_DESCRIPTIONS: dict[str, list[str]] = {  # the first is the canonical one
    "calculator": ["Evaluate a math expression exactly.",
                   "Exact arithmetic: returns the value of an expression (fractions stay "
                   "exact).",
                   "Compute an arithmetic expression and return its simplified exact value."],
    "convert_units": ["Convert a quantity between units of length, mass, volume, time or "
                      "temperature.",
                      "Unit conversion with exact NIST factors (length, mass, volume, time, "
                      "area, speed, pressure, energy, temperature).",
                      "Express a value given in one unit in another unit of the same "
                      "dimension."],
    "date_add": ["The date a number of days after (or before, if negative) a date.",
                 "Add a (possibly negative) number of days to a calendar date.",
                 "Shift a date by N days and return the resulting date."],
    "date_diff": ["Days from start to end (end - start).",
                  "Number of days between two dates, negative if end is before start.",
                  "Count the days from one date to another (end minus start)."],
    "weekday": ["The day of the week of a date.", "Which weekday (Monday..Sunday) a date "
                "falls on.", "Return the name of the weekday of a YYYY-MM-DD date."],
    "sql_query": ["Run SQL (SQLite) on the company database. Tables include: {tables}.",
                  "Query or update the company's SQLite database (row reads and writes, no "
                  "schema changes); up to 20 rows come back. Tables include {tables}.",
                  "Execute one SQLite statement against the company database. Among its "
                  "tables: {tables}."],
    "convert_time": ["Convert a local time between IANA time zones (daylight saving "
                     "applied).", "Translate a wall-clock time from one IANA zone to another, "
                     "with daylight saving time.", "What a local time in one time zone is in "
                     "another (tz database rules)."],
    "utc_offset": ["The UTC offset of a time zone on a date.", "Offset from UTC (+HH:MM) of an "
                   "IANA time zone on a given day.", "Look up how far a time zone is from UTC "
                   "on a date, daylight saving included."],
    "kv_get": ["Read a key from the key-value store.", "Return the value stored under a key.",
               "Fetch one entry of the key-value store by its key."],
    "kv_set": ["Write a key in the key-value store.", "Store a value under a key (overwrites).",
               "Create or update an entry of the key-value store."],
    "kv_delete": ["Delete a key from the key-value store.", "Remove an entry from the key-value "
                  "store.", "Drop a key (and its value) from the store."],
    "kv_list": ["List keys starting with a prefix.", "The keys of the key-value store that "
                "begin with a prefix, sorted.", "Enumerate stored keys, optionally filtered by "
                "a prefix."],
}
VARIANTS = 3
TABLES = dict(re.findall(r"(\w+)\(([^)]*)\)", SCHEMA))
"""Table -> its columns as the schema lists them."""


def schemas(names: list[str], variant: dict[str, int] | None = None,
            tables: list[str] | None = None) -> list[dict[str, Any]]:
    """OpenAI schemas of the tools `names`, in that order.

    Args:
        names: tool names.
        variant: tool -> index of its description (default 0 for all).
        tables: the tables `sql_query` lists, in that order (default: all, schema order).
    """
    listed = ", ".join(f"{t}({TABLES[t]})" for t in (tables or list(TABLES)))
    out = []
    for name in names:
        text = _DESCRIPTIONS[name][(variant or {}).get(name, 0)]
        out.append(function_schema(name, text.format(tables=listed), _PARAMS[name],
                                   required=_REQUIRED.get(name)))
    return out


def draw(rng: random.Random, offered: list[str], queries: list[str]) -> dict[str, Any]:
    """A task's rendering: {"describe": tool -> variant, "tables": the tables sql_query lists
    (those `queries` name, then 0-2 others, shuffled)}."""
    used = [t for t in TABLES if any(re.search(rf"\b{t}\b", q) for q in queries)]
    others = [t for t in TABLES if t not in used]
    tables = used + rng.sample(others, min(len(others), rng.randint(0 if used else 2, 2)))
    rng.shuffle(tables)
    return {"describe": {n: rng.randrange(VARIANTS) for n in offered}, "tables": tables}
