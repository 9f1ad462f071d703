"""Exact and near-duplicate removal through the datatrove stages, the LSH split,
decontamination."""

from __future__ import annotations

import json
import random

import pytest

from youtu.data.dedup import Decontaminator, load_eval_texts, lsh_bands

_rng = random.Random(0)
WORDS = [f"w{i}" for i in range(2000)]


def _doc(n=300) -> list[str]:
    return [_rng.choice(WORDS) for _ in range(n)]


def _kept(tmp_path, tokenizer, files: dict[str, list[str]], **dedup) -> list[str]:
    """Texts kept by the pipeline from a folder of JSONL files (one read unit each), tasks=3."""
    from youtu.data.config import (DataConfig, DedupConfig, EmbeddedConfig, ExecutorConfig,
                                   QualityConfig, SourceConfig)
    from youtu.data.prepare import prepare
    from youtu.data.shards import ShardSet

    src = tmp_path / "src"
    src.mkdir()
    for name, texts in files.items():
        (src / name).write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    cfg = DataConfig(embedded=EmbeddedConfig(enabled=False), workers=0, shard_chars=10**6,
                     quality=QualityConfig(enabled=False), executor=ExecutorConfig(tasks=3),
                     sources=[SourceConfig(path=str(src), domain="code")],  # no language id
                     dedup=DedupConfig(**dedup))
    prepare(cfg, tokenizer, tmp_path / "out")
    shards = ShardSet.open(tmp_path / "out", tokenizer.fingerprint)
    return [tokenizer.decode(shards.document("code", i)[1:-1].tolist())
            for i in range(shards.num_docs("code"))]


def test_exact_dedup_across_tasks_ignores_whitespace_only(tmp_path, tokenizer):
    a, b = " ".join(_doc(60)), " ".join(_doc(60))
    kept = _kept(tmp_path, tokenizer, {"0.jsonl": [a, b], "1.jsonl": [a.replace(" ", "   \n")],
                                       "2.jsonl": [a.upper(), b]}, near=False)
    assert sorted(kept) == sorted([a, b, a.upper()])  # the first copy in read order is kept


def test_near_duplicates_found_across_tasks_and_distinct_documents_kept(tmp_path, tokenizer):
    base = _doc()
    edited = base[:]
    for i in (40, 160, 280):  # three single-word edits: Jaccard of 5-shingles ~0.9
        edited[i] = "changed"
    distinct = [" ".join(_doc()) for _ in range(20)]
    half = " ".join(base[:150] + _doc(150))  # Jaccard ~0.33: not a near-duplicate
    kept = _kept(tmp_path, tokenizer, {"0.jsonl": [" ".join(base)] + distinct[:10],
                                       "1.jsonl": [" ".join(edited), half] + distinct[10:],
                                       "2.jsonl": [" ".join(base).upper()]}, exact=False)
    assert sorted(kept) == sorted([" ".join(base), half, *distinct])


def test_shingles_overlap_exactly_where_datatrove_shingles_do():
    """Our shingle hashing (a polynomial over cached word hashes) keeps datatrove's shingles:
    every pair of texts shares as many shingles under both (Jaccard unchanged), and texts under
    5 words have none."""
    from datatrove.pipeline.dedup.minhash import MinhashDedupSignature

    from youtu.data.config import DedupConfig
    from youtu.data.steps import MinhashSignature, minhash_config

    step = MinhashSignature("unused", minhash_config(DedupConfig()), ["commonsense"])
    ours = step.get_shingles
    theirs = lambda t: MinhashDedupSignature.get_shingles(step, t)  # noqa: E731
    rng = random.Random(1)
    for _ in range(200):
        a = _doc(rng.randint(1, 60))
        b = _doc(rng.randint(0, 40))
        cut = rng.randrange(len(a))
        b[rng.randint(0, len(b)):0] = a[cut:cut + rng.randint(0, 20)]  # a shared passage
        x, y = " ".join(a), " ".join(b).upper()  # normalisation lowercases
        assert ours(x).shape == theirs(x).shape
        shared = len(set(ours(x).ravel()) & set(ours(y).ravel()))
        assert shared == len(set(theirs(x).ravel()) & set(theirs(y).ravel()))
    assert ours("four words only here").shape == (0, 1)


def test_lsh_bands_minimise_the_error_at_the_threshold():
    # datasketch's MinHashLSH picks the same splits (its _optimal_param, equal weights).
    assert lsh_bands(0.8, 128) == (9, 13)
    assert lsh_bands(0.5, 112) == (22, 5)
    b, r = lsh_bands(0.8, 128)
    found = lambda s: 1 - (1 - s ** r) ** b  # noqa: E731
    assert found(0.95) > 0.99 and 0.3 < found(0.8) < 0.5 and found(0.5) < 0.01


QUESTION = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many "
            "clips in May. How many clips did Natalia sell altogether in April and May?")


def test_decontamination_by_ngram_overlap():
    decon = Decontaminator([QUESTION, "too short to count"], n=13)
    assert decon.items == 1
    leaked = "Homework dump. " + QUESTION.upper().replace(",", " ,") + " The answer is 72."
    assert decon.contaminated(leaked)
    assert decon.contaminated("blah " + " ".join(QUESTION.split()[5:18]) + " blah")  # 13 words
    assert not decon.contaminated(" ".join(QUESTION.split()[5:16]))  # only 11 words
    assert not decon.contaminated("Natalia sold clips to her friends. Too short to count.")


def test_short_eval_items_match_whole():
    item = "what is the capital city of the country france"  # 9 words < n
    decon = Decontaminator([item], n=13)
    assert decon.contaminated(f"Quiz: {item}? Paris.")
    assert not decon.contaminated("what is the capital city of the country spain")


def test_load_eval_texts(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"question": "q1"}) + "\n" +
                                      json.dumps({"text": "t2"}) + "\n")
    (tmp_path / "b.txt").write_text("item one\n\nitem two\n")
    assert sorted(load_eval_texts([str(tmp_path)])) == ["item one", "item two\n", "q1", "t2"]
    (tmp_path / "c.jsonl").write_text(json.dumps({"other": 1}) + "\n")
    with pytest.raises(ValueError, match="c.jsonl:1: no text field"):
        list(load_eval_texts([str(tmp_path / "c.jsonl")]))
    with pytest.raises(ValueError, match="decontam_paths"):
        list(load_eval_texts([str(tmp_path / "nope")]))


def test_saved_decontamination_index_matches_the_built_one(tmp_path):
    decon = Decontaminator([QUESTION, "what is the capital city of the country france"], n=13)
    decon.save(tmp_path / "index.npz")
    loaded = Decontaminator.load(tmp_path / "index.npz")
    assert loaded.items == decon.items == 2
    for text in ("blah " + " ".join(QUESTION.split()[5:18]) + " blah",
                 "Quiz: what is the capital city of the country france? Paris.",
                 " ".join(QUESTION.split()[5:16]), "nothing to see here at all, really"):
        assert loaded.contaminated(text) == decon.contaminated(text)
    assert loaded.contaminated("Quiz: what is the capital city of the country france?")
