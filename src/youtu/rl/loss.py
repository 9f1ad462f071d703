"""GRPO-style policy-gradient math as pure functions: advantages, log-probs, the clipped loss.

    adv = group_advantages(rewards, group_size=8)                      # [N]
    lp = token_logprobs(model(input_ids), targets, temperature=1.0)    # [B, T]
    loss, stats = policy_loss(lp, old_lp, adv[:, None], mask)          # token-level mean
    report = logprob_mismatch(lp.detach(), sampler_lp, mask)           # rollout/training drift

References: GRPO (Shao et al. 2024, DeepSeekMath, arXiv:2402.03300) for group-relative
advantages and the k3 KL estimator to a frozen reference; PPO (Schulman et al. 2017) for the
clipped importance ratio; DAPO (Yu et al. 2025, arXiv:2503.14476) for the token-level mean and
the asymmetric "clip-higher" bounds. Nothing here touches a model, an optimizer or a process
group: every function takes tensors and returns tensors, so tests can check them number by number.

Shapes: N rollouts (= groups x group_size, group members contiguous), B rows, T tokens, V vocab.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor


def group_advantages(rewards: Tensor, group_size: int, *, normalize_std: bool = True,
                     eps: float = 1e-6) -> Tensor:
    """Group-relative advantages: each reward minus its group's mean, optionally over its std.

    Args:
        rewards: [N] scalar rewards, the `group_size` rollouts of one prompt next to each other.
        group_size: rollouts per prompt (G); N must be a multiple of it.
        normalize_std: divide by the group's standard deviation (GRPO). Dr. GRPO
            (arXiv:2503.20783) argues for False: it stops easy/hard groups from being up-weighted.
        eps: added to the std so a group of equal rewards gives advantage 0, not NaN.

    Returns:
        [N] float32 advantages; a group whose rewards are all equal carries no signal (all 0).
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [N], got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    r = rewards.float().view(-1, group_size)  # [groups, G]
    adv = r - r.mean(dim=1, keepdim=True)
    if normalize_std and group_size > 1:
        # Unbiased std, as DeepSeekMath's and TRL's GRPO use.
        adv = adv / (r.std(dim=1, keepdim=True) + eps)
    return adv.view(-1)


def token_logprobs(logits: Tensor, targets: Tensor, temperature: float = 1.0) -> Tensor:
    """log p(target) under softmax(logits / temperature), in float32.

    The temperature must be the one the sampler used: the log-probs recorded at sampling time are
    those of the tempered distribution, and the ratio compares like with like.

    Args:
        logits: [B, T, V] next-token logits (any float dtype).
        targets: [B, T] token ids; negative ids (padding) give log-prob 0.
        temperature: sampling temperature (> 0).

    Returns:
        [B, T] float32 log-probs.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 to define log-probs, got {temperature}")
    B, T, V = logits.shape
    scaled = logits.float() / temperature if temperature != 1.0 else logits.float()
    # cross_entropy fuses log_softmax + gather without materialising a second [B, T, V] tensor.
    nll = F.cross_entropy(scaled.view(B * T, V), targets.reshape(B * T).clamp_min(0),
                          reduction="none").view(B, T)
    return torch.where(targets >= 0, -nll, torch.zeros_like(nll))


def kl_k3(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Per-token k3 estimator of KL(policy || reference) from samples of the policy.

    k3 = exp(ref - logp) - (ref - logp) - 1: unbiased, always >= 0, low variance (Schulman 2020,
    "Approximating KL divergence"; GRPO eq. 4).
    """
    d = ref_logprobs - logprobs
    return torch.exp(d) - d - 1.0


@dataclass
class LossStats:
    """Diagnostics of one policy-loss evaluation (means over the policy's tokens)."""

    pg_loss: float
    """Clipped surrogate part of the loss."""
    kl: float
    """Mean k3 KL to the reference (0 when no reference)."""
    clip_frac: float
    """Fraction of tokens whose ratio left [1 - clip_low, 1 + clip_high] on the clipped side."""
    ratio_mean: float
    """Mean importance ratio pi_theta / pi_old."""
    ratio_max: float
    """Largest importance ratio."""
    tokens: int
    """Policy tokens counted."""


