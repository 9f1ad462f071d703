"""CUDA-graph decode: one captured decode step per (batch bucket, attended-length bucket).

    engine = Engine(model, max_batch=32, max_seq_len=4096, eos_ids=[eos])   # graphs on on CUDA
    logits = engine.graphs.run(ids, positions, rows, max_len)    # [n, V], a static buffer

The step is `decode_step`: embedding and RoPE tables, then per layer a pure "inputs" part (input
norm, MLA projections, RoPE, the W_uk absorption), the fused split-K attention over the latent slab
read in place, which writes the new cache row and maps the outputs through W_uv
(`youtu.model.decode_attention`), and a pure "output" part (o_proj, residual, norm, SwiGLU MLP,
residual); then the final norm and lm_head. Batch buckets are powers of two up to max_batch; length
buckets powers of two from 256 up to max_seq_len: the attended length sizes the attention kernel's
split grid (a batch-1 step at 8k wants ~256 splits, at 300 slots ~10), not any tensor the other
parts see. Padding entries of a batch bucket point at one scratch cache row (slot 0), so they never
touch a live sequence. All graphs share one memory pool.

With `fused` (the engine's default), the step reads the decode-time weight layout of
`fuse_decode_weights`: gate+up and q_a+kv_a as one GEMV each.

With `gemv="triton"` (CUDA, the fused layout, batches up to `decode_gemv.MAX_ROWS` = 8; larger
buckets keep cuBLAS, where the GEMM is no longer weight-bound per row) the layer's five weight
GEMVs are `youtu.model.decode_gemv` kernels carrying their neighbours: input_layernorm into q_kv_a,
q_a_layernorm into q_b, o_proj + residual, post_attention_layernorm into gate_up with silu(gate) *
up, down_proj + residual, and the final norm into lm_head. What is left in torch would be the small
middle (split, RoPE, kv_a_layernorm, W_uk absorption: `layer_queries`, a bmm and 2-3 inductor
kernels); where the fused attention kernel runs, it is one Triton launch too
(`kernel_layer_queries`). The Triton launches run outside torch.compile, which compiles only that
middle where it is left: inductor cannot fuse into a user kernel anyway, so wrapping them as
`torch.library.triton_op` would buy only dynamo tracing (and its handling of the autotuner) for
nothing under CUDA graphs, where host-side launch cost is gone. Autotuning happens in the warm-up
runs before capture; every output is a fresh tensor from the graph pool, so capture sees no host
sync.

With `compile`, the two pure parts are fused by `torch.compile`, shared by all layers (they read
no cache and no layer index): two compiles each per weight layout (batch 1, then a symbolic
batch for every other bucket), where compiling the whole forward cost ~80 s per bucket at 2B. Eager decode at 2B batch 1 launches
~1,000 small kernels per step (norms, RoPE, SwiGLU, casts) at 1-3 us each, more than the weight
reads (~0.9 ms on an H200): fusing them is where compile pays.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from youtu.model import decode_attention, decode_gemv
from youtu.model.attention import absorbed_mask

if TYPE_CHECKING:
    from youtu.model.cache import LatentCache
    from youtu.model.transformer import DecoderLayer, YoutuForCausalLM
    from youtu.serve.engine import Engine

# Smallest attended-length bucket: below this the attention read is negligible next to weights.
MIN_LEN_BUCKET = 256


def buckets(limit: int, start: int = 1) -> list[int]:
    """Powers of two from `start` below `limit`, then `limit` itself: buckets(20, 4) = [4, 8, 16, 20]."""
    out, b = [], start
    while b < limit:
        out.append(b)
        b *= 2
    return out + [limit]


def layer_inputs(layer: DecoderLayer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                 fused: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The pure part of a layer before attention: (q_abs [B, T, H, C+R], new cache rows).
    `fused`: q_a + kv_a as one GEMV (`fuse_decode_weights` first)."""
    return layer.self_attn.absorbed_inputs(layer.input_layernorm(x), cos, sin, fused)


