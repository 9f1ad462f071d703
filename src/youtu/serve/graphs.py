"""CUDA-graph capture of the engine's decode step (gpt-fast / vLLM style), CUDA only.

    engine = Engine(model, max_batch=32, max_seq_len=4096, eos_ids=[eos], use_cuda_graph=True)

A decode step at batch 1 of a 2B model launches ~600 small kernels; replaying them as one graph
removes the per-kernel CPU launch cost, which dominates at small batch. A graph has static
shapes, so one is captured (lazily, on first use) per (batch bucket, attended-length bucket):
batch buckets are powers of two up to `max_batch`, length buckets powers of two from 256 up to
`max_seq_len` (the cache's `attend_len` fixes how many slots attention reads). Inputs go through
static buffers; the entries of a bucket beyond the real batch point at one scratch cache row
(slot 0), so they never touch a live sequence. All graphs share one memory pool.

With `compile`, the captured forward is first fused by `torch.compile` (one specialisation per
bucket): eager decode at 2B batch 1 launches ~1,000 small kernels per step (norms, RoPE,
SwiGLU, casts), which at 1-3 us each cost more than the weight reads (~0.9 ms on an H200).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
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


class DecodeGraphs:
    """Captured decode forwards of one engine, keyed by (batch bucket, length bucket)."""

    def __init__(self, engine: Engine, scratch_row: int, compile: bool = False):
        self.engine = engine
        self.scratch_row = scratch_row
        n, device = engine.max_batch, engine.device
        self.batch_buckets = buckets(n)
        self.len_buckets = buckets(engine.max_seq_len, min(MIN_LEN_BUCKET, engine.max_seq_len))
        self.ids = torch.zeros(n, 1, dtype=torch.long, device=device)
        self.positions = torch.zeros(n, 1, dtype=torch.long, device=device)
        self.rows = torch.full((n,), scratch_row, dtype=torch.long, device=device)
        self.graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.pool = torch.cuda.graph_pool_handle()
        self.forward = self._forward
        if compile:
            # One specialisation per bucket (b and attend_len are static inside a graph).
            import torch._dynamo as dynamo

            limit = len(self.batch_buckets) * len(self.len_buckets) + 8
            dynamo.config.cache_size_limit = max(dynamo.config.cache_size_limit, limit)
            self.forward = torch.compile(self._forward, dynamic=False)

    def _forward(self, b: int) -> torch.Tensor:
        model = self.engine.model
        hidden = model.hidden_states(self.ids[:b], positions=self.positions[:b],
                                     cache=self.engine.cache, cache_rows=self.rows[:b])
        return F.linear(hidden[:, -1], model.lm_head.weight)  # [b, V]

    def _capture(self, b: int, length: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        # Warm-up runs on a side stream (required before capture) repeat the step the static
        # buffers already hold, so the cache writes they do are the ones the replay does.
        cache = self.engine.cache
        cache.attend_len = length
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):  # the first call compiles when `compile` is on
                    self.forward(b)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                out = self.forward(b)
        finally:
            cache.attend_len = None
        return graph, out

    def run(self, ids: torch.Tensor, positions: torch.Tensor, rows: torch.Tensor,
            max_len: int) -> torch.Tensor:
        """Logits [n, V] for n sequences whose longest holds `max_len` tokens (incl. this one).
        The result is a view of a static buffer: use it before the next call."""
        n = ids.shape[0]
        b = next(x for x in self.batch_buckets if x >= n)
        length = next(x for x in self.len_buckets if x >= max_len)
        self.ids[:n, 0] = ids
        self.positions[:n, 0] = positions
        self.rows[:n] = rows
        self.ids[n:b] = 0
        self.positions[n:b] = 0
        self.rows[n:b] = self.scratch_row
        key = (b, length)
        if key not in self.graphs:
            self.graphs[key] = self._capture(b, length)
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
