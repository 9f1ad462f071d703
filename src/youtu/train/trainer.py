"""The training step, shared by pre-training, mid-training and SFT: `Trainer`.

    trainer = Trainer(cfg.train, model, dist=parallel.init_distributed("auto"), out_dir=out)
    trainer.restore(latest_checkpoint(out), source)           # optional: resume (any world size)
    final = trainer.run(spans, schedule, source, plan_total=total_steps(plan), heldout=held)

One step: every process draws the same global batch from the `BatchSource` and takes its
rows; micro-batches of `micro_batch_tokens` accumulate gradients (FSDP's reduce-scatter only
on the last); each micro-batch's summed loss is divided by the global count of target tokens,
so the gradient is that of the token-mean loss over the whole batch whatever the split; the
gradient norm is clipped; a NaN/inf or spiking loss skips the update (counted, fatal after
`max_skipped_steps`); AdamW (fused) steps with the LR the schedule gives for the step. The
loss is a fused, chunked lm_head + cross-entropy (loss.py) on the model's final hidden states.
Precision: fp32 on CPU; bf16 autocast with fp32 master weights on CUDA (FSDP2's mixed precision
under torchrun).

The pieces of the step are small functions that RL (`youtu.rl`) runs too: the precision rule
(`autocast_dtype`, `autocast`), `build_optimizer`, `parallelize` (activation checkpointing,
compile, FSDP2 root) and `clip_and_step` (clip, then step with an optional fp16 GradScaler).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from youtu.errors import ConfigError
from youtu.model import YoutuForCausalLM
from youtu.model.config import RopeScaling
from youtu.model.layers import RMSNorm
from youtu.train import checkpoint as ckpt
from youtu.train import parallel
from youtu.train.config import LoopConfig, OptimizerConfig
from youtu.train.fp8 import apply_fp8
from youtu.train.loss import IGNORE_INDEX, compiled_cross_entropy, fused_linear_cross_entropy
from youtu.train.metrics import MetricsSink, mfu, peak_flops, step_line
from youtu.train.parallel import Dist
from youtu.train.schedule import WSD, StageSpan
from youtu.train.stopsignal import StopSignals

logger = logging.getLogger(__name__)

SPIKE_MIN_HISTORY = 20
"""Accepted steps (in the current stage) before the spike guard is armed: the loss falls fast at
the start of training and after a stage change, and an average of fewer steps is too noisy."""
SPIKE_EMA_BETA = 0.9
"""Weight of the old value in the loss average the spike guard compares against (~10 steps)."""


class TrainingDiverged(RuntimeError):
    """Too many steps were skipped for non-finite or spiking loss / gradient norm."""


class Batch(Protocol):
    """A packed batch (youtu.data.packing.PackedBatch): LongTensors [B, T]."""

    input_ids: torch.Tensor
    targets: torch.Tensor
    positions: torch.Tensor
    doc_ids: torch.Tensor
    domain_tokens: dict[str, int]
    token_domains: torch.Tensor | None
    """[B, T] index into `domain_names` of each token's domain (-1 = none); None = untracked."""
    domain_names: list[str]


class BatchSource(Protocol):
    """Where batches come from: youtu.data's CurriculumSampler, or SFT's packed conversations.

    Every process draws the same global batch (`batch_size` = all rows of the step) and trains
    on its slice of rows, so the data order does not depend on the number of processes: a
    torchrun run reproduces the one-process losses, and the cursor is the same on every rank.
    """

    def next_batch(self, stage_index: int, batch_size: int, seq_len: int) -> Batch: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class HeldOut:
    """Held-out rows of one domain, and how many bytes of text their scored targets stand for."""

    batches: list[Batch]
    n_bytes: int = 0
    """0 = report the loss only (no bits per byte)."""
    token_bytes: torch.Tensor | None = None
    """[V] UTF-8 byte length of each token (0 for specials, which bits-per-byte skips)."""


@dataclass
class StepStats:
    loss: float
    grad_norm: float
    lr: float
    tokens: int
    """Tokens processed this step, all processes (padding included)."""
    target_tokens: int
    """Tokens that carried a loss, all processes."""
    skipped: bool
    seconds: float
    domain_tokens: dict[str, int] = field(default_factory=dict)
    domain_loss: dict[str, float] = field(default_factory=dict)
    """Mean loss over each domain's target tokens (all processes), when the batch marks each
    token's domain; their target-token-weighted mean is `loss`."""


