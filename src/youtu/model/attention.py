"""Multi-head Latent Attention (MLA, DeepSeek-V2 sec. 2.1) as used by Youtu-LLM.

Shape legend: B batch, T query tokens, S key slots, H heads, Dn = qk_nope_head_dim,
R = qk_rope_head_dim, Dv = v_head_dim, C = kv_lora_rank (the latent), Q = q_lora_rank.

    q:  x -> q_a_proj [Q] -> q_a_layernorm -> q_b_proj [H*(Dn+R)]    (or q_proj when Q == 0)
    kv: x -> kv_a_proj_with_mqa [C+R] -> latent [C] | k_rope [R] (one rope key shared by all heads)
        latent -> kv_a_layernorm -> kv_b_proj [H*(Dn+Dv)] -> k_nope, v

Two ways to compute the same attention:
- expanded (training, no cache): build per-head K/V from the latent and call SDPA with a causal
  mask, or a causal block-diagonal mask when packed documents carry `doc_ids`.
- absorbed (decode with a `LatentCache`): since k_nope = W_uk c and v = W_uv c,
  q_nope . k_nope = (W_uk^T q_nope) . c and sum_s p_s v_s = W_uv (sum_s p_s c_s), so the query
  is mapped into latent space, attention runs over the cached [latent | rope key] rows shared by
  all heads (one MQA-style SDPA with the H heads folded into the query axis) and the result is
  mapped out by W_uv. Only C + R values per token are ever cached.
- expanded over the cache (prefill: T >= PREFILL_EXPANDED_MIN_TOKENS new tokens with a cache):
  the new latents are written, then the row's cached latents are expanded by kv_b_proj and
  attention runs as in training. The absorbed form would multiply the score matrix by H
  (T*H query rows of width C+R = 576) and need a [T*H, S] mask: 16 GiB of booleans at 32k.

Kernels (CUDA, bf16/fp16): causal attention without a mask or cache (training) goes to cuDNN's
fused attention (PyTorch's flash backend needs equal q/v head dims; the 2B has 192/128). A
fresh prefill into a cache (engine, eval scoring) takes SDPA's own pick instead: cuDNN builds a
plan for every new (rows, tokens) shape, 45-165 ms the first time each (small preset, H100,
`bench/first_use.py`, 2026-12-07: 3.2 s over 52 shapes), while SDPA's pick cost nothing extra
and ran the 52 shapes in 1.42 s against cuDNN's 1.36 s steady. Prefill meets a new shape for
most requests; training meets one shape millions of times. Packed documents
(`doc_ids`) go to FlexAttention with a block-sparse mask built from the ids, so no [T, T] mask
exists and fully masked blocks are skipped. On the CPU, packed documents run one causal SDPA
call per document span (`doc_segments`). The plain SDPA path (dense boolean mask) is the
reference the tests compare against (`set_attention_impl("sdpa")`). Absorbed decode on CUDA
runs the fused split-K Triton kernel of `decode_attention` over the cache slab in place (no
gather, no mask; 43 us per layer at 32k against 3.3 ms for SDPA with the boolean mask, which
no fused kernel takes at head dim 576); CPU and impl 'sdpa' keep the gather + SDPA path.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

from youtu.model import decode_attention
from youtu.model.cache import LatentCache
from youtu.model.config import ModelConfig
from youtu.model.layers import RMSNorm, apply_rope, attention_scale, fuse_rows_, rows_are_fused

# DeepSeek-V2/V3 and transformers build q_a_layernorm / kv_a_layernorm with the default eps,
# not config.rms_norm_eps; the checkpoints were trained that way.
LATENT_NORM_EPS = 1e-6

# Prefill chunks at least this long use expanded attention over the cache (see the docstring);
# shorter ones (decode, speculative steps) the absorbed path, whose cost does not grow with H.
PREFILL_EXPANDED_MIN_TOKENS = 32

AttentionImpl = Literal["auto", "sdpa"]
"""'auto': cuDNN / FlexAttention on CUDA where they apply, else SDPA. 'sdpa': always plain SDPA
with PyTorch's own backend choice and a dense mask (the reference path)."""

