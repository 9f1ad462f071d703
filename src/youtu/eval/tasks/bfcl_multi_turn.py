"""BFCL v4 multi-turn categories (multi_turn_base, multi_turn_miss_func, multi_turn_miss_param,
multi_turn_long_context) with the `bfcl-eval` package's own data, executable backends and
multi-turn checker; reached through `youtu.eval.tasks.bfcl.run_bfcl`:

    res = run_bfcl(EngineChat(engine, tok, temperature=0), ["multi_turn_base"], limit=5)
    res["scores"]   # {"bfcl/multi_turn_base": 0.2}

Each entry is driven as BFCL's FC-mode agent loop does (`BaseHandler.inference_multi_turn_FC`,
bfcl-eval 2026.3.23): the stateful API instances (file system, messaging, trading, travel,
vehicle, ...) are built from the entry's `initial_config`; per user turn the model may call
tools, each call's arguments are turned into BFCL's call string (`convert_to_function_call`)
and run on those instances (`execute_multi_turn_func_call`), the results go back as tool
messages, until a reply has no call or the turn has used BFCL's step limit
(`MAXIMUM_STEP_LIMIT` = 20 steps; beyond it the entry is force-terminated and fails). In the
miss_func category the held-out functions are added at their turn with BFCL's user prompt.
Then `multi_turn_checker` replays the model's calls and the ground truth on fresh instances
and compares, after every turn, the instances' state and the execution results.

Calls are parsed by the same chat backend as the single-turn task (`bfcl.decode`). One
deliberate difference: BFCL `eval`s the call strings it builds from model output, so a call
naming anything but a method of the entry's API classes (say `open`), or with an argument name
that is not an identifier, is not run here; its tool message says why, and the checker, which
replays calls the same way, never sees it. Every call a BFCL backend can execute runs as in BFCL.

bfcl-eval keeps the API instances in a module-level dict named after the model and entry; each
run uses a fresh name and drops its instances when the entry is scored.
"""

from __future__ import annotations

import importlib
import inspect
import keyword
import logging
import types
import uuid
from typing import TYPE_CHECKING, Any

from youtu.eval.tasks.bfcl import MULTI_TURN_CATEGORIES, decode, openai_tools

if TYPE_CHECKING:
    from youtu.serve.client import ChatBackend

logger = logging.getLogger(__name__)



def _mt() -> types.SimpleNamespace:
    """bfcl-eval's multi-turn pieces. All of them import without its declared dependencies."""
    try:
        import bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils as mt_utils
        import bfcl_eval.utils as utils
        from bfcl_eval.constants.default_prompts import (
            DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC,
            MAXIMUM_STEP_LIMIT,
        )
        from bfcl_eval.constants.executable_backend_config import CLASS_FILE_PATH_MAPPING
        from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import multi_turn_checker
        from bfcl_eval.model_handler.utils import convert_to_function_call
    except ImportError as e:
        raise ImportError("BFCL multi-turn needs bfcl-eval: pip install --no-deps bfcl-eval && "
                          f"pip install 'youtu[bfcl]' ({e})") from e
    return types.SimpleNamespace(
        utils=utils, mt_utils=mt_utils, execute=mt_utils.execute_multi_turn_func_call,
        is_empty=mt_utils.is_empty_execute_response, checker=multi_turn_checker,
        to_call=convert_to_function_call, step_limit=MAXIMUM_STEP_LIMIT,
        more_functions_prompt=DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC,
        class_paths=CLASS_FILE_PATH_MAPPING)


def load_multi_turn(category: str, limit: int = 0) -> list[dict[str, Any]]:
    """BFCL's entries of a multi-turn `category` (first `limit`; 0 = all), each with its
    `ground_truth` (per turn, the list of BFCL call strings)."""
    if category not in MULTI_TURN_CATEGORIES:
        raise ValueError(f"{category!r} is not a BFCL multi-turn category; choose from "
                         f"{', '.join(MULTI_TURN_CATEGORIES)}")
    b = _mt()
    entries = b.utils.load_dataset_entry(category)
    if limit:
        entries = entries[:limit]
    truth = {t["id"]: t["ground_truth"] for t in b.utils.load_ground_truth_entry(category)}
    return [{**e, "ground_truth": truth[e["id"]]} for e in entries]


def api_methods(involved_classes: list[str]) -> set[str]:
    """Public method names of the entry's BFCL API classes: the names BFCL's executor binds to
    an instance (everything else it would `eval` as plain Python)."""
    b = _mt()
    names: set[str] = set()
    for class_name in involved_classes:
        cls = getattr(importlib.import_module(b.class_paths[class_name]), class_name)
        names.update(n for n, _ in inspect.getmembers(cls, inspect.isfunction)
                     if not n.startswith("_"))
    return names


def _refusal(call: dict[str, Any], methods: set[str]) -> str | None:
    """Why a decoded call {name: args} is not run (None: it is run as BFCL runs it)."""
    (name, args), = call.items()
    if name not in methods:
        return f"Error during execution: {name!r} is not a function of this environment."
    bad = [k for k in args if not k.isidentifier() or keyword.iskeyword(k)]
    if bad:
        return f"Error during execution: invalid argument names {bad}."
    return None