def _yarn_str(scaling: RopeScaling | None) -> str:
    if scaling is None:
        return "off"
    return f"x{scaling.factor:g} of {scaling.original_max_position_embeddings}"


# ---- the model + loss module -----------------------------------------------------------------


class CausalLMLoss(nn.Module):
    """The model and its fused lm_head + cross-entropy: the FSDP root, so the tied embedding
    (= lm_head) is gathered for the loss inside this module's forward."""

    def __init__(self, model: YoutuForCausalLM, chunk_tokens: int, kernel: str = "chunked"):
        super().__init__()
        self.model = model
        self.chunk_tokens = chunk_tokens
        self.kernel = kernel

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor, positions: torch.Tensor,
                doc_ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed loss, per-token losses [B*T] detached)."""
        hidden = self.model.hidden_states(input_ids, positions, doc_ids)  # [B, T, D]
        if self.kernel == "compiled":
            return compiled_cross_entropy(hidden, self.model.lm_head.weight, targets)
        return fused_linear_cross_entropy(hidden, self.model.lm_head.weight, targets,
                                          chunk_tokens=self.chunk_tokens,
                                          compiled_chunks=self.kernel == "chunked_compiled")


def _add_by_domain(acc: torch.Tensor, token_loss: torch.Tensor, targets: torch.Tensor,
                   token_domains: torch.Tensor) -> None:
    """Add the per-token losses [N] of scored tokens to acc[domain, 0] and their count to
    acc[domain, 1]: one index_add over the micro-batch, no extra forward, and no boolean
    indexing (which would wait for the device)."""
    dom = token_domains.reshape(-1).long()
    keep = ((targets.reshape(-1) != IGNORE_INDEX) & (dom >= 0)).double()
    values = torch.stack([token_loss.reshape(-1).double() * keep, keep], dim=1)  # [N, 2]
    acc.index_add_(0, dom.clamp(min=0), values)


def param_groups(root: nn.Module, cfg: OptimizerConfig) -> list[dict[str, Any]]:
    """AdamW groups: matrices decay; norm gains and the embedding (= tied lm_head) decay only
    when configured."""
    no_decay: set[int] = set()
    for module in root.modules():
        if isinstance(module, RMSNorm) and not cfg.weight_decay_norms:
            no_decay.update(id(p) for p in module.parameters(recurse=False))
        if isinstance(module, nn.Embedding) and not cfg.weight_decay_embeddings:
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    decay, keep = [], []
    for p in root.parameters():
        if p.requires_grad:
            (keep if id(p) in no_decay else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": keep, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(root: nn.Module, cfg: OptimizerConfig, device: torch.device, *,
                    fused: bool | None = None) -> torch.optim.Optimizer:
    """AdamW, fused (one kernel for all parameters) on CUDA and CPU, foreach elsewhere or when
    `fused=False` (fused AdamW wants a scalar overflow flag, FSDP's sharded GradScaler gives
    one of shape [1])."""
    kind = {"foreach": True} if fused is False else {"fused": device.type in ("cuda", "cpu")}
    return torch.optim.AdamW(param_groups(root, cfg), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                             eps=cfg.eps, **kind)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
"""Autocast dtype of each `precision` setting other than 'auto' (None = plain fp32)."""


def autocast_dtype(precision: str, device: torch.device,
                   cuda_auto: torch.dtype = torch.bfloat16) -> torch.dtype | None:
    """The precision rule of every training phase: 'auto' = `cuda_auto` on CUDA (bf16 for
    pre-training and SFT; RL passes fp16) and fp32 elsewhere; 'fp32'/'bf16'/'fp16' force it.
    Master weights and optimizer state stay fp32 whatever this returns."""
    if precision == "auto":
        return cuda_auto if device.type == "cuda" else None
    dtype = PRECISIONS[precision]
    if dtype is not None and device.type == "cpu":
        logger.warning("%s autocast on CPU is slow on most CPUs; fp32 is the CPU default",
                       precision)
    return dtype


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """Autocast to `dtype` on `device`, or nothing for fp32 (None)."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def parallelize(root: nn.Module, blocks: list[nn.Module], dist: Dist, *,
                activation_checkpointing: bool | str, compile: bool,
                param_dtype: torch.dtype | None) -> None:
    """Per-block activation checkpointing ('off' / 'full' / 'selective'; True = 'full') and
    torch.compile, then (under torchrun) FSDP2 over the blocks with `root` (the model + its loss
    head) as the root, so the tied lm_head is gathered inside the root's forward."""
    parallel.apply_activation_checkpointing(blocks, activation_checkpointing)
    if compile:
        parallel.apply_compile(blocks)
    if dist.distributed:
        parallel.apply_fsdp(root, blocks, dist, param_dtype=param_dtype)


