"""Function-calling accuracy, BFCL-style: the model writes one call; the function name must
match and the arguments are compared structurally against the acceptable values.

    items = bfcl_items(aptbench_dir(), limit=50) + env_items(ENVIRONMENTS["tools"], n=50)
    res = run_function_calling(lm, items)          # {'score', 'n', 'rows'}

An item is `{"id", "query", "tools": [function schemas], "name": expected function,
"arguments": {param: [acceptable values]}}`: the possible-answer format of the Berkeley
Function Calling Leaderboard (BFCL), where `""` among a parameter's values means it may be
left out. The real BFCL items come from the APTBench release (`tool/bfcl_v4_api_select`,
whose `answer4param` is BFCL's possible answer); our tools environment adds held-out items.
Matching follows BFCL's AST checker: no unknown parameters, every parameter that cannot be
omitted present, each value among the acceptable ones, strings compared after lower-casing and
dropping spaces and the punctuation `,./-_*^`, integers accepted where floats are expected.

The prompt shows the functions and two solved examples, then `Call: <tool_call>`; the
generation up to `</tool_call>` is parsed with the chat template's own parser
(`youtu.tokenizer.chat.parse_tool_calls`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from youtu.eval.harness import LM, GenerationRequest

SHOTS = [
    ([{"name": "get_weather", "description": "Current weather of a city.",
       "parameters": {"type": "object", "properties": {
           "city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
           "required": ["city"]}}],
     "How warm is it in Lisbon right now, in Celsius?",
     {"name": "get_weather", "arguments": {"city": "Lisbon", "unit": "C"}}),
    ([{"name": "math.gcd", "description": "Greatest common divisor of two integers.",
       "parameters": {"type": "object", "properties": {
           "a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}},
      {"name": "math.lcm", "description": "Least common multiple of two integers.",
       "parameters": {"type": "object", "properties": {
           "a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}],
     "What is the greatest common divisor of 84 and 36?",
     {"name": "math.gcd", "arguments": {"a": 84, "b": 36}}),
]


def _block(tools: list[dict[str, Any]], query: str) -> str:
    return (f"Functions: {json.dumps(tools, ensure_ascii=False)}\nUser: {query}\n"
            "Call: <tool_call>")


def build_prompt(tools: list[dict[str, Any]], query: str) -> str:
    """Two solved examples, then the item up to `Call: <tool_call>`."""
    shots = "".join(_block(t, q) + json.dumps(c, ensure_ascii=False) + "</tool_call>\n\n"
                    for t, q, c in SHOTS)
    return shots + _block(tools, query)


def _norm_str(s: str) -> str:
    """BFCL's string standardisation: lower-case, no spaces or ,./-_*^ characters."""
    return re.sub(r"[ ,./\-_*^]", "", s).lower()


def value_matches(got: Any, want: Any) -> bool:
    """One argument value against one acceptable value (structural, BFCL-lenient)."""
    if isinstance(want, bool) or isinstance(got, bool):
        return isinstance(got, bool) and isinstance(want, bool) and got == want
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return float(got) == float(want) and (isinstance(want, float) or isinstance(got, int))
    if isinstance(want, str) and isinstance(got, str):
        return _norm_str(got) == _norm_str(want)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(value_matches(g, w) for g, w in zip(got, want))
    if isinstance(want, dict) and isinstance(got, dict):
        if set(got) == set(want) and all(value_matches(got[k], want[k]) for k in want):
            return True
        # BFCL nests possible answers: a dict parameter's fields are lists of acceptable values.
        return all(isinstance(v, list) for v in want.values()) and args_match(got, want)[0]
    return False


def args_match(args: dict[str, Any], possible: dict[str, list[Any]]) -> tuple[bool, str]:
    """Arguments against a possible answer {param: [acceptable values, "" = may be omitted]}."""
    unknown = sorted(set(args) - set(possible))
    if unknown:
        return False, f"unexpected parameters {unknown}"
    for param, acceptable in possible.items():
        if param not in args:
            if "" not in acceptable:
                return False, f"missing parameter {param!r}"
            continue
        if not any(value_matches(args[param], v) for v in acceptable if v != ""):
            return False, f"{param}={args[param]!r} not in {acceptable!r}"
    return True, "match"


