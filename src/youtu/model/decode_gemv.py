"""Decode GEMVs for CUDA (Triton): a weight matmul of 1-8 rows with its neighbours fused in.

    y = gemv(x, w)                                       # x [B, K] @ w[N, K]^T -> [B, N]
    y = gemv(x, w, norm_weight=g, eps=1e-6)              # RMSNorm(x; g) first (prologue)
    y = gemv(x, w, residual=r)                           # r + x @ w^T (epilogue)
    y = gemv(h, gate_up, norm_weight=g, swiglu=True)     # silu(gate) * up, [B, I] (epilogue)

Why. Batch-1 decode of the 2B preset on an H200 spent 1.95 ms of a 2.97 ms step in cuBLAS
GEMVs whose bytes need 0.93 ms (2-25 MB weights at about half the copy bandwidth, 4-9 us
each), plus ~8 inductor elementwise kernels per layer at 1-1.7 us (norms, SwiGLU, residual
adds; bench/results/2026-12-04_h200_decode.md). A decode GEMV is weight-bound: each weight
element is read once and used for B <= 8 rows, so the kernel's job is to stream W at copy
bandwidth and do the elementwise work beside it for free:
- prologue RMSNorm: x is [B, K] with K <= 6144 (12 KB per row in bf16, L2-resident), so every
  program recomputes its rows' sum of squares instead of waiting for a separate norm kernel;
- epilogue `+ residual` (o_proj, down_proj) or `silu(gate) * up` over the fused [gate | up]
  weight (`MLP.fuse_`): one program reads gate row n and up row n + I.
Per layer that is 5 GEMV launches carrying 3 norms, the SwiGLU and both residual adds.

Design. One program per BLOCK_N output features loops over K in BLOCK_K tiles; the grid is
cdiv(N, BLOCK_N) programs, which fills the 132 SMs without split-K: N = 2048 with BLOCK_N = 4
is 512 programs (~4 per SM). Split-K would need a second launch (or atomics plus a zeroing
launch) and could then not carry the epilogue, so there is none. Two inner products, picked by
autotune per (N, K, B): `DOT` = tl.dot on tensor cores with the rows padded to 16 (the padding
costs FLOPs, not bytes), else a broadcast multiply + reduce over K on the CUDA cores.
Accumulation in fp32; rounding points match the model's torch code (`layers.rms_norm`: normed
x rounded to x's dtype, then scaled; F.linear's output rounded before the residual add and
before silu), so bf16 results differ from torch by accumulation order only.

Dependent launch (`pdl=True`, the `+pdl` implementations; `auto+pdl` is the engine's default:
1.007-1.041x its batch-1 step in six H100 runs, bench/results/2026-12-07_h100_decode_kernels.md;
the decode step launches the attention kernels of `decode_attention` the same way). A batch-1 GEMV
of an 8-9 MB weight took 5.2-5.8 us on an H100 against a 2.6 us bytes floor: the ramp and
drain of each kernel, ~160 a step. With `pdl=True` the kernel loads its first weight tile
before `gdc_wait` (a whole-row config: all its weights) and is launched with `launch_pdl`, so
that load overlaps the end of the kernel before; `gdc_launch_dependents` right after the wait
lets the next kernel do the same. Only weights, which no kernel writes, are read before the
wait. (A kernel launched so may start once the kernel before has passed its wait: every
kernel before that one has then finished.) That first tile is peeled off the K loop: chosen
by an `if` inside the loop, it kept Triton's pipeliner from prefetching the loop's weight
tiles (the tl.dot configs' async copies, checked by the sm_90 build test).

Larger batches keep cuBLAS: at B > 8 the GEMM is no longer weight-bound per row.
The kernel lives in `decode_gemv_kernels`, imported with `triton` on first use; on CPU
tensors it runs only under Triton's interpreter (`TRITON_INTERPRET=1` set before triton is
imported; the tests do so), with the fixed default config (the autotuner needs a GPU).

Shape legend: B rows (decode tokens), K input features, N output features, I = N / 2 (swiglu).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

MAX_ROWS = 8
"""Largest B the kernel takes: the engine's batch buckets up to 8 (beyond, cuBLAS)."""

