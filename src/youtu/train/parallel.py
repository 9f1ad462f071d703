"""Process groups, FSDP2 sharding, activation checkpointing, compile.

Single process: everything here is a no-op and the model stays a plain module. Under torchrun
(`torchrun --nproc-per-node N -m youtu train ...`; multi-node through torchrun's rendezvous),
`init_distributed` joins the process group (NCCL on GPU, gloo on CPU) and `apply_fsdp` shards
every transformer block and then the root with `torch.distributed.fsdp.fully_shard` (FSDP2).
Reading and writing training state (DCP shards, full state dicts gathered on rank 0) is
checkpoint.py's.

Model code stays single-device (STYLE.md): these functions act on modules from the outside.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist
from torch import nn

from youtu.model.device import resolve_device

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dist:
    """Where this process sits: rank, world size, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False
    """This Dist created the process group (so `shutdown` destroys it); False when a caller
    above (the `youtu run` pipeline) had joined it already and keeps it across commands."""

    @property
    def distributed(self) -> bool:
        """True under torchrun with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            tdist.barrier()

    def all_reduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Sum `x` over ranks in place (returned for chaining); identity on one process."""
        if self.distributed:
            tdist.all_reduce(x, op=tdist.ReduceOp.SUM)
        return x

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        tdist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        tdist.broadcast_object_list(box, src=0)
        return box[0]


