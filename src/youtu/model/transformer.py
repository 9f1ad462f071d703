"""Youtu-LLM: a dense pre-norm MLA transformer with tied embeddings (causal LM).

    from youtu.model import ModelConfig, YoutuForCausalLM
    model = YoutuForCausalLM(ModelConfig.tiny()); model.init_weights()
    logits = model(torch.randint(0, 4096, (2, 16)))          # [2, 16, 4096]

Parameter names are transformers' `YoutuForCausalLM` names (`model.embed_tokens.weight`,
`model.layers.N.self_attn.q_a_proj.weight`, ..., `lm_head.weight` tied), so `state_dict()` is an
HF checkpoint. Single-device code: FSDP and activation checkpointing are applied by
`youtu.train` (which may call `compile_blocks()` first); sampling and batching live in
`youtu.serve`.

Shape legend: B batch, T tokens, D hidden_size, V vocab_size, H heads,
C kv_lora_rank (latent), R qk_rope_head_dim.
"""

from __future__ import annotations

import torch
from torch import nn

from youtu.model.attention import (PREFILL_EXPANDED_MIN_TOKENS, AttentionImpl, MultiHeadLatentAttention,
                                   absorbed_mask, doc_block_mask, doc_segments,
                                   expanded_mask)
from youtu.model.cache import LatentCache
from youtu.model.config import ModelConfig
from youtu.model.layers import MLP, RMSNorm, attention_scale, rope_cos_sin, rope_inv_freq


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.self_attn = MultiHeadLatentAttention(cfg, layer_idx)
        self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                attn_mask: torch.Tensor | None = None, cache: LatentCache | None = None,
                positions: torch.Tensor | None = None,
                cache_rows: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, attn_mask, cache, positions, cache_rows)
        return x + self.mlp(self.post_attention_layernorm(x))