def layer_output(layer: DecoderLayer, x: torch.Tensor, attn: torch.Tensor,
                 fused: bool = False) -> torch.Tensor:
    """The pure part after attention (`attn` [B, T, H*Dv]: `absorbed_attend`'s values):
    `DecoderLayer.forward`'s two residual branches. `fused`: gate + up as one GEMV."""
    x = x + layer.self_attn.o_proj(attn)
    h = layer.post_attention_layernorm(x)
    return x + (layer.mlp.forward_fused(h) if fused else layer.mlp(h))


def layer_queries(layer: DecoderLayer, q: torch.Tensor, kv: torch.Tensor, cos: torch.Tensor,
                  sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The pure middle of the GEMV-kernel layer: (q_abs, new cache rows) from the projections
    q [B, H*(Dn+R)] and kv [B, C+R] (RoPE, kv_a_layernorm, W_uk absorption)."""
    return layer.self_attn.absorbed_queries(q[:, None], kv[:, None], cos, sin)


def kernel_layer_queries(layer: DecoderLayer, q: torch.Tensor, kv: torch.Tensor, cos: torch.Tensor,
                         sin: torch.Tensor, pdl: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """`layer_queries` as one Triton launch (`decode_attention.mla_decode_queries`; `pdl`:
    launched dependently)."""
    attn = layer.self_attn
    w_uk, _ = attn._w_uk_uv()
    norm = attn.kv_a_layernorm
    q_abs, new = decode_attention.mla_decode_queries(q, kv, cos, sin, w_uk, norm.weight, norm.eps,
                                                     attn.qk_rope_head_dim, pdl=pdl)
    return q_abs[:, None], new[:, None]


def gemv_layer_inputs(layer: DecoderLayer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                      queries_fn: Callable = layer_queries, pdl: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """`layer_inputs` (fused layout) with the projections as decode GEMV kernels: x [B, 1, D]
    (`pdl`: launched dependently, `decode_gemv.gemv`)."""
    attn, norm = layer.self_attn, layer.input_layernorm
    q_in, _ = attn._input_projections()
    Q = q_in.out_features
    qkv = decode_gemv.gemv(x[:, 0], attn.q_kv_a, norm_weight=norm.weight, eps=norm.eps, pdl=pdl)
    q = qkv[:, :Q]  # a column slice: the kernel reads it with qkv's row stride, no copy
    if attn.q_lora_rank > 0:
        q_norm = attn.q_a_layernorm
        q = decode_gemv.gemv(q, attn.q_b_proj.weight, norm_weight=q_norm.weight, eps=q_norm.eps,
                             pdl=pdl)
    return queries_fn(layer, q, qkv[:, Q:], cos, sin)


def gemv_layer_output(layer: DecoderLayer, x: torch.Tensor, attn: torch.Tensor,
                      pdl: bool = False) -> torch.Tensor:
    """`layer_output` (fused layout) with o_proj, gate_up and down_proj as decode GEMV kernels
    carrying both residual adds, the post-attention norm and the SwiGLU; x [B, 1, D]."""
    a, mlp, norm = layer.self_attn, layer.mlp, layer.post_attention_layernorm
    o = attn[:, 0]  # [B, H*Dv]
    if o.stride(1) != 1:
        o = o.contiguous()
    x = decode_gemv.gemv(o, a.o_proj.weight, residual=x[:, 0], pdl=pdl)
    h = decode_gemv.gemv(x, mlp.gate_up, norm_weight=norm.weight, eps=norm.eps, swiglu=True,
                         pdl=pdl)
    return decode_gemv.gemv(h, mlp.down_proj.weight, residual=x, pdl=pdl)[:, None]


def fuse_decode_weights(model: YoutuForCausalLM) -> bool:
    """The decode-time weight layout, in place: per layer gate_proj + up_proj become the two
    halves of one [2I, D] weight and q_a_proj + kv_a_proj_with_mqa one [Q + C + R, D] weight,
    with the parameters as views of them (`youtu.model.layers.fuse_rows_`): state_dict keys,
    checkpoints, parameter identity and memory are unchanged, and in-place weight updates
    (`refresh_sampler`, an optimizer step) update what decode reads. Batch-1 decode is a chain of
    GEMVs of 2-25 MB that ran at about half the copy bandwidth on an H200 (bench/results/
    2026-12-04_h200_decode.md); this makes 2 of the 9 per layer fuller and 64 fewer at 2B.

    Returns False (and changes nothing) for sharded parameters (DTensors), which cannot be
    views of a local tensor; True once every layer is fused (idempotent).
    """
    if any(hasattr(p, "full_tensor") for p in model.parameters()):
        return False
    for layer in model.model.layers:
        layer.mlp.fuse_()
        layer.self_attn.fuse_()
    return True


def decode_weights_fused(model: YoutuForCausalLM) -> bool:
    """Whether every layer still has the fused layout (a cast or a reload unlinks it)."""
    return all(layer.mlp.fused and layer.self_attn.fused for layer in model.model.layers)


def decode_step(model: YoutuForCausalLM, cache: LatentCache, ids: torch.Tensor,
                positions: torch.Tensor, rows: torch.Tensor, max_len: int,
                inputs_fn: Callable = layer_inputs, output_fn: Callable = layer_output,
                fused: bool = False, gemv: str = "cublas",
                queries_fn: Callable = layer_queries) -> torch.Tensor:
    """Logits [B, V] of one decode token per row, ids/positions [B, 1], rows [B]; no host sync.

    Equal to `model(ids, positions=positions, cache=cache, cache_rows=rows)[:, -1]` (tests
    compare the two); the engine's decode path, eager and graphed. `inputs_fn` / `output_fn`
    / `queries_fn` are the compiled versions of `layer_inputs` / `layer_output` /
    `layer_queries` under `compile`; `fused` uses the layout of `fuse_decode_weights`;
    `gemv="triton"` (needs `fused`) runs the weight GEMVs as `decode_gemv` kernels for
    B <= decode_gemv.MAX_ROWS and cuBLAS above; `"auto"` for B <= decode_gemv.AUTO_MAX_ROWS;
    a `+pdl` suffix launches those kernels dependently, and with them the attention kernels
    (`decode_attention`: queries, split, W_uv combine).
    """
    kernels = ids.shape[0] <= decode_gemv.kernel_rows(gemv)
    pdl = decode_gemv.dependent_launch(gemv)
    if kernels and not fused:
        raise ValueError(f"gemv={gemv!r} reads the fused decode weights: pass fused=True "
                         "(after fuse_decode_weights), or gemv='cublas'")
    x = model.model.embed_tokens(ids)  # [B, 1, D]
    cos, sin = model._rope(positions, x.dtype)
    lengths = positions.reshape(-1) + 1  # once per step, not per layer
    # The fused kernel needs no mask; the plain path (CPU) builds it once here, not per layer.
    mask = (None if decode_attention.available(ids.device)
            else absorbed_mask(positions, max_len, model.config.num_attention_heads))
    if kernels and decode_attention.available(ids.device) and _queries_kernel_fits(model):
        queries_fn = functools.partial(kernel_layer_queries, pdl=pdl)
    for layer in model.model.layers:
        if kernels:
            q_abs, new_kv = gemv_layer_inputs(layer, x, cos, sin, queries_fn, pdl)
        else:
            q_abs, new_kv = inputs_fn(layer, x, cos, sin, fused)
        attn = layer.self_attn.absorbed_attend(q_abs, new_kv, cache, positions, rows, max_len,
                                               mask, lengths=lengths, pdl=pdl and kernels)
        x = (gemv_layer_output(layer, x, attn, pdl) if kernels
             else output_fn(layer, x, attn, fused))
    if kernels:
        norm = model.model.norm
        return decode_gemv.gemv(x[:, -1], model.lm_head.weight, norm_weight=norm.weight,
                                eps=norm.eps, pdl=pdl)
    return F.linear(model.model.norm(x)[:, -1], model.lm_head.weight)  # [B, V]


def _queries_kernel_fits(model: YoutuForCausalLM) -> bool:
    cfg = model.config
    return decode_attention.supports(cfg.kv_lora_rank, cfg.qk_rope_head_dim,
                                     cfg.num_attention_heads)


@functools.cache
def _compiled() -> tuple[Callable, Callable, Callable]:
    # The layers share one compile (their modules differ only in parameters, which dynamo
    # passes as inputs; `fused` is a constant it specialises on). Automatic dynamic shapes:
    # batch 1 compiles static, the first larger batch once more with a symbolic batch, which
    # then serves every bucket. torch.compile is lazy: a part never called never compiles.
    return torch.compile(layer_inputs), torch.compile(layer_output), torch.compile(layer_queries)


class DecodeGraphs:
    """Captured decode steps of one engine, keyed by (batch bucket, length bucket)."""

    def __init__(self, engine: Engine, scratch_row: int, compile: bool = False, fused: bool = False,
                 gemv: str = "cublas"):
        self.engine = engine
        self.fused = fused
        self.gemv = gemv
        self.scratch_row = scratch_row
        n, device = engine.max_batch, engine.device
        self.batch_buckets = buckets(n)
        self.len_buckets = buckets(engine.max_seq_len, min(MIN_LEN_BUCKET, engine.max_seq_len))
        self.ids = torch.zeros(n, 1, dtype=torch.long, device=device)
        self.positions = torch.zeros(n, 1, dtype=torch.long, device=device)
        self.rows = torch.full((n,), scratch_row, dtype=torch.long, device=device)
        self.graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.pool = torch.cuda.graph_pool_handle()
        self.compile = compile
        self.parts = _compiled() if compile else (layer_inputs, layer_output, layer_queries)

    def forward(self, b: int, length: int) -> torch.Tensor:
        """The decode step on the first b entries of the static buffers."""
        inputs_fn, output_fn, queries_fn = self.parts
        return decode_step(self.engine.model, self.engine.cache, self.ids[:b], self.positions[:b],
                           self.rows[:b], length, inputs_fn, output_fn, fused=self.fused,
                           gemv=self.gemv, queries_fn=queries_fn)

    def _capture(self, b: int, length: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        # Warm-up runs on a side stream (required before capture) repeat the step the static
        # buffers already hold, so the cache writes they do are the ones the replay does.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):  # the first call compiles (`compile`) and autotunes (`gemv`)
                self.forward(b, length)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = self.forward(b, length)
        return graph, out

    def bucket(self, n: int, max_len: int) -> tuple[int, int]:
        """The (batch, length) bucket of n sequences whose longest holds max_len tokens."""
        return (next(x for x in self.batch_buckets if x >= n),
                next(x for x in self.len_buckets if x >= max_len))

    def run(self, ids: torch.Tensor, positions: torch.Tensor, rows: torch.Tensor,
            max_len: int) -> torch.Tensor:
        """Logits [n, V] for n sequences whose longest holds `max_len` tokens (incl. this one).
        The result is a view of a static buffer: use it before the next call."""
        n = ids.shape[0]
        b, length = self.bucket(n, max_len)
        self.ids[:n, 0] = ids
        self.positions[:n, 0] = positions
        self.rows[:n] = rows
        self.ids[n:b] = 0
        self.positions[n:b] = 0
        self.rows[n:b] = self.scratch_row
        key = (b, length)
        if key not in self.graphs:
            start = time.perf_counter()
            self.graphs[key] = self._capture(b, length)
            torch.cuda.current_stream().synchronize()  # once per bucket: the capture's cost
            self.engine.stats["graph_captures"] += 1
            self.engine.stats["graph_capture_ms"] += round(1000 * (time.perf_counter() - start))
        graph, out = self.graphs[key]
        graph.replay()
        return out[:n]

    def capture_all(self) -> None:
        """Capture every bucket now (serving start-up) instead of on first use."""
        for b in reversed(self.batch_buckets):  # largest first: later ones reuse its pool memory
            for length in self.len_buckets:
                self.rows[:b] = self.scratch_row
                self.positions[:b] = 0
                if (b, length) not in self.graphs:
                    self.graphs[(b, length)] = self._capture(b, length)
