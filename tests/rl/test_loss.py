"""GRPO math: advantages, log-probs, the clipped surrogate, k3 KL, the mismatch statistic."""

from __future__ import annotations

import math

import pytest
import torch

from youtu.rl.loss import (group_advantages, kl_k3, linear_token_logprobs,
                                 logprob_mismatch, policy_loss, token_logprobs)


def test_group_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 3.0])
    adv = group_advantages(rewards, 4)
    std1 = math.sqrt(4 * 0.25 / 3)  # unbiased std of [1, 0, 0, 1]
    expected1 = torch.tensor([0.5, -0.5, -0.5, 0.5]) / std1
    torch.testing.assert_close(adv[:4], expected1, atol=1e-5, rtol=1e-5)
    assert torch.equal(adv[4:8], torch.zeros(4))  # equal rewards: no signal, no NaN
    std3 = math.sqrt((3 * 0.75**2 + 2.25**2) / 3)
    torch.testing.assert_close(adv[8:], torch.tensor([-0.75, -0.75, -0.75, 2.25]) / std3,
                               atol=1e-5, rtol=1e-5)
    raw = group_advantages(rewards, 4, normalize_std=False)
    torch.testing.assert_close(raw[:4], torch.tensor([0.5, -0.5, -0.5, 0.5]))
    torch.testing.assert_close(raw[8:], torch.tensor([-0.75, -0.75, -0.75, 2.25]))
    # Each group's advantages sum to zero.
    assert adv.view(3, 4).sum(dim=1).abs().max() < 1e-5


def test_group_advantages_rejects_bad_shapes():
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="1-D"):
        group_advantages(torch.zeros(2, 4), 4)


def test_token_logprobs_matches_log_softmax_and_temperature():
    logits = torch.randn(2, 5, 11) * 3
    targets = torch.randint(0, 11, (2, 5))
    targets[1, 3] = -100
    lp = token_logprobs(logits, targets)
    ref = logits.log_softmax(-1).gather(-1, targets.clamp_min(0)[..., None]).squeeze(-1)
    torch.testing.assert_close(lp[0], ref[0])
    assert lp[1, 3] == 0.0
    hot = token_logprobs(logits, targets, temperature=0.5)
    ref_hot = (logits / 0.5).log_softmax(-1).gather(-1, targets.clamp_min(0)[..., None]).squeeze(-1)
    torch.testing.assert_close(hot[0], ref_hot[0])
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs(logits, targets, temperature=0.0)


def _leaf(values):
    return torch.tensor(values, dtype=torch.float32, requires_grad=True)


def test_policy_loss_on_policy_is_minus_mean_advantage_and_grad_is_advantage():
    logp = _leaf([[-1.0, -2.0, -0.5], [-0.3, -0.7, -1.1]])
    old = logp.detach().clone()
    adv = torch.tensor([2.0, -1.0])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    loss, stats = policy_loss(logp, old, adv, mask)
    assert loss.item() == pytest.approx(-(2 + 2 - 1 - 1 - 1) / 5)
    loss.backward()
    # d(-ratio * A)/d logp = -A / n at ratio 1; masked tokens get no gradient.
    expected = torch.tensor([[-2 / 5, -2 / 5, 0.0], [1 / 5, 1 / 5, 1 / 5]])
    torch.testing.assert_close(logp.grad, expected)
    assert stats.clip_frac == 0.0 and stats.ratio_mean == pytest.approx(1.0) and stats.tokens == 5


def test_policy_loss_clipping_stops_gradient_on_the_clipped_side():
    old = torch.zeros(1, 4)
    # ratios 1.5, 0.5, 1.5, 0.5 with advantages +1, +1, -1, -1
    logp = _leaf([[math.log(1.5), math.log(0.5), math.log(1.5), math.log(0.5)]])
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    mask = torch.ones(1, 4)
    loss, stats = policy_loss(logp, old, adv, mask, clip_low=0.2, clip_high=0.28)
    # token 0: min(1.5, 1.28) = 1.28 (clipped, no grad); token 1: min(0.5, 0.8) = 0.5 (grad);
    # token 2: min(-1.5, -1.28) = -1.5 (unclipped, grad); token 3: min(-0.5, -0.8) = -0.8 (clipped).
    assert loss.item() == pytest.approx(-(1.28 + 0.5 - 1.5 - 0.8) / 4, abs=1e-6)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, -0.5 / 4, 1.5 / 4, 0.0]]))
    assert stats.clip_frac == pytest.approx(0.5)
    assert stats.ratio_max == pytest.approx(1.5)