def policy_loss(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, *,
                clip_low: float = 0.2, clip_high: float = 0.2, ref_logprobs: Tensor | None = None,
                kl_coef: float = 0.0, aggregation: Literal["token", "sequence"] = "token",
                normalizer: float | None = None) -> tuple[Tensor, LossStats]:
    """The GRPO/PPO clipped surrogate (plus optional k3 KL), averaged over the policy's tokens.

    Per token: ratio = exp(logp - old_logp); loss = -min(ratio * A, clip(ratio, 1 - clip_low,
    1 + clip_high) * A) + kl_coef * k3(logp, ref_logp). Only tokens with mask 1 (tokens the
    policy sampled: not the prompt, not tool results, not padding) contribute.

    Args:
        logprobs: [B, T] log-probs of the taken tokens under the policy being trained (with grad).
        old_logprobs: [B, T] log-probs under the policy that produced the rollouts (no grad).
        advantages: [B, T] or [B, 1] / [B] (one advantage per sequence, broadcast to tokens).
        mask: [B, T] 1 on the policy's own tokens, 0 elsewhere.
        clip_low / clip_high: ratio bounds 1 - clip_low and 1 + clip_high (DAPO clips higher,
            e.g. 0.28, to keep exploration alive).
        ref_logprobs: [B, T] log-probs under the frozen reference; required when kl_coef > 0.
        kl_coef: weight of the KL penalty (GRPO used 0.04; 0 turns it off).
        aggregation: "token" = sum over all tokens / token count (DAPO: long answers are not
            down-weighted); "sequence" = mean of per-sequence token means (original GRPO).
        normalizer: for "token": the divisor instead of this batch's token count, so micro-batches
            and ranks can share one global count (the loss then sums correctly across them).
            For "sequence": the divisor instead of this batch's sequence count.

    Returns:
        (scalar loss with grad, LossStats).
    """
    if clip_low < 0 or clip_high < 0:
        raise ValueError(f"clip bounds must be >= 0, got clip_low={clip_low}, "
                         f"clip_high={clip_high}")
    if kl_coef > 0 and ref_logprobs is None:
        raise ValueError("kl_coef > 0 needs ref_logprobs from the frozen reference policy")
    if advantages.dim() == 1:
        advantages = advantages[:, None]
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * advantages
    pg = -torch.minimum(unclipped, clipped)
    kl = kl_k3(logprobs, ref_logprobs) if ref_logprobs is not None else torch.zeros_like(pg)
    per_token = pg + kl_coef * kl if kl_coef > 0 else pg

    if aggregation == "token":
        denom = normalizer if normalizer is not None else mask.sum().clamp_min(1.0)
        loss = (per_token * mask).sum() / denom
    elif aggregation == "sequence":
        per_seq = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
        has_tokens = (mask.sum(dim=1) > 0).to(per_seq.dtype)
        denom = normalizer if normalizer is not None else has_tokens.sum().clamp_min(1.0)
        loss = (per_seq * has_tokens).sum() / denom
    else:
        raise ValueError(f"aggregation must be 'token' or 'sequence', got {aggregation!r}")

    with torch.no_grad():
        n = mask.sum().clamp_min(1.0)
        was_clipped = (clipped < unclipped).to(mask.dtype)  # the min picked the clipped branch
        stats = LossStats(
            pg_loss=float((pg * mask).sum() / n),
            kl=float((kl * mask).sum() / n),
            clip_frac=float((was_clipped * mask).sum() / n),
            ratio_mean=float((ratio * mask).sum() / n),
            ratio_max=float(torch.where(mask > 0, ratio, torch.zeros_like(ratio)).max())
            if mask.any() else 1.0,
            tokens=int(mask.sum()),
        )
    return loss, stats


