"""Tools environment: real tools, gold calls that execute, and verification by replaying the
calls against a fresh state (tampered observations, missing writes and calls on irrelevance
tasks are all rejected)."""

from __future__ import annotations

import copy
import json
import random
import time

import pytest

from youtu.agentic.envs.tools import ToolsEnv, convert_units

ENV = ToolsEnv()
TASKS = [ENV.generate(seed, 1 + seed % 3) for seed in range(60)]


def test_task_kinds_all_occur_and_offered_tools_include_the_needed_ones():
    kinds = {t.meta["kind"] for t in TASKS}
    assert kinds == {"single", "parallel", "multi_step", "irrelevance"}
    for t in TASKS:
        offered = {s["function"]["name"] for s in ENV.tools_for(t)}
        assert {s.tool for s in t.steps} <= offered
        assert len(offered) > len({s.tool for s in t.steps})  # distractors too
    assert any(len(g) > 1 for t in TASKS for g in t.meta["groups"])  # parallel groups


@pytest.mark.parametrize("task", TASKS[:30], ids=lambda t: t.id)
def test_checker_accepts_answer_and_rejects_near_misses(task):
    assert ENV.check(task, task.answer).correct
    assert task.near_misses
    for wrong in task.near_misses:
        assert not ENV.check(task, wrong).correct, (task.prompt, task.answer, wrong)


def test_replay_verification_catches_tampering_missing_state_and_irrelevant_calls():
    rng = random.Random(0)
    stateful = next(t for t in TASKS if any(s.tool == "kv_set" for s in t.steps))
    traj = ENV.solve(stateful, rng)
    assert traj.outcome.verified and "replayed" in traj.outcome.detail
    tampered = copy.deepcopy(traj)
    tool_msg = next(m for m in tampered.messages if m["role"] == "tool")
    tool_msg["content"] = "999"
    assert "replays to" in ENV.verify(stateful, tampered).detail
    # drop the kv_set turn: the answer is still right but the store was never written
    skipped = copy.deepcopy(traj)
    k = next(i for i, m in enumerate(skipped.messages)
             if any(c["function"]["name"] == "kv_set" for c in m.get("tool_calls") or []))
    del skipped.messages[k:k + 2]
    verdict = ENV.verify(stateful, skipped)
    assert not verdict.correct and "state" in verdict.detail
    irrelevant = next(t for t in TASKS if t.meta["kind"] == "irrelevance")
    traj = ENV.solve(irrelevant, rng)
    assert traj.outcome.verified and traj.tool_calls() == []
    called = copy.deepcopy(traj)
    called.messages[-1]["tool_calls"] = [{"id": "call_0", "type": "function", "function": {
        "name": "weekday", "arguments": json.dumps({"date": "2024-01-01"})}}]
    assert not ENV.verify(irrelevant, called).correct


def test_tools_execute_for_real_and_report_errors():
    task = TASKS[0]
    with ENV.episode(task) as state:
        call = lambda name, **a: ENV.call_tool(task, state, name, a)  # noqa: E731
        assert call("convert_units", value=26.2, from_unit="mi", to_unit="km") == "42.1648"
        assert call("convert_units", value=100, from_unit="C", to_unit="F") == "212"
        assert call("convert_units", value=1, from_unit="miles", to_unit="km").startswith(
            "error: unknown unit")
        assert call("convert_units", value=1, from_unit="kg", to_unit="km").startswith(
            "error: cannot convert")
        assert call("date_diff", start="2024-02-28", end="2024-03-01") == "2"  # leap year
        assert call("weekday", date="2024-07-04") == "Thursday"
        assert call("date_add", date="2023-12-31", days=1) == "2024-01-01"
        assert call("sql_query", query="DROP TABLE products").startswith("error: not authorized")
        assert call("sql_query", query="SELECT cost FROM products").startswith("error: no such")
        assert call("sql_query", query="UPDATE products SET stock = 0 WHERE id = 1") == \
            "ok: 1 row(s) changed"
        assert call("sql_query", query="SELECT stock FROM products WHERE id = 1") == "stock\n0"
        assert call("kv_set", key="a", value="1") == "ok" and call("kv_get", key="a") == "1"
        assert call("kv_get", key="missing").startswith("error")
        assert call("date_add", date="not a date", days=1).startswith("error")
        assert call("nope").startswith("error: unknown tool")


