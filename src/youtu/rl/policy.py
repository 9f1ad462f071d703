"""The RL policy: the trained model, its rollout copy, reference, optimizer, and the update.

    policy = Policy.load("runs/tiny/sft/stage_sft", cfg.rl, dist)
    metrics = update(policy.root, policy.ref, policy.optimizer, policy.scaler, batch, cfg.rl,
                     dist=dist, dtype=policy.amp, schedule=schedule, first_opt_step=0,
                     round_seed=0)

The update is the trainer's step on another loss: the same precision rule, optimizer, FSDP2
root and clip + step (`youtu.train.trainer`), with the clipped-ratio surrogate of `loss.py` on
per-token log-probs of the episodes (`PolicyLogprobs`, a fused chunked lm_head + log-softmax)
instead of the cross-entropy, and dynamic loss scaling under fp16.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from youtu.errors import ConfigError
from youtu.rl.loss import Mismatch, linear_token_logprobs, logprob_mismatch, policy_loss
from youtu.rl.rollout import RolloutBatch
from youtu.serve.engine import refresh_sampler, sampler_copy
from youtu.train import parallel
from youtu.train.schedule import WSD
from youtu.train.trainer import (autocast, autocast_dtype, build_optimizer, clip_and_step,
                                 parallelize)

if TYPE_CHECKING:
    from youtu.rl.config import RLConfig

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# log-probs of episodes under the training forward


def micro_batches(batch: RolloutBatch, rows: list[int],
                  micro_batch_tokens: int) -> Iterator[RolloutBatch]:
    """Consecutive pieces of `rows` holding at most `micro_batch_tokens` padded tokens each
    (0 = all rows at once)."""
    if micro_batch_tokens <= 0:
        yield batch.rows(rows)
        return
    lengths = (batch.targets[rows] != -100).sum(dim=1).tolist()
    start = 0
    while start < len(rows):
        end, width = start, 0
        while end < len(rows):
            width = max(width, lengths[end])
            if end > start and (end - start + 1) * width > micro_batch_tokens:
                break
            end += 1
        yield batch.rows(rows[start:end])
        start = end


class PolicyLogprobs(nn.Module):
    """The policy as per-token log-probs of given targets: the FSDP root, so the tied lm_head
    is gathered inside this module's forward (as the trainer's `CausalLMLoss` does)."""

    def __init__(self, model: nn.Module, chunk_tokens: int):
        super().__init__()
        self.model = model
        self.chunk_tokens = chunk_tokens

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor,
                temperature: float) -> torch.Tensor:
        """[B, T] float32 log-probs of `targets` under softmax(logits / temperature)."""
        hidden = self.model.hidden_states(input_ids)  # [B, T, D]
        return linear_token_logprobs(hidden, self.model.lm_head.weight, targets, temperature,
                                     self.chunk_tokens)


def sequence_logprobs(root: nn.Module, batch: RolloutBatch, temperature: float) -> torch.Tensor:
    """[B, T] log-probs of `batch.targets` under the training forward of `root`."""
    return root(batch.input_ids, batch.targets, temperature)


@torch.no_grad()
def batch_logprobs(model: nn.Module, batch: RolloutBatch, temperature: float,
                   micro_batch_tokens: int, device: torch.device,
                   dtype: torch.dtype | None) -> torch.Tensor:
    """No-grad log-probs of every row of `batch` (padded to its width)."""
    out = torch.zeros(batch.targets.shape, dtype=torch.float32, device=batch.targets.device)
    rows = list(range(batch.targets.shape[0]))
    done = 0
    for micro in micro_batches(batch, rows, micro_batch_tokens):
        n, width = micro.targets.shape
        with autocast(device, dtype):
            out[done:done + n, :width] = sequence_logprobs(model, micro, temperature)
        done += n
    return out


# ---------------------------------------------------------------------------------------------
# the update


def update(root: nn.Module, ref: nn.Module | None, optimizer: torch.optim.Optimizer,
           scaler: torch.amp.GradScaler | None, batch: RolloutBatch, rl: RLConfig, *,
           dist: parallel.Dist, dtype: torch.dtype | None, schedule: WSD, first_opt_step: int,
           round_seed: int) -> dict[str, float]:
    """`epochs x minibatches` optimizer steps of the clipped surrogate on one round's episodes.

    The log-prob check compares the sampler's log-probs with this process's training forward
    before any update: with `old_logprobs='recompute'` that forward is the ratio's denominator,
    with 'sampler' it is the first minibatch's own forward (no extra pass).

    Returns:
        Round metrics (token means over the round): loss terms, clipping, ratios, the
        rollout/training mismatch (this process's tokens), grad norm, lr, loss scale.
    """
    device = batch.input_ids.device
    B = batch.targets.shape[0]
    old = None
    mismatch: Mismatch | None = None
    if rl.old_logprobs == "recompute":
        old = batch_logprobs(root, batch, rl.temperature, rl.micro_batch_tokens, device, dtype)
        mismatch = logprob_mismatch(old, batch.sampler_logprobs, batch.mask)
    ref_lp = (batch_logprobs(ref, batch, rl.temperature, rl.micro_batch_tokens, device, dtype)
              if ref is not None else None)

    gen = torch.Generator().manual_seed(round_seed)
    totals: dict[str, float] = {"tokens": 0.0, "loss": 0.0, "gnorm": 0.0, "ratio_max": 1.0}
    opt_step, lr = first_opt_step, rl.lr
    first_forward: list[tuple[torch.Tensor, torch.Tensor]] = []
    for epoch in range(rl.epochs):
        order = torch.randperm(B, generator=gen).tolist() if rl.minibatches > 1 else list(range(B))
        size = B // rl.minibatches
        for m in range(rl.minibatches):
            rows = sorted(order[m * size:(m + 1) * size])
            lr = schedule.lr(opt_step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            record = first_forward if (old is None and epoch == 0 and m == 0) else None
            _accumulate_gradients(root, batch, rows, old, ref_lp, rl, dist=dist, dtype=dtype,
                                  scaler=scaler, totals=totals, record=record)
            gnorm, _ = clip_and_step(root, optimizer, rl.grad_clip, scaler=scaler,
                                     accept=None if scaler is not None else _finite(opt_step))
            totals["gnorm"] += gnorm
            opt_step += 1
    if mismatch is None:
        train_lp = torch.cat([t for t, _ in first_forward]) if first_forward else torch.zeros(0)
        sampler_lp = torch.cat([s for _, s in first_forward]) if first_forward else torch.zeros(0)
        mismatch = logprob_mismatch(train_lp, sampler_lp, torch.ones_like(train_lp))
    n_opt = rl.epochs * rl.minibatches
    n_tok = max(totals["tokens"], 1.0)
    out = {f"rl/{k}": totals[k] / n_tok for k in ("pg_loss", "kl", "clip_frac", "ratio_mean")}
    out.update({
        "rl/loss": totals["loss"] / n_opt, "rl/ratio_max": totals["ratio_max"],
        "rl/gnorm": totals["gnorm"] / n_opt, "rl/lr": lr,
        "rl/mismatch/mean_abs": mismatch.mean_abs, "rl/mismatch/max_abs": mismatch.max_abs,
        "rl/mismatch/kl": mismatch.kl, "rl/mismatch/ratio_min": mismatch.ratio_min,
        "rl/mismatch/ratio_max": mismatch.ratio_max,
    })
    if scaler is not None:
        out["rl/loss_scale"] = scaler.get_scale()
    return out


def _accumulate_gradients(root: nn.Module, batch: RolloutBatch, rows: list[int],
                          old: torch.Tensor | None, ref_lp: torch.Tensor | None, rl: RLConfig, *,
                          dist: parallel.Dist, dtype: torch.dtype | None,
                          scaler: torch.amp.GradScaler | None, totals: dict[str, float],
                          record: list[tuple[torch.Tensor, torch.Tensor]] | None) -> None:
    """Backward of the loss of `rows` in micro-batches; the divisor is the global count (tokens
    or sequences over all processes) so micro-batches and ranks sum to the minibatch mean."""
    device = batch.input_ids.device
    mask = batch.mask[rows]
    count = mask.sum() if rl.aggregation == "token" else (mask.sum(1) > 0).sum().float()
    norm = max(float(dist.all_reduce_sum(count.to(device))), 1.0)
    pieces = list(micro_batches(batch, rows, rl.micro_batch_tokens))
    offset = 0
    for k, micro in enumerate(pieces):
        n, width = micro.targets.shape
        idx = rows[offset:offset + n]
        offset += n
        parallel.set_gradient_sync(root, k == len(pieces) - 1)
        with autocast(device, dtype):
            lp = sequence_logprobs(root, micro, rl.temperature)
        loss, stats = policy_loss(
            lp, old[idx, :width] if old is not None else micro.sampler_logprobs,
            micro.advantages, micro.mask, clip_low=rl.clip_low, clip_high=rl.clip_high,
            kl_coef=rl.kl_coef, ref_logprobs=ref_lp[idx, :width] if ref_lp is not None else None,
            aggregation=rl.aggregation, normalizer=norm)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if record is not None:  # the policy has not moved yet: this forward is the sampler's
            on = micro.mask.bool()
            record.append((lp.detach()[on], micro.sampler_logprobs[on]))
        totals["loss"] += float(loss.detach())
        for key in ("pg_loss", "kl", "clip_frac", "ratio_mean"):
            totals[key] = totals.get(key, 0.0) + getattr(stats, key) * stats.tokens
        totals["tokens"] += stats.tokens
        totals["ratio_max"] = max(totals["ratio_max"], stats.ratio_max)


def _finite(opt_step: int):
    """Without loss scaling a non-finite gradient is an error, not a step to skip (a scaler
    skips overflowing fp16 steps itself)."""

    def check(gnorm: float) -> bool:
        if not math.isfinite(gnorm):
            raise FloatingPointError(f"non-finite gradient norm at RL optimizer step {opt_step}; "
                                     "lower rl.lr or use rl.precision=fp32")
        return True

    return check


class Policy:
    """The model being trained, its FSDP root, the rollout copy, the reference and the optimizer.

    The engine samples from an unsharded copy in the compute dtype (fp16 on CUDA by default),
    refreshed from the trained weights before every round, so rollouts are on-policy. Under
    torchrun the root is FSDP2-sharded and the refresh gathers the shards: ranks sample
    different episodes, so sharded forwards (collectives) would not line up.
    """

    def __init__(self, model: nn.Module, rl: RLConfig, dist: parallel.Dist):
        self.dist = dist
        self.model = model
        # 'auto' is fp16 on CUDA: the Youtu-LLM paper found RL unstable in bf16 (its 8 mantissa
        # bits make the rollout and training log-probs drift apart) and stable in fp16.
        dtype = autocast_dtype(rl.precision, dist.device, cuda_auto=torch.float16)
        self.amp = None if dist.distributed else dtype
        """Autocast dtype (None under FSDP, whose mixed-precision policy casts instead)."""
        ref_model = copy.deepcopy(model).requires_grad_(False).eval() if rl.kl_coef > 0 else None
        # The engine samples from a frozen copy cast once to the compute dtype (made before the
        # blocks are wrapped or sharded): sampling from the fp32 master weights under autocast
        # re-casts every weight on every token, and sizes the cache in fp32.
        self.sampler = sampler_copy(model, dtype or torch.float32)
        self.root = PolicyLogprobs(model, rl.loss_chunk_tokens)
        self.ref = (PolicyLogprobs(ref_model, rl.loss_chunk_tokens) if ref_model is not None
                    else None)
        parallelize(self.root, list(model.model.layers), dist,
                    activation_checkpointing=rl.activation_checkpointing, compile=rl.compile,
                    param_dtype=dtype)
        if self.ref is not None:
            parallelize(self.ref, list(ref_model.model.layers), dist,
                        activation_checkpointing=False, compile=False, param_dtype=dtype)
        self.scaler: torch.amp.GradScaler | None = None
        """Dynamic loss scaling for fp16 (fp16 gradients underflow without it). Under FSDP the
        sharded variant all-reduces the overflow flag, so every rank skips the same steps."""
        if dtype == torch.float16 and dist.distributed:
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

            self.scaler = ShardedGradScaler(dist.device.type, init_scale=rl.loss_scale_init)
            self.optimizer = build_optimizer(self.root, rl, dist.device, fused=False)
        else:
            self.optimizer = build_optimizer(self.root, rl, dist.device)
            if dtype == torch.float16:
                self.scaler = torch.amp.GradScaler(dist.device.type, init_scale=rl.loss_scale_init)

    @classmethod
    def load(cls, folder: str | Path, rl: RLConfig, dist: parallel.Dist) -> Policy:
        """The policy in HF model folder `folder`, fp32 master weights on `dist.device`."""
        from youtu.model.hf import load_pretrained

        model = load_pretrained(folder, device=dist.device, dtype=torch.float32)
        if rl.max_seq_len > model.config.max_position_embeddings:
            raise ConfigError(f"rl.max_seq_len={rl.max_seq_len} exceeds the model's "
                              f"max_position_embeddings={model.config.max_position_embeddings}")
        return cls(model, rl, dist)

    def refresh_sampler(self) -> None:
        """Copy the current weights (gathering FSDP shards) into the rollout copy, in place: the
        engine's CUDA graphs read the same storage, so the next rollout is on-policy."""
        refresh_sampler(self.sampler, self.model)

