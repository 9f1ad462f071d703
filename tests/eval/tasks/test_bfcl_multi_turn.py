"""BFCL multi-turn through bfcl-eval's own data, executable API backends and multi-turn
checker: a scripted model that replays the ground-truth calls scores 1 on real entries of
every multi-turn category, one that gets an argument wrong or makes no call scores 0, a model
that never stops calling is force-terminated at BFCL's step limit, and calls to anything but
the environment's API are not run."""

from __future__ import annotations

import ast
import importlib
import inspect
import json

import pytest

pytest.importorskip("bfcl_eval")
pytest.importorskip("tree_sitter")

from youtu.eval.tasks.bfcl import MULTI_TURN_CATEGORIES, run_bfcl  # noqa: E402
from youtu.eval.tasks.bfcl_multi_turn import load_multi_turn, run_multi_turn  # noqa: E402
from youtu.serve.client import Reply  # noqa: E402


def _as_arguments(call: str, classes: list[str]) -> tuple[str, dict]:
    """A BFCL ground-truth call string `f(a, b=2)` -> (name, {param: value}), positional
    arguments named from the API method's signature."""
    from bfcl_eval.constants.executable_backend_config import CLASS_FILE_PATH_MAPPING

    node = ast.parse(call, mode="eval").body
    name, params = node.func.id, []
    for cls_name in classes:
        cls = getattr(importlib.import_module(CLASS_FILE_PATH_MAPPING[cls_name]), cls_name)
        if hasattr(cls, name):
            params = [p for p in inspect.signature(getattr(cls, name)).parameters if p != "self"]
            break
    args = {params[i]: ast.literal_eval(a) for i, a in enumerate(node.args)}
    args.update({k.arg: ast.literal_eval(k.value) for k in node.keywords})
    return name, args


class Replay:
    """A fake chat backend: in each turn, makes all of that turn's ground-truth calls in one
    reply, then answers in text (which ends the turn). `wrong`: the first call of the first
    turn gets its first argument changed (a suffix on a string, a flipped bool); `silent`: never
    calls; `endless`: calls the first ground-truth call forever; `calls`: these calls instead."""

    model = "replay"

    def __init__(self, entries, wrong=False, silent=False, endless=False, calls=None):
        self.by_question = {json.dumps(e["question"][0]): e for e in entries}
        self.wrong, self.silent, self.endless, self.calls = wrong, silent, endless, calls
        self.offered: list[list[str]] = []

    def complete(self, messages, *, tools=None, max_tokens=1024, thinking=True, on_text=None):
        entry = self.by_question[json.dumps([messages[0]])]
        self.offered.append(sorted(t["function"]["name"] for t in tools))
        turn = sum(m["role"] == "user" for m in messages) - 1
        calls = self.calls or entry["ground_truth"][turn]
        if self.endless:
            calls = entry["ground_truth"][0][:1]
        elif messages[-1]["role"] == "tool" or self.silent or not calls:
            return Reply({"role": "assistant", "content": "Done."}, 1, "stop")
        tool_calls = []
        for i, call in enumerate(calls):
            name, args = _as_arguments(call, entry["involved_classes"])
            if self.wrong and turn == 0 and i == 0:
                key = next(iter(args))
                args[key] = not args[key] if isinstance(args[key], bool) else args[key] + "_wrong"
            tool_calls.append({"id": f"c{turn}_{i}", "type": "function",
                               "function": {"name": name, "arguments": json.dumps(args)}})
        return Reply({"role": "assistant", "content": None, "tool_calls": tool_calls}, 9,
                     "tool_calls")


@pytest.fixture(scope="module")
def entries():
    return {c: load_multi_turn(c, 2) for c in MULTI_TURN_CATEGORIES}


def test_replaying_the_ground_truth_scores_one_and_a_wrong_call_zero(entries):
    scores = {}
    for category in MULTI_TURN_CATEGORIES:  # one model per category: their first turns coincide
        right = run_bfcl(Replay(entries[category]), [category], limit=2)
        assert right["n"] == {category: 2}
        assert [r["error"] for r in right["rows"]] == [[], []]
        scores.update(right["scores"])
    assert scores == {f"bfcl/{c}": 1.0 for c in MULTI_TURN_CATEGORIES}
    # entry 0 starts with cd(folder='document'): 'document_wrong' does not exist, so every
    # later call of the turn acts elsewhere. (Entry 1 starts with ls(a=True); ls(a=False)
    # prints the same listing there, and BFCL's checker rightly lets it pass.)
    base = entries["multi_turn_base"][:1]
    wrong = run_bfcl(Replay(base, wrong=True), ["multi_turn_base"], limit=1)
    assert wrong["scores"]["bfcl/multi_turn_base"] == 0.0
    assert {r["error_type"] for r in wrong["rows"]} <= {"multi_turn:instance_state_mismatch",
                                                       "multi_turn:execution_response_mismatch"}
    silent = run_bfcl(Replay(base, silent=True), ["multi_turn_base"], limit=1)
    assert silent["scores"]["bfcl/multi_turn_base"] == 0.0
    assert {r["error_type"] for r in silent["rows"]} == {"multi_turn:empty_turn_model_response"}