@dataclass
class Mismatch:
    """How far the training forward's log-probs are from the sampler's on the same tokens."""

    mean_abs: float
    """Mean |logp_train - logp_sampler| over the policy's tokens (nats)."""
    max_abs: float
    """Largest per-token |difference| (nats)."""
    kl: float
    """k3 estimate of KL(sampler || trainer) from the sampler's tokens."""
    ratio_min: float
    """Smallest per-token ratio pi_train / pi_sampler."""
    ratio_max: float
    """Largest per-token ratio pi_train / pi_sampler."""
    tokens: int
    """Tokens compared."""

    def flagged(self, threshold: float) -> bool:
        """True when the mean absolute log-prob gap exceeds `threshold` nats."""
        return self.mean_abs > threshold


def logprob_mismatch(train_logprobs: Tensor, sampler_logprobs: Tensor, mask: Tensor) -> Mismatch:
    """Compare log-probs recomputed by the training forward with those the sampler recorded.

    With the same weights, the same temperature and plain (untruncated) sampling the two agree up
    to kernel numerics (~1e-5 nats in fp32; bf16 is ~100x worse, the drift the Youtu-LLM paper
    avoided with fp16). A larger gap means the rollouts were not drawn from the policy being
    trained (a different temperature, top-k/top-p truncation, stale weights), so the importance
    ratios are wrong.

    Args:
        train_logprobs: [B, T] from `token_logprobs` of the training forward.
        sampler_logprobs: [B, T] recorded by the engine at sampling time.
        mask: [B, T] 1 on sampled tokens.
    """
    m = mask.bool()
    if not m.any():
        return Mismatch(0.0, 0.0, 0.0, 1.0, 1.0, 0)
    t = train_logprobs.detach().float()[m]
    s = sampler_logprobs.detach().float()[m]
    diff = t - s
    ratio = torch.exp(diff)
    return Mismatch(
        mean_abs=float(diff.abs().mean()),
        max_abs=float(diff.abs().max()),
        # Samples come from the sampler, so k3 with roles swapped estimates KL(sampler || train).
        kl=float(kl_k3(s, t).mean()),
        ratio_min=float(ratio.min()),
        ratio_max=float(ratio.max()),
        tokens=int(m.sum()),
    )


def linear_token_logprobs(hidden: Tensor, weight: Tensor, targets: Tensor, temperature: float = 1.0,
                          chunk_tokens: int = 0) -> Tensor:
    """`token_logprobs(hidden @ weight.T, targets)` computed `chunk_tokens` rows at a time.

    Each chunk's logits are recomputed in backward instead of kept (activation checkpointing of
    the lm_head), so at most one chunk of [chunk_tokens, V] logits exists at once: for the 2B's
    128k vocabulary 8k tokens of fp32 logits are 4 GB, a 1k-token chunk 0.5 GB.

    Args:
        hidden: [B, T, D] final hidden states.
        weight: [V, D] lm_head weight.
        targets: [B, T] token ids (negative = padding, log-prob 0).
        temperature: as in `token_logprobs`.
        chunk_tokens: rows per chunk; 0 = all at once (no recomputation).

    Returns:
        [B, T] float32 log-probs.
    """
    B, T, D = hidden.shape
    if chunk_tokens <= 0 or B * T <= chunk_tokens:
        return token_logprobs(hidden @ weight.T, targets, temperature)
    from torch.utils.checkpoint import checkpoint

    flat_h, flat_t = hidden.reshape(1, B * T, D), targets.reshape(1, B * T)

    def piece(h: Tensor, t: Tensor) -> Tensor:
        return token_logprobs(h @ weight.T, t, temperature)

    parts = [checkpoint(piece, flat_h[:, s:s + chunk_tokens], flat_t[:, s:s + chunk_tokens],
                        use_reentrant=False) for s in range(0, B * T, chunk_tokens)]
    return torch.cat(parts, dim=1).view(B, T)