IMPLEMENTATIONS = ("auto", "cublas", "triton", "auto+pdl", "triton+pdl")
"""The decode step's GEMVs: F.linear, these kernels up to MAX_ROWS rows, or these kernels
where they were measured faster (AUTO_MAX_ROWS) and F.linear above; `+pdl`: the kernels with
programmatic dependent launch (`gemv(pdl=True)`; `serve.decode_gemv` takes them, bench/decode.py's
`fused+overlap+auto+pdl` variant times it)."""

AUTO_MAX_ROWS = 1
"""Rows up to which `auto` takes the kernels. On an H100
(bench/results/2026-12-07_h100_gemv_rows.md, 94c63c0) the batch-1 GEMVs with their norms,
SwiGLU and residuals fused in took 2.01 ms a step against 2.06 ms for cuBLAS without that
work, and the whole engine step ran 1.12x faster (349.7 vs 311.9 tok/s); at 8 rows they took
2.60 ms against cuBLAS's 2.08 (a loss), and 2-4 rows are unmeasured."""


def check_implementation(value: str, key: str = "gemv") -> str:
    """`value` if it names one of IMPLEMENTATIONS, else a one-line ValueError naming `key`."""
    if value not in IMPLEMENTATIONS:
        raise ValueError(f"{key} must be 'auto', 'cublas' or 'triton' (or 'auto+pdl' / "
                         f"'triton+pdl': with dependent launch), got {value!r}")
    return value


def kernel_rows(implementation: str) -> int:
    """The most rows for which `implementation` runs these kernels (0: never)."""
    rows = {"auto": AUTO_MAX_ROWS, "cublas": 0, "triton": MAX_ROWS}
    return rows[check_implementation(implementation).removesuffix("+pdl")]


def dependent_launch(implementation: str) -> bool:
    """Whether `implementation`'s kernels launch dependently (`gemv(pdl=True)`)."""
    return check_implementation(implementation).endswith("+pdl")


class GemvConfig(NamedTuple):
    """One launch configuration: BLOCK_N features per program, BLOCK_K per loop iteration."""

    block_n: int
    block_k: int
    dot: bool
    num_warps: int = 4
    num_stages: int = 2


# The fixed path (interpreter, or a caller's explicit choice): small blocks keep the
# interpreter's numpy tiles small and every mask path exercised at the tests' shapes.
DEFAULT_CONFIG = GemvConfig(block_n=16, block_k=64, dot=False)

# Autotune candidates on CUDA (keyed on N, K, B, the prologue/epilogue and the dtypes). Copy
# bandwidth needs ~32-64 KB in flight per SM: 4-16 rows x 256-512 bf16 per iteration with
# ~4 programs per SM; tl.dot tiles take 16+ rows and pipeline through shared memory.
AUTOTUNE_CONFIGS = [
    GemvConfig(4, 256, False), GemvConfig(4, 512, False), GemvConfig(8, 256, False),
    GemvConfig(8, 512, False, num_warps=8), GemvConfig(16, 128, False),
    GemvConfig(16, 256, False, num_warps=8),
    GemvConfig(16, 128, True, num_stages=4), GemvConfig(32, 128, True, num_stages=4),
    GemvConfig(64, 64, True, num_stages=4), GemvConfig(16, 256, True, num_stages=3),
    # a whole 2048-wide row per iteration: every load of the program in flight at once
    GemvConfig(1, 2048, False), GemvConfig(2, 1024, False), GemvConfig(2, 2048, False, num_warps=8),
    GemvConfig(4, 1024, False, num_warps=8), GemvConfig(4, 2048, False, num_warps=8),
]
# FMA configs whose [rows, BLOCK_N, BLOCK_K] product exceeds this many fp32 values per thread
# are pruned before tuning: ptxas for sm_90a gave 16 x 128 at 8 rows (128 values) 254
# registers per thread (one 4-warp program per SM), 4 x 256 at 8 rows (64 values) 48-79.
MAX_FMA_VALUES_PER_THREAD = 64

