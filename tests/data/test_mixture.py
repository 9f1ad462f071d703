"""Curriculum: pure stage/mixture functions, deterministic + resumable sampler, packing
boundaries, realised domain proportions."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from .data_helpers import doc_of, make_shards, tagged_docs
from youtu.data.config import StageConfig
from youtu.data.mixture import CurriculumSampler, mixture_at, stage_at, stage_steps
from youtu.data.shards import ShardSet

BASES = {"commonsense": 0, "code": 10_000_000, "stem": 20_000_000}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mix")
    docs = {
        "commonsense": tagged_docs(BASES["commonsense"], 400, 20, 900, seed=1),
        "code": tagged_docs(BASES["code"], 150, 200, 2500, seed=2),  # longer than seq_len
        "stem": tagged_docs(BASES["stem"], 300, 10, 120, seed=3),
    }
    make_shards(folder, docs, per_shard=70)  # several shards per domain
    return ShardSet.open(folder, "fp-test")


STAGES = [
    StageConfig(name="commonsense", tokens=40_000, seq_len=128, batch_tokens=1024,
                mix={"commonsense": 0.75, "code": 0.15, "stem": 0.10}),
    StageConfig(name="stem", tokens=30_000, seq_len=256, batch_tokens=2048,
                mix={"commonsense": 0.4, "code": 0.3, "stem": 0.3}),
    StageConfig(name="agent", tokens=10_000, seq_len=512, batch_tokens=2048,
                mix={"code": 1.0, "stem": 0.0}),
]


def test_stage_at_boundaries_and_tokens():
    assert [stage_steps(s) for s in STAGES] == [40, 15, 5]
    assert stage_at(STAGES, step=0) == (0, 0)
    assert stage_at(STAGES, step=39) == (0, 39)
    assert stage_at(STAGES, step=40) == (1, 0)
    assert stage_at(STAGES, step=54) == (1, 14)
    assert stage_at(STAGES, step=55) == (2, 0)
    assert stage_at(STAGES, step=1000) == (2, 945)  # past the end: the last stage continues
    assert stage_at(STAGES, tokens=39_999) == (0, 39_999)
    assert stage_at(STAGES, tokens=40_000) == (1, 0)
    with pytest.raises(ValueError, match="exactly one"):
        stage_at(STAGES, step=1, tokens=1)
    with pytest.raises(ValueError, match=">= 0"):
        stage_at(STAGES, step=-1)


def test_mixture_at_is_pure_and_normalised():
    unnormalised = [StageConfig(tokens=100, batch_tokens=10, mix={"a": 3.0, "b": 1.0, "c": 0.0})]
    assert mixture_at(unnormalised, step=0) == {"a": 0.75, "b": 0.25}
    assert mixture_at(STAGES, step=40) == {"code": 0.3, "commonsense": 0.4, "stem": 0.3}
    assert mixture_at(STAGES, step=40) == mixture_at(STAGES, step=40)
    assert mixture_at(STAGES, step=55) == {"code": 1.0}
    assert unnormalised[0].mix == {"a": 3.0, "b": 1.0, "c": 0.0}  # input untouched


def _batches(sampler, stage, n, batch=4, seq_len=128):
    return [sampler.next_batch(stage, batch, seq_len) for _ in range(n)]


def _same(a, b) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f))
               for f in ("input_ids", "targets", "positions", "doc_ids")) and \
        a.domain_tokens == b.domain_tokens


def test_sampler_is_deterministic_in_seed(shards):
    a = _batches(CurriculumSampler(shards, STAGES, seed=7), 0, 5)
    b = _batches(CurriculumSampler(shards, STAGES, seed=7), 0, 5)
    c = _batches(CurriculumSampler(shards, STAGES, seed=8), 0, 5)
    assert all(_same(x, y) for x, y in zip(a, b))
    assert not all(_same(x, y) for x, y in zip(a, c))


def test_resume_mid_stage_gives_identical_batches(shards):
    plan = [(0, 13), (1, 9), (2, 4)]  # (stage, batches): crosses both stage boundaries
    full = []
    ref = CurriculumSampler(shards, STAGES, seed=3)
    for stage, n in plan:
        full += _batches(ref, stage, n, seq_len=STAGES[stage].seq_len)
    for cut in (5, 13, 17, 24):  # mid-stage 0, at the boundary, mid-stage 1, mid-stage 2
        first = CurriculumSampler(shards, STAGES, seed=3)
        served = []
        for stage, n in plan:
            for _ in range(n):
                if len(served) == cut:
                    break
                served.append(first.next_batch(stage, 4, STAGES[stage].seq_len))
        state = first.state_dict()
        resumed = CurriculumSampler(shards, STAGES, seed=3)
        resumed.load_state_dict(state)
        k = 0
        for stage, n in plan:
            for _ in range(n):
                if k >= cut:
                    served.append(resumed.next_batch(stage, 4, STAGES[stage].seq_len))
                k += 1
        assert len(served) == len(full)
        assert all(_same(x, y) for x, y in zip(full, served)), f"resume at batch {cut} diverged"
        assert resumed.tokens_served == ref.tokens_served


def test_state_dict_is_small_and_checked(shards):
    s = CurriculumSampler(shards, STAGES, seed=0)
    _batches(s, 0, 3)
    state = s.state_dict()
    assert len(repr(state)) < 1000
    other = CurriculumSampler(shards, STAGES, seed=1)
    with pytest.raises(ValueError, match="seed, rank, world_size"):
        other.load_state_dict(state)


def test_packing_never_crosses_document_boundaries(shards):
    s = CurriculumSampler(shards, STAGES, seed=0)
    split_docs = 0
    for batch in _batches(s, 0, 20, batch=4, seq_len=128):
        ids, tgt, pos, doc = (x.numpy() for x in (batch.input_ids, batch.targets,
                                                  batch.positions, batch.doc_ids))
        for r in range(ids.shape[0]):
            owner = np.array([doc_of(int(t)) for t in ids[r]])
            # The attention the model builds from doc_ids: causal and same doc id.
            same = doc[r][:, None] == doc[r][None, :]
            causal = np.tril(np.ones((len(owner), len(owner)), dtype=bool))
            allowed = same & causal
            assert np.all((owner[:, None] == owner[None, :]) | ~allowed), "attends across documents"
            # Positions restart at every piece and count up inside it.
            starts = np.flatnonzero(np.diff(doc[r], prepend=-1))
            assert np.all(pos[r][starts] == 0)
            assert np.all(np.diff(pos[r])[np.diff(doc[r]) == 0] == 1)
            # A target is always the next token of the same document, or -100.
            has = tgt[r] != -100
            assert np.all(np.array([doc_of(int(t)) for t in tgt[r][has]]) == owner[has])
            nxt = ids[r][1:] == tgt[r][:-1]
            assert np.all(nxt[(doc[r][1:] == doc[r][:-1]) & has[:-1]])
            # Pieces that do not end their document (split docs) keep a real target at the end.
            ends = np.flatnonzero(np.diff(doc[r], append=doc[r][-1] + 1))
            split_docs += int(np.sum(has[ends]))
    assert split_docs > 0  # code docs are longer than seq_len: some pieces were split


def test_document_end_never_predicts_next_document(shards):
    s = CurriculumSampler(shards, STAGES, seed=0)
    for batch in _batches(s, 0, 10):
        ids, tgt = batch.input_ids.numpy(), batch.targets.numpy()
        for r in range(ids.shape[0]):
            for t in range(ids.shape[1] - 1):
                if doc_of(int(ids[r, t])) != doc_of(int(ids[r, t + 1])):
                    assert tgt[r, t] == -100


def test_realised_proportions_within_one_percent_of_the_mix(shards):
    s = CurriculumSampler(shards, STAGES, seed=0)
    stage = STAGES[0]
    batch_size = stage.batch_tokens // stage.seq_len
    counted: dict[str, int] = {}
    for _ in range(stage_steps(stage)):
        batch = s.next_batch(0, batch_size, stage.seq_len)
        for d, n in batch.domain_tokens.items():
            counted[d] = counted.get(d, 0) + n
        ids = batch.input_ids.numpy().ravel()  # check the counts against the tokens themselves
        by_ids = {d: int(np.sum((ids >= b) & (ids < b + 10_000_000))) for d, b in BASES.items()}
        assert {d: n for d, n in by_ids.items() if n} == batch.domain_tokens
    total = sum(counted.values())
    assert total == stage_steps(stage) * stage.batch_tokens
    for domain, weight in stage.mix.items():
        assert abs(counted[domain] / total - weight) < 0.01, (domain, counted[domain] / total)
    assert s.realised_mix() == {d: n / total for d, n in sorted(counted.items())}


def test_token_domains_mark_each_tokens_document_domain(shards):
    s = CurriculumSampler(shards, STAGES, seed=0)
    stage = STAGES[0]
    for batch in _batches(s, 0, 5):
        ids = batch.input_ids.numpy()
        dom = batch.token_domains.numpy()
        assert dom.dtype == np.int16 and dom.shape == ids.shape and (dom >= 0).all()
        assert sorted(batch.domain_names) == sorted(batch.domain_tokens)
        for i, name in enumerate(batch.domain_names):
            lo = BASES[name]
            assert ((ids >= lo) & (ids < lo + 10_000_000) == (dom == i)).all(), name
            assert int((dom == i).sum()) == batch.domain_tokens[name]
    assert len(stage.mix) > 1


def test_ranks_see_disjoint_documents(shards):
    seen = []
    for rank in range(2):
        s = CurriculumSampler(shards, STAGES, seed=0, rank=rank, world_size=2)
        docs = set()
        for batch in _batches(s, 0, 10):
            docs |= {doc_of(int(t)) for t in batch.input_ids.numpy().ravel()}
        seen.append(docs)
    assert seen[0] and seen[1] and not seen[0] & seen[1]


def test_upsampling_beyond_one_epoch_is_logged(shards, caplog):
    s = CurriculumSampler(shards, STAGES, seed=0)
    stem_tokens = shards.num_tokens("stem")
    with caplog.at_level(logging.WARNING, logger="youtu.data.mixture"):
        while s.tokens_served.get("stem", 0) <= stem_tokens:
            s.next_batch(1, 8, 256)
    assert any("'stem' starts epoch 2" in r.getMessage() for r in caplog.records)


def test_missing_domain_is_a_clear_error(shards):
    stages = [StageConfig(mix={"agent": 0.6, "code": 0.4})]
    with pytest.raises(ValueError, match=r"mixes domain\(s\) \['agent'\].*youtu data prepare"):
        CurriculumSampler(shards, stages, seed=0)
