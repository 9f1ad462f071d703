"""Bits per byte: held-out sources, JSONL input, pooled numbers from the harness."""

from __future__ import annotations

import json
import math

import pytest

from youtu.eval.harness import CheckpointLM
from youtu.eval.tasks.bpb import heldout_documents, load_documents, run_bpb


def test_builtin_heldout_documents():
    docs = heldout_documents(docs_per_domain=2, chars=500)
    assert {"stem", "code", "commonsense"} <= set(docs)
    assert all(len(v) == 2 for v in docs.values())
    assert "def " in docs["code"][0] and "Question:" in docs["stem"][0]
    assert len(docs["commonsense"][0]) >= 500
    assert docs == heldout_documents(docs_per_domain=2, chars=500)  # deterministic


def test_heldout_documents_are_built_once_per_process(monkeypatch):
    """Each evaluated model used to rebuild them (the agent documents run the scripted
    teacher); the cached copy is handed out fresh, so a caller's edit does not leak."""
    from youtu.eval.tasks import bpb

    calls = []
    real = bpb._agent
    monkeypatch.setattr(bpb, "_agent", lambda n: calls.append(n) or real(n))
    bpb._heldout.cache_clear()
    first = heldout_documents(docs_per_domain=3, chars=300)
    first["agent"].clear()
    second = heldout_documents(docs_per_domain=3, chars=300)
    assert calls == [3] and len(second["agent"]) == 3


def test_load_documents(tmp_path):
    f = tmp_path / "heldout.jsonl"
    f.write_text("".join(json.dumps({"text": f"doc {i}", "domain": d}) + "\n"
                         for i, d in enumerate(["code", "code", "stem"])))
    assert load_documents(f) == {"code": ["doc 0", "doc 1"], "stem": ["doc 2"]}
    assert load_documents(tmp_path, per_domain=1) == {"code": ["doc 0"], "stem": ["doc 2"]}
    f.write_text('{"text": "x"}\n')
    with pytest.raises(ValueError, match="needs 'text' and 'domain'"):
        load_documents(f)


def test_bpb_pools_the_documents(tiny_checkpoint):
    lm = CheckpointLM(tiny_checkpoint)
    docs = {"a": ["Hello there, general Kenobi.", "def f(x):\n    return x * 2\n"]}
    res = run_bpb(lm, docs)["a"]
    rolls = lm.loglikelihood_rolling(docs["a"])
    assert res["bytes"] == sum(len(t.encode()) for t in docs["a"])
    assert res["bits_per_byte"] == pytest.approx(-sum(r.logprob for r in rolls) /
                                                 (math.log(2) * res["bytes"]))
    assert 1.0 < res["bits_per_byte"] < 20.0  # a random model: ~10 bits a token, ~2-4 bytes a token