def call_matches(call: dict[str, Any], name: str,
                 arguments: dict[str, list[Any]]) -> tuple[bool, str]:
    """Judge one parsed call {'name', 'arguments': dict} against the possible answer."""
    if call["name"] != name:
        return False, f"called {call['name']!r}, expected {name!r}"
    return args_match(call["arguments"], arguments)


def bfcl_items(root: str | Path, limit: int = 0) -> list[dict[str, Any]]:
    """BFCL single-call items from the APTBench folder (`tool/bfcl_v4_api_select`)."""
    path = Path(root) / "data" / "tool" / "bfcl_v4_api_select" / "input_data.jsonl"
    items = []
    for line in path.read_text().splitlines():
        d = json.loads(line)
        items.append({"id": d["uuid"], "query": d["user_prompt"],
                      "tools": json.loads(d["function"]), "name": d["answer4select"],
                      "arguments": json.loads(d["answer4param"])})
        if limit and len(items) >= limit:
            break
    return items


def env_items(env: Any, n: int, seed: int = 1_000_000) -> list[dict[str, Any]]:
    """Held-out items from an agentic environment: the task prompt and its gold first call,
    at every difficulty (1..max in turn with the seed) and task kind. Where the first turn holds
    parallel calls, any of them is a right first call (`alternatives`); tasks whose right
    behaviour is to call nothing (irrelevance) cannot be asked in this one-call format and are
    skipped."""
    items = []
    for s in range(seed, seed + 50 * n):
        if len(items) >= n:
            break
        task = env.generate(s, 1 + s % env.max_difficulty)
        step = next((st for st in task.steps if st.tool), None)
        if step is None:
            continue
        first_turn = task.meta.get("groups", [[0]])[0]
        calls = [task.steps[k] for k in first_turn] if task.meta.get("groups") else [step]
        tools = [t["function"] for t in env.tools_for(task)]
        items.append({"id": task.id, "query": task.prompt, "tools": tools, "name": step.tool,
                      "arguments": {k: [v] for k, v in step.arguments.items()},
                      "difficulty": task.difficulty, "task_kind": task.meta.get("kind", ""),
                      "alternatives": [{"name": c.tool, "arguments": {
                          k: [v] for k, v in c.arguments.items()}} for c in calls[1:]]})
    return items


def run_function_calling(lm: LM, items: list[dict[str, Any]],
                         max_new_tokens: int = 128) -> dict[str, Any]:
    """Share of items whose single generated call matches (BFCL AST rules)."""
    from youtu.tokenizer.chat import parse_tool_calls

    outputs = lm.generate_until([GenerationRequest(build_prompt(it["tools"], it["query"]),
                                                   max_new_tokens, until=("</tool_call>", "\n\n"))
                                 for it in items])
    rows = []
    for it, out in zip(items, outputs):
        parsed = parse_tool_calls(f"<tool_call>{out}</tool_call>")
        if len(parsed.tool_calls) != 1:
            ok, detail = False, "; ".join(parsed.errors) or "no call"
        else:
            fn = parsed.tool_calls[0]["function"]
            call = {"name": fn["name"], "arguments": json.loads(fn["arguments"])}
            ok, detail = call_matches(call, it["name"], it["arguments"])
            for alt in it.get("alternatives", []):  # another call of the same parallel turn
                if not ok:
                    ok, _ = call_matches(call, alt["name"], alt["arguments"])
        rows.append({"id": it["id"], "output": out, "correct": ok, "detail": detail})
    correct = sum(r["correct"] for r in rows)
    return {"score": correct / max(len(rows), 1), "correct": correct, "n": len(rows), "rows": rows}
