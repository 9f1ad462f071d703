"""Berkeley Function Calling Leaderboard (BFCL v4) with the `bfcl-eval` package's own data, AST
checker and multi-turn backends and checker, on our checkpoints or any OpenAI-compatible endpoint.

    from youtu.eval.tasks.bfcl import run_bfcl
    from youtu.serve.client import EngineChat, OpenAIChat
    engine, tok = load_engine("runs/tiny/sft")                    # youtu.serve.engine
    res = run_bfcl(EngineChat(engine, tok, temperature=0), ["simple_python", "irrelevance"])
    res = run_bfcl(OpenAIChat("http://127.0.0.1:8000/v1", temperature=0), ["live_simple"])
    res = run_bfcl(backend, MULTI_TURN_CATEGORIES, limit=20)   # + "bfcl/multi_turn"
    res["scores"]   # {"bfcl/simple_python": 0.62, "bfcl/irrelevance": 0.81}

The backend is built by the caller (a layer above eval: youtu.eval may not import youtu.serve,
tests/test_imports.py); anything with `complete(messages, tools=, max_tokens=, thinking=)`
returning an object with an OpenAI assistant `.message` works.

Install (bfcl-eval's declared dependencies are every vendor SDK its leaderboard calls plus
sentence-transformers, faiss and a pinned numpy 1.26; the checker needs none of them):

    pip install --no-deps bfcl-eval && pip install '.[bfcl]'    # tree-sitter parsers, tenacity

(bfcl-eval's loaders take file locks under $BFCL_PROJECT_ROOT, by default its install folder;
point it at a writable folder when site-packages is read-only.)

Categories are BFCL's own names: the single-turn AST set `CATEGORIES` (simple_python,
simple_java, simple_javascript, multiple, parallel, parallel_multiple, irrelevance and the
live_* ones) and the multi-turn set `MULTI_TURN_CATEGORIES` (multi_turn_base, _miss_func,
_miss_param, _long_context: `bfcl_multi_turn.py`, BFCL's agent loop over its executable API
backends and its state/response checker). Each single-turn entry goes to the model as BFCL's
function-calling (FC) mode sends it to an OpenAI model: the conversation as given, the
functions converted by bfcl-eval's `convert_to_tool` (dots in names become underscores, mapped
back before checking). The returned `tool_calls` are BFCL's decoded output
`[{name: {param: value}}]`, checked with `ast_checker` against the possible answers;
(ir)relevance entries pass when the reply has (no) call, as in BFCL's runner.

Scores are accuracies per category, plus BFCL's leaderboard summaries where every category
they average was run (`summaries`, the formulas of bfcl-eval's `generate_leaderboard_csv`):
`bfcl/non_live` (Non-Live Overall Acc: unweighted mean of simple = mean(simple_python,
simple_java, simple_javascript), multiple, parallel, parallel_multiple), `bfcl/live` (Live
Overall Acc: the four live AST categories weighted by entry count) and `bfcl/multi_turn`
(Multi Turn Overall Acc: unweighted mean of the four multi-turn categories). BFCL counts a
category it did not run as 0 in these; here the summary is left out instead. BFCL's "Overall
Acc" (weights 10/10/10/30/40 over non-live, live, irrelevance, multi-turn and agentic) needs
the agentic memory and web-search categories, which need its memory backends and a search
API: they, and format sensitivity, are refused by name.
"""

from __future__ import annotations

import json
import logging
import sys
import types
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from youtu.serve.client import ChatBackend

logger = logging.getLogger(__name__)

CATEGORIES = ("simple_python", "simple_java", "simple_javascript", "multiple", "parallel",
              "parallel_multiple", "irrelevance", "live_simple", "live_multiple",
              "live_parallel", "live_parallel_multiple", "live_irrelevance", "live_relevance")
"""BFCL v4 single-turn categories (its NON_LIVE_CATEGORY + LIVE_CATEGORY)."""
MULTI_TURN_CATEGORIES = ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param",
                         "multi_turn_long_context")
"""BFCL v4's scored multi-turn categories (its MULTI_TURN_CATEGORY)."""
ALL_CATEGORIES = CATEGORIES + MULTI_TURN_CATEGORIES
"""Every category this task scores."""
MODEL_NAME = "youtu"
"""Name given to the checker; its only use there is whether to turn '_' back into '.' in
function names, which we already did."""


