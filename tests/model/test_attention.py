"""MLA masks and the absorbed path at the level of one attention layer."""

from __future__ import annotations

import torch

from youtu.model import LatentCache, ModelConfig
from youtu.model.attention import MultiHeadLatentAttention, absorbed_mask, expanded_mask
from youtu.model.layers import rope_cos_sin, rope_inv_freq


def test_expanded_mask_is_causal_within_documents():
    mask = expanded_mask(torch.tensor([[0, 0, 1, 1, 1]]))[0, 0]
    expected = torch.tensor([[1, 0, 0, 0, 0],
                             [1, 1, 0, 0, 0],
                             [0, 0, 1, 0, 0],
                             [0, 0, 1, 1, 0],
                             [0, 0, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected)
    assert expanded_mask(None) is None


def test_absorbed_mask_folds_heads_into_queries():
    mask = absorbed_mask(torch.tensor([[1, 2]]), length=4, num_heads=2)
    assert mask.shape == (1, 1, 4, 4)
    assert torch.equal(mask[0, 0].int(), torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0],
                                                      [1, 1, 1, 0], [1, 1, 1, 0]]))


@torch.no_grad()
def test_absorbed_layer_equals_expanded_layer():
    cfg = ModelConfig.tiny()
    torch.manual_seed(0)
    attn = MultiHeadLatentAttention(cfg, layer_idx=2)
    x = torch.randn(2, 9, cfg.hidden_size)
    positions = torch.arange(9).expand(2, 9)
    inv_freq, factor = rope_inv_freq(cfg.qk_rope_head_dim, cfg.rope_theta)
    cos, sin = rope_cos_sin(positions, inv_freq, factor, torch.float32)
    expanded = attn(x, cos, sin)
    cache = LatentCache(cfg, max_batch=2, max_seq_len=9)
    absorbed = attn(x, cos, sin, absorbed_mask(positions, 9, cfg.num_attention_heads), cache,
                    positions, torch.arange(2))
    assert (expanded - absorbed).abs().max() < 1e-5
    assert cache.kv[2].abs().sum() > 0 and cache.kv[1].abs().sum() == 0  # only its own layer
