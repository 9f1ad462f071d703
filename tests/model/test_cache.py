"""LatentCache: size accounting and addressing."""

from __future__ import annotations

import pytest
import torch

from youtu.model import LatentCache, ModelConfig, YoutuForCausalLM


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_memory_per_token_matches_the_model(dtype):
    cfg = ModelConfig.tiny()
    cache = LatentCache(cfg, max_batch=3, max_seq_len=10, dtype=dtype)
    with torch.device("meta"):
        model = YoutuForCausalLM(cfg)
    per_token = cfg.num_hidden_layers * (cfg.kv_lora_rank + cfg.qk_rope_head_dim) * dtype.itemsize
    assert cache.bytes_per_token() == model.kv_cache_bytes_per_token(dtype) == per_token
    assert cache.nbytes == 3 * 10 * per_token


def test_youtu_2b_cache_is_36_kib_per_token_in_bf16():
    cache = LatentCache(ModelConfig.youtu_2b(), max_batch=1, max_seq_len=1, device="meta",
                        dtype=torch.bfloat16)
    assert cache.bytes_per_token() == 36 * 1024  # not the 320 KiB of expanded per-head K/V


def test_write_and_read_address_rows_and_slots():
    cfg = ModelConfig.tiny()
    cache = LatentCache(cfg, max_batch=4, max_seq_len=8)
    C, R = cfg.kv_lora_rank, cfg.qk_rope_head_dim
    latent, rope = torch.randn(2, 3, C), torch.randn(2, 3, R)
    rows, positions = torch.tensor([3, 1]), torch.tensor([[0, 1, 2], [5, 6, 7]])
    cache.write(1, rows, positions, latent, rope)
    assert torch.equal(cache.kv[1, 3, :3, :C], latent[0])
    assert torch.equal(cache.kv[1, 1, 5:8, C:], rope[1])
    assert cache.kv[0].abs().sum() == 0 and cache.kv[1, 0].abs().sum() == 0
    assert torch.equal(cache.read(1, rows, 8)[1, 5:], cache.kv[1, 1, 5:])


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="max_batch"):
        LatentCache(ModelConfig.tiny(), max_batch=0, max_seq_len=4)


def test_write_rows_stores_latent_and_rope_rows_where_write_does():
    cfg = ModelConfig.tiny()
    a, b = LatentCache(cfg, 3, 10), LatentCache(cfg, 3, 10)
    latent, rope = torch.randn(2, 4, cfg.kv_lora_rank), torch.randn(2, 4, cfg.qk_rope_head_dim)
    rows, pos = torch.tensor([2, 0]), torch.tensor([[0, 1, 2, 3], [5, 6, 7, 8]])
    a.write(1, rows, pos, latent, rope)
    b.write_rows(1, rows, pos, torch.cat((latent, rope), dim=-1))
    assert torch.equal(a.kv, b.kv)
    assert torch.equal(b.kv[1, 0, 5:9, cfg.kv_lora_rank:], rope[1])
    assert b.kv[1, 1].abs().sum() == 0 and b.kv[0].abs().sum() == 0  # only those slots