def test_unit_conversion_is_exact_to_four_decimals():
    assert convert_units(1, "in", "cm") == "2.54"
    assert convert_units(1, "lb", "kg") == "0.4536"
    assert convert_units(2, "week", "h") == "336"


def test_a_runaway_query_is_stopped_within_its_budget():
    env = ToolsEnv()
    env.sql_budget_s = 0.2
    task = TASKS[0]
    # 30 orders: a 7-way cross join has 30**7 = 2.2e10 rows, hours of work if let run
    join = ", ".join(f"orders o{i}" for i in range(7))
    with env.episode(task) as state:
        t0 = time.monotonic()
        out = env.call_tool(task, state, "sql_query", {"query": f"SELECT COUNT(*) FROM {join}"})
        elapsed = time.monotonic() - t0
        assert out.startswith("error: query stopped after its 0.2 s budget"), out
        assert elapsed < 1.0, elapsed
        # the connection is usable afterwards and small queries are unaffected
        assert env.call_tool(task, state, "sql_query",
                             {"query": "SELECT COUNT(*) FROM orders"}).endswith("\n30")


def _wrong_candidates(task) -> list[str]:
    """Wrong answers built here, without the environment's comparator: a number off by one,
    by 1% (at least 1e-3) and negated; another weekday; list parts swapped or dropped; not 'none'."""
    from fractions import Fraction

    out = []
    for part in [p.strip() for p in task.answer.split(";")]:
        try:
            w = Fraction(part)
        except ValueError:
            w = None
        if w is not None:
            # 1% off, but at least 1e-3: the tools print 4 decimals
            out += [str(float(w + 1)), str(float(w + max(abs(w) / 100, Fraction(1, 1000))))]
            out += [str(float(-w))] if w else []
        elif part in ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
                      "Sunday"):
            out += ["Sunday" if part != "Sunday" else "Monday"]
        elif part == "none":
            out += ["yes", "done", "0"]
    parts = [p.strip() for p in task.answer.split(";")]
    if len(parts) == 2 and parts[0] != parts[1]:
        out += [f"{parts[1]}; {parts[0]}", parts[0]]
    return out


def _accepted_wrong(env, tasks) -> list[tuple[str, str]]:
    return [(t.answer, w) for t in tasks for w in _wrong_candidates(t) if env.check(t, w).correct]


def test_checker_rejects_wrong_answers_built_independently():
    assert sum(len(_wrong_candidates(t)) for t in TASKS) > 100
    assert _accepted_wrong(ENV, TASKS) == []


def test_the_independent_near_misses_catch_a_lenient_checker(monkeypatch):
    import youtu.agentic.envs.tools as tools

    def lenient(got, want):  # 2% tolerance instead of 1e-4
        g, w = tools._number(got), tools._number(want)
        if w is not None and g is not None:
            return abs(g - w) <= 0.02 * max(1.0, abs(w))
        return tools.normalize_text(got) == tools.normalize_text(want)

    monkeypatch.setattr(tools, "_same_value", lenient)
    assert _accepted_wrong(ENV, TASKS)


