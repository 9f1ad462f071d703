"""Fused absorbed-MLA decode attention for CUDA (Triton), split over the cache length.

    out = mla_decode_attention(q, kv, rows, lengths, scale, max_len, rope_dim=R)   # [G, H, C]

Each query group g (one decode token of one sequence) holds H head queries in latent space,
q[g] [H, C + R] (W_uk^T q_nope | rotated q_rope), and attends to slots 0..lengths[g]-1 of cache
row rows[g] of one layer's slab kv [N, S, C + R], read in place (no gather copy). The values
are the latent part of the same rows, so one read of a cached row serves every head and both
matrix products (the MQA shape of absorbed MLA, DeepSeek-V2 sec. 2.1; FlashInfer's and FlashMLA's
design).

Flash-decoding (Dao et al. 2023): a sequence's slots are cut into splits, one program per
(group, split) computes the softmax-normalised partial output and its log-sum-exp over its
slots, and a second kernel combines the splits. Given W_uv (`w_uv=`, the decode path does),
the combine also maps each head's latent output through it when there are few splits, so the
attention hands o_proj its input with no bmm launch between. A batch-1 decode at 32k has 16 query rows:
without splitting it would run on one of the H200's 132 SMs. Splits are sized so that the
grid holds ~4 programs per SM; splits past a group's length write an empty partial
(lse = -inf) that the combine ignores, so ragged batches are exact. With one split the
combine is skipped: the split's output is stored in the query dtype directly.

The kernels compile on first use; `triton` is imported lazily so this module imports on a
CPU-only install (the model's CPU path never calls it).

Shape legend: G query groups (batch x query tokens), H heads, N cache rows, S slots per row,
C kv_lora_rank (latent, 512 for the 2B), R qk_rope_head_dim (64), P splits.
"""

from __future__ import annotations

import functools
import math

import torch

from youtu.model import decode_gemv

# Programs per SM the split count aims for: enough in flight to hide HBM latency
# (an H200 has 132 SMs).
PROGRAMS_PER_SM = 4
# Slots one program loads per loop iteration (a [BLOCK_N, C + R] tile of the slab).
BLOCK_N_HALF = 32
BLOCK_N_FP32 = 16  # fp32 tiles are twice the bytes; 16 keeps two pipeline stages in shared memory
# The split kernel's launch: tiles in flight (software pipelining) and warps per program
# (bench/decode_attention.py --configs sweeps them with BLOCK_N_HALF).
SPLIT_NUM_STAGES = 2
SPLIT_NUM_WARPS = 4
# Fewest slots per split: its fp32 partial output [H, C] is then ~1/5 of the bytes it reads.
MIN_SPLIT_SLOTS = 128
# Most splits of one tile each for a latency-bound call (few groups, short cache): the most an
# H100 sweep measured (batch 1 at 4,096 slots: 64 splits 13.4 us, 32 splits 15.4 us).
LATENCY_MAX_SPLITS = 64
# The combine kernels' tile: BLOCK_P splits x COMBINE_BLOCK_C latent values. The plain combine
# (long caches: more than VALUES_MAX_SPLITS splits) takes up to COMBINE_MAX_BLOCK_P splits a
# tile, narrowing its latent slice to keep the tile's COMBINE_BLOCK_P x COMBINE_BLOCK_C values:
# each program's two passes over the splits are a chain of dependent loads (a serial loop over
# 512 splits cost ~200 us a layer at 32k), so at 256 splits 64 x 32 tiles make it 4 steps a pass
# instead of 16, over 256 programs a batch-1 layer instead of 64 (not yet timed on a GPU).
COMBINE_BLOCK_P = 16
COMBINE_BLOCK_C = 128
COMBINE_MAX_BLOCK_P = 64
# With W_uv passed (`mla_decode_attention(w_uv=...)`), calls of at most this many splits map the
# latent outputs through W_uv in the combine kernel, for the cuBLAS bmm's launch (3.5-3.8 us a
# layer in a batch-1 step on an H100, bench/results/2026-12-07_h100_decode_pdl.md); more splits
# combine as before and run the bmm, as each of a head's programs would re-read every split.
VALUES_MAX_SPLITS = 16
# The queries kernel's latent slice per program: C / QUERIES_BLOCK_C programs a head (16 at 2B),
# each reading a [Dn, 32] tile of W_uk (8 KB in bf16). H100, 2B shapes, in a CUDA graph
# (bench/decode_queries.py): batch 1 7.06 / 4.97 / 3.91 / 3.56 us at 128 / 64 / 32 / 16,
# batch 8 9.15 / 7.30 / 7.09 / 9.94 us.
QUERIES_BLOCK_C = 32
# The fused values kernel's programs per head: Dv / VALUES_BLOCK_V (8 for the 2B's Dv = 128).
VALUES_BLOCK_V = 16