def test_policy_loss_masked_tokens_never_matter():
    logp = _leaf([[-1.0, 50.0, -2.0]])  # a garbage value under mask 0
    old = torch.tensor([[-1.0, -1.0, -2.0]])
    loss, _ = policy_loss(logp, old, torch.tensor([1.0]), torch.tensor([[1.0, 0.0, 1.0]]))
    loss.backward()
    assert torch.isfinite(loss) and logp.grad[0, 1] == 0.0


def test_token_and_sequence_aggregation():
    logp = torch.zeros(2, 4)
    mask = torch.tensor([[1.0, 0, 0, 0], [1.0, 1, 1, 1]])
    adv = torch.tensor([4.0, 1.0])
    token, _ = policy_loss(logp, logp, adv, mask, aggregation="token")
    seq, _ = policy_loss(logp, logp, adv, mask, aggregation="sequence")
    assert token.item() == pytest.approx(-(4 + 4 * 1) / 5)
    assert seq.item() == pytest.approx(-(4 + 1) / 2)


def test_global_normalizer_makes_micro_batches_add_up():
    torch.manual_seed(1)
    logp = torch.randn(6, 5) * 0.1 - 1
    old = logp + torch.randn(6, 5) * 0.1
    adv = torch.randn(6)
    mask = (torch.rand(6, 5) > 0.3).float()
    full, _ = policy_loss(logp, old, adv, mask)
    n = float(mask.sum())
    parts = sum(policy_loss(logp[s], old[s], adv[s], mask[s], normalizer=n)[0]
                for s in (slice(0, 2), slice(2, 6)))
    torch.testing.assert_close(parts, full)


def test_kl_k3_is_nonnegative_and_estimates_kl():
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([0.2, 0.2, 0.6])
    true_kl = float((p * (p / q).log()).sum())
    gen = torch.Generator().manual_seed(0)
    draws = torch.multinomial(p, 200_000, replacement=True, generator=gen)
    k3 = kl_k3(p.log()[draws], q.log()[draws])
    assert (k3 >= 0).all()
    assert float(k3.mean()) == pytest.approx(true_kl, rel=0.03)
    assert float(kl_k3(p.log(), p.log()).abs().max()) == 0.0


def test_kl_penalty_needs_reference_and_pulls_towards_it():
    logp = _leaf([[-0.5, -0.5]])
    ref = torch.tensor([[-1.0, -1.0]])
    with pytest.raises(ValueError, match="ref_logprobs"):
        policy_loss(logp, logp.detach(), torch.zeros(1), torch.ones(1, 2), kl_coef=0.1)
    loss, stats = policy_loss(logp, logp.detach(), torch.zeros(1), torch.ones(1, 2),
                              ref_logprobs=ref, kl_coef=0.1)
    assert stats.kl == pytest.approx(math.exp(-0.5) + 0.5 - 1)
    loss.backward()
    assert (logp.grad > 0).all()  # gradient descent lowers logp, towards the reference's -1


def test_mismatch_zero_for_same_sampler_and_flags_another_temperature():
    from youtu.serve.sampling import SamplingBatch, SamplingParams, process_logits

    torch.manual_seed(0)
    logits = torch.randn(4, 7, 50) * 2
    targets = torch.randint(0, 50, (4, 7))
    mask = torch.ones(4, 7)

    def sampler_logprobs(temperature):
        batch = SamplingBatch.from_params([SamplingParams(temperature=temperature)] * 28, "cpu")
        lp = process_logits(logits.view(28, 50), batch)
        return lp.gather(-1, targets.view(28, 1)).view(4, 7)

    train = token_logprobs(logits, targets, temperature=1.0)
    same = logprob_mismatch(train, sampler_logprobs(1.0), mask)
    assert same.mean_abs < 1e-5 and not same.flagged(0.01)
    assert same.ratio_min == pytest.approx(1.0, abs=1e-4)
    other = logprob_mismatch(train, sampler_logprobs(0.7), mask)
    assert other.flagged(0.01) and other.mean_abs > 0.1 and other.kl > 0


def test_chunked_lm_head_logprobs_match_full_logits_with_gradients():
    torch.manual_seed(0)
    hidden = torch.randn(3, 7, 16, requires_grad=True)
    weight = torch.randn(40, 16, requires_grad=True)
    targets = torch.randint(0, 40, (3, 7))
    targets[2, 5:] = -100
    full = token_logprobs(hidden @ weight.T, targets, temperature=0.8)
    chunked = linear_token_logprobs(hidden, weight, targets, temperature=0.8, chunk_tokens=4)
    torch.testing.assert_close(chunked, full)
    g_full = torch.autograd.grad(full.sum(), (hidden, weight))
    g_chunk = torch.autograd.grad(chunked.sum(), (hidden, weight))
    for a, b in zip(g_full, g_chunk):
        torch.testing.assert_close(a, b)