@functools.cache
def _compiled_flex():
    """FlexAttention compiled once per process (eager flex_attention materializes the full
    score matrix)."""
    return torch.compile(flex_attention, dynamic=False)


FLEX_MIN_HEAD_DIM = 16
"""FlexAttention's Triton kernel needs every head dim >= 16 (torch 2.11 raises "NYI: embedding
dimension ... must be at least 16"); smaller heads (the tiny preset's v is 8) are zero-padded."""


def pad_head_dims(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, minimum: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q/k and v zero-padded on the last dim up to `minimum`: exact (zero q/k columns add
    nothing to the scores, zero v columns give zero outputs that the caller slices off)."""
    qk = max(0, minimum - q.shape[-1])
    if qk:
        q, k = F.pad(q, (0, qk)), F.pad(k, (0, qk))
    if v.shape[-1] < minimum:
        v = F.pad(v, (0, minimum - v.shape[-1]))
    return q, k, v


def _flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask: BlockMask,
          scale: float) -> torch.Tensor:
    """FlexAttention through the compiled kernel ([B, H, T, Dv] for the given v's Dv), also
    under a "force_eager" stance (the trainer's held-out eval runs its compiled blocks eagerly):
    eager flex_attention is a dense fallback that materialises [B, H, T, T] fp32 scores, 24 GiB
    for 8 rows of 8192 at 12 heads, which ran an 80 GB H100 out of memory in `youtu run`."""
    dv = v.shape[-1]
    q, k, v = pad_head_dims(q, k, v, FLEX_MIN_HEAD_DIM)
    if torch.compiler.is_compiling():  # inside a compiled block: traced into its graph
        return _compiled_flex()(q, k, v, block_mask=block_mask, scale=scale)[..., :dv]
    with torch.compiler.set_stance("default"):
        return _compiled_flex()(q, k, v, block_mask=block_mask, scale=scale)[..., :dv]


def doc_block_mask(doc_ids: torch.Tensor) -> BlockMask:
    """FlexAttention block mask for packed rows: causal and same document (128 x 128 blocks)."""
    B, T = doc_ids.shape

    def causal_same_doc(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (doc_ids[b, q_idx] == doc_ids[b, kv_idx])

    return create_block_mask(causal_same_doc, B, None, T, T, device=doc_ids.device, _compile=True)


def _cudnn_applies(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """cuDNN fused attention: CUDA, half precision, head dims multiples of 8 up to 256, sm80+."""
    return (q.is_cuda and q.dtype in (torch.bfloat16, torch.float16)
            and all(t.shape[-1] % 8 == 0 and t.shape[-1] <= 256 for t in (q, k, v))
            and torch.cuda.get_device_capability(q.device) >= (8, 0))


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                     impl: AttentionImpl = "auto") -> torch.Tensor:
    """Causal attention of q, k [B, H, T, Dqk], v [B, H, T, Dv] -> [B, H, T, Dv]."""
    if impl == "auto" and _cudnn_applies(q, k, v):
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)


def expanded_mask(doc_ids: torch.Tensor | None) -> torch.Tensor | None:
    """Boolean SDPA mask [B, 1, T, T] (True = attend): causal and same document.
    None when `doc_ids` is None (SDPA's `is_causal` then does it without a mask tensor)."""
    if doc_ids is None:
        return None
    T = doc_ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=doc_ids.device).tril()
    same_doc = doc_ids[:, :, None] == doc_ids[:, None, :]  # [B, T, T]
    return (same_doc & causal)[:, None]


@dataclass(frozen=True)
class DocSegments:
    """Packed documents as contiguous spans: rows[b] = [(start, end), ...] covering 0..T.

    The CPU path for long packed rows: each document runs through SDPA's causal kernel on its
    own span, so no [T, T] mask exists and no score across documents is computed (the dense mask
    also costs a [B, 1, T, T] `where` per layer). Tiny model, forward + backward + loss on 2
    cores, dense mask -> spans: 4 x 2048 with ~700-token documents 1.52 -> 1.02 s, ~200-token
    documents 1.58 -> 1.16 s; 8 x 1024, ~300 tokens 1.15 -> 0.89 s. Each span is a separate
    call with a fixed cost, so short rows of many documents lose: 32 x 256 with ~120-token
    documents 0.68 -> 1.19 s, 8 x 1024 with ~100 tokens 1.04 -> 1.22 s (`doc_segments` then
    declines)."""

    rows: tuple[tuple[tuple[int, int], ...], ...]


# Where spans pay (measurements in DocSegments): rows of at least this many tokens, whose
# documents average at least SEGMENT_MIN_MEAN_LEN tokens.
SEGMENT_MIN_ROW = 1024
SEGMENT_MIN_MEAN_LEN = 128


def doc_segments(doc_ids: torch.Tensor) -> DocSegments | None:
    """Spans of equal consecutive ids per row; None when spans would be slower than the dense
    mask (short rows, many short documents) or when an id recurs after another id in the same
    row (the dense mask's semantics then differ from contiguous spans)."""
    B, T = doc_ids.shape
    if T < SEGMENT_MIN_ROW:
        return None
    boundaries = int((doc_ids[:, 1:] != doc_ids[:, :-1]).sum())
    if (boundaries + B) * SEGMENT_MIN_MEAN_LEN > B * T:
        return None
    rows = []
    for ids in doc_ids.tolist():
        spans, seen, start = [], set(), 0
        for t in range(1, len(ids) + 1):
            if t == len(ids) or ids[t] != ids[start]:
                if ids[start] in seen:
                    return None
                seen.add(ids[start])
                spans.append((start, t))
                start = t
        rows.append(tuple(spans))
    return DocSegments(tuple(rows))


def segmented_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                        segments: DocSegments) -> torch.Tensor:
    """Causal attention within each span of `segments`: q, k [B, H, T, Dqk], v [B, H, T, Dv]."""
    rows = []
    for b, spans in enumerate(segments.rows):
        parts = [F.scaled_dot_product_attention(q[b:b + 1, :, s:e], k[b:b + 1, :, s:e],
                                                v[b:b + 1, :, s:e], is_causal=True, scale=scale)
                 for s, e in spans]
        rows.append(parts[0] if len(parts) == 1 else torch.cat(parts, dim=2))
    return torch.cat(rows, dim=0)


def absorbed_mask(positions: torch.Tensor, length: int, num_heads: int) -> torch.Tensor:
    """Boolean mask [B, 1, T*H, length]: query (t, h) sees slots 0..positions[b, t]."""
    B, T = positions.shape
    slots = torch.arange(length, device=positions.device)
    visible = slots[None, None, :] <= positions[:, :, None]  # [B, T, length]
    return visible[:, :, None, :].expand(B, T, num_heads, length).reshape(B, 1, T * num_heads, length)


class MultiHeadLatentAttention(nn.Module):
    """MLA with HF parameter names (`self_attn.q_a_proj`, ..., `self_attn.o_proj`)."""

    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = cfg.num_attention_heads
        self.q_lora_rank = cfg.q_lora_rank
        self.kv_lora_rank = cfg.kv_lora_rank
        self.qk_nope_head_dim = cfg.qk_nope_head_dim
        self.qk_rope_head_dim = cfg.qk_rope_head_dim
        self.v_head_dim = cfg.v_head_dim
        self.qk_head_dim = cfg.qk_head_dim
        self.scale = attention_scale(cfg)
        H, D = cfg.num_attention_heads, cfg.hidden_size
        if cfg.q_lora_rank > 0:
            self.q_a_proj = nn.Linear(D, cfg.q_lora_rank, bias=False)
            self.q_a_layernorm = RMSNorm(cfg.q_lora_rank, LATENT_NORM_EPS)
            self.q_b_proj = nn.Linear(cfg.q_lora_rank, H * self.qk_head_dim, bias=False)
        else:
            self.q_proj = nn.Linear(D, H * self.qk_head_dim, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(D, cfg.kv_lora_rank + cfg.qk_rope_head_dim, bias=False)
        self.kv_a_layernorm = RMSNorm(cfg.kv_lora_rank, LATENT_NORM_EPS)
        self.kv_b_proj = nn.Linear(cfg.kv_lora_rank, H * (cfg.qk_nope_head_dim + cfg.v_head_dim), bias=False)
        self.o_proj = nn.Linear(H * cfg.v_head_dim, D, bias=False)
        self.impl: AttentionImpl = "auto"
        # [Q + C + R, D] after fuse_(): the q down-projection's rows (q_proj's without a q
        # lora), then kv_a_proj_with_mqa's; both read the same normed x, so decode does one GEMV.
        self.q_kv_a: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                attn_mask: torch.Tensor | BlockMask | DocSegments | None = None,
                cache: LatentCache | None = None,
                positions: torch.Tensor | None = None,
                cache_rows: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, T, D] -> [B, T, D].

        Args:
            x: normalized hidden states.
            cos, sin: rotary tables [B, T, R/2] for the tokens' positions.
            attn_mask: without a cache `expanded_mask(...)`, `doc_block_mask(...)` or
                `doc_segments(...)`; with one
                `absorbed_mask(...)`, or for T >= PREFILL_EXPANDED_MIN_TOKENS a [B, 1, T, S]
                visibility mask (None: fresh causal prefill, positions 0..T-1).
            cache: the latent cache; selects the absorbed path.
            positions: [B, T] cache slots to write (needed with a cache).
            cache_rows: [B] cache rows (needed with a cache).
        """
        B, T, _ = x.shape
        H = self.num_heads
        if cache is not None and T < PREFILL_EXPANDED_MIN_TOKENS:
            assert positions is not None and cache_rows is not None and isinstance(attn_mask, torch.Tensor)
            q_abs, new_kv = self.absorbed_inputs(x, cos, sin)
            values = self.absorbed_attend(q_abs, new_kv, cache, positions, cache_rows,
                                          attn_mask.shape[-1], attn_mask)
            return self.o_proj(values)
        q_nope, q_rope, latent, k_rope = self._project(x, cos, sin)
        if cache is None:
            out = self._expanded(q_nope, q_rope, latent, k_rope[:, :, None, :], attn_mask)
        else:
            assert positions is not None and cache_rows is not None
            assert not isinstance(attn_mask, (BlockMask, DocSegments))
            cache.write(self.layer_idx, cache_rows, positions, latent, k_rope)
            length = T if attn_mask is None else attn_mask.shape[-1]
            kv = cache.read(self.layer_idx, cache_rows, length).to(q_nope.dtype)  # [B, S, C+R]
            cached_latent, cached_rope = kv.split([self.kv_lora_rank, self.qk_rope_head_dim], dim=-1)
            out = self._expanded(q_nope, q_rope, cached_latent, cached_rope[:, :, None, :],
                                 attn_mask, cudnn=False)
        return self.o_proj(out.reshape(B, T, H * self.v_head_dim))

    def _input_projections(self) -> tuple[nn.Linear, nn.Linear]:
        q_in = self.q_a_proj if self.q_lora_rank > 0 else self.q_proj
        return q_in, self.kv_a_proj_with_mqa

    def __getstate__(self) -> dict:
        # As MLP's: a deepcopy's parameters are no views of a copied q_kv_a; fuse_() redoes it.
        return {**self.__dict__, "q_kv_a": None}

    @property
    def fused(self) -> bool:
        """Whether the q and kv down-projections are the row blocks of `q_kv_a`."""
        return rows_are_fused(self.q_kv_a, *self._input_projections())

    @torch.no_grad()
    def fuse_(self) -> None:
        """Make the q down-projection and kv_a_proj_with_mqa views of one weight `q_kv_a` (see
        `youtu.model.layers.fuse_rows_`); a no-op when they already are."""
        if not self.fused:
            self.q_kv_a = fuse_rows_(*self._input_projections())

    def _project(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, fused: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """q_nope [B, T, H, Dn], rotated q_rope [B, T, H, R], normalized latent [B, T, C] and
        rotated k_rope [B, T, R] of x [B, T, D]; `fused`: one GEMV over `q_kv_a` (no gradient)."""
        if fused:
            assert self.q_kv_a is not None, "call fuse_() first"
            q_in, kv_a = self._input_projections()
            q, kv = F.linear(x, self.q_kv_a).split([q_in.out_features, kv_a.out_features], dim=-1)
            if self.q_lora_rank > 0:
                q = self.q_b_proj(self.q_a_layernorm(q))
        else:
            if self.q_lora_rank > 0:
                q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
            else:
                q = self.q_proj(x)
            kv = self.kv_a_proj_with_mqa(x)
        return self._heads(q, kv, cos, sin)

    def _heads(self, q: torch.Tensor, kv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`_project`'s outputs from the projections q [B, T, H*(Dn+R)], kv [B, T, C+R]."""
        B, T = q.shape[:2]
        q = q.reshape(B, T, self.num_heads, self.qk_head_dim)
        q_nope, q_rope = q.split([self.qk_nope_head_dim, self.qk_rope_head_dim], dim=-1)
        q_rope = apply_rope(q_rope, cos, sin)
        latent, k_rope = kv.split([self.kv_lora_rank, self.qk_rope_head_dim], dim=-1)
        latent = self.kv_a_layernorm(latent)  # [B, T, C]
        k_rope = apply_rope(k_rope[:, :, None, :], cos, sin)[:, :, 0]  # [B, T, R]
        return q_nope, q_rope, latent, k_rope

    # ---- absorbed decode: inputs -> attend (cache) -> output; CUDA graphs call the three parts

    def _w_uk_uv(self) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.kv_b_proj.weight.view(self.num_heads, self.qk_nope_head_dim + self.v_head_dim,
                                       self.kv_lora_rank)
        return w.split([self.qk_nope_head_dim, self.v_head_dim], dim=1)  # [H, Dn, C], [H, Dv, C]

    def absorbed_inputs(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                        fused: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent-space queries q_abs [B, T, H, C+R] (W_uk^T q_nope | q_rope) and the new
        cache rows [B, T, C+R] (latent | k_rope) of x [B, T, D]. No cache access: pure.
        `fused`: the down-projections as one GEMV over `q_kv_a` (after `fuse_`)."""
        return self._absorb(*self._project(x, cos, sin, fused))

    def absorbed_queries(self, q: torch.Tensor, kv: torch.Tensor, cos: torch.Tensor,
                         sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`absorbed_inputs` from projections computed elsewhere (the decode GEMV kernels):
        q [B, T, H*(Dn+R)] (after q_b_proj), kv [B, T, C+R] (kv_a_proj_with_mqa's output)."""
        return self._absorb(*self._heads(q, kv, cos, sin))

    def _absorb(self, q_nope: torch.Tensor, q_rope: torch.Tensor, latent: torch.Tensor,
                k_rope: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w_uk, _ = self._w_uk_uv()
        q_latent = torch.einsum("bthd,hdc->bthc", q_nope, w_uk)
        return torch.cat((q_latent, q_rope), dim=-1), torch.cat((latent, k_rope), dim=-1)

    def absorbed_attend(self, q_abs: torch.Tensor, new_kv: torch.Tensor, cache: LatentCache,
                        positions: torch.Tensor, cache_rows: torch.Tensor, max_len: int,
                        attn_mask: torch.Tensor | None = None,
                        lengths: torch.Tensor | None = None, pdl: bool = False) -> torch.Tensor:
        """Write `new_kv` at (cache_rows, positions), attend, and map the latent outputs
        through W_uv: [B, T, H*Dv], o_proj's input (with one token a row the fused kernel does
        the write itself; with few splits its combine kernel applies W_uv).

        Token (b, t) sees slots 0..positions[b, t] of row cache_rows[b]; `max_len` bounds
        positions + 1 on the host (no sync). On CUDA the fused split-K kernel reads the slab in
        place (`decode_attention`); elsewhere, or with impl 'sdpa', the plain path: gather the
        rows and run SDPA with `attn_mask` (`absorbed_mask`, built here when None). `lengths`
        ([B*T] = positions + 1, flattened) may be passed in so a step computes it once, not
        once per layer. `pdl`: the kernel's dependent launch (`mla_decode_attention`; the
        decode step's GEMV-kernel path, whose kernels before it write neither slab nor W_uv).
        """
        B, T, H, D = q_abs.shape
        C = self.kv_lora_rank
        if (self.impl == "auto" and decode_attention.available(q_abs.device)
                and decode_attention.supports(C, self.qk_rope_head_dim, H)):
            kv = cache.kv[self.layer_idx]
            q = q_abs.to(kv.dtype).reshape(B * T, H, D)
            rows = cache_rows.repeat_interleave(T) if T > 1 else cache_rows
            if lengths is None:
                lengths = positions.reshape(-1) + 1
            # One token a row: the kernel stores the new row itself (one launch fewer a layer).
            # Several: a token reads its row's other new slots, so they are written first.
            new = new_kv.reshape(B, D).to(kv.dtype) if T == 1 else None
            if new is None:
                cache.write_rows(self.layer_idx, cache_rows, positions, new_kv)
            _, w_uv = self._w_uk_uv()
            values = decode_attention.mla_decode_attention(
                q, kv, rows, lengths, self.scale, max_len, self.qk_rope_head_dim, new=new,
                w_uv=w_uv, pdl=pdl)
            return values.view(B, T, H * self.v_head_dim).to(q_abs.dtype)
        cache.write_rows(self.layer_idx, cache_rows, positions, new_kv)
        if attn_mask is None:
            attn_mask = absorbed_mask(positions, max_len, H)
        kv = cache.read(self.layer_idx, cache_rows, attn_mask.shape[-1])
        kv = kv.to(q_abs.dtype)[:, None]  # [B, 1, S, C+R]
        # On CPU the whole latent+rope row as value (equal head dims) takes the fused kernel;
        # the rope part of the output is dropped. The dense bool mask sends CUDA to a
        # non-fused fallback at head dim 576 (~3 ms per layer at 32k): the reference only.
        value = kv if not kv.is_cuda else kv[..., :C]
        out = F.scaled_dot_product_attention(q_abs.reshape(B, 1, T * H, D), kv, value,
                                             attn_mask=attn_mask, scale=self.scale)[..., :C]
        return self.absorbed_values(out.reshape(B, T, H, C))

    def absorbed_values(self, out: torch.Tensor) -> torch.Tensor:
        """Latent outputs [B, T, H, C] -> W_uv -> [B, T, H*Dv] (o_proj's input)."""
        B, T, H, _ = out.shape
        _, w_uv = self._w_uk_uv()
        out = torch.einsum("bthc,hvc->bthv", out, w_uv)  # [B, T, H, Dv]
        return out.reshape(B, T, H * self.v_head_dim)

    def _expanded(self, q_nope: torch.Tensor, q_rope: torch.Tensor, latent: torch.Tensor,
                  k_rope: torch.Tensor, attn_mask: torch.Tensor | BlockMask | DocSegments | None,
                  cudnn: bool = True) -> torch.Tensor:
        """Queries [B, T, H, *] against S keys expanded from latent [B, S, C] / k_rope [B, S, 1, R].
        `cudnn`: causal rows may go to cuDNN (impl 'auto'); False for cached prefill (see the
        module docstring)."""
        B, T, H, _ = q_nope.shape
        S = latent.shape[1]
        kv = self.kv_b_proj(latent).view(B, S, H, self.qk_nope_head_dim + self.v_head_dim)
        k_nope, v = kv.split([self.qk_nope_head_dim, self.v_head_dim], dim=-1)
        q = torch.cat((q_nope, q_rope), dim=-1).transpose(1, 2)  # [B, H, T, Dn+R]
        k = torch.cat((k_nope, k_rope.expand(B, S, H, self.qk_rope_head_dim)), dim=-1).transpose(1, 2)
        v = v.transpose(1, 2)
        dv = v.shape[-1]
        if not q.is_cuda and dv < q.shape[-1]:
            # CPU SDPA has its fused (flash) kernel only for equal q/k/v head dims; otherwise the
            # math path materialises [B, H, T, T] scores. Zero-padding v and slicing the output is
            # exact and 4-12x faster (tiny preset, 16 x 512 tokens, causal / doc mask).
            v = F.pad(v, (0, q.shape[-1] - dv))
        if isinstance(attn_mask, BlockMask):
            out = _flex(q, k, v, attn_mask, self.scale)
        elif isinstance(attn_mask, DocSegments):
            out = segmented_attention(q, k, v, self.scale, attn_mask)
        elif attn_mask is None:
            out = causal_attention(q, k, v, self.scale, self.impl if cudnn else "sdpa")
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=self.scale)
        return out[..., :dv].transpose(1, 2)  # [B, T, H, Dv]
