"""`youtu rl`: GRPO-style RL with verifiable rewards, rollouts through the serving engine.

    youtu rl configs/tiny.toml --rl.env=digit_add --rl.init=runs/tiny/sft/stage_sft
    torchrun --nproc-per-node 8 -m youtu rl configs/youtu-2b.toml --rl.env=math

One round (`rl.steps` of them):
1. draw `prompts_per_step` training tasks from the environment (seeds < 1,000,000);
2. sample `group_size` episodes per task with `youtu.serve.engine.Engine` - the serving sampler,
   token in / token out, log-probs recorded at sampling time; with `max_turns > 1` the policy's
   tool calls run in the environment and the results join the episode (masked from the loss);
3. score each episode with the reward registry (`youtu.train.rewards`), take group-relative
   advantages (`rl_loss.group_advantages`);
4. recompute the episode log-probs with the training forward, compare them with the sampler's
   (`rl_loss.logprob_mismatch`: a gap above `mismatch_threshold` means the rollouts did not come
   from the policy being trained) and run `epochs x minibatches` clipped-ratio updates
   (`rl_loss.policy_loss`, optional k3 KL to the frozen initial policy);
5. log `rl/...` metrics, checkpoint, and every `eval_every` rounds score held-out tasks
   (seeds >= 1,000,000) as `eval/rl/reward`.

Precision (`rl.precision`): fp32; bf16 or fp16 autocast over fp32 master weights, the same for
rollouts and training so both see the same numerics; fp16 adds dynamic loss scaling
(`torch.amp.GradScaler`). Under torchrun the policy is sharded with FSDP2 (`train.parallel`) and
each rank samples its share of the tasks with an unsharded copy whose weights are refreshed from
the shards every round. Checkpoints, metrics and resume are the trainer's (`train.checkpoint`,
`train.metrics`): an interrupted run continues from its newest checkpoint exactly.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from youtu.errors import ConfigError
from youtu.train import checkpoint as ckpt
from youtu.train import parallel
from youtu.train.metrics import MetricsSink, human_count, human_duration
from youtu.train.rewards import get_reward, load_reward_modules, score
from youtu.train.rl_envs import HELDOUT_SEED, get_env, task_seed
from youtu.train.rl_loss import (Mismatch, group_advantages, linear_token_logprobs,
                                 logprob_mismatch, policy_loss)
from youtu.train.rl_rollout import Episode, RolloutBatch, collate, rollout
from youtu.train.schedule import WSD
from youtu.train.trainer import build_optimizer, param_groups

if TYPE_CHECKING:
    from youtu.config import RunConfig
    from youtu.train.config import RLConfig

logger = logging.getLogger(__name__)

STAGE = "rl"
"""Stage name in checkpoints and the final checkpoint folder (`stage_rl`)."""


# ---------------------------------------------------------------------------------------------
# precision


def compute_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for `rl.precision` on `device` (None = plain fp32).

    'auto' is fp16 on CUDA: the Youtu-LLM paper found RL unstable in bf16 (its 8 mantissa bits
    make the rollout and training log-probs drift apart) and stable in fp16.
    """
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` on `device`, or nothing for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


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
# one round


def score_episodes(episodes: list[Episode], env: Any, env_name: str,
                   weights: dict[str, float]) -> torch.Tensor:
    """Fill each episode's reward and reward terms; return the rewards as a [N] tensor."""
    for ep in episodes:
        ep.reward, ep.reward_terms = score(ep.reward_input(env, env_name), weights)
    return torch.tensor([ep.reward for ep in episodes], dtype=torch.float32)


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
            totals["gnorm"] += _optimizer_step(root, optimizer, scaler, rl.grad_clip, opt_step)
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


def _optimizer_step(root: nn.Module, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler | None, grad_clip: float, opt_step: int) -> float:
    """Unscale (fp16), clip, step; returns the pre-clip gradient norm. With a scaler an
    overflowing step is skipped and the scale halved; without one it is an error."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    gnorm = _clip_grad_norm(root, grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    elif torch.isfinite(gnorm):
        optimizer.step()
    else:
        raise FloatingPointError(f"non-finite gradient norm at RL optimizer step {opt_step}; "
                                 "lower rl.lr or use rl.precision=fp32")
    optimizer.zero_grad(set_to_none=True)
    return float(gnorm)


def _clip_grad_norm(root: nn.Module, max_norm: float) -> torch.Tensor:
    params = [p for p in root.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    if hasattr(norm, "full_tensor"):  # DTensor under FSDP2
        norm = norm.full_tensor()
    return norm.detach().float().cpu()


# ---------------------------------------------------------------------------------------------
# held-out evaluation


def evaluate_policy(sampler: Any, tok: Any, env: Any, rl: RLConfig, weights: dict[str, float], *,
                    dist: parallel.Dist, device: torch.device,
                    dtype: torch.dtype | None) -> dict[str, float]:
    """Mean reward (and each reward term) on `rl.eval_tasks` held-out tasks, one episode each,
    sampled at `rl.eval_temperature` (0 = greedy). Each rank scores its share; the means are
    over all of them."""
    from youtu.serve.engine import SamplingParams

    if rl.eval_tasks == 0:
        return {}
    per_rank = -(-rl.eval_tasks // dist.world_size)
    first = min(dist.rank * per_rank, rl.eval_tasks)
    tasks = [env.generate(HELDOUT_SEED + i, rl.difficulty)
             for i in range(first, min(first + per_rank, rl.eval_tasks))]
    params = SamplingParams(temperature=rl.eval_temperature, max_tokens=rl.max_new_tokens)
    with autocast(device, dtype):
        episodes = rollout(sampler, tok, env, tasks, group_size=1, params=params,
                           max_turns=rl.max_turns, max_seq_len=rl.max_seq_len,
                           enable_thinking=rl.enable_thinking, seed=HELDOUT_SEED,
                           system_prompt=rl.system_prompt, index_offset=first)
    score_episodes(episodes, env, rl.env, weights)
    names = sorted(weights)
    sums = torch.tensor([float(len(episodes)), sum(ep.reward for ep in episodes),
                         *(sum(ep.reward_terms[n] for ep in episodes) for n in names)],
                        dtype=torch.float64, device=device)
    sums = dist.all_reduce_sum(sums).cpu()
    n = max(float(sums[0]), 1.0)
    out = {"eval/rl/reward": float(sums[1]) / n}
    out.update({f"eval/rl/{name}": float(sums[2 + i]) / n for i, name in enumerate(names)})
    return out


# ---------------------------------------------------------------------------------------------
# the run


def round_metrics(episodes: list[Episode], rewards: torch.Tensor, group_size: int,
                  weights: dict[str, float], dist: parallel.Dist,
                  device: torch.device) -> dict[str, float]:
    """Reward and episode statistics of one round, averaged over all ranks."""
    names = sorted(weights)
    groups = rewards.view(-1, group_size)
    local = [
        float(len(episodes)), float(rewards.sum()), float((rewards ** 2).sum()),
        float(sum(ep.completion_tokens for ep in episodes)),
        float(sum(ep.truncated for ep in episodes)),
        float(sum(len(ep.turns) for ep in episodes)),
        float(groups.shape[0]), float((groups.max(1).values == groups.min(1).values).sum()),
        -sum(lp for ep in episodes for lp, m in zip(ep.sampler_logprobs, ep.loss_mask) if m),
        *(sum(ep.reward_terms[n] for ep in episodes) for n in names),
    ]
    s = dist.all_reduce_sum(torch.tensor(local, dtype=torch.float64, device=device)).cpu().tolist()
    n, mean = max(s[0], 1.0), s[1] / max(s[0], 1.0)
    out = {
        "rl/reward": mean,
        "rl/reward_std": max(s[2] / n - mean ** 2, 0.0) ** 0.5,
        "rl/completion_tokens": s[3] / n,
        "rl/truncated": s[4] / n,
        "rl/turns": s[5] / n,
        "rl/flat_groups": s[7] / max(s[6], 1.0),
        # Mean -log p of the policy's own samples: an unbiased estimate of its per-token entropy
        # (at the sampling temperature); a fall towards 0 is the policy collapsing.
        "rl/entropy": s[8] / max(s[3], 1.0),
        "rl/sampled_tokens": s[3],
    }
    out.update({f"rl/reward/{name}": s[9 + i] / n for i, name in enumerate(names)})
    return out


def round_line(step: int, total: int, m: dict[str, float], eta_s: float) -> str:
    """One fixed-format log line per round."""
    parts = [f"step {step}/{total}", f"reward {m['rl/reward']:.3f}"]
    if "eval/rl/reward" in m:
        parts.append(f"eval {m['eval/rl/reward']:.3f}")
    parts += [f"loss {m['rl/loss']:+.4f}", f"kl {m['rl/kl']:.4f}",
              f"clip {100 * m['rl/clip_frac']:.1f}%", f"mismatch {m['rl/mismatch/mean_abs']:.1e}",
              f"entropy {m['rl/entropy']:.3f}",
              f"len {m['rl/completion_tokens']:.0f}", f"gnorm {m['rl/gnorm']:.2f}",
              f"lr {m['rl/lr']:.1e}", f"tok/s {human_count(m['rl/tokens_per_s'])}",
              f"eta {human_duration(eta_s)}"]
    return " | ".join(parts)


class Policy:
    """The model being trained, its FSDP root, the rollout copy, the reference and the optimizer.

    Single process: the engine samples from the trained module itself (its weights change in
    place, so rollouts are always on-policy) under the same autocast as training. Under torchrun
    the root is FSDP2-sharded and the engine samples from an unsharded copy in the compute dtype,
    refreshed from the shards before every round: ranks sample different episodes, so sharded
    forwards (collectives) would not line up.
    """

    def __init__(self, model: nn.Module, rl: RLConfig, dist: parallel.Dist):
        self.dist = dist
        self.model = model
        dtype = compute_dtype(rl.precision, dist.device)
        self.amp = None if dist.distributed else dtype
        """Autocast dtype (None under FSDP, whose mixed-precision policy casts instead)."""
        if rl.precision == "bf16" and dist.device.type == "cpu":
            logger.warning("bf16 autocast on CPU is slow on most CPUs; fp32 is the CPU default")
        ref_model = copy.deepcopy(model).requires_grad_(False).eval() if rl.kl_coef > 0 else None
        self.sampler = model
        if dist.distributed:
            self.sampler = copy.deepcopy(model).requires_grad_(False)
            if dtype is not None:
                self.sampler.to(dtype)
        self.root = PolicyLogprobs(model, rl.loss_chunk_tokens)
        self.ref = (PolicyLogprobs(ref_model, rl.loss_chunk_tokens) if ref_model is not None
                    else None)
        blocks = list(model.model.layers)
        parallel.apply_activation_checkpointing(blocks, rl.activation_checkpointing)
        if rl.compile:
            parallel.apply_compile(blocks)
        if dist.distributed:
            parallel.apply_fsdp(self.root, blocks, dist, param_dtype=dtype)
            if self.ref is not None:
                parallel.apply_fsdp(self.ref, list(ref_model.model.layers), dist, param_dtype=dtype)
        self.scaler: torch.amp.GradScaler | None = None
        """Dynamic loss scaling for fp16 (fp16 gradients underflow without it). Under FSDP the
        sharded variant all-reduces the overflow flag, so every rank skips the same steps."""
        if dtype == torch.float16 and dist.distributed:
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

            self.scaler = ShardedGradScaler(dist.device.type, init_scale=rl.loss_scale_init)
            # Fused AdamW expects a scalar overflow flag; ShardedGradScaler's has shape [1].
            self.optimizer = torch.optim.AdamW(param_groups(self.root, rl), lr=rl.lr,
                                               betas=(rl.beta1, rl.beta2), eps=rl.eps,
                                               foreach=True)
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

    @torch.no_grad()
    def refresh_sampler(self) -> None:
        """Copy the sharded weights into the rollout copy (a no-op on one process)."""
        if self.sampler is self.model:
            return
        for (name, p), (name2, q) in zip(self.model.named_parameters(),
                                         self.sampler.named_parameters(), strict=True):
            assert name == name2, (name, name2)
            q.copy_(p.full_tensor() if hasattr(p, "full_tensor") else p)


def default_init(cfg: RunConfig) -> Path:
    """The policy `youtu rl` starts from when `rl.init` is empty: `youtu sft`'s newest
    checkpoint in the run folder."""
    found = ckpt.latest_checkpoint(cfg.run_dir / "sft")
    if found is None:
        raise ConfigError(f"no SFT checkpoint under {cfg.run_dir / 'sft'}: run `youtu sft` first "
                          "or name a policy with --rl.init=<checkpoint folder>")
    return found


def rl(cfg: RunConfig, init_checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Run GRPO from the policy in `init_checkpoint`, writing checkpoints and metrics to `out_dir`.

    Resumes from the newest checkpoint in `out_dir` when `rl.resume` (the default).

    Returns:
        The final checkpoint folder (`<out_dir>/stage_rl`), an HF model folder with tokenizer.
    """
    from youtu.serve.engine import Engine, SamplingParams
    from youtu.tokenizer import Tokenizer

    rl_cfg = cfg.rl
    init_checkpoint, out_dir = Path(init_checkpoint), Path(out_dir)
    if not (init_checkpoint / "config.json").is_file():
        raise ConfigError(f"rl.init: {init_checkpoint} is not a model folder (no config.json)")
    load_reward_modules(rl_cfg.reward_modules)  # they register rewards the weights may name
    try:
        env = get_env(rl_cfg.env)
        for name in rl_cfg.rewards:
            get_reward(name)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    dist = parallel.init_distributed(cfg.device)
    if rl_cfg.prompts_per_step % dist.world_size:
        raise ConfigError(f"rl.prompts_per_step ({rl_cfg.prompts_per_step}) must be a multiple of "
                          f"the number of processes ({dist.world_size})")
    torch.manual_seed(cfg.seed)
    tok = Tokenizer.load(init_checkpoint)
    policy = Policy.load(init_checkpoint, rl_cfg, dist)
    device, amp = dist.device, policy.amp

    start = 0
    if dist.is_main:
        ckpt.clean_temp(out_dir)
    latest = ckpt.latest_checkpoint(out_dir) if rl_cfg.resume else None
    if latest is not None:
        shared, _ = ckpt.restore_checkpoint(latest, model=policy.model, root=policy.root,
                                            optimizer=policy.optimizer, dist=dist)
        start = int(shared["step"])
        if policy.scaler is not None and shared.get("scaler"):
            policy.scaler.load_state_dict(shared["scaler"])
        logger.info("resumed RL from %s at round %d", latest, start)
    final_name = ckpt.stage_dirname(STAGE)
    rounds = min(rl_cfg.steps, rl_cfg.max_steps or rl_cfg.steps)
    if start >= rounds and (out_dir / final_name).is_dir():
        return out_dir / final_name

    per_rank = rl_cfg.prompts_per_step // dist.world_size
    engine = Engine(policy.sampler, max_batch=rl_cfg.rollout_batch, max_seq_len=rl_cfg.max_seq_len,
                    eos_ids=[tok.eos_id], detokenize=tok.decode, seed=cfg.seed,
                    max_queue=max(per_rank * rl_cfg.group_size, rl_cfg.eval_tasks) + 1)
    params = SamplingParams(temperature=rl_cfg.temperature, max_tokens=rl_cfg.max_new_tokens)
    weights = dict(rl_cfg.rewards)
    sink = MetricsSink(out_dir, enabled=dist.is_main, tensorboard=rl_cfg.tensorboard)
    schedule = rl_schedule(rl_cfg, rounds)
    last = min(rounds, rl_cfg.stop_after or rounds)

    def save(name: str, step: int) -> Path:
        path = ckpt.save_checkpoint(
            out_dir, name, model=policy.model, root=policy.root, optimizer=policy.optimizer,
            dist=dist, state={"step": step, "stage": STAGE, "scaler": policy.scaler.state_dict()
                              if policy.scaler is not None else None},
            rank_state={"rng": ckpt.rng_state()}, run_cfg=cfg, tokenizer_dir=init_checkpoint,
            keep_last=rl_cfg.keep_last)
        logger.info("checkpoint %s (round %d)", path, step)
        return path

    def evaluate(step: int) -> dict[str, float]:
        policy.refresh_sampler()
        scores = evaluate_policy(engine, tok, env, rl_cfg, weights, dist=dist, device=device,
                                 dtype=amp)
        if scores:
            sink.log(step, scores)
            logger.info("held-out reward at round %d: %.3f (%d tasks)", step,
                        scores["eval/rl/reward"], rl_cfg.eval_tasks)
        return scores

    if start == 0:
        evaluate(0)
    t_start, rounds_done = time.perf_counter(), 0
    for step in range(start, last):
        t0 = time.perf_counter()
        policy.refresh_sampler()
        tasks = [env.generate(task_seed(cfg.seed, step, dist.rank * per_rank + i,
                                        rl_cfg.prompts_per_step), rl_cfg.difficulty)
                 for i in range(per_rank)]
        with autocast(device, amp):
            episodes = rollout(engine, tok, env, tasks, group_size=rl_cfg.group_size, params=params,
                               max_turns=rl_cfg.max_turns, max_seq_len=rl_cfg.max_seq_len,
                               enable_thinking=rl_cfg.enable_thinking, seed=cfg.seed, step=step,
                               system_prompt=rl_cfg.system_prompt,
                               index_offset=dist.rank * per_rank * rl_cfg.group_size)
        rewards = score_episodes(episodes, env, rl_cfg.env, weights)
        advantages = group_advantages(rewards, rl_cfg.group_size,
                                      normalize_std=rl_cfg.normalize_std)
        batch = collate(episodes, advantages, tok.pad_id).to(device)
        t1 = time.perf_counter()
        policy.root.train()
        metrics = update(policy.root, policy.ref, policy.optimizer, policy.scaler, batch, rl_cfg,
                         dist=dist, dtype=amp, schedule=schedule,
                         first_opt_step=step * rl_cfg.epochs * rl_cfg.minibatches,
                         round_seed=cfg.seed * 100_003 + step)
        t2 = time.perf_counter()
        metrics.update(round_metrics(episodes, rewards, rl_cfg.group_size, weights, dist, device))
        metrics.update({"rl/time/rollout_s": t1 - t0, "rl/time/update_s": t2 - t1,
                        "rl/tokens_per_s": metrics["rl/sampled_tokens"] / max(t2 - t0, 1e-9)})
        check_mismatch(metrics, rl_cfg, step + 1)
        done = step + 1
        if rl_cfg.eval_every and done % rl_cfg.eval_every == 0 and done < last:
            metrics.update(evaluate(done))
        rounds_done += 1
        if done % rl_cfg.log_every == 0 or done == last:
            sink.log(done, metrics)
            eta = (time.perf_counter() - t_start) / rounds_done * (last - done)
            logger.info(round_line(done, rounds, metrics, eta))
        if rl_cfg.checkpoint_every and done % rl_cfg.checkpoint_every == 0 and done < last:
            save(ckpt.step_dirname(done), done)

    if last < rounds:  # stop_after ended this invocation early: a checkpoint to resume from
        path = save(ckpt.step_dirname(last), last)
    else:
        evaluate(last)
        path = save(final_name, last)
    sink.close()
    return path


def rl_schedule(rl: RLConfig, rounds: int) -> WSD:
    """LR per optimizer step: warmup, constant, then a decay over the last `decay_fraction` of
    the steps (none by default). A run shrunk by `max_steps` shrinks its warmup alike."""
    total = rounds * rl.epochs * rl.minibatches
    warmup = round(rl.warmup_steps * rounds / rl.steps)
    decay_steps = round(rl.decay_fraction * total)
    return WSD(peak_lr=rl.lr, warmup_steps=warmup, decay_start=total - decay_steps,
               decay_end=total, decay=rl.decay, min_lr_ratio=rl.min_lr_ratio)


def check_mismatch(metrics: dict[str, float], rl: RLConfig, round_index: int) -> None:
    """Warn (or raise, per `rl.mismatch_action`) when the round's mean |log p_train -
    log p_sampler| exceeds `rl.mismatch_threshold`."""
    gap = metrics["rl/mismatch/mean_abs"]
    if gap <= rl.mismatch_threshold:
        return
    message = (f"round {round_index}: rollout/training log-prob mismatch {gap:.3g} nats per token "
               f"(max {metrics['rl/mismatch/max_abs']:.3g}) exceeds rl.mismatch_threshold="
               f"{rl.mismatch_threshold}: the episodes were not sampled from the policy being "
               "trained (temperature, truncation, precision or stale weights)")
    if rl.mismatch_action == "raise":
        raise RuntimeError(message)
    logger.warning(message)


def main(cfg: RunConfig) -> int:
    """`youtu rl`: GRPO from `rl.init` (default: the run's SFT checkpoint) into `<run_dir>/rl`."""
    init = Path(cfg.rl.init) if cfg.rl.init else default_init(cfg)
    dist = parallel.init_distributed(cfg.device)
    try:
        path = rl(cfg, init, cfg.run_dir / "rl")
    finally:
        parallel.shutdown(dist)
    logger.info("RL policy written to %s", path)
    return 0