class YoutuModel(nn.Module):
    """The decoder stack (HF's `model.` prefix): embed_tokens, layers, norm."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class YoutuForCausalLM(nn.Module):
    """Youtu-LLM causal LM. See the module docstring; `forward` returns logits."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.attention_impl: AttentionImpl = "auto"
        self.model = YoutuModel(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.tie_weights()
        self.init_rope()

    def tie_weights(self) -> None:
        """Make lm_head share the embedding matrix when the config ties them. `to_empty()`
        (meta-device construction) and `load_state_dict(assign=True)` break the sharing."""
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    # ---- speed -----------------------------------------------------------------------------

    def set_attention_impl(self, impl: AttentionImpl) -> None:
        """'auto' (default): cuDNN attention for causal rows and FlexAttention for packed
        `doc_ids` on CUDA; 'sdpa': plain SDPA with a dense mask everywhere (the reference)."""
        if impl not in ("auto", "sdpa"):
            raise ValueError(f"attention impl must be 'auto' or 'sdpa', got {impl!r}")
        self.attention_impl = impl
        for layer in self.model.layers:
            layer.self_attn.impl = impl

    def compile_blocks(self, **compile_kwargs) -> None:
        """`torch.compile` each decoder block in place (`nn.Module.compile`).

        Compiling per block rather than the whole model keeps one graph shared by all 32 layers
        (one compile, ~1 min for the 2B on an H200) and composes with per-block activation
        checkpointing and FSDP wrapping. Inductor fuses the RMSNorms, RoPE, the q/k
        concatenations and SwiGLU's silu * up into the neighbouring kernels. Call before
        wrapping the blocks; `compile_kwargs` go to `torch.compile` (e.g. `mode=`).
        """
        for layer in self.model.layers:
            layer.compile(**compile_kwargs)

    # ---- rotary tables ---------------------------------------------------------------------

    def init_rope(self) -> None:
        """(Re)compute the RoPE frequencies from `config.rope_theta` / `config.rope_scaling`.

        Kept as a plain fp32 attribute, not a buffer: `model.to(torch.bfloat16)` would round a
        buffer, and the table is not part of HF checkpoints. Call after changing the config's
        RoPE fields (e.g. a curriculum stage raising rope_theta for long context). YaRN with
        `mscale_all_dim` also scales the softmax, so the attention layers' scale is refreshed too.
        """
        self._inv_freq, self._rope_factor = rope_inv_freq(
            self.config.qk_rope_head_dim, self.config.rope_theta, self.config.rope_scaling)
        self._inv_freq_on: dict[torch.device, torch.Tensor] = {}
        scale = attention_scale(self.config)
        for layer in self.model.layers:
            layer.self_attn.scale = scale

    def _rope(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = self._inv_freq_on.get(positions.device)
        if inv_freq is None:
            inv_freq = self._inv_freq_on[positions.device] = self._inv_freq.to(positions.device)
        return rope_cos_sin(positions, inv_freq, self._rope_factor, dtype)

    # ---- forward -----------------------------------------------------------------------------

    def hidden_states(self, input_ids: torch.Tensor, positions: torch.Tensor | None = None,
                      doc_ids: torch.Tensor | None = None, cache: LatentCache | None = None,
                      cache_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Final-norm hidden states [B, T, D] (`logits = hidden @ lm_head.weight.T`).

        Args:
            input_ids: [B, T] token ids.
            positions: [B, T] RoPE positions (and cache slots); default 0..T-1 per row.
            doc_ids: [B, T] document ids of packed rows: a token attends only to earlier tokens
                with the same id. Positions should restart per document (the caller's job).
            cache: a `LatentCache`: switches to the absorbed path; token (b, t) is written to
                slot positions[b, t] of row cache_rows[b] and attends to slots 0..positions[b, t].
            cache_rows: [B] cache rows of the batch rows; default 0..B-1.
        """
        B, T = input_ids.shape
        device = input_ids.device
        if positions is None:
            positions = torch.arange(T, device=device).expand(B, T)
        elif positions.shape != input_ids.shape:
            raise ValueError(f"positions {tuple(positions.shape)} must match input_ids {tuple(input_ids.shape)}")
        if doc_ids is not None and doc_ids.shape != input_ids.shape:
            raise ValueError(f"doc_ids {tuple(doc_ids.shape)} must match input_ids {tuple(input_ids.shape)}")
        x = self.model.embed_tokens(input_ids)  # [B, T, D]
        cos, sin = self._rope(positions, x.dtype)  # [B, T, R/2]

        if cache is None:
            if cache_rows is not None:
                raise ValueError("cache_rows given without a cache")
            mask = None
            if doc_ids is not None and self.attention_impl == "auto":
                mask = doc_block_mask(doc_ids) if device.type == "cuda" else doc_segments(doc_ids)
            if mask is None:
                mask = expanded_mask(doc_ids)
        else:
            if doc_ids is not None:
                raise ValueError("doc_ids (packed training) cannot be combined with a LatentCache")
            if cache_rows is None:
                cache_rows = torch.arange(B, device=device)
            if cache_rows.shape != (B,):
                raise ValueError(f"cache_rows must have shape ({B},), got {tuple(cache_rows.shape)}")
            if cache.attend_len is None:  # static-shape callers (CUDA graphs) check themselves
                cache.check(positions, cache_rows)
                length = int(positions.max()) + 1
            else:
                length = cache.attend_len
            if T < PREFILL_EXPANDED_MIN_TOKENS:
                mask = absorbed_mask(positions, length, self.config.num_attention_heads)
            elif length == T and torch.equal(positions, torch.arange(T, device=device).expand(B, T)):
                mask = None  # fresh prefill: plain causal attention over the new tokens
            else:
                mask = (torch.arange(length, device=device) <= positions[:, :, None])[:, None]  # [B, 1, T, S]

        for layer in self.model.layers:
            x = layer(x, cos, sin, mask, cache, positions, cache_rows)
        return self.model.norm(x)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor | None = None,
                doc_ids: torch.Tensor | None = None, cache: LatentCache | None = None,
                cache_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, T, V] in the model's dtype; arguments as in `hidden_states`."""
        return self.lm_head(self.hidden_states(input_ids, positions, doc_ids, cache, cache_rows))

    # ---- init and accounting -----------------------------------------------------------------

    @torch.no_grad()
    def init_weights(self) -> None:
        """Vendor init: every linear N(0, std) with std = sqrt(2 / (5 * hidden)) (0.0140 for the
        2B), embeddings N(0, 2 * std), norms 1. Also re-ties lm_head and recomputes the RoPE
        table, so it can follow `to_empty()` after meta-device construction.

        (transformers' YoutuConfig computes 2 / sqrt(5 * hidden) instead, 0.0198 for the 2B; we
        keep the rule DESIGN.md states. Init does not affect loading checkpoints.)
        """
        self.tie_weights()
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, nn.Linear) and not (module is self.lm_head and self.config.tie_word_embeddings):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=2 * std)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
        self.init_rope()

    def num_params(self) -> int:
        """Parameter count, the tied embedding counted once (1,961,560,064 for the 2B)."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int, causal: bool = False) -> float:
        """Training FLOPs per token (forward + backward) at sequence length `seq_len`: the one
        MFU convention of youtu (trainer log line, metrics, benchmarks, README).

            6 * N_matmul + 6 * L * H * (qk_head_dim + v_head_dim) * S,   S = seq_len

        This is PaLM's (Chowdhery et al. 2022, appendix B) and torchtitan's
        (`get_moe_model_nparams_and_flops`) convention, chosen so that our MFU and the peers'
        (torchtitan's own log, nanochat, the DESIGN.md anchor) are the same quantity. N_matmul
        counts every weight used in a matmul, lm_head included, the embedding lookup excluded
        (a tied embedding counts once, as the lm_head). The attention term is 2 FLOPs per
        multiply-add for QK^T (qk_head_dim) and PV (v_head_dim) over S keys per query,
        forward + backward = 3x. It counts every query against all `seq_len` keys, although
        a causal kernel executes only about half of them: at 4096 tokens the 2B's causal count
        is 13% lower (13.78 vs 15.79 GFLOP/token), at 32k 37% lower. Recomputation under
        activation checkpointing is not counted (it is overhead, not model FLOPs).

        Args:
            seq_len: tokens per row.
            causal: count S = seq_len / 2 keys per query instead (what a causal kernel runs):
                for reading kernel efficiency only, never for reported MFU.
        """
        cfg = self.config
        n_matmul = sum(m.weight.numel() for m in self.model.layers.modules() if isinstance(m, nn.Linear))
        n_matmul += cfg.vocab_size * cfg.hidden_size
        keys = seq_len / 2 if causal else seq_len
        attn = 6 * cfg.num_hidden_layers * cfg.num_attention_heads * (cfg.qk_head_dim + cfg.v_head_dim) * keys
        return 6.0 * n_matmul + attn

    def kv_cache_bytes_per_token(self, dtype: torch.dtype = torch.bfloat16) -> int:
        """Latent cache bytes per token: L * (C + R) * dtype bytes (36 KiB for the 2B in bf16)."""
        cfg = self.config
        return cfg.num_hidden_layers * (cfg.kv_lora_rank + cfg.qk_rope_head_dim) * dtype.itemsize