def test_real_content_time_zones_schema_and_every_kind_at_every_difficulty():
    from youtu.agentic.envs.tools_world import convert_time, episode_db, tables, utc_offset

    # daylight saving from the tz database: New York is UTC-5 in January, UTC-4 in July
    assert convert_time("2024-01-15 12:00", "America/New_York", "UTC") == "2024-01-15 17:00 UTC"
    assert convert_time("2024-07-15 12:00", "America/New_York", "UTC") == "2024-07-15 16:00 UTC"
    assert utc_offset("Asia/Kathmandu", "2024-03-01") == "+05:45"
    assert utc_offset("Australia/Adelaide", "2024-01-10") == "+10:30"  # southern summer
    db = episode_db(5)
    sizes = {name: len(rows) for name, rows in tables(db).items()}
    assert len(sizes) == 8 and sum(sizes.values()) > 1500, sizes
    assert episode_db(5).execute("SELECT * FROM sales").fetchall() == \
        db.execute("SELECT * FROM sales").fetchall()  # deterministic
    with ENV.episode(TASKS[0]) as state:
        out = ENV.call_tool(TASKS[0], state, "convert_time", {
            "time": "2024-01-01 10:00", "from_tz": "Berlin", "to_tz": "Asia/Tokyo"})
        assert out.startswith("error") and "IANA" in out
    kinds = {(t.meta["kind"], t.difficulty) for t in (ENV.generate(s, 1 + s % 3)
                                                       for s in range(300))}
    assert kinds == {(k, d) for k in ("single", "parallel", "multi_step", "irrelevance")
                     for d in (1, 2, 3)}


def test_mistakes_come_from_a_catalogue_and_their_wrong_answers_are_rejected():
    kinds = set()
    for seed in range(150):
        task = ENV.generate(seed, 1 + seed % 3)
        traj = ENV.solve(task, random.Random(seed), mistake_rate=1.0)
        assert traj.outcome.verified, traj.outcome.detail
        for slip in traj.provenance["mistakes"]:
            kinds.add(slip["kind"])
            if slip["answer"] is not None:
                assert not ENV.check(task, slip["answer"]).correct
    assert {"wrong_tool", "wrong_argument", "premature_answer"} <= kinds
    from youtu.agentic.envs.tools_teacher import mistake_for

    drawn = {(mistake_for(t, random.Random(k)) or {}).get("kind")
             for t in (ENV.generate(s, 1 + s % 3) for s in range(400)) for k in range(4)}
    assert {"wrong_tool", "wrong_argument", "stale_observation", "arithmetic_slip",
            "premature_answer"} <= drawn, drawn


def test_a_write_to_any_table_the_gold_steps_leave_alone_is_rejected():
    task = next(t for t in TASKS if t.meta["kind"] == "single")
    traj = ENV.solve(task, random.Random(0))
    assert traj.outcome.verified
    extra = copy.deepcopy(traj)
    k = next(i for i, m in enumerate(extra.messages) if m.get("tool_calls"))
    write = {"id": "call_99", "type": "function", "function": {
        "name": "sql_query", "arguments": json.dumps(
            {"query": "UPDATE customers SET city = 'Atlantis' WHERE id = 3"})}}
    extra.messages[k]["tool_calls"].append(write)
    extra.messages.insert(k + 1 + len(extra.messages[k]["tool_calls"]) - 1, {
        "role": "tool", "tool_call_id": "call_99", "name": "sql_query",
        "content": "ok: 1 row(s) changed"})
    extra.tools = ENV.tools
    verdict = ENV.verify(task, extra)
    assert not verdict.correct and "state" in verdict.detail, verdict.detail


def test_each_task_words_its_schemas_but_never_changes_names_parameters_or_tables_used():
    """Three descriptions per tool and a sliced database schema (tools_schemas): the calls a
    model must make are the same, and sql_query still lists every table the task queries."""
    import re

    from youtu.agentic.envs.tools_schemas import TABLES

    canonical = {t["function"]["name"]: t["function"] for t in ENV.tools}
    wordings: dict[str, set] = {}
    for t in TASKS:
        for schema in ENV.tools_for(t):
            f = schema["function"]
            assert f["parameters"] == canonical[f["name"]]["parameters"]
            wordings.setdefault(f["name"], set()).add(f["description"].split(" Tables")[0])
            if f["name"] == "sql_query":
                listed = set(re.findall(r"(\w+)\(", f["description"]))
                assert listed <= set(TABLES)
                used = {tb for s in t.steps if s.tool == "sql_query" for tb in TABLES
                        if re.search(rf"\b{tb}\b", s.arguments["query"])}
                assert used <= listed, (t.prompt, used, listed)
                assert all(f"{tb}({TABLES[tb]})" in f["description"] for tb in listed)
    assert all(len(w) >= 2 for w in wordings.values()), wordings
