"""Exact and near-duplicate detection, decontamination."""

from __future__ import annotations

import json
import random

import pytest

from youtu.data.dedup import Decontaminator, ExactDedup, NearDedup, load_eval_texts

_rng = random.Random(0)
WORDS = [f"w{i}" for i in range(2000)]


def _doc(n=300) -> list[str]:
    return [_rng.choice(WORDS) for _ in range(n)]


def test_exact_dedup_ignores_whitespace_only():
    d = ExactDedup()
    assert not d.seen_before("hello   world\n")
    assert d.seen_before("hello world")
    assert not d.seen_before("Hello world")


def test_near_duplicates_found_and_distinct_documents_kept():
    near = NearDedup(threshold=0.8, num_perm=128, shingle_words=5)
    base = _doc()
    edited = base[:]
    for i in (40, 160, 280):  # three single-word edits: Jaccard of 5-shingles ~0.9
        edited[i] = "changed"
    distinct = [_doc() for _ in range(20)]
    assert not near.seen_before(" ".join(base))
    assert near.seen_before(" ".join(edited))
    assert near.seen_before(" ".join(base).upper())  # shingles are lowercased
    assert not any(near.seen_before(" ".join(d)) for d in distinct)
    half = base[:150] + _doc(150)  # Jaccard ~0.33: not a near-duplicate
    assert not near.seen_before(" ".join(half))


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
