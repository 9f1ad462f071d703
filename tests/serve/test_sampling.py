"""Sampling functions against transformers' logits processors and known distributions."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.generation.logits_process import (MinPLogitsWarper,
                                                    RepetitionPenaltyLogitsProcessor,
                                                    TemperatureLogitsWarper, TopKLogitsWarper,
                                                    TopPLogitsWarper)

from youtu.serve.sampling import (SamplingBatch, SamplingParams, apply_min_p,
                                  apply_repetition_penalty, apply_top_k_top_p, greedy_chunks,
                                  greedy_pick, plain_greedy, process_logits, sample,
                                  token_logprobs)

V = 50


def _batch(*params: SamplingParams) -> SamplingBatch:
    return SamplingBatch.from_params(list(params), "cpu")


def _finite(x: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(x)


def test_repetition_penalty_matches_transformers():
    logits = torch.randn(3, V) * 3
    prev = torch.randint(0, V, (3, 7))
    seen = torch.zeros(3, V, dtype=torch.bool).scatter_(1, prev, True)
    ours = apply_repetition_penalty(logits, seen, torch.full((3,), 1.3))
    theirs = RepetitionPenaltyLogitsProcessor(1.3)(prev, logits.clone())
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("k", [1, 5, 17])
def test_top_k_matches_transformers(k):
    logits = torch.randn(4, V)
    ours = apply_top_k_top_p(logits, torch.full((4,), k), torch.ones(4))
    theirs = TopKLogitsWarper(k)(None, logits.clone())
    assert torch.equal(_finite(ours), _finite(theirs))
    torch.testing.assert_close(ours[_finite(ours)], logits[_finite(ours)])


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.99])
def test_top_p_matches_transformers(p):
    logits = torch.randn(4, V) * 2
    ours = apply_top_k_top_p(logits, torch.zeros(4, dtype=torch.long), torch.full((4,), p))
    theirs = TopPLogitsWarper(p)(None, logits.clone())
    assert torch.equal(_finite(ours), _finite(theirs))


@pytest.mark.parametrize("m", [0.05, 0.3])
def test_min_p_matches_transformers(m):
    logits = torch.randn(4, V) * 2
    ours = apply_min_p(logits, torch.full((4,), m))
    theirs = MinPLogitsWarper(m)(None, logits.clone())
    assert torch.equal(_finite(ours), _finite(theirs))


def test_filters_on_a_known_distribution():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    keep = lambda x: _finite(x)[0].tolist()  # noqa: E731
    assert keep(apply_top_k_top_p(logits, torch.tensor([2]), torch.ones(1))) == [True, True, False, False]
    # smallest set with mass >= p: 0.5 + 0.3 reaches 0.8
    assert keep(apply_top_k_top_p(logits, torch.tensor([0]), torch.tensor([0.8]))) == [True, True, False, False]
    assert keep(apply_top_k_top_p(logits, torch.tensor([0]), torch.tensor([0.81]))) == [True, True, True, False]
    assert keep(apply_top_k_top_p(logits, torch.tensor([0]), torch.tensor([0.01]))) == [True, False, False, False]
    # min_p 0.2: threshold 0.1 of the top 0.5
    assert keep(apply_min_p(logits, torch.tensor([0.2]))) == [True, True, True, False]


def test_per_row_settings_in_one_batch():
    logits = torch.randn(3, V)
    batch = _batch(SamplingParams(temperature=0), SamplingParams(top_k=3),
                   SamplingParams(temperature=0.5, top_p=0.5))
    out = process_logits(logits, batch)
    torch.testing.assert_close(out[0], logits[0].log_softmax(-1))  # greedy: unfiltered, T=1
    assert int(_finite(out[1]).sum()) == 3
    expected = TopPLogitsWarper(0.5)(None, TemperatureLogitsWarper(0.5)(None, logits[2:].clone()))
    torch.testing.assert_close(out[2], expected.log_softmax(-1)[0])
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(3))


def test_greedy_takes_argmax_of_penalised_logits():
    logits = torch.tensor([[1.0, 3.0, 2.0]])
    seen = torch.tensor([[False, True, False]])
    batch = _batch(SamplingParams(temperature=0, repetition_penalty=2.0))
    lp = process_logits(logits, batch, seen)
    token = sample(lp, batch)
    assert token.tolist() == [2]  # 3.0 / 2 = 1.5 < 2.0
    torch.testing.assert_close(token_logprobs(lp, token), lp[0, 2:3])


@pytest.mark.parametrize("vocab", [128256, 1000, 997])
def test_greedy_pick_equals_log_softmax_then_argmax(vocab):
    """The split reductions give the plain path's token (the first maximum on ties, planted in
    different chunks and inside one) and its log-prob; 997 is prime: one chunk."""
    g = torch.Generator().manual_seed(vocab)
    logits = torch.randn(5, vocab, generator=g) * 4
    logits[1, [vocab - 1, 3, vocab // 2]] = 50.0  # ties across chunks: the first one wins
    logits[2, [8, 9]] = 60.0  # a tie inside one chunk
    logits[3] = 0.0  # all equal: token 0
    logits[4, vocab - 1] = 70.0  # the max in the last slot
    batch = _batch(*[SamplingParams(temperature=0)] * 5)
    assert plain_greedy(batch)
    lp = process_logits(logits, batch)
    want = sample(lp, batch)
    tokens, chosen = greedy_pick(logits.to(torch.bfloat16).float())
    tokens_raw, chosen_raw = greedy_pick(logits)
    assert tokens_raw.tolist() == want.tolist() and want[1:].tolist() == [3, 8, 0, vocab - 1]
    assert tokens.dtype == torch.long and tokens.shape == (5,)
    torch.testing.assert_close(chosen_raw, token_logprobs(lp, want), atol=1e-5, rtol=1e-5)
    assert greedy_chunks(vocab) == {128256: 256, 1000: 250, 997: 1}[vocab]


def test_plain_greedy_only_for_greedy_rows_without_penalty():
    """Greedy rows' filters are neutral (`from_params`), so top-k/p and min-p leave them plain;
    a sampled row or a repetition penalty does not."""
    greedy = SamplingParams(temperature=0)
    for same in (greedy, SamplingParams(temperature=0, top_k=5, top_p=0.5, min_p=0.1)):
        assert plain_greedy(_batch(greedy, same)), same
    for other in (SamplingParams(temperature=0.7), SamplingParams(temperature=1.0, top_k=1),
                  SamplingParams(temperature=0, repetition_penalty=1.3)):
        assert not plain_greedy(_batch(greedy, other)), other


@pytest.mark.parametrize("seeded", [False, True], ids=["shared-generator", "seeded-rows"])
def test_sampling_follows_the_distribution(seeded):
    probs = torch.tensor([0.6, 0.25, 0.1, 0.05])
    n = 4000
    lp = probs.log().expand(n, 4).contiguous()
    # seeded: one request's first 4000 draws (its counter runs) under one seed
    batch = _batch(*[SamplingParams(seed=7 if seeded else None)] * n)
    tokens = sample(lp, batch, torch.arange(n), torch.Generator().manual_seed(0))
    freq = torch.bincount(tokens, minlength=4).float() / n
    # 4 standard errors of a binomial proportion at n = 4000
    tol = 4 * torch.sqrt(probs * (1 - probs) / n)
    assert torch.all((freq - probs).abs() < tol), freq


def test_seeded_noise_is_uniform_and_independent_across_tokens_seeds_and_steps():
    from youtu.serve.sampling import seeded_exponential

    e = seeded_exponential(torch.tensor([0, 1, 2**32 - 1]), torch.tensor([0, 0, 5]), 20000)
    assert e.shape == (3, 20000) and (e > 0).all()
    u = torch.exp(-e)  # back to uniforms: mean 1/2, variance 1/12 (6e4 draws: se ~1.2e-3)
    assert abs(u.mean().item() - 0.5) < 5e-3 and abs(u.var().item() - 1 / 12) < 3e-3
    # neighbouring tokens, seeds and counters are uncorrelated
    for a, b in ((u[0, :-1], u[0, 1:]), (u[0], u[1]), (u[0], u[2])):
        assert abs(torch.corrcoef(torch.stack((a, b)))[0, 1].item()) < 0.03
    again = seeded_exponential(torch.tensor([1]), torch.tensor([0]), 20000)
    assert torch.equal(again[0], e[1])  # a pure function of (seed, counter, token)


def test_seeded_rows_do_not_depend_on_the_batch():
    logits = torch.randn(5, V)
    lp = logits.log_softmax(-1)

    def draw(rows: list[int], seed_row: int, counter: int = 3) -> int:
        batch = _batch(*[SamplingParams(seed=123 if r == seed_row else None) for r in rows])
        out = sample(lp[rows], batch, torch.full((len(rows),), counter),
                     torch.Generator().manual_seed(len(rows)))
        return out[rows.index(seed_row)].item()

    assert draw([2], 2) == draw([0, 1, 2, 3, 4], 2) == draw([4, 2], 2)
    assert len({draw([2], 2, c) for c in range(8)}) > 1  # the counter moves the draw


def test_never_samples_filtered_tokens():
    logits = torch.randn(200, V)
    batch = _batch(*[SamplingParams(top_k=4, temperature=1.5)] * 200)
    lp = process_logits(logits, batch)
    tokens = sample(lp, batch, generator=torch.Generator().manual_seed(1))
    top4 = logits.topk(4, dim=-1).indices
    assert (top4 == tokens[:, None]).any(-1).all()
    assert torch.isfinite(token_logprobs(lp, tokens)).all()


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_p=0), dict(top_p=1.5),
                                 dict(top_k=-2), dict(min_p=2), dict(repetition_penalty=0),
                                 dict(max_tokens=-1), dict(top_logprobs=21), dict(stop=[""])])
def test_bad_params_are_refused(bad):
    field = next(iter(bad))
    with pytest.raises(ValueError, match=field):
        SamplingParams(**bad)


def test_temperature_scales_logprobs():
    logits = torch.randn(1, V)
    lp = process_logits(logits, _batch(SamplingParams(temperature=0.25)))
    torch.testing.assert_close(lp, (logits / 0.25).log_softmax(-1))
    assert math.isclose(float(lp.exp().sum()), 1.0, rel_tol=1e-5)
