"""Agentic cloze: held-out items in the mid-training chat format, oracle = 100%, first-choice =
share of gold-first items, token boundaries through the harness, context capping."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from youtu.agentic.render import render_text
from youtu.eval.config import CLOZE_KINDS, EvalConfig
from youtu.eval.harness import LM, CheckpointLM, Loglikelihood, RollingLoglikelihood
from youtu.eval.runner import evaluate
from youtu.eval.tasks.cloze import (SEED, _trajectory, build_items, fit_context, make_item,
                                    run_cloze)
from youtu.tokenizer.chat import (ASSISTANT, BOS, END_THINK, END_TOOL_CALL, EOS, TOOL_CALL,
                                  TOOL_RESPONSE)

ENVS = ("math", "code", "tools", "research")
N = 3


@pytest.fixture(scope="module")
def items():
    return build_items(ENVS, CLOZE_KINDS, N)


class ChoiceLM(LM):
    """A fake model scoring each candidate with `score(context, candidate, index among the
    context's candidates so far)`; no tokenizer, so contexts are never capped."""

    def __init__(self, score, max_length: int = 1 << 20):
        self.score, self.max_length, self.name = score, max_length, "choice"

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[Loglikelihood]:
        seen: dict[str, int] = {}
        out = []
        for ctx, cand in requests:
            out.append(Loglikelihood(self.score(ctx, cand, seen.get(ctx, 0)), False, 1))
            seen[ctx] = seen.get(ctx, 0) + 1
        return out


def test_items_are_held_out_deterministic_and_continue_the_trained_text(items):
    # math offers one tool: no tool items there (the gold tool would be the same on every item)
    assert len(items) == (len(ENVS) * len(CLOZE_KINDS) - 1) * N
    assert not [it for it in items if it.env == "math" and it.kind == "tool"]
    assert len({it.id for it in items}) == len(items)
    for it in items:
        assert SEED <= it.seed < SEED + 1_000_000  # disjoint from the probes' [1M, 2M)
        assert len(set(it.candidates)) == 4 and it.sources[it.gold] == "gold"
        traj = _trajectory(it.env, it.seed, 1 + (it.seed - SEED) % 3)
        assert not traj.provenance["mistakes"]
        # context + gold = a prefix of the mid-training text of the gold trajectory
        assert render_text(traj).startswith(it.context() + it.candidates[it.gold])
        assert it.context().startswith(BOS) and traj.task.prompt in it.head
        if it.kind == "answer":
            assert it.tail == ASSISTANT and all(c.endswith(EOS) for c in it.candidates)
        else:
            assert it.tail.endswith(END_THINK)
            assert all(c.startswith("\n\n" + TOOL_CALL) and c.endswith(EOS)
                       for c in it.candidates)
            for c in it.candidates:  # no candidate repeats a call
                calls = [x.split(END_TOOL_CALL)[0] for x in c.split(TOOL_CALL)[1:]]
                assert len(set(calls)) == len(calls)
    # the item kinds use the distractors they promise
    assert {s for it in items if it.kind == "tool" for s in it.sources} == {"gold", "wrong_tool"}
    assert {s for it in items if it.kind == "args" for s in it.sources} == {"gold", "near_args"}
    assert {s for it in items if it.kind == "action" for s in it.sources} >= {
        "gold", "wrong_tool", "near_args", "other_task"}
    assert "near_miss" in {s for it in items if it.kind == "answer" for s in it.sources}
    again = make_item(items[0].env, items[0].kind, items[0].seed, 1)
    assert again == items[0]
    with pytest.raises(ValueError, match=">= 1,000,000"):
        build_items(("math",), ("action",), 1, seed=999_999)


def test_items_built_in_worker_processes_equal_the_serial_build(items):
    """Worker processes make the first seeds' items (SCAN_CHUNK seeds a job); beyond them the
    scan goes on serially: 16 tools/args items need seed offset 25, past the prefetched 0..23."""
    assert build_items(ENVS, CLOZE_KINDS, N, workers=3) == items
    serial = build_items(("tools",), ("args", "tool"), 16, workers=1)
    assert max(it.seed for it in serial) - SEED >= 16 + 16 // 4 + 4
    assert build_items(("tools",), ("args", "tool"), 16, workers=2) == serial


def _killed(*args, **kwargs):
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_item_worker_is_an_error_not_a_hang(monkeypatch):
    from youtu.errors import RunError
    from youtu.eval.tasks import cloze

    monkeypatch.setattr(cloze, "_scan", _killed)
    with pytest.raises(RunError, match="process building cloze items died"):
        build_items(("math",), ("action",), 2, seed=SEED + 7, workers=2)


def test_oracle_scores_100_and_first_choice_scores_the_gold_first_share(items):
    gold = {(it.context(), it.candidates[it.gold]) for it in items}
    oracle = run_cloze(ChoiceLM(lambda c, x, i: 0.0 if (c, x) in gold else -50.0), items)
    assert oracle["scores"]["cloze"] == 1.0
    assert all(v == 1.0 for k, v in oracle["scores"].items())
    first = run_cloze(ChoiceLM(lambda c, x, i: -10.0 * i), items)
    share = sum(it.gold == 0 for it in items) / len(items)
    assert 0.1 < share < 0.45  # the shuffle puts gold anywhere
    by_task: dict[str, list[bool]] = {}
    for it in items:
        by_task.setdefault(f"{it.env}/{it.kind}", []).append(it.gold == 0)
    for task, hits in by_task.items():  # each task scores its own gold-first share
        assert first["scores"][f"cloze/{task}"] == pytest.approx(sum(hits) / len(hits))
    env_means = [first["scores"][f"cloze/{e}"] for e in ENVS]
    assert first["scores"]["cloze"] == pytest.approx(sum(env_means) / len(ENVS))
    assert first["chance"]["cloze"] == 0.25 and first["chance"]["cloze/code/args"] == 0.25
    assert set(first["scores"]) == ({"cloze"} | {f"cloze/{e}" for e in ENVS}
                                    | {f"cloze/{e}/{k}" for e in ENVS for k in CLOZE_KINDS}) - {
                                        "cloze/math/tool"}
    rows = first["rows"]
    assert [r["correct"] for r in rows] == [it.gold == 0 for it in items]
    task = first["tasks"]["tools/tool"]
    assert task["items"] == N and set(task["beats"]) == {"wrong_tool"}


def test_normalised_and_summed_accuracy_differ_by_length(items):
    # log p = -bytes: every candidate has the same per-byte score (ties -> first), while the
    # sum prefers the shortest candidate
    res = run_cloze(ChoiceLM(lambda c, x, i: -float(len(x.encode()))), items)
    shortest = [min(range(4), key=lambda i: (len(it.candidates[i].encode()), i)) for it in items]
    assert [r["pred_sum"] for r in res["rows"]] == shortest
    assert all(r["pred"] == 0 for r in res["rows"])


def test_context_and_candidate_tokenize_as_the_trained_text(items, tiny_checkpoint):
    lm = CheckpointLM(tiny_checkpoint, max_length=4096)
    tok = lm.codec.tok
    for it in items[::3]:
        ctx, dropped = fit_context(lm, it)
        assert dropped == 0 and ctx == it.context().removeprefix(BOS)  # BOS comes from the LM
        for cand in it.candidates:
            ctx_ids, cont_ids = lm.encode_pair(ctx, cand)
            assert ctx_ids + cont_ids == tok.encode(it.context() + cand, allow_special=True)
            assert tok.decode(cont_ids, skip_special=False) == cand
            if it.kind == "answer":
                assert cont_ids[0] == tok.special("<think>")
            else:
                assert tok.decode(cont_ids[:1], skip_special=False) == "\n\n"
                assert cont_ids[1] == tok.special(TOOL_CALL)


def test_long_contexts_drop_the_oldest_turns_first(items, tiny_checkpoint):
    lm = CheckpointLM(tiny_checkpoint, max_length=4096)
    it = max(items, key=lambda it: len(it.turns))
    full = len(lm.encode(it.context())) + max(len(lm.encode(c)) for c in it.candidates)
    ctx, dropped = fit_context(lm, it, max_tokens=full - 1)
    assert dropped == 1 and ctx == (it.head + "".join(it.turns[1:]) + it.tail).removeprefix(BOS)
    need = len(lm.encode(it.head)) + sum(len(lm.encode(t)) for t in it.turns[-1:])
    ctx, dropped = fit_context(lm, it, max_tokens=need + 60)
    assert dropped >= len(it.turns) - 1 and ctx.startswith(it.head.removeprefix(BOS))
    # system prompt, tools and task alone too long: their first lines go, the end stays
    ctx, dropped = fit_context(lm, it, max_tokens=len(lm.encode(it.tail)) + 300)
    assert dropped == len(it.turns) and ctx.endswith(it.tail)
    assert len(lm.encode(ctx)) + max(len(lm.encode(c)) for c in it.candidates) <= 300 + len(
        lm.encode(it.tail)) and it.head.splitlines()[-1] in ctx
    assert TOOL_RESPONSE not in ctx


def test_shared_contexts_score_like_separate_ones(items, tiny_checkpoint):
    lm = CheckpointLM(tiny_checkpoint, max_length=4096, batch_size=3, max_batch_tokens=6000)
    some = [it for it in items if it.env in ("math", "research")][:6]
    requests = [(fit_context(lm, it)[0], c) for it in some for c in it.candidates]
    shared = lm.loglikelihood(requests)
    lm._score_shared = lambda groups: None  # every pair scored whole
    whole = lm.loglikelihood(requests)
    assert [r.num_tokens for r in shared] == [r.num_tokens for r in whole]
    assert [r.is_greedy for r in shared] == [r.is_greedy for r in whole]
    assert max(abs(a.logprob - b.logprob) for a, b in zip(shared, whole)) < 1e-3


def test_runner_writes_cloze_scores_chance_and_predictions(tmp_path):
    cfg = EvalConfig(tasks=["cloze"], probe_envs=["tools"], cloze_kinds=["tool", "answer"],
                     cloze_items=2)
    res = evaluate(cfg, str(tmp_path / "ckpt"), tmp_path / "out",
                   lm=ChoiceLM(lambda c, x, i: -float(i)))
    assert set(res["scores"]) == {"cloze", "cloze/tools", "cloze/tools/tool",
                                  "cloze/tools/answer"}
    details = res["details"]["cloze"]
    assert details["chance"]["cloze"] == 0.25
    rows = [json.loads(x) for x in open(details["predictions"])]
    assert len(rows) == 4 and {r["kind"] for r in rows} == {"tool", "answer"}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| score | choice | chance |" not in report  # one labelled column per model
    assert "| **cloze** |" in report and "| chance |" in report.splitlines()[
        next(i for i, line in enumerate(report.splitlines()) if "**cloze**" in line) - 2]


class RecordingLM(ChoiceLM):
    """ChoiceLM that also scores whole texts (bpb), remembering every text it was given."""

    def __init__(self, score):
        super().__init__(score)
        self.texts: list[str] = []

    def loglikelihood_rolling(self, texts):
        self.texts += texts
        return [RollingLoglikelihood(-float(len(t)), len(t), len(t.encode())) for t in texts]


def test_cloze_and_bpb_inputs_built_in_the_background_equal_the_serial_build(tmp_path, monkeypatch):
    import youtu.eval.runner as runner
    from youtu.eval.tasks.bpb import _heldout, heldout_documents

    cfg = EvalConfig(tasks=["cloze", "bpb"], probe_envs=["tools"], cloze_kinds=["tool", "answer"],
                     cloze_items=2, cloze_seed=SEED + 900, bpb_docs=2, bpb_doc_chars=300)
    monkeypatch.setattr(runner, "_PREFETCH", {})
    monkeypatch.setenv("YOUTU_EVAL_WORKERS", "1")  # too few cores: nothing starts
    assert runner.prefetch_inputs(cfg) == [] and runner._PREFETCH == {}
    monkeypatch.setenv("YOUTU_EVAL_WORKERS", "2")
    background, serial = RecordingLM(lambda c, x, i: -float(i)), RecordingLM(lambda c, x, i: -float(i))
    misses = _heldout.cache_info().misses
    res = evaluate(cfg, str(tmp_path / "ckpt"), tmp_path / "bg", lm=background)
    assert set(runner._PREFETCH) == {runner._cloze_key(cfg), runner._bpb_key(cfg)}
    assert _heldout.cache_info().misses == misses  # the documents were built in another process
    monkeypatch.setattr(runner, "_PREFETCH", {})
    monkeypatch.setenv("YOUTU_EVAL_WORKERS", "1")
    want = evaluate(cfg, str(tmp_path / "ckpt"), tmp_path / "serial", lm=serial)
    assert runner._PREFETCH == {}
    assert res["scores"] == want["scores"] and background.texts == serial.texts
    assert serial.texts == [t for ts in heldout_documents(2, 300).values() for t in ts]


def test_a_failed_background_build_raises_in_its_group_and_is_not_kept(tmp_path, monkeypatch):
    import concurrent.futures as cf

    import youtu.eval.runner as runner

    cfg = EvalConfig(tasks=["cloze"], probe_envs=["tools"], cloze_kinds=["answer"], cloze_items=1)
    failed = cf.Future()
    failed.set_exception(ValueError("environment 'tools' yields no cloze answer items"))
    monkeypatch.setattr(runner, "_PREFETCH", {runner._cloze_key(cfg): failed})
    with pytest.raises(ValueError, match="yields no cloze"):
        evaluate(cfg, str(tmp_path / "ckpt"), tmp_path / "out", lm=ChoiceLM(lambda c, x, i: 0.0))
    assert runner._PREFETCH == {}


def test_config_keeps_cloze_seeds_apart_from_the_probes():
    assert "cloze" in EvalConfig().tasks
    with pytest.raises(ValueError, match="cloze_seed"):
        EvalConfig(cloze_seed=1_500_000)
    with pytest.raises(ValueError, match="cloze_seed"):
        EvalConfig(cloze_seed=500)
    with pytest.raises(ValueError, match="cloze_kinds"):
        EvalConfig(cloze_kinds=["plan"])
    EvalConfig(probe_seed=5_000_000, cloze_seed=3_000_000)


def test_tools_contexts_do_not_spell_out_the_gold_call():
    """The open turn's thinking states the intent of the next step, not the call: argument
    values the conversation so far does not contain (unit symbols, SQL, zone names) must not
    appear in it, so choosing the gold call is not copying."""
    checked = 0
    for kind in ("action", "args"):
        for it in build_items(("tools",), (kind,), 12):
            gold = it.candidates[it.gold]
            calls = [json.loads(c.split(END_TOOL_CALL)[0])
                     for c in gold.split(TOOL_CALL)[1:]]
            earlier = it.head + "".join(it.turns)
            for call in calls:
                for value in call["arguments"].values():
                    text = value if isinstance(value, str) else json.dumps(value)
                    if len(text) > 2 and text not in earlier:
                        checked += 1
                        assert text not in it.tail, (it.id, text, it.tail[-300:])
    assert checked > 10