def test_miss_func_offers_the_held_out_function_only_from_its_turn(entries):
    entry = entries["multi_turn_miss_func"][0]
    (turn, held), = entry["missed_function"].items()
    model = Replay([entry])
    row = run_multi_turn(model, entry)
    assert row["valid"], row["error"]
    name = held[0]["name"]
    user_turns = [m for m in row["messages"] if m["role"] == "user"]
    assert len(user_turns) == len(entry["question"])
    assert "updated some more functions" in user_turns[int(turn)]["content"]  # BFCL's prompt
    assert name not in model.offered[0] and name in model.offered[-1]


def test_a_model_that_never_stops_calling_is_force_terminated(entries):
    from bfcl_eval.constants.default_prompts import MAXIMUM_STEP_LIMIT

    entry = entries["multi_turn_base"][0]
    model = Replay([entry], endless=True)
    row = run_multi_turn(model, entry)
    assert not row["valid"] and row["error_type"] == "multi_turn:force_terminated"
    assert len(model.offered) == MAXIMUM_STEP_LIMIT + 1 and len(row["turns"]) == 1


def test_calls_outside_the_environment_are_not_run(entries, tmp_path):
    entry = entries["multi_turn_base"][0]
    target = tmp_path / "never_written"
    model = Replay([entry], calls=[f"open(file={str(target)!r}, mode='w')"])
    row = run_multi_turn(model, entry)
    assert not target.exists()
    tool = [m for m in row["messages"] if m["role"] == "tool"]
    assert tool and "not a function of this environment" in tool[0]["content"]
    assert row["turns"][0] == [[], None]  # the refused call ran nothing; the text ended the turn
    assert not row["valid"]


def test_state_of_one_run_does_not_leak_into_the_next(entries):
    """bfcl-eval keeps API instances by model and entry name: two runs of one entry must start
    from the initial state (the second would otherwise find the first's files moved)."""
    import bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils as mt_utils

    entry = entries["multi_turn_base"][0]
    for _ in range(2):
        assert run_multi_turn(Replay([entry]), entry)["valid"]
    assert not [k for k in vars(mt_utils) if k.startswith("youtu_")]


def test_summaries_follow_bfcl_weighting():
    """Multi Turn Overall: unweighted mean of the four; Live Overall: weighted by entries;
    Non-Live: simple is the mean of its three languages; absent parts: no summary."""
    from youtu.eval.tasks.bfcl import summaries

    mt = dict(zip(MULTI_TURN_CATEGORIES, (1.0, 0.5, 0.0, 0.5)))
    got = summaries({f"bfcl/{c}": v for c, v in mt.items()}, {c: 2 for c in mt})
    assert got == {"bfcl/multi_turn": 0.5}
    live = {"live_simple": (1.0, 3), "live_multiple": (0.0, 1), "live_parallel": (0.0, 0),
            "live_parallel_multiple": (0.0, 0)}
    got = summaries({f"bfcl/{c}": a for c, (a, _) in live.items()},
                    {c: n for c, (_, n) in live.items()})
    assert got == {"bfcl/live": 0.75}
    non_live = {"simple_python": 1.0, "simple_java": 0.0, "simple_javascript": 0.5,
                "multiple": 1.0, "parallel": 0.0, "parallel_multiple": 0.0}
    got = summaries({f"bfcl/{c}": a for c, a in non_live.items()}, {c: 1 for c in non_live})
    assert got == {"bfcl/non_live": pytest.approx((0.5 + 1.0) / 4)}
    assert summaries({"bfcl/multi_turn_base": 1.0}, {"multi_turn_base": 1}) == {}


class TextReplay(Replay):
    """Replay writing its calls as the model writes them (`<tool_call>` text), parsed back by
    the chat backends' own parser (`youtu.serve.protocol.assistant_message`)."""

    def complete(self, messages, *, tools=None, **kw):
        from youtu.serve.protocol import assistant_message

        reply = super().complete(messages, tools=tools, **kw).message
        text = reply["content"] or "\n".join(
            f'<tool_call>{{"name": {json.dumps(c["function"]["name"])}, '
            f'"arguments": {c["function"]["arguments"]}}}</tool_call>' for c in reply["tool_calls"])
        names = {t["function"]["name"] for t in tools}
        message, finish = assistant_message(text, True, "stop", names)
        return Reply(message, 9, finish)


def test_the_loop_runs_on_parsed_text_and_its_conversation_renders(entries, tiny_checkpoint):
    """Calls parsed from model text drive the loop to a pass, and the conversation it builds
    (assistant tool_calls, tool results with their call ids) renders in our chat template."""
    from youtu.eval.tasks.bfcl import openai_tools
    from youtu.serve.protocol import build_chat_prompt
    from youtu.tokenizer import Tokenizer

    entry = entries["multi_turn_base"][0]
    row = run_multi_turn(TextReplay([entry]), entry)
    assert row["valid"], row["error"]
    tools, _ = openai_tools(entry["function"])
    tok = Tokenizer.load(tiny_checkpoint)
    text = tok.decode(build_chat_prompt(tok, row["messages"], tools, "auto", False).ids,
                      skip_special=False)
    assert '<tool_call>{"name": "mkdir", "arguments": {"dir_name": "temp"}}</tool_call>' in text
    assert "<tool_response>{\"current_working_directory\": \"document\"}</tool_response>" in text