def clip_gradients(root: nn.Module, max_norm: float) -> float:
    """Clip the global gradient norm of `root` to `max_norm` (0 = measure only); returns the
    norm before clipping (of all shards under FSDP)."""
    params = [p for p in root.parameters() if p.grad is not None]
    norm = torch.nn.utils.get_total_norm([p.grad for p in params], norm_type=2.0)
    if hasattr(norm, "full_tensor"):  # DTensor under FSDP: the norm of all shards
        norm = norm.full_tensor()
    if max_norm > 0:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
    return float(norm)


def clip_and_step(root: nn.Module, optimizer: torch.optim.Optimizer, max_norm: float, *,
                  scaler: torch.amp.GradScaler | None = None,
                  accept: Callable[[float], bool] | None = None) -> tuple[float, bool]:
    """Unscale (with a GradScaler), clip, step, zero the gradients.

    Args:
        root: the module whose parameters the optimizer updates.
        optimizer: its optimizer.
        max_norm: gradient clipping threshold; 0 = none.
        scaler: fp16 dynamic loss scaling; it skips an overflowing step and lowers the scale.
        accept: called with the pre-clip gradient norm; False skips the update (the trainer's
            NaN / spike guard). None = always step.

    Returns:
        (pre-clip gradient norm, whether the optimizer stepped).
    """
    if scaler is not None:
        scaler.unscale_(optimizer)
    norm = clip_gradients(root, max_norm)
    stepped = accept is None or accept(norm)
    if stepped:
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norm, stepped


# ---- the trainer ------------------------------------------------------------------------------


