"""BPE training: exact sizes, the multi-stage extension, memory caps, document sources."""

from __future__ import annotations

import json

import pytest

from youtu.configlib import ConfigError, from_dict
from youtu.tokenizer import Tokenizer
from youtu.tokenizer.config import TokenizerConfig, TokenizerStage
from youtu.tokenizer.evaluate import bytes_per_token
from youtu.tokenizer.train import (collect_stage_texts, extend_bpe, is_heldout, iter_documents,
                                   train_base, train_from_texts, train_stages, train_tokenizer)


def test_train_from_texts_is_exact_and_deterministic(prose_texts):
    a = train_from_texts(prose_texts[:30], 768)
    b = train_from_texts(prose_texts[:30], 768)
    assert a.vocab_size == 768 and (a.bos_id, a.eos_id) == (512, 513)
    assert a.fingerprint == b.fingerprint
    vocab, merges = a.bpe_state()
    assert len(vocab) == 512 and len(merges) == 256


def test_too_little_text_pads_with_fillers_and_keeps_special_ids():
    tok = train_from_texts(["abab abab"] * 3, 600)
    assert tok.vocab_size == 600 and tok.bos_id == 344
    assert tok.decode(tok.encode("abab xyz")) == "abab xyz"


def test_extension_continues_bpe_exactly(prose_texts):
    """Extending with the SAME text must give (nearly) the merges of training longer at once."""
    base = train_base(prose_texts[:40], 700)
    extended = extend_bpe(base, prose_texts[:40], 200)
    direct = train_base(prose_texts[:40], 900)
    assert extended[1][:len(base[1])] == base[1]
    shared = len(set(extended[1]) & set(direct[1]))
    assert shared >= 0.98 * len(direct[1])  # ties between equal counts may order differently


def test_stem_stage_keeps_stage1_ids_and_beats_single_stage(prose_texts, code_texts, stem_texts,
                                                             stem_heldout, record_property):
    # Stage 1: the general mix (STEM a minority); stage 2 re-uses its STEM documents. The
    # baseline sees the same documents (the union = stage 1's) with the same vocabulary.
    general = prose_texts + code_texts + stem_texts
    multi, boundaries = train_stages([general, stem_texts], [1600, 192], 2048)
    stage1, _ = train_stages([general], [1600], 1856)
    single = train_from_texts(general, 2048)

    v1, m1 = stage1.bpe_state()
    v2, m2 = multi.bpe_state()
    assert boundaries == [1600, 1792]
    assert all(v2[token] == i for token, i in v1.items())  # every stage-1 id unchanged
    assert m2[:len(m1)] == m1
    for text in prose_texts[:10] + stem_texts[:10]:
        # New merges rank after every stage-1 merge: they only join stage-1 tokens further.
        assert _cuts(multi, text) <= _cuts(stage1, text)

    ours = bytes_per_token(multi.encode_batch, stem_heldout)
    baseline = bytes_per_token(single.encode_batch, stem_heldout)
    record_property("stem_bytes_per_token", {"multi_stage": ours, "single_stage": baseline})
    print(f"STEM held-out bytes/token: multi-stage {ours:.4f} vs single-stage {baseline:.4f} "
          f"({100 * (ours / baseline - 1):+.2f}%)")
    assert ours > baseline


def _cuts(tok: Tokenizer, text: str) -> set[int]:
    """Byte offsets where one token ends and the next begins."""
    cuts, pos = set(), 0
    for i in tok.encode(text):
        pos += len(tok.token_bytes(i))
        cuts.add(pos)
    return cuts


def _cfg(**kw) -> TokenizerConfig:
    stages = [TokenizerStage(name="general", vocab_size=500, domains=["commonsense", "stem"],
                             weights=[3, 1]),
              TokenizerStage(name="stem", vocab_size=44, domains=["stem"], max_chars=20_000)]
    return TokenizerConfig(vocab_size=800, stages=stages, max_stage_chars=80_000, corpus="files",
                           **kw)


