"""Latent KV cache for MLA decoding: one preallocated slab, latent + rope key per token per layer.

    cache = LatentCache(model.config, max_batch=8, max_seq_len=4096, device="cuda", dtype=torch.bfloat16)
    logits = model(prompt_ids, positions=pos, cache=cache, cache_rows=rows)   # prefill
    logits = model(next_ids, positions=pos[:, -1:] + 1, cache=cache, cache_rows=rows)  # decode

Per token and layer MLA needs only the normalized KV latent (kv_lora_rank = C values) and the
rotated, head-shared rope key (qk_rope_head_dim = R values): 32 * (512 + 64) * 2 bytes = 36 KiB
per token for the 2B in bf16, against 320 KiB for expanded per-head K/V (DeepSeek-V2, sec. 2.1).

Addressing is explicit so a serving engine can do continuous batching: a forward with
`cache=` writes token (b, t) into slot `positions[b, t]` of row `cache_rows[b]` and lets it see
slots 0..positions[b, t] of that row. Nothing is tracked here: no lengths, no allocation; the
caller owns which row holds which sequence. Slots beyond a token's position may hold stale data
from an earlier sequence; they are masked, so rows can be reused without clearing.

Shape legend: L layers, N max_batch rows, S max_seq_len slots, C kv_lora_rank, R qk_rope_head_dim.
"""

from __future__ import annotations

import torch

from youtu.model.config import ModelConfig


class LatentCache:
    """A [L, N, S, C + R] slab: `kv[l, n, s, :C]` is the latent, `kv[l, n, s, C:]` the rope key.

    Args:
        cfg: the model's config (layers, kv_lora_rank, qk_rope_head_dim).
        max_batch: rows N (concurrent sequences).
        max_seq_len: slots S per row (prompt + generated tokens).
        device: where the slab lives (the model's device).
        dtype: storage dtype (the model's dtype).

    Attributes:
        attend_len: if set, attention reads this many slots of a row (a static shape, e.g. for
            CUDA graphs); None reads max(positions) + 1 slots (one host sync per forward).
    """

    def __init__(self, cfg: ModelConfig, max_batch: int, max_seq_len: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        if max_batch <= 0 or max_seq_len <= 0:
            raise ValueError(f"LatentCache needs max_batch > 0 and max_seq_len > 0, "
                             f"got {max_batch} and {max_seq_len}")
        self.num_layers = cfg.num_hidden_layers
        self.kv_lora_rank = cfg.kv_lora_rank
        self.qk_rope_head_dim = cfg.qk_rope_head_dim
        self.max_batch = max_batch
        self.max_seq_len = max_seq_len
        self.attend_len: int | None = None
        width = cfg.kv_lora_rank + cfg.qk_rope_head_dim
        self.kv = torch.zeros(self.num_layers, max_batch, max_seq_len, width, device=device, dtype=dtype)

    @property
    def dtype(self) -> torch.dtype:
        return self.kv.dtype

    @property
    def device(self) -> torch.device:
        return self.kv.device

    @property
    def nbytes(self) -> int:
        """Bytes held by the slab."""
        return self.kv.numel() * self.kv.element_size()

    def bytes_per_token(self) -> int:
        """Bytes one cached token takes over all layers: L * (C + R) * dtype bytes."""
        return self.num_layers * self.kv.shape[-1] * self.kv.element_size()

    def check(self, positions: torch.Tensor, cache_rows: torch.Tensor) -> None:
        """Raise ValueError when positions or rows fall outside the slab (one host sync)."""
        if positions.numel() and (int(positions.min()) < 0 or int(positions.max()) >= self.max_seq_len):
            raise ValueError(f"cache positions must lie in [0, {self.max_seq_len}); got "
                             f"[{int(positions.min())}, {int(positions.max())}]. Allocate a "
                             f"larger LatentCache(max_seq_len=...) or stop generation earlier.")
        if cache_rows.numel() and (int(cache_rows.min()) < 0 or int(cache_rows.max()) >= self.max_batch):
            raise ValueError(f"cache_rows must lie in [0, {self.max_batch}); got {cache_rows.tolist()}")

    def write(self, layer: int, rows: torch.Tensor, positions: torch.Tensor,
              latent: torch.Tensor, k_rope: torch.Tensor) -> None:
        """Store latent [B, T, C] and rope key [B, T, R] of token (b, t) at
        (rows[b], positions[b, t]) of `layer`."""
        self.write_rows(layer, rows, positions, torch.cat((latent, k_rope), dim=-1))

    def write_rows(self, layer: int, rows: torch.Tensor, positions: torch.Tensor,
                   kv: torch.Tensor) -> None:
        """Store cache rows kv [B, T, C + R] (latent | rope key) at (rows[b], positions[b, t])
        of `layer`: one scatter, no host sync."""
        slab = self.kv[layer]  # [N, S, C + R]
        slab[rows[:, None].expand_as(positions), positions] = kv.to(slab.dtype)

    def read(self, layer: int, rows: torch.Tensor, length: int) -> torch.Tensor:
        """Slots 0..length-1 of each row in `rows`: [B, length, C + R] (a gathered copy: the
        expanded prefill and the plain decode path; CUDA decode reads `kv` in place)."""
        return self.kv[layer, :, :length].index_select(0, rows)

    def __repr__(self) -> str:
        return (f"LatentCache(layers={self.num_layers}, max_batch={self.max_batch}, "
                f"max_seq_len={self.max_seq_len}, dtype={self.dtype}, "
                f"{self.nbytes / 2**20:.1f} MiB)")