@functools.cache
def available(device: torch.device) -> bool:
    """Whether the fused kernel can run on `device` (CUDA with triton installed)."""
    if device.type != "cuda":
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def _kernels():
    """The four Triton kernels (`decode_attention_kernels`), imported on first use so CPU
    installs never need triton."""
    try:
        from youtu.model import decode_attention_kernels as k
    except ImportError as e:  # pragma: no cover - CUDA installs of torch ship triton
        raise ImportError("the fused MLA decode kernel needs triton (it ships with CUDA builds "
                          "of torch: pip install triton)") from e
    return k.split_kernel, k.combine_kernel, k.combine_values_kernel, k.queries_kernel


def num_splits(groups: int, max_len: int, block_n: int, sms: int) -> int:
    """Splits per group: ~PROGRAMS_PER_SM programs per SM, at least MIN_SPLIT_SLOTS slots per
    split (a split writes a [H, C] fp32 partial: with one 32-slot tile per split that is as many
    bytes as the slots it read) -- except where few groups and short caches leave SMs idle: then
    a program's time is its loop's latency, not bytes, and the cache is cut down to one tile per
    split until the groups' splits fill the SMs once (at most LATENCY_MAX_SPLITS). On an H100,
    in a CUDA graph (bench/decode_attention.py), batch 1: 256 slots 11.1 -> 6.7 us, 1,024 slots
    12.3 -> 8.3 us, 4,096 slots 15.4 -> 13.4 us; batch 8 x 256: 13.0 -> 8.8 us; unchanged where
    the groups fill the GPU (batch 32 x 640, 64 x 256) or the cache is long (32k)."""
    groups = max(groups, 1)
    want = max(1, (PROGRAMS_PER_SM * sms) // groups)
    by_bytes = math.ceil(max_len / max(block_n, MIN_SPLIT_SLOTS))
    by_latency = min(math.ceil(max_len / block_n), sms // groups, LATENCY_MAX_SPLITS)
    return max(1, min(want, max(by_bytes, by_latency)))


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def supports(latent: int, rope: int, heads: int) -> bool:
    """Shapes the kernel takes: power-of-two latent and rope parts of at least 16 (tl.dot's
    smallest K; the 2B's 512 + 64, the tiny preset's 32 + 16) and at most 128 heads."""
    def pow2(n: int) -> bool:
        return n >= 16 and n & (n - 1) == 0

    return pow2(latent) and pow2(rope) and heads <= 128


def mla_decode_attention(q: torch.Tensor, kv: torch.Tensor, rows: torch.Tensor,
                         lengths: torch.Tensor, scale: float, max_len: int, rope_dim: int,
                         splits: int | None = None, new: torch.Tensor | None = None,
                         w_uv: torch.Tensor | None = None, pdl: bool = False) -> torch.Tensor:
    """Absorbed MLA attention of decode queries against one layer's latent slab, in place.

    Args:
        q: [G, H, C + R] queries in latent space (CUDA, the slab's dtype).
        kv: [N, S, C + R] one layer's cache slab (`LatentCache.kv[layer]`), last dim contiguous.
        rows: [G] cache row of each group.
        lengths: [G] slots each group attends to (1..max_len): slots 0..lengths[g]-1.
        scale: softmax scale.
        max_len: an upper bound on `lengths` known on the host (it sizes the grid; a CUDA
            graph bucket's attended length). Slots at or past it are never read.
        rope_dim: R, the rope part at the end of each row.
        splits: override the number of splits (benchmarks); None = `num_splits`.
        new: [G, C + R] each group's own cache row, for slot lengths[g] - 1 (one decode token
            a group): the kernel stores it there and attends to it, instead of a scatter kernel
            before the call. The groups' rows must differ, except rows whose outputs are thrown
            away (a CUDA graph's padding on its scratch row). None: the slab already holds it.
        w_uv: [H, Dv, C] the value up-projection (`kv_b_proj`'s value rows, any row stride):
            the outputs are mapped through it, in the combine kernel for up to
            VALUES_MAX_SPLITS splits (one launch fewer), else by a bmm after it.
        pdl: dependent launch (sm_90+, `decode_gemv.has_dependent_launch`): the split kernel
            (after prefetching its first slab tile into L2) and the W_uv combine (after
            loading its W_uv rows) wait for the kernel before only then, so those loads
            overlap its end; elsewhere it changes nothing. The caller guarantees the kernel
            before does not write W_uv (true of the decode step's).

    Returns:
        [G, H, C] attention outputs in latent space (q's dtype), or with `w_uv` a contiguous
        [G, H, Dv] (w_uv's dtype): out_latent rounded to q's dtype, then times W_uv^T with fp32 sums.
    """
    G, H, D = q.shape
    N, S, W = kv.shape
    latent = D - rope_dim
    if W != D or kv.stride(-1) != 1 or q.stride(-1) != 1:
        raise ValueError(f"q [G, H, {D}] and kv [N, S, {W}] need equal, contiguous last dims")
    if not supports(latent, rope_dim, H):
        raise ValueError(f"the fused decode kernel needs power-of-two latent/rope dims >= 16, "
                         f"got {latent} + {rope_dim}")
    if new is not None and (new.shape != (G, D) or new.dtype != kv.dtype or new.stride(-1) != 1):
        raise ValueError(f"new rows must be [G, {D}] in the slab's dtype {kv.dtype}, last dim "
                         f"contiguous; got {tuple(new.shape)} {new.dtype}")
    if w_uv is not None and (w_uv.dim() != 3 or w_uv.shape[0] != H or w_uv.shape[2] != latent
                             or w_uv.stride(-1) != 1):
        raise ValueError(f"w_uv must be [{H}, Dv, {latent}] with a contiguous last dim, got "
                         f"{tuple(w_uv.shape)}")
    split_kernel, combine_kernel, combine_values_kernel, _ = _kernels()
    block_n = BLOCK_N_FP32 if q.dtype == torch.float32 else BLOCK_N_HALF
    block_h = max(16, 1 << (H - 1).bit_length())  # tl.dot needs >= 16 rows
    max_len = max(1, min(max_len, S))
    sms = _sm_count(q.device.index or 0) if q.is_cuda else 8  # CPU: TRITON_INTERPRET=1 tests
    P = splits or num_splits(G, max_len, block_n, sms)
    chunk = math.ceil(math.ceil(max_len / P) / block_n) * block_n
    P = math.ceil(max_len / chunk)
    fuse_values = w_uv is not None and P <= VALUES_MAX_SPLITS
    out = None if fuse_values else torch.empty(G, H, latent, device=q.device, dtype=q.dtype)
    # One split (short caches, wide batches): its normalised output is the answer, stored
    # straight into `out` (cast on store) with no combine launch.
    o_part = (out.view(G, 1, H, latent) if P == 1 and out is not None else
              torch.empty(G, P, H, latent, device=q.device, dtype=torch.float32))
    lse = torch.empty(G, P, H, device=q.device, dtype=torch.float32)
    split_kernel[(G, P)](
        q, kv, rows, lengths, o_part, lse, kv if new is None else new,
        scale * math.log2(math.e), H, chunk,
        q.stride(0), q.stride(1), kv.stride(0), kv.stride(1),
        o_part.stride(0), o_part.stride(1), o_part.stride(2), lse.stride(0), lse.stride(1),
        0 if new is None else new.stride(0),
        C=latent, R=rope_dim, BLOCK_H=block_h, BLOCK_N=block_n, IEEE=q.dtype == torch.float32,
        WRITE=new is not None, **_launch(pdl, q),
        num_warps=SPLIT_NUM_WARPS, num_stages=SPLIT_NUM_STAGES)
    if fuse_values:
        block_p = min(COMBINE_BLOCK_P, max(2, 1 << (P - 1).bit_length()))
        dv = w_uv.shape[1]
        values = torch.empty(G, H, dv, device=q.device, dtype=w_uv.dtype)
        block_v = min(VALUES_BLOCK_V, max(2, 1 << (dv - 1).bit_length()))
        combine_values_kernel[(G, H, math.ceil(dv / block_v))](
            o_part, lse, q, w_uv, values, P, dv, o_part.stride(0), o_part.stride(1),
            o_part.stride(2), lse.stride(0), lse.stride(1), w_uv.stride(0), w_uv.stride(1),
            values.stride(0), C=latent, BLOCK_P=block_p, BLOCK_V=block_v,
            **_launch(pdl, q), num_warps=8)
        return values
    if P > 1:
        _combine(combine_kernel, o_part, lse, out, P, latent)
    if w_uv is None:
        return out
    # bmm over heads: [H, G, Dv] laid out, returned as a contiguous [G, H, Dv] like the fused path.
    return torch.bmm(out.to(w_uv.dtype).transpose(0, 1), w_uv.transpose(1, 2)).transpose(0, 1) \
        .contiguous()


def _launch(pdl: bool, q: torch.Tensor) -> dict:
    """A kernel launch's dependent-launch meta-parameters: GDC (its wait, on sm_90+) and, with
    it, triton's launch_pdl."""
    gdc = pdl and q.is_cuda and decode_gemv.has_dependent_launch(q.device)
    return {"GDC": gdc, "launch_pdl": True} if gdc else {"GDC": False}


def _combine(combine_kernel, o_part: torch.Tensor, lse: torch.Tensor, out: torch.Tensor, P: int,
             latent: int) -> None:
    G, H = out.shape[:2]
    block_p = min(COMBINE_MAX_BLOCK_P, max(2, 1 << (P - 1).bit_length()))
    block_c = min(latent, COMBINE_BLOCK_C, max(16, COMBINE_BLOCK_P * COMBINE_BLOCK_C // block_p))
    combine_kernel[(G, H, latent // block_c)](
        o_part, lse, out, P, o_part.stride(0), o_part.stride(1), o_part.stride(2),
        lse.stride(0), lse.stride(1), out.stride(0), out.stride(1),
        BLOCK_C=block_c, BLOCK_P=block_p, num_warps=4)


def mla_decode_queries(q: torch.Tensor, kv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                       w_uk: torch.Tensor, norm_weight: torch.Tensor, eps: float, rope_dim: int,
                       pdl: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The decode step's absorbed queries and new cache rows in one launch (one token a row):
    the work of `MLAttention.absorbed_queries` (RoPE of q and k, kv_a_layernorm, the W_uk
    absorption, both concatenations), which as torch ops is a bmm and 2-3 fused elementwise
    kernels a layer.

    Args:
        q: [B, H * (Dn + R)] q_b_proj's output (last dim contiguous, any row stride).
        kv: [B, C + R] kv_a_proj_with_mqa's output (last dim contiguous, any row stride).
        cos, sin: [B, 1, R/2] the rows' rotary tables (`YoutuForCausalLM._rope`).
        w_uk: [H, Dn, C] the key up-projection (`kv_b_proj`'s key rows, any row stride).
        norm_weight, eps: kv_a_layernorm's scale [C] and epsilon.
        rope_dim: R.
        pdl: dependent launch (sm_90+): each program loads its W_uk tile, then waits for the
            kernel before (the q_b_proj GEMV of the decode step).

    Returns:
        q_abs [B, H, C + R] (q's dtype) and the new rows [B, C + R] (kv's dtype): rounded where
        the torch ops round their outputs (the einsum, the rotations, the norm before and after
        its scale), every sum in fp32.
    """
    B = q.shape[0]
    H, Dn, C = w_uk.shape
    R = rope_dim
    if (q.shape != (B, H * (Dn + R)) or kv.shape != (B, C + R) or cos.shape != (B, 1, R // 2)
            or sin.shape != cos.shape or norm_weight.shape != (C,)):
        raise ValueError(f"mla_decode_queries: shapes q {tuple(q.shape)}, kv {tuple(kv.shape)}, "
                         f"cos {tuple(cos.shape)}, w_uk {tuple(w_uk.shape)} do not fit one token "
                         f"a row of H={H}, Dn={Dn}, C={C}, R={R}")
    if not supports(C, R, H) or min(q.stride(-1), kv.stride(-1), w_uk.stride(-1)) != 1:
        raise ValueError("mla_decode_queries needs power-of-two latent/rope dims >= 16 and "
                         "contiguous last dims")
    cos, sin = cos.contiguous(), sin.contiguous()
    *_, queries_kernel = _kernels()
    q_abs = torch.empty(B, H, C + R, device=q.device, dtype=q.dtype)
    new = torch.empty(B, C + R, device=q.device, dtype=kv.dtype)
    block_c = min(C, QUERIES_BLOCK_C)
    queries_kernel[(B, H, C // block_c)](
        q, kv, cos, sin, w_uk, norm_weight, q_abs, new, eps, H, Dn, q.stride(0), kv.stride(0),
        cos.stride(0), w_uk.stride(0), w_uk.stride(1), C=C, R=R,
        BLOCK_D=max(16, 1 << (Dn - 1).bit_length()), BLOCK_C=block_c,
        **_launch(pdl, q), num_warps=4)
    return q_abs, new