class MultiTurnRun:
    """One entry through BFCL's FC-mode agent loop, then its checker.

    Args:
        backend: a chat backend of `youtu.serve.client` (`complete(messages, tools=...)`).
        entry: an entry of `load_multi_turn`.
        max_tokens, thinking: per reply, as in the single-turn task.
    """

    def __init__(self, backend: ChatBackend, entry: dict[str, Any], *, max_tokens: int = 512,
                 thinking: bool = False):
        self.backend, self.entry = backend, entry
        self.max_tokens, self.thinking = max_tokens, thinking
        self.category = entry["id"].rsplit("_", 1)[0]
        # A fresh name per run: bfcl-eval finds the instances of later turns by this name.
        self.name = f"youtu_{uuid.uuid4().hex[:12]}"
        self.methods = api_methods(entry["involved_classes"])

    def _execute(self, calls: list[str]) -> list[str]:
        b = _mt()
        results, _ = b.execute(calls, self.entry.get("initial_config", {}),
                               self.entry["involved_classes"], self.name, self.entry["id"],
                               long_context="long_context" in self.category, is_evaL_run=False)
        return results

    def infer(self) -> dict[str, Any]:
        """Drive the conversation. Returns {"turns": per turn, per step, the call strings the
        step ran (None: no call, which ends the turn), "messages": the whole conversation,
        "force_quit": whether a turn ran past the step limit}."""
        b = _mt()
        self._execute([])  # build the instances from initial_config, as BFCL does first
        functions = list(self.entry["function"])
        holdout = self.entry.get("missed_function", {})
        tools, names = openai_tools(functions)
        messages: list[dict[str, Any]] = []
        turns: list[list[list[str] | None]] = []
        force_quit = False
        for turn, turn_messages in enumerate(self.entry["question"]):
            if str(turn) in holdout:  # miss_func: the held-out functions arrive now
                functions += holdout[str(turn)]
                tools, names = openai_tools(functions)
                turn_messages = [{"role": "user", "content": b.more_functions_prompt}]
            messages += turn_messages
            steps: list[list[str] | None] = []
            while True:
                reply = self.backend.complete(messages, tools=tools, max_tokens=self.max_tokens,
                                              thinking=self.thinking).message
                messages.append({k: reply[k] for k in ("role", "content", "tool_calls")
                                 if k in reply})
                try:
                    decoded = decode(reply, names)
                except ValueError as e:  # arguments not a JSON object: BFCL ends the turn
                    logger.debug("bfcl %s turn %d: %s", self.entry["id"], turn, e)
                    decoded = []
                if not decoded:
                    steps.append(None)
                    break
                refusals = [_refusal(c, self.methods) for c in decoded]
                run = [b.to_call(c)[0] for c, r in zip(decoded, refusals) if r is None]
                ran = iter(self._execute(run) if run else [])
                results = [r if r is not None else next(ran) for r in refusals]
                steps.append(run)
                for call, result in zip(reply["tool_calls"], results):
                    messages.append({"role": "tool", "content": result,
                                     "tool_call_id": call.get("id", "")})
                if len(steps) > b.step_limit:
                    force_quit = True
                    break
            turns.append(steps)
            if force_quit:
                break
        return {"turns": turns, "messages": messages, "force_quit": force_quit}

    def check(self, turns: list[list[list[str] | None]]) -> dict[str, Any]:
        """BFCL's verdict on the calls the model ran: {"valid", "error_message", "error_type"}
        (as its eval runner: a force-terminated run fails; steps without calls are skipped)."""
        b = _mt()
        truth = self.entry["ground_truth"]
        if len(turns) != len(truth):
            return {"valid": False, "error_type": "multi_turn:force_terminated",
                    "error_message": f"the model was force-terminated: {len(turns)} of "
                                     f"{len(truth)} turns ran"}
        decoded = [[s for s in steps if s and not b.is_empty(s)] for steps in turns]
        entry = {k: v for k, v in self.entry.items() if k != "ground_truth"}
        verdict = b.checker(decoded, truth, entry, self.category, self.name)
        return {"valid": bool(verdict["valid"]), "error_message": verdict.get("error_message"),
                "error_type": verdict.get("error_type")}

    def close(self) -> None:
        """Drop this run's API instances from bfcl-eval's module globals."""
        held = vars(_mt().mt_utils)
        for key in [k for k in held if k.startswith(self.name + "_")]:
            del held[key]


def run_multi_turn(backend: ChatBackend, entry: dict[str, Any], *, max_tokens: int = 512,
                   thinking: bool = False) -> dict[str, Any]:
    """One multi-turn entry, inferred and scored: a row {id, category, valid, error,
    error_type, turns, messages}. A failing request fails the entry (BFCL's inference error)."""
    run = MultiTurnRun(backend, entry, max_tokens=max_tokens, thinking=thinking)
    try:
        try:
            out = run.infer()
        except Exception as e:  # noqa: BLE001 - one failing request scores 0, the run goes on
            logger.warning("bfcl %s: request failed: %s", entry["id"], e)
            return {"id": entry["id"], "category": run.category, "valid": False,
                    "error": [f"inference failed: {e}"], "error_type": "multi_turn:inference_error",
                    "turns": [], "messages": []}
        verdict = run.check(out["turns"])
    finally:
        run.close()
    return {"id": entry["id"], "category": run.category, "valid": verdict["valid"],
            "error": [verdict["error_message"]] if verdict["error_message"] else [],
            "error_type": verdict["error_type"], "turns": out["turns"],
            "messages": out["messages"]}