_PROLOGUES = {None: 0, "rmsnorm": 1}
_EPILOGUES = {None: 0, "residual": 1, "swiglu": 2}


def available(device: torch.device) -> bool:
    """Whether `gemv` can run on `device` in production: CUDA with triton installed."""
    return device.type == "cuda" and _has_triton()


@functools.cache
def _has_triton() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


@functools.cache
def _kernels():
    """The GEMV kernel, bare (fixed config) and autotuned (imported here: CPU installs never
    need triton)."""
    try:
        import triton

        from youtu.model.decode_gemv_kernels import gemv_kernel
    except ImportError as e:
        raise ImportError("the decode GEMV kernels need triton (it ships with CUDA builds of "
                          "torch: pip install triton)") from e

    def prune(configs, named_args, **kwargs):
        rows = kwargs["BLOCK_B"]
        keep = [c for c in configs if c.kwargs["DOT"] or rows * c.kwargs["BLOCK_N"]
                * c.kwargs["BLOCK_K"] <= MAX_FMA_VALUES_PER_THREAD * 32 * c.num_warps]
        return keep or configs[:1]

    tuned = triton.autotune(
        configs=[triton.Config({"BLOCK_N": c.block_n, "BLOCK_K": c.block_k, "DOT": c.dot},
                               num_warps=c.num_warps, num_stages=c.num_stages)
                 for c in AUTOTUNE_CONFIGS],
        key=["N", "K", "B", "PROLOGUE", "EPILOGUE", "PDL"],
        prune_configs_by={"early_config_prune": prune})(gemv_kernel)
    return gemv_kernel, tuned


def _check(x: torch.Tensor, weight: torch.Tensor, norm_weight: torch.Tensor | None,
           residual: torch.Tensor | None, swiglu: bool) -> tuple[int, int, int]:
    """(B, N out, K) after the shape, dtype and layout checks; ValueError naming the argument."""
    if x.dim() != 2 or weight.dim() != 2:
        raise ValueError(f"gemv: x must be [B, K] and weight [N, K], got x {tuple(x.shape)} and "
                         f"weight {tuple(weight.shape)}")
    B, K = x.shape
    N = weight.shape[0]
    if weight.shape[1] != K:
        raise ValueError(f"gemv: weight {tuple(weight.shape)} does not take x's K = {K}")
    if not 1 <= B <= MAX_ROWS:
        raise ValueError(f"gemv: x has {B} rows; the kernel takes 1..{MAX_ROWS} (larger batches: "
                         f"F.linear, cuBLAS)")
    if x.stride(1) != 1 or weight.stride(1) != 1:
        raise ValueError("gemv: x and weight need a contiguous last dim (x may be a column slice)")
    if x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"gemv: dtype {x.dtype} unsupported; use float32, bfloat16 or float16")
    for name, t in (("weight", weight), ("norm_weight", norm_weight), ("residual", residual)):
        if t is not None and (t.dtype != x.dtype or t.device != x.device):
            raise ValueError(f"gemv: {name} is {t.dtype} on {t.device}, x is {x.dtype} on "
                             f"{x.device}: they must match (as F.linear requires)")
    if norm_weight is not None and tuple(norm_weight.shape) != (K,):
        raise ValueError(f"gemv: norm_weight must be [{K}], got {tuple(norm_weight.shape)}")
    if swiglu and residual is not None:
        raise ValueError("gemv: swiglu and residual are exclusive epilogues")
    if swiglu and N % 2:
        raise ValueError(f"gemv: swiglu needs the fused [gate | up] weight with an even row "
                         f"count, got {N}")
    n_out = N // 2 if swiglu else N
    if residual is not None and (tuple(residual.shape) != (B, n_out) or residual.stride(1) != 1):
        raise ValueError(f"gemv: residual must be [{B}, {n_out}] with a contiguous last dim, got "
                         f"{tuple(residual.shape)}")
    if x.device.type != "cuda" and not _interpreting():
        raise ValueError(f"gemv runs on CUDA (got {x.device}); on the CPU only under Triton's "
                         f"interpreter (TRITON_INTERPRET=1 before triton is imported)")
    return B, n_out, K


