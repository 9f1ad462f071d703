"""Deep research over the installed standard library's documentation: thousands of real
documents, multi-hop questions whose answers are introspected facts the documents state, and a
checker that rejects wrong answers built here from introspection (not the generator's list)."""

from __future__ import annotations

import inspect
import json.decoder
import random

import pytest

from youtu.agentic.envs.pydocs import PyDocsEnv
from youtu.agentic.envs.pydocs_corpus import build_corpus

ENV = PyDocsEnv()


def test_corpus_is_real_documentation_with_an_index():
    c = build_corpus()
    assert len(c.docs) >= 3000
    doc = c.docs["json.decoder.JSONDecoder"]
    assert str(inspect.signature(json.decoder.JSONDecoder)) in doc and "raw_decode" in doc
    assert c.classes["json.decoder.JSONDecodeError"].bases == ["builtins.ValueError"]
    top = [d for d, _ in c.index.search("JSONDecoder raw_decode")]
    assert "json.decoder.JSONDecoder.raw_decode" in top


@pytest.mark.parametrize("hops", [1, 2, 3, 4])
def test_questions_need_one_document_per_hop_and_answers_are_in_the_last(hops):
    c = build_corpus()
    for seed in range(15):
        task = ENV.generate(seed, hops)
        path = task.meta["path"]
        assert len(path) == hops
        for a, b in zip(path, path[1:]):  # every hop is a link its document states
            assert b in c.docs[a] or b.rsplit(".", 1)[1] in c.docs[a]
        assert task.answer.strip("'") in c.docs[path[-1]]
        assert ENV.check(task, task.answer).correct


def test_checker_rejects_introspected_wrong_answers():
    """Candidates from introspection, independent of the generator and of the checker: the
    same fact of every other object on the path, and counts off by one."""
    c = build_corpus()
    tried = 0
    for seed in range(40):
        task = ENV.generate(seed, 1 + seed % 4)
        fact, path = task.meta["fact"], task.meta["path"]
        wrong = set()
        for q in path[:-1]:
            if fact == "module" and q in c.classes:
                wrong.add(c.classes[q].module)
            if fact == "base" and q in c.classes and c.classes[q].bases:
                wrong.add(c.classes[q].bases[0])
        if task.answer.isdigit():
            wrong |= {str(int(task.answer) + 1), str(int(task.answer) + 10)}
        wrong.discard(task.answer)
        for w in wrong:
            tried += 1
            assert not ENV.check(task, w).correct, (task.prompt, w)
    assert tried > 20


def test_scripted_teacher_follows_the_links_and_its_mistakes_are_rejected():
    for seed in range(8):
        task = ENV.generate(seed, 3)
        traj = ENV.solve(task, random.Random(seed), mistake_rate=1.0)
        assert traj.outcome.verified, traj.outcome.detail
        opened = [c["arguments"]["doc_id"] for c in traj.tool_calls() if c["name"] == "open"]
        assert opened[-len(task.meta["path"]):] == task.meta["path"]
        for slip in traj.provenance["mistakes"]:
            if slip["answer"] is not None:
                assert not ENV.check(task, slip["answer"]).correct


def test_distinct_seeds_start_from_distinct_objects():
    """Seeds below the number of start objects never share a start at one difficulty (drawn
    at random from the ~4,000 stdlib objects, 11k questions held 13% near-duplicates)."""
    starts = [(ENV.generate(seed, 1 + seed % 4).meta["path"][0], seed % 4)
              for seed in range(400)]
    assert len(set(starts)) == len(starts)


def test_corpus_documents_installed_packages_and_parameter_facts_are_checked():
    c = build_corpus()
    assert len(c.docs) >= 10_000
    assert any(q.startswith("sympy.") for q in c.docs)  # a core dependency, not the stdlib
    facts = {}
    for seed in range(400):
        task = ENV.generate(seed, 1)
        if task.meta["fact"] in ("params", "first_param"):
            facts.setdefault(task.meta["fact"], task)
    assert set(facts) == {"params", "first_param"}
    for fact, task in facts.items():
        qual = task.meta["path"][-1]
        obj = None
        for k in range(qual.count("."), 0, -1):  # import the longest importable prefix
            head, *tail = qual.rsplit(".", k)[0], *qual.rsplit(".", k)[1:]
            try:
                obj = __import__(head, fromlist=["x"])
            except ImportError:
                continue
            for part in tail:
                obj = getattr(obj, part)
            break
        params = [p for p in inspect.signature(obj).parameters.values()
                  if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL,
                                                                        p.VAR_KEYWORD)]
        truth = str(len(params)) if fact == "params" else params[0].name
        assert ENV.check(task, truth).correct, (task.prompt, truth)
        wrong = ([str(len(params) + 1), str(max(len(params) - 1, 0))] if fact == "params"
                 else [p.name for p in params[1:]] + ["self"])
        for w in set(wrong) - {truth}:
            assert not ENV.check(task, w).correct, (task.prompt, w)


def test_every_default_answer_can_be_boxed():
    from youtu.agentic.envs.base import extract_boxed

    for table in [f.defaults for f in build_corpus().functions.values()]:
        for value in table.values():
            assert extract_boxed(f"\\boxed{{{value}}}") == value, value


def test_documents_hold_no_memory_addresses():
    """Signatures with object defaults print `at 0x...`: the text would differ per process."""
    import re

    assert not [d for d, t in build_corpus().docs.items() if re.search(r" at 0x[0-9a-f]+", t)]