class Trainer:
    """The step, LR schedule, guard, metrics and checkpoints of every training phase.

    Args:
        cfg: the loop settings (`cfg.train` or `cfg.sft`).
        model: a plain model on CPU, initialised (or loaded); moved to `dist.device` here.
        dist: process placement (`parallel.init_distributed`).
        out_dir: checkpoints, metrics.jsonl and TensorBoard events go here.
        record: the config written as run.toml beside every checkpoint (the command passes
            the resolved run config: the trainer reads nothing from it); None in tests.
        tokenizer_dir: tokenizer files copied into every checkpoint; None = none.
        namespace: metric key prefix ('train', 'sft').
    """

    def __init__(self, cfg: LoopConfig, model: YoutuForCausalLM, *, dist: Dist, out_dir: str | Path,
                 record: object | None = None, tokenizer_dir: str | Path | None = None,
                 namespace: str = "train"):
        self.cfg = cfg
        self.dist = dist
        self.out_dir = Path(out_dir)
        self.record = record
        self.tokenizer_dir = tokenizer_dir
        self.ns = namespace
        self.model = model.to(dist.device)
        # The model's own YaRN settings (beta, mscale) are kept when a stage changes the factor.
        self._base_rope_scaling = copy.deepcopy(model.config.rope_scaling)
        self.amp_dtype = autocast_dtype(cfg.precision, dist.device)
        self.root = CausalLMLoss(self.model, cfg.loss_chunk_tokens, cfg.loss_kernel)
        blocks = list(self.model.model.layers)
        apply_fp8(blocks, cfg, dist.device)  # before checkpointing, compile and FSDP wrap them
        parallelize(self.root, blocks, dist, activation_checkpointing=cfg.activation_checkpointing,
                    compile=cfg.compile, param_dtype=self.amp_dtype)
        self.optimizer = build_optimizer(self.root, cfg, dist.device)
        self.metrics = MetricsSink(self.out_dir, enabled=dist.is_main, tensorboard=cfg.tensorboard)
        self.peak = peak_flops(dist.device)
        self.step = 0
        """Optimizer updates done (skipped ones included: their batch was consumed)."""
        self.guard = {"skipped": 0, "ema": 0.0, "history": 0}
        self.tokens_total = 0
        self.last_checkpoint: Path | None = None
        self._checkpoint_step = -1  # the step `last_checkpoint` holds
        self._step_times: list[float] = []
        self._stop = StopSignals(cfg.preempt_signal)  # SIGTERM/SIGINT: checkpoint, then stop

    # ---- state ------------------------------------------------------------------------------

    def state(self, stage: str) -> dict[str, Any]:
        return {"step": self.step, "stage": stage, "guard": dict(self.guard),
                "tokens_total": self.tokens_total}

    def save(self, name: str, stage: str, source: BatchSource, keep_last: int | None) -> Path:
        """Checkpoint now (collective)."""
        t0 = time.perf_counter()
        path = ckpt.save_checkpoint(
            self.out_dir, name, model=self.model, root=self.root, optimizer=self.optimizer,
            dist=self.dist, state=self.state(stage),
            rank_state={"sampler": source.state_dict(), "rng": ckpt.rng_state()},
            run_cfg=self.record, tokenizer_dir=self.tokenizer_dir, keep_last=keep_last)
        logger.info("checkpoint %s (step %d, %.1fs)", path, self.step, time.perf_counter() - t0)
        self.last_checkpoint, self._checkpoint_step = path, self.step
        return path

    def restore(self, path: str | Path, source: BatchSource) -> dict[str, Any]:
        """Resume from a checkpoint: weights, optimizer, step, guard, data cursor, RNG.

        Bit-exact when it was written by as many processes as this run has; written by another
        number, the state is resharded (checkpoint.py says what carries over) and the losses
        match up to fp32 summation order."""
        shared, rank_state = ckpt.restore_checkpoint(path, model=self.model, root=self.root,
                                                     optimizer=self.optimizer, dist=self.dist)
        self.step = int(shared["step"])
        self.guard = dict(shared["guard"])
        self.tokens_total = int(shared.get("tokens_total", 0))
        source.load_state_dict(rank_state["sampler"])
        self.last_checkpoint, self._checkpoint_step = Path(path), self.step
        logger.info("resumed from %s at step %d (stage %s)", path, self.step, shared["stage"])
        return shared

    def stage_rope_scaling(self, span: StageSpan) -> RopeScaling | None:
        """The model's `rope_scaling` during `span`: None without YaRN, else the model's own
        YaRN settings (or RopeScaling's defaults) with the stage's factor and original length."""
        if span.yarn_factor <= 1.0:
            return None
        base = self._base_rope_scaling or RopeScaling()
        return dataclasses.replace(base, factor=span.yarn_factor,
                                   original_max_position_embeddings=span.yarn_original_seq_len)

    def enter_stage(self, span: StageSpan) -> None:
        """Apply a stage's model settings (RoPE base, YaRN scaling) and re-arm the spike guard.

        The changed `model.config` is what the stage's checkpoints write to config.json; a
        resumed run rebuilds the model from the run config and lands here again, so the same
        settings apply."""
        cfg = self.model.config
        self.check_stage(span)
        scaling = self.stage_rope_scaling(span)
        if span.rope_theta != cfg.rope_theta or scaling != cfg.rope_scaling:
            logger.info("stage %s: RoPE theta %.4g -> %.4g, YaRN %s -> %s", span.name,
                        cfg.rope_theta, span.rope_theta, _yarn_str(cfg.rope_scaling),
                        _yarn_str(scaling))
            cfg.rope_theta, cfg.rope_scaling = span.rope_theta, scaling
            self.model.init_rope()  # also the softmax scale (YaRN mscale_all_dim)
        self.guard["history"] = 0

    def check_stage(self, span: StageSpan) -> None:
        """Raise ConfigError when `span`'s settings cannot run on this model and world size
        (`run` checks every stage before its first step, not when the stage begins)."""
        limit = self.model.config.max_position_embeddings
        if span.seq_len > limit:
            raise ConfigError(f"stage {span.name!r}: seq_len {span.seq_len} exceeds the model's "
                              f"max_position_embeddings {limit}; lower the stage's seq_len or "
                              "raise model.max_position_embeddings")
        self.rows_per_process(span)

    # ---- one step ------------------------------------------------------------------------------

    def _autocast(self) -> AbstractContextManager:
        # FSDP's mixed-precision policy casts the parameters itself
        return autocast(self.dist.device, None if self.dist.distributed else self.amp_dtype)

    def rows_per_process(self, span: StageSpan) -> tuple[int, int]:
        """(rows each process draws per step, rows per micro-batch)."""
        world = self.dist.world_size
        if span.rows % world:
            raise ConfigError(f"stage {span.name!r}: {span.rows} rows per step (batch_tokens / "
                              f"seq_len) do not split over {world} processes")
        rows = span.rows // world
        micro = rows
        if self.cfg.micro_batch_tokens:
            micro = max(1, min(rows, self.cfg.micro_batch_tokens // span.seq_len))
            while rows % micro:  # largest divisor of rows not above the requested size
                micro -= 1
        return rows, micro

    def train_step(self, batch: Batch, lr: float, span: StageSpan) -> StepStats:
        """Forward/backward over micro-batches, clip, guard, update. Collective under torchrun."""
        t0 = time.perf_counter()
        dev = self.dist.device
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        rows, micro = self.rows_per_process(span)
        if batch.input_ids.shape != (span.rows, span.seq_len):
            raise ValueError(f"batch shape {tuple(batch.input_ids.shape)} != ({span.rows}, {span.seq_len})")
        mine = slice(self.dist.rank * rows, (self.dist.rank + 1) * rows)  # this process's rows
        input_ids, targets = batch.input_ids[mine].to(dev), batch.targets[mine].to(dev)
        positions, doc_ids = batch.positions[mine].to(dev), batch.doc_ids[mine]
        # Rows of one document each need no document mask: plain causal attention (cuDNN on
        # GPU) instead of a block-sparse / dense mask.
        doc_ids = doc_ids.to(dev) if bool(doc_ids.any()) else None
        # Counted on the CPU batch: no device sync on one process (the all-reduce under
        # torchrun is the one sync, and it carries the count all ranks need for the divisor).
        n_targets = int((batch.targets[mine] != IGNORE_INDEX).sum())
        if self.dist.distributed:
            counts = torch.tensor([n_targets], dtype=torch.float64, device=dev)
            n_targets = int(self.dist.all_reduce_sum(counts)[0].item())
        denom = max(n_targets, 1)
        loss_sum = torch.zeros((), dtype=torch.float32, device=dev)
        # Per-domain loss of a mixed batch from the per-token losses the forward returns anyway.
        names = list(getattr(batch, "domain_names", None) or [])
        token_domains = getattr(batch, "token_domains", None)
        by_domain = None
        if token_domains is not None and names:
            token_domains = token_domains[mine].to(dev)
            by_domain = torch.zeros(len(names), 2, dtype=torch.float64, device=dev)  # sum, count
        n_micro = rows // micro
        for i in range(n_micro):
            sl = slice(i * micro, (i + 1) * micro)
            parallel.set_gradient_sync(self.root, i == n_micro - 1)
            with self._autocast():
                part, token_loss = self.root(input_ids[sl], targets[sl], positions[sl],
                                             None if doc_ids is None else doc_ids[sl])
            (part / denom).backward()
            loss_sum += part.detach()
            if by_domain is not None:
                _add_by_domain(by_domain, token_loss, targets[sl], token_domains[sl])
        loss = self.dist.all_reduce_sum(loss_sum).item() / denom
        domain_loss = {}
        if by_domain is not None:
            per_domain = self.dist.all_reduce_sum(by_domain).tolist()
            domain_loss = {d: total / n for d, (total, n) in zip(names, per_domain) if n}
        grad_norm, stepped = clip_and_step(self.root, self.optimizer, self.cfg.grad_clip,
                                           accept=lambda norm: not self._guard(loss, norm))
        skipped = not stepped
        self.step += 1
        tokens = rows * span.seq_len * self.dist.world_size
        self.tokens_total += tokens
        domain = {k: int(v) for k, v in getattr(batch, "domain_tokens", {}).items()}
        return StepStats(loss=loss, grad_norm=grad_norm, lr=lr, tokens=tokens,
                         target_tokens=n_targets, skipped=skipped,
                         seconds=time.perf_counter() - t0, domain_tokens=domain,
                         domain_loss=domain_loss)

    def _guard(self, loss: float, grad_norm: float) -> bool:
        """True = skip this update. Counts skips; raises after `max_skipped_steps` of them."""
        g = self.guard
        reason = None
        if not math.isfinite(loss) or not math.isfinite(grad_norm):
            reason = f"non-finite loss {loss} / grad norm {grad_norm}"
        elif (self.cfg.spike_factor and g["history"] >= SPIKE_MIN_HISTORY
              and loss > self.cfg.spike_factor * g["ema"]):
            reason = f"loss spike {loss:.3f} > {self.cfg.spike_factor} x recent {g['ema']:.3f}"
        if reason is None:
            g["ema"] = loss if g["history"] == 0 else SPIKE_EMA_BETA * g["ema"] + (1 - SPIKE_EMA_BETA) * loss
            g["history"] += 1
            return False
        g["skipped"] += 1
        logger.warning("step %d skipped (%s); %d skipped so far", self.step + 1, reason, g["skipped"])
        if g["skipped"] > self.cfg.max_skipped_steps:
            raise TrainingDiverged(f"{g['skipped']} steps skipped (more than max_skipped_steps="
                                   f"{self.cfg.max_skipped_steps}); last: {reason}. Lower the LR "
                                   "or check the data; the last checkpoint is "
                                   f"{self.last_checkpoint}")
        return True

    # ---- evaluation ---------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, heldout: dict[str, HeldOut]) -> dict[str, float]:
        """Mean loss (nats/token) and bits per byte per held-out domain. Every process scores
        every batch (FSDP needs the same forwards everywhere; held-out sets are small).

        Runs the compiled blocks eagerly: under no_grad, and with a short last batch, they
        would compile two more graphs per block and loss kernel (a static and then a dynamic
        one; counted with dynamo in `test_heldout_eval_compiles_no_graph`), for a forward over
        a few hundred thousand tokens. The small recipe's first H200 run spent ~60 s compiling
        in stage 1 and ~35-40 s at the seq_len change.
        """
        with torch.compiler.set_stance("force_eager"):
            return self._evaluate(heldout)

    def _evaluate(self, heldout: dict[str, HeldOut]) -> dict[str, float]:
        self.root.eval()
        out: dict[str, float] = {}
        dev = self.dist.device
        for domain, held in heldout.items():
            loss_sum, n_tok, bpb_nats, n_bytes = 0.0, 0, 0.0, 0
            for b in held.batches:
                targets = b.targets.to(dev)
                doc_ids = b.doc_ids.to(dev) if bool(b.doc_ids.any()) else None
                with self._autocast():
                    _, token_loss = self.root(b.input_ids.to(dev), targets, b.positions.to(dev),
                                              doc_ids)
                flat_t = targets.reshape(-1)
                keep = flat_t != IGNORE_INDEX
                loss_sum += float(token_loss[keep].double().sum())
                n_tok += int(keep.sum())
                if held.token_bytes is not None:
                    nb = held.token_bytes.to(dev)[flat_t.clamp(min=0)] * keep
                    bpb_nats += float(token_loss[nb > 0].double().sum())
                    n_bytes += int(nb.sum())
            if n_tok:
                out[f"heldout/loss/{domain}"] = loss_sum / n_tok
            if n_bytes:
                out[f"heldout/bpb/{domain}"] = bpb_nats / (math.log(2) * n_bytes)
        self.root.train()
        return out

    # ---- the run ------------------------------------------------------------------------------

    def run(self, spans: Sequence[StageSpan], schedule: WSD, source: BatchSource, *,
            plan_total: int, heldout: dict[str, HeldOut] | None = None,
            eval_hook=None, eval_hook_every: int = 0) -> Path:
        """Train from `self.step` to the end of the last span (or `stop_after`).

        Args:
            spans: the stages to run (contiguous, in order); ones already finished are skipped.
            schedule: LR as a function of the global step.
            source: batches (its state is saved in every checkpoint).
            plan_total: steps of the whole plan (for the log line).
            heldout: per-domain held-out rows, scored every `eval_every` steps and at stage ends.
            eval_hook: called as eval_hook(checkpoint_path, step) after each stage-end
                checkpoint; returns scalars to log (the youtu.eval hook).
            eval_hook_every: also call `eval_hook` every this many steps, on a step checkpoint
                written for it; 0 = stage ends only.

        Returns:
            The last checkpoint written (the final stage's, or the one at `stop_after`).
        """
        cfg = self.cfg
        heldout = heldout or {}
        stop = min(spans[-1].end_step, cfg.stop_after or spans[-1].end_step)
        for span in spans:  # every stage this run will enter, before the first step
            if self.step < span.end_step and span.start_step < stop:
                self.check_stage(span)
        self._stop.install()
        for span in spans:
            if self.step >= span.end_step:
                continue
            if self.step >= stop:
                break
            self.enter_stage(span)
            self.rows_per_process(span)  # fail early on a batch that does not split
            flops = self.model.flops_per_token(span.seq_len)
            while self.step < min(span.end_step, stop):
                if self._stop.should_stop(self.dist):  # a signal came: checkpoint, then stop
                    raise self._stop.stopped(self._checkpoint_now(span, source), self.step,
                                             self.dist)
                batch = source.next_batch(span.index, span.rows, span.seq_len)
                stats = self.train_step(batch, schedule.lr(self.step), span)
                self._record(stats, span, flops, plan_total, stop, source)
                if cfg.eval_every and self.step % cfg.eval_every == 0 and heldout:
                    self.metrics.log(self.step, self.evaluate(heldout))
                periodic = cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0
                hook_now = (eval_hook is not None and eval_hook_every
                            and self.step % eval_hook_every == 0)
                if self.step < span.end_step and (periodic or hook_now or self.step == stop):
                    path = self.save(ckpt.step_dirname(self.step), span.name, source,
                                     cfg.keep_last)
                    if hook_now and self.dist.is_main:
                        self.metrics.log(self.step, eval_hook(path, self.step) or {})
            if self.step < span.end_step:  # stopped early (stop_after)
                break
            if heldout:
                scores = self.evaluate(heldout)
                self.metrics.log(self.step, scores)
                if self.dist.is_main and scores:
                    logger.info("stage %s held-out: %s", span.name, ", ".join(
                        f"{k.split('/', 1)[1]} {v:.3f}" for k, v in sorted(scores.items())))
            path = self.save(ckpt.stage_dirname(span.name), span.name, source, cfg.keep_last)
            if eval_hook is not None and self.dist.is_main:
                self.metrics.log(self.step, eval_hook(path, self.step) or {})
        self._stop.uninstall()
        return self.last_checkpoint

    def _checkpoint_now(self, span: StageSpan, source: BatchSource) -> Path | None:
        """A checkpoint of the current step: the one just written, else a new periodic one."""
        if self._checkpoint_step != self.step:
            self.save(ckpt.step_dirname(self.step), span.name, source, self.cfg.keep_last)
        return self.last_checkpoint

    def _record(self, stats: StepStats, span: StageSpan, flops_per_token: float, plan_total: int,
                stop: int, source: BatchSource) -> None:
        # The first step of a process compiles / warms up allocators: keep it out of the rate.
        self._step_times.append(stats.seconds)
        recent = self._step_times[1:][-20:] or self._step_times
        sec = sum(recent) / len(recent)
        tok_s = stats.tokens / max(stats.seconds, 1e-9)
        util = mfu(tok_s, flops_per_token, self.peak, self.dist.world_size)
        ns = self.ns
        row = {f"{ns}/loss": stats.loss, f"{ns}/lr": stats.lr, f"{ns}/grad_norm": stats.grad_norm,
               f"{ns}/tokens_per_s": tok_s, f"{ns}/tokens": self.tokens_total,
               f"{ns}/stage": span.index, f"{ns}/skipped": self.guard["skipped"],
               f"{ns}/seq_len": span.seq_len}
        if util is not None:
            row[f"{ns}/mfu"] = util
        for domain, value in stats.domain_loss.items():
            row[f"{ns}/loss/{domain}"] = value
        if not stats.domain_loss and len(stats.domain_tokens) == 1:
            # a one-domain batch without per-token domains: its loss is that domain's
            row[f"{ns}/loss/{next(iter(stats.domain_tokens))}"] = stats.loss
        if self.dist.device.type == "cuda":
            row[f"{ns}/mem_gb"] = torch.cuda.max_memory_allocated(self.dist.device) / 2**30
        if self.step % self.cfg.log_every == 0 or self.step == stop:
            served = self.dist.all_gather_object(dict(getattr(source, "tokens_served", {})))
            for domain in sorted({d for s in served for d in s}):
                row[f"data/tokens/{domain}"] = sum(s.get(domain, 0) for s in served)
            self.metrics.log(self.step, row)
            if self.dist.is_main:
                logger.info(step_line(step=self.step, total=plan_total, stage=span.name,
                                      loss=stats.loss, lr=stats.lr, gnorm=stats.grad_norm,
                                      tokens_per_s=tok_s, mfu=util, eta_s=(stop - self.step) * sec))

    def close(self) -> None:
        self._stop.uninstall()
        self.metrics.close()