def _bfcl() -> types.SimpleNamespace:
    """bfcl-eval's loaders, tool converter and AST checker.

    Its checker module imports `bfcl_eval.constants.model_config` for one flag per model
    (`underscore_to_dot`), and that module imports every vendor SDK. Where those are absent
    (the `--no-deps` install above) a stand-in module with just the mapping is registered.
    """
    try:
        import bfcl_eval.utils as utils
        from bfcl_eval.constants.enums import Language, ModelStyle
        from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI
        from bfcl_eval.model_handler.utils import convert_to_tool
    except ImportError as e:
        raise ImportError("the BFCL task needs bfcl-eval: pip install --no-deps bfcl-eval && "
                          f"pip install 'youtu[bfcl]' ({e})") from e
    no_rename = types.SimpleNamespace(underscore_to_dot=False)
    try:
        from bfcl_eval.constants import model_config
        model_config.MODEL_CONFIG_MAPPING.setdefault(MODEL_NAME, no_rename)
    except ImportError:  # vendor SDKs not installed: the checker only needs our entry
        stand_in = types.ModuleType("bfcl_eval.constants.model_config")
        stand_in.MODEL_CONFIG_MAPPING = {MODEL_NAME: no_rename}
        sys.modules["bfcl_eval.constants.model_config"] = stand_in
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker

    return types.SimpleNamespace(utils=utils, Language=Language, ModelStyle=ModelStyle,
                                 mapping=GORILLA_TO_OPENAPI, convert_to_tool=convert_to_tool,
                                 ast_checker=ast_checker)


def load_category(category: str, limit: int = 0) -> list[dict[str, Any]]:
    """BFCL's entries of `category` (first `limit`; 0 = all), each with its `possible_answer`
    (the ground truth; absent for relevance categories) and `checker_function` (the function
    docs as the checker reads them)."""
    if category not in CATEGORIES:
        hint = (" (a multi-turn category: bfcl_multi_turn.load_multi_turn)"
                if category in MULTI_TURN_CATEGORIES else "")
        raise ValueError(f"BFCL category {category!r} is not a single-turn category{hint}; "
                         f"choose from {', '.join(CATEGORIES)}")
    b = _bfcl()
    entries = b.utils.load_dataset_entry(category)  # what the model sees: with BFCL's hints
    # The checker reads the unmodified docs (Java/JS types are turned into "string" for the model)
    docs = {e["id"]: e["function"] for e in
            b.utils.load_dataset_entry(category, include_language_specific_hint=False)}
    entries = [{**e, "checker_function": docs[e["id"]]} for e in entries]
    if limit:
        entries = entries[:limit]
    if not b.utils.is_relevance_or_irrelevance(category):
        truth = {t["id"]: t["ground_truth"] for t in b.utils.load_ground_truth_entry(category)}
        entries = [{**e, "possible_answer": truth[e["id"]]} for e in entries]
    return entries


