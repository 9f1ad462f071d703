"""BFCL through bfcl-eval's own data and AST checker: a backend that answers with the possible
answers scores 1, one that gets a value wrong scores 0, (ir)relevance follows whether a call was
made; and the task runs on a checkpoint (EngineChat) and on an OpenAI endpoint (our server)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

pytest.importorskip("bfcl_eval")
pytest.importorskip("tree_sitter")

from youtu.eval.tasks.bfcl import load_category, openai_tools, run_bfcl  # noqa: E402
from youtu.serve.client import Reply  # noqa: E402


class AnswerKey:
    """A fake backend: replies with the first acceptable value of every parameter of BFCL's
    possible answer (`wrong=True`: numbers off by one), found by the function names offered."""

    model = "answer-key"

    def __init__(self, wrong: bool = False, call: bool = True):
        self.wrong, self.call = wrong, call
        self.answers = {}
        for category in ("simple_python", "parallel", "multiple"):
            for e in load_category(category, 4):
                self.answers[e["question"][0][-1]["content"]] = e["possible_answer"]

    def complete(self, messages, *, tools=None, max_tokens=1024, thinking=True, on_text=None):
        names = {t["function"]["name"].replace("_", "."): t["function"]["name"] for t in tools}
        names.update({t["function"]["name"]: t["function"]["name"] for t in tools})
        truth = self.answers.get(messages[-1]["content"])
        if not self.call:
            return Reply({"role": "assistant", "content": "I cannot help with that."}, 5, "stop")
        if truth is None:  # irrelevance: call the first tool anyway
            truth = [{tools[0]["function"]["name"]: {}}]
        calls = []
        for i, gt in enumerate(truth):
            (name, params), = gt.items()
            args = {k: v[0] for k, v in params.items() if v and v[0] != ""}
            if self.wrong:
                args = {k: (v + 1 if isinstance(v, int) and not isinstance(v, bool) else v + "x"
                            if isinstance(v, str) else v) for k, v in args.items()}
            calls.append({"id": f"c{i}", "type": "function",
                          "function": {"name": names.get(name, name), "arguments": json.dumps(args)}})
        return Reply({"role": "assistant", "content": None, "tool_calls": calls}, 9, "tool_calls")


def test_the_official_checker_scores_right_and_wrong_calls():
    right = run_bfcl(AnswerKey(), ["simple_python", "parallel", "multiple"], limit=4)
    assert right["scores"] == {"bfcl/simple_python": 1.0, "bfcl/parallel": 1.0, "bfcl/multiple": 1.0}
    assert right["n"] == {"simple_python": 4, "parallel": 4, "multiple": 4}
    wrong = run_bfcl(AnswerKey(wrong=True), ["simple_python", "parallel"], limit=4)
    assert wrong["scores"] == {"bfcl/simple_python": 0.0, "bfcl/parallel": 0.0}
    assert all(r["error"] for r in wrong["rows"])  # the checker says what was wrong
    # irrelevance: right when no call is made
    assert run_bfcl(AnswerKey(call=False), ["irrelevance"], limit=3)["scores"] == {"bfcl/irrelevance": 1.0}
    assert run_bfcl(AnswerKey(), ["irrelevance"], limit=3)["scores"] == {"bfcl/irrelevance": 0.0}


def test_dotted_names_are_sent_openai_safe_and_mapped_back():
    entry = next(e for e in load_category("simple_python", 20) if "." in e["function"][0]["name"])
    tools, names = openai_tools(entry["function"])
    sent = tools[0]["function"]["name"]
    assert "." not in sent and names[sent] == entry["function"][0]["name"]
    assert tools[0]["function"]["parameters"]["type"] == "object"  # BFCL's "dict" converted


def test_unsupported_categories_are_refused_by_name():
    with pytest.raises(ValueError, match="memory_kv.*not supported"):
        run_bfcl(AnswerKey(), ["simple_python", "memory_kv"])
    with pytest.raises(ValueError, match="multi_turn_base.*not a single-turn category"):
        load_category("multi_turn_base")


def test_bfcl_runs_on_a_checkpoint_and_on_an_openai_endpoint(tiny_checkpoint):
    import uvicorn

    from youtu.serve.client import EngineChat, OpenAIChat
    from youtu.serve.config import ServeConfig
    from youtu.serve.engine import load_engine
    from youtu.serve.server import create_app

    engine, tok = load_engine(tiny_checkpoint, max_batch=2, max_seq_len=2048)
    local = run_bfcl(EngineChat(engine, tok, temperature=0), ["simple_python", "irrelevance"],
                     limit=2, max_tokens=8)
    # a random tiny model writes no valid call: it fails the calls and passes irrelevance
    assert local["scores"] == {"bfcl/simple_python": 0.0, "bfcl/irrelevance": 1.0}
    assert {r["id"] for r in local["rows"]} == {"simple_python_0", "simple_python_1",
                                                "irrelevance_0", "irrelevance_1"}

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = create_app(engine, tok, ServeConfig(served_model_name="tiny", temperature=0.0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        remote = run_bfcl(OpenAIChat(url, temperature=0), ["simple_python", "irrelevance"],
                          limit=2, max_tokens=8)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert remote["scores"] == local["scores"]
    assert [r["message"].get("content") for r in remote["rows"]] == \
        [r["message"].get("content") for r in local["rows"]]  # the same greedy replies


def test_youtu_eval_runs_bfcl_as_a_task_group(tiny_checkpoint, tmp_path):
    """`youtu eval --eval.tasks='["bfcl"]'`: the group runs through the engine on the harness's
    model, scores land under bfcl/<category>, per-entry rows in predictions/bfcl.jsonl; it is
    not in the default groups (its package is optional) and bad categories are named."""
    from youtu.errors import ConfigError
    from youtu.eval.config import EvalConfig
    from youtu.eval.runner import evaluate

    assert "bfcl" not in EvalConfig().tasks
    cfg = EvalConfig(tasks=["bfcl"], bfcl_categories=["simple_python", "irrelevance"],
                     bfcl_limit=2)
    res = evaluate(cfg, tiny_checkpoint, tmp_path / "out", device="cpu")
    assert res["scores"] == {"bfcl/simple_python": 0.0, "bfcl/irrelevance": 1.0}
    rows = (tmp_path / "out" / "predictions" / "bfcl.jsonl").read_text().splitlines()
    assert len(rows) == 4
    with pytest.raises(ConfigError, match="bfcl_categories.*web_search_base"):
        evaluate(EvalConfig(tasks=["bfcl"], bfcl_categories=["web_search_base"]),
                 tiny_checkpoint, tmp_path / "bad", device="cpu")