def _interpreting() -> bool:
    if not _has_triton():
        return False
    import triton

    return bool(triton.knobs.runtime.interpret)


def gemv(x: torch.Tensor, weight: torch.Tensor, *, norm_weight: torch.Tensor | None = None,
         eps: float = 1e-6, residual: torch.Tensor | None = None, swiglu: bool = False,
         config: GemvConfig | None = None, pdl: bool = False) -> torch.Tensor:
    """epilogue(prologue(x) @ weight^T) for 1..8 rows, in one kernel.

    Args:
        x: [B, K] activations (B <= MAX_ROWS), last dim contiguous; the row stride may be
            larger (a column slice of a wider output, e.g. the q part of the fused q_kv_a).
        weight: [N, K] weight (an `nn.Linear`'s), last dim contiguous; x's dtype and device.
        norm_weight: [K] RMSNorm scale: x is normalised first, as `layers.RMSNorm` does.
        eps: the RMSNorm epsilon.
        residual: [B, N]: returns residual + x @ weight^T (the rounded GEMV output added).
        swiglu: weight is the fused [gate | up] [2I, K]: returns silu(gate) * up, [B, I].
        config: a fixed launch config; None = autotuned on CUDA, DEFAULT_CONFIG elsewhere.
        pdl: prefetch the first weight tile before waiting for the kernel before, and launch
            dependently (sm_90+; under the interpreter and before sm_90 only the prefetch).

    Returns:
        [B, N] (or [B, I] with swiglu), x's dtype, contiguous. A new tensor: never written in
        place, so autotuning's repeated launches are harmless.
    """
    B, n_out, K = _check(x, weight, norm_weight, residual, swiglu)
    out = torch.empty(B, n_out, device=x.device, dtype=x.dtype)
    kernel, tuned = _kernels()
    args = (x, weight, out, residual if residual is not None else out,
            norm_weight if norm_weight is not None else weight, B, n_out, K, float(eps),
            x.stride(0), weight.stride(0), out.stride(0),
            residual.stride(0) if residual is not None else 0, n_out if swiglu else 0)
    epilogue = "swiglu" if swiglu else "residual" if residual is not None else None
    meta = {"PROLOGUE": _PROLOGUES["rmsnorm" if norm_weight is not None else None],
            "EPILOGUE": _EPILOGUES[epilogue], "BLOCK_B": _pow2(B),
            "IEEE": x.dtype == torch.float32, "PDL": pdl,
            "GDC": pdl and x.is_cuda and has_dependent_launch(x.device)}
    if meta["GDC"]:
        meta["launch_pdl"] = True
    if config is None and x.is_cuda:
        tuned[lambda m: (triton_cdiv(n_out, m["BLOCK_N"]),)](*args, **meta)
        return out
    c = config or DEFAULT_CONFIG
    kernel[(triton_cdiv(n_out, c.block_n),)](*args, **meta, BLOCK_N=c.block_n, BLOCK_K=c.block_k,
                                             DOT=c.dot, num_warps=c.num_warps,
                                             num_stages=c.num_stages)
    return out


def has_dependent_launch(device: torch.device) -> bool:
    """Whether `device` has dependent launch (sm_90+); elsewhere pdl=True only prefetches (the
    decode GEMVs here, the attention kernels of `decode_attention`)."""
    return torch.cuda.get_device_capability(device)[0] >= 9


def triton_cdiv(a: int, b: int) -> int:
    """ceil(a / b) for the launch grid."""
    return -(-a // b)


def gemv_reference(x: torch.Tensor, weight: torch.Tensor, *, norm_weight: torch.Tensor | None = None,
                   eps: float = 1e-6, residual: torch.Tensor | None = None,
                   swiglu: bool = False) -> torch.Tensor:
    """`gemv` in torch, the model's own operations in the model's order (tests, benchmarks)."""
    import torch.nn.functional as F

    from youtu.model.layers import rms_norm

    h = rms_norm(x, norm_weight, eps) if norm_weight is not None else x
    y = F.linear(h, weight)
    if swiglu:
        gate, up = y.chunk(2, dim=-1)
        return F.silu(gate) * up
    return residual + y if residual is not None else y