def init_distributed(device: str = "auto", timeout_s: int = 1800) -> Dist:
    """Join the torchrun process group when launched with WORLD_SIZE > 1, else a single process.

    Args:
        device: the run's `device` setting ('auto', 'cpu', 'cuda', ...).
        timeout_s: collective timeout (large checkpoints take minutes to write).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world <= 1:
        return Dist(device=dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    owns = not tdist.is_initialized()
    if owns:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        tdist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s),
                                 device_id=dev if dev.type == "cuda" else None)
    return Dist(rank=tdist.get_rank(), world_size=tdist.get_world_size(), local_rank=local_rank,
                device=dev, owns_group=owns)


def shutdown(dist: Dist) -> None:
    """Leave the process group (call once, at the end of the command) if `dist` created it.

    On a clean exit every rank meets at a barrier first: a rank that tears down its gloo group
    while a peer still has work in flight with it can abort in gloo's worker threads
    ("terminate called without an active exception", seen once in CI on a loaded 2-core
    machine). Called from a `finally` while an exception propagates, it skips the barrier: the
    failing rank's peers may never arrive, and torchrun ends them once this rank exits.
    """
    if dist.distributed and dist.owns_group and tdist.is_initialized():
        try:
            if sys.exc_info()[0] is None:
                tdist.barrier()
        finally:
            tdist.destroy_process_group()


# ---- wrapping -----------------------------------------------------------------------------------


AC_MODES = ("off", "full", "selective")
"""`activation_checkpointing` settings: nothing recomputed, each whole block recomputed, or
a per-op policy (`selective_checkpoint_policy`) that keeps the expensive outputs."""


def _save_ops() -> set:
    """Ops whose outputs selective checkpointing keeps: matmuls, every SDPA kernel and
    FlexAttention (the FLOPs), and `max` (the amax of FP8 scaling, which must not change
    between forward and recompute)."""
    aten = torch.ops.aten
    ops = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.linear.default,
           aten.max.default, aten._scaled_mm.default,
           aten._scaled_dot_product_cudnn_attention.default,
           aten._scaled_dot_product_flash_attention.default,
           aten._scaled_dot_product_efficient_attention.default,
           aten._scaled_dot_product_attention_math.default,
           aten._scaled_dot_product_flash_attention_for_cpu.default,
           torch._higher_order_ops.flex_attention}
    return ops


def selective_checkpoint_policy():
    """A fresh per-op policy for `create_selective_checkpoint_contexts` (one per forward: it
    counts matmuls). Attention and other save-listed outputs are kept; of the matmuls, every
    second one is recomputed, as torchtitan's "op" SAC does: the MLP and MLA projections
    alternate between kept and recomputed, which halves the matmul activations at the cost
    of recomputing half of the forward matmuls (the cheap elementwise ops are all recomputed).
    """
    from torch.utils.checkpoint import CheckpointPolicy

    save = _save_ops()
    matmuls = {torch.ops.aten.mm.default, torch.ops.aten.linear.default,
               torch.ops.aten._scaled_mm.default}
    counts = {"forward": 0, "recompute": 0}

    def policy(ctx, func, *args, **kwargs) -> CheckpointPolicy:
        if func in matmuls:
            key = "recompute" if ctx.is_recompute else "forward"
            counts[key] += 1
            if counts[key] % 2 == 0:
                return CheckpointPolicy.PREFER_RECOMPUTE
        return CheckpointPolicy.MUST_SAVE if func in save else CheckpointPolicy.PREFER_RECOMPUTE

    return policy


def checkpoint_mode(setting: bool | str) -> str:
    """The AC mode of an `activation_checkpointing` setting: the old booleans map to
    'off' / 'full'."""
    if isinstance(setting, bool):
        return "full" if setting else "off"
    if setting not in AC_MODES:
        raise ValueError(f"activation_checkpointing must be one of {AC_MODES} (or true/false), "
                         f"got {setting!r}")
    return setting


def apply_activation_checkpointing(blocks: Iterable[nn.Module], mode: bool | str = "full") -> None:
    """Recompute activations during backward (non-reentrant torch.utils.checkpoint).

    Args:
        blocks: the transformer blocks; each block's `forward` is wrapped in place, so module
            names and state-dict keys do not change (checkpoint_wrapper would add
            `_checkpoint_wrapped_module.` to every key).
        mode: 'off' (nothing), 'full' (keep only each block's input, recompute the whole
            block: least memory, one more forward of compute) or 'selective' (keep matmul and
            attention outputs per `selective_checkpoint_policy`, recompute the rest); True /
            False mean 'full' / 'off'. Apply before `apply_compile` (compile then traces the
            policy into the block's graph, as torchtitan orders it).
    """
    from torch.utils.checkpoint import checkpoint, create_selective_checkpoint_contexts

    mode = checkpoint_mode(mode)
    if mode == "off":
        return
    extra = {}
    if mode == "selective":
        extra["context_fn"] = lambda: create_selective_checkpoint_contexts(
            selective_checkpoint_policy())
    for block in blocks:
        inner = block.forward

        def forward(*args, _inner=inner, **kwargs):
            return checkpoint(_inner, *args, use_reentrant=False, **extra, **kwargs)

        block.forward = forward


def apply_compile(blocks: Iterable[nn.Module]) -> None:
    """torch.compile each block in place (per-block compile composes with FSDP2, as torchtitan
    does; state-dict keys do not change)."""
    for block in blocks:
        block.compile(fullgraph=False)


def apply_fsdp(root: nn.Module, blocks: Iterable[nn.Module], dist: Dist,
               param_dtype: torch.dtype | None) -> None:
    """Shard each block, then the root (embeddings, final norm, the tied lm_head), with FSDP2.

    Gradients are summed over ranks, not averaged (divide factor 1): the loss each rank
    returns is already its share of the global token-mean, so the sum is the global gradient.

    Args:
        root: the module whose forward computes the loss (the FSDP root).
        blocks: the transformer blocks (one FSDP unit each).
        dist: must be distributed.
        param_dtype: compute dtype of gathered parameters (bf16 on GPU; None = keep fp32);
            gradients are reduced in fp32.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    assert dist.distributed
    mesh = init_device_mesh(dist.device.type, (dist.world_size,))
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for block in blocks:
        fully_shard(block, mesh=mesh, mp_policy=mp)
    fully_shard(root, mesh=mesh, mp_policy=mp)
    for module in root.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            # Gloo has no PREMUL_SUM; plain SUM with the (trivial) scaling done separately.
            module.set_force_sum_reduction_for_comms(True)


def set_gradient_sync(root: nn.Module, sync: bool) -> None:
    """Turn FSDP's reduce-scatter off for all but the last micro-batch of an accumulation."""
    from torch.distributed.fsdp import FSDPModule

    if isinstance(root, FSDPModule):
        root.set_requires_gradient_sync(sync)