def test_collect_respects_budgets_and_holdout(prose_texts, stem_texts):
    docs = [("commonsense", t) for t in prose_texts] + [("stem", t) for t in stem_texts] + \
           [("code", "ignored " * 50)]
    cfg = _cfg(max_doc_chars=5000)
    general, stem = collect_stage_texts(cfg, docs)
    assert all(len(t) <= 5000 for t in general + stem)
    # budgets overshoot by at most one document
    assert 0.75 * 80_000 <= sum(len(t) for t in general if t in [p[:5000] for p in prose_texts]) \
        <= 0.75 * 80_000 + 5000
    assert sum(map(len, stem)) <= 20_000 + 5000
    heldout = [t for _, t in docs if is_heldout(t, cfg.holdout_every)]
    assert heldout and not any(h[:5000] in general + stem for h in heldout)
    assert set(stem) <= set(general)  # stage 2 re-samples stage-1 documents


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="stages add up to"):
        TokenizerConfig(vocab_size=4000)
    with pytest.raises(ValueError, match="weights"):
        TokenizerStage(name="s", vocab_size=10, domains=["a", "b"], weights=[1.0])
    with pytest.raises(ConfigError, match="tokenizer.stages"):
        from_dict(TokenizerConfig, {"stages": [{"name": "x", "vocab_size": 1}]},
                  prefix="tokenizer")
    cfg = from_dict(TokenizerConfig, {"vocab_size": 1056, "stages": [
        {"name": "g", "vocab_size": 700, "domains": ["commonsense"]},
        {"name": "s", "vocab_size": 100, "domains": ["stem"], "max_chars": 1000}]})
    assert cfg.stages[1].max_chars == 1000 and cfg.stages[0].shares() == {"commonsense": 1.0}


def test_train_tokenizer_from_files_writes_a_loadable_folder(tmp_path, prose_texts, stem_texts):
    (tmp_path / "prose").mkdir()
    for i, text in enumerate(prose_texts[:60]):
        (tmp_path / "prose" / f"{i}.txt").write_text(text)
    with (tmp_path / "stem.jsonl").open("w") as f:
        for text in stem_texts:
            f.write(json.dumps({"text": text}) + "\n")
    cfg = _cfg(files={"commonsense": [str(tmp_path / "prose" / "*.txt")],
                      "stem": [str(tmp_path / "stem.jsonl")]})
    out = tmp_path / "tok"
    tok = train_tokenizer(cfg, iter_documents(cfg), out)
    assert Tokenizer.load(out).fingerprint == tok.fingerprint and tok.vocab_size == 800
    stats = json.loads((out / "train_stats.json").read_text())
    assert [s["vocab_after"] for s in stats["stages"]] == [500, 544]

    with pytest.raises(ValueError, match="matches no file"):
        list(iter_documents(_cfg(files={"stem": [str(tmp_path / "nothing*.txt")]})))
    with pytest.raises(ValueError, match="found no documents"):
        collect_stage_texts(_cfg(), [("code", "x = 1\n" * 100)])


def corpus_hook(seed):
    """A `tokenizer.corpus = "module:function"` hook used by the test below."""
    return [("commonsense", f"hello world {seed}"), ("stem", "x^2")]


def test_corpus_hook_and_data_corpus():
    cfg = _cfg()
    cfg.corpus = f"{__name__}:corpus_hook"
    assert list(iter_documents(cfg, seed=7)) == corpus_hook(7)
    cfg.corpus = "data"
    with pytest.raises(ValueError, match="needs the run's \\[data\\] documents"):
        list(iter_documents(cfg))
    assert list(iter_documents(cfg, data_documents=[("stem", "1 + 1 = 2")])) == [("stem", "1 + 1 = 2")]
    cfg.corpus = "no_such_module_xyz:f"
    with pytest.raises(ValueError, match="cannot be imported"):
        list(iter_documents(cfg))