def openai_tools(functions: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """BFCL function docs -> OpenAI tools (bfcl-eval's converter), and sent name -> BFCL name."""
    b = _bfcl()
    tools = b.convert_to_tool(functions, b.mapping, b.ModelStyle.OPENAI_COMPLETIONS)
    names = {t["function"]["name"]: f["name"] for t, f in zip(tools, functions)}
    return tools, names


def decode(message: dict[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
    """An OpenAI assistant message -> BFCL's decoded output [{function: {param: value}}].
    Raises ValueError when a call's arguments are not a JSON object (a decode failure)."""
    out = []
    for call in message.get("tool_calls") or []:
        fn = call["function"]
        args = fn.get("arguments") or "{}"
        args = json.loads(args) if isinstance(args, str) else args
        if not isinstance(args, dict):
            raise ValueError(f"arguments of {fn['name']} are not a JSON object")
        out.append({names.get(fn["name"], fn["name"]): args})
    return out


def check(entry: dict[str, Any], category: str, message: dict[str, Any],
          names: dict[str, str]) -> dict[str, Any]:
    """BFCL's verdict on one reply: {"valid": bool, "error": [...], "error_type": ...}."""
    b = _bfcl()
    try:
        decoded = decode(message, names)
    except (ValueError, json.JSONDecodeError) as e:
        decoded, error = None, f"decode failed: {e}"
    else:
        error = None
    if b.utils.is_relevance_or_irrelevance(category):
        has_call = decoded is not None and not b.utils.is_empty_output(decoded)
        valid = has_call != ("irrelevance" in category)
        return {"valid": valid, "error": [] if valid else ["a call was made" if has_call else
                                                           "no call was made"],
                "error_type": None if valid else "relevance"}
    if decoded is None or not b.utils.is_function_calling_format_output(decoded):
        return {"valid": False, "error": [error or "no function call in the reply"],
                "error_type": "ast_decoder:decoder_failed"}
    language = (b.Language.JAVA if b.utils.is_java(category) else
                b.Language.JAVASCRIPT if b.utils.is_js(category) else b.Language.PYTHON)
    return b.ast_checker(entry["checker_function"], decoded, entry["possible_answer"], language,
                         category, MODEL_NAME)


def check_categories(categories: Sequence[str]) -> None:
    """Raise ValueError naming the categories this task does not score."""
    unknown = [c for c in categories if c not in ALL_CATEGORIES]
    if unknown:
        raise ValueError(f"BFCL categories {unknown} are not supported here; choose from "
                         f"{', '.join(ALL_CATEGORIES)} (memory, web search and format "
                         "sensitivity need BFCL's memory backends and a search API)")


def summaries(scores: dict[str, float], counts: dict[str, int]) -> dict[str, float]:
    """BFCL's leaderboard summaries (see the module docstring) over `scores` ({"bfcl/<cat>":
    accuracy}) and `counts` ({cat: entries}); a summary is left out unless all its
    categories are present."""
    acc = {c[len("bfcl/"):]: v for c, v in scores.items()}
    out = {}
    simple = ("simple_python", "simple_java", "simple_javascript")
    non_live = ("multiple", "parallel", "parallel_multiple")
    if all(c in acc for c in simple + non_live):
        parts = [sum(acc[c] for c in simple) / len(simple)] + [acc[c] for c in non_live]
        out["bfcl/non_live"] = sum(parts) / len(parts)
    live = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple")
    if all(c in acc for c in live) and sum(counts[c] for c in live):
        out["bfcl/live"] = sum(acc[c] * counts[c] for c in live) / sum(counts[c] for c in live)
    if all(c in acc for c in MULTI_TURN_CATEGORIES):
        out["bfcl/multi_turn"] = sum(acc[c] for c in MULTI_TURN_CATEGORIES) / 4
    return out


def _single_turn_row(backend: ChatBackend, entry: dict[str, Any], category: str, *,
                     max_tokens: int, thinking: bool) -> dict[str, Any]:
    tools, names = openai_tools(entry["function"])
    messages = entry["question"][0]  # single-turn: one turn of messages
    try:
        reply = backend.complete(messages, tools=tools or None, max_tokens=max_tokens,
                                 thinking=thinking)
        message = reply.message
    except Exception as e:  # noqa: BLE001 - one failing request scores 0, the run goes on
        logger.warning("bfcl %s: request failed: %s", entry["id"], e)
        message = {"role": "assistant", "content": None, "error": str(e)}
    verdict = check(entry, category, message, names)
    return {"id": entry["id"], "category": category, "valid": bool(verdict["valid"]),
            "error": verdict.get("error"), "message": message}


def run_bfcl(backend: ChatBackend, categories: Sequence[str] = CATEGORIES, *, limit: int = 0,
             max_tokens: int = 512, thinking: bool = False) -> dict[str, Any]:
    """Score `backend` (EngineChat on a checkpoint, OpenAIChat on any endpoint) on BFCL.

    Args:
        backend: a chat backend of `youtu.serve.client`.
        categories: BFCL category names (`CATEGORIES`, `MULTI_TURN_CATEGORIES`).
        limit: entries per category (0 = all).
        max_tokens: generation budget per reply.
        thinking: thinking mode of the chat template (BFCL FC mode scores the calls only).

    Returns:
        {"scores": {"bfcl/<category>": accuracy, plus `summaries`}, "n": {category: entries},
        "rows": [per entry: id, category, valid, error, and the reply (single-turn `message`)
        or the conversation (multi-turn `messages`, `turns`: the calls run per step)]}.
    """
    check_categories(categories)
    scores, counts, rows = {}, {}, []
    for category in categories:
        if category in MULTI_TURN_CATEGORIES:
            from youtu.eval.tasks.bfcl_multi_turn import load_multi_turn, run_multi_turn

            cat_rows = [run_multi_turn(backend, e, max_tokens=max_tokens, thinking=thinking)
                        for e in load_multi_turn(category, limit)]
        else:
            cat_rows = [_single_turn_row(backend, e, category, max_tokens=max_tokens,
                                         thinking=thinking)
                        for e in load_category(category, limit)]
        passed = sum(r["valid"] for r in cat_rows)
        rows += cat_rows
        counts[category] = len(cat_rows)
        scores[f"bfcl/{category}"] = passed / len(cat_rows) if cat_rows else 0.0
        logger.info("bfcl %s: %d/%d", category, passed, len(cat_rows))
    scores.update(summaries(scores, counts))
    return {"scores": scores, "n": counts, "rows": rows}
