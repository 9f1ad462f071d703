"""RMSNorm, RoPE (interleaved DeepSeek layout), YaRN frequencies and the attention scale."""

from __future__ import annotations

import math

import pytest
import torch

from youtu.model import ModelConfig
from youtu.model.config import RopeScaling
from youtu.model.layers import (MLP, RMSNorm, apply_rope, attention_scale, rope_cos_sin,
                                rope_inv_freq, yarn_mscale)


def _rotate_interleaved_reference(x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor):
    """DeepSeek's original formulation: view pairs (x0, x1), (x2, x3), ... as complex numbers
    and multiply by exp(i * pos * freq). Output stays interleaved."""
    z = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    angles = positions.float()[..., None] * inv_freq  # [B, T, R/2]
    z = z * torch.polar(torch.ones_like(angles), angles)[:, :, None, :]
    return torch.view_as_real(z).flatten(-2)


def test_apply_rope_is_the_interleaved_rotation_up_to_a_fixed_permutation():
    B, T, H, R = 2, 7, 3, 16
    q, k = torch.randn(B, T, H, R), torch.randn(B, T, 1, R)
    positions = torch.randint(0, 1000, (B, T))
    inv_freq, factor = rope_inv_freq(R, 1e4)
    cos, sin = rope_cos_sin(positions, inv_freq, factor, torch.float32)
    ours_q, ours_k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    ref_q = _rotate_interleaved_reference(q, positions, inv_freq)
    ref_k = _rotate_interleaved_reference(k, positions, inv_freq)
    deinterleave = torch.cat([torch.arange(0, R, 2), torch.arange(1, R, 2)])
    assert torch.allclose(ours_q, ref_q[..., deinterleave], atol=1e-5)
    # attention only sees dot products, which the shared permutation leaves unchanged
    assert torch.allclose((ours_q * ours_k).sum(-1), (ref_q * ref_k).sum(-1), atol=1e-4)
    # the rotate-half (GPT-NeoX) layout is a different model: it must not match
    half = torch.cat((-q[..., R // 2:], q[..., :R // 2]), dim=-1)
    c, s = torch.cat((cos, cos), -1)[:, :, None], torch.cat((sin, sin), -1)[:, :, None]
    assert not torch.allclose(q * c + half * s, ref_q, atol=1e-3)


def test_relative_position_property():
    """q(m) . k(n) depends only on m - n."""
    R = 16
    q, k = torch.randn(1, 1, 1, R), torch.randn(1, 1, 1, R)
    inv_freq, _ = rope_inv_freq(R, 1e4)

    def score(m: int, n: int) -> float:
        cq, sq = rope_cos_sin(torch.tensor([[m]]), inv_freq, 1.0, torch.float32)
        ck, sk = rope_cos_sin(torch.tensor([[n]]), inv_freq, 1.0, torch.float32)
        return (apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum().item()

    assert score(10, 3) == pytest.approx(score(107, 100), abs=1e-4)


def test_rms_norm_and_mlp_shapes():
    norm = RMSNorm(8, eps=1e-6)
    x = torch.randn(2, 3, 8) * 5
    y = norm(x)
    assert torch.allclose(y.pow(2).mean(-1), torch.ones(2, 3), atol=1e-4)
    assert MLP(8, 24)(x).shape == x.shape


def test_yarn_identity_and_ramp():
    plain, f1 = rope_inv_freq(64, 1.6e6)
    same, f2 = rope_inv_freq(64, 1.6e6, RopeScaling(factor=1.0))
    assert torch.equal(plain, same) and f1 == f2 == 1.0
    rs = RopeScaling(factor=4.0, original_max_position_embeddings=4096)
    scaled, factor = rope_inv_freq(64, 1.6e6, rs)
    assert scaled[0] == plain[0]  # fastest dims keep their frequency
    assert scaled[-1] == pytest.approx(plain[-1] / 4)  # slowest are interpolated
    assert factor == pytest.approx(0.1 * math.log(4) + 1)  # mscale_all_dim 0: plain YaRN temperature


@pytest.mark.hf
def test_yarn_matches_transformers():
    from transformers import YoutuConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from youtu.model.hf import config_to_hf

    cfg = ModelConfig.youtu_2b()
    cfg.rope_scaling = RopeScaling(factor=8.0, original_max_position_embeddings=16384,
                                   beta_fast=32, beta_slow=1, mscale=1.0, mscale_all_dim=0.8)
    theirs, their_factor = ROPE_INIT_FUNCTIONS["yarn"](YoutuConfig(**config_to_hf(cfg)))
    ours, our_factor = rope_inv_freq(cfg.qk_rope_head_dim, cfg.rope_theta, cfg.rope_scaling)
    assert torch.allclose(ours, theirs, rtol=1e-6) and our_factor == pytest.approx(their_factor)


def test_attention_scale():
    cfg = ModelConfig.youtu_2b()
    assert attention_scale(cfg) == 192 ** -0.5
    cfg.rope_scaling = RopeScaling(factor=4.0, mscale_all_dim=0.707)
    assert attention_scale(cfg) == pytest.approx(192 ** -0.5 * yarn_mscale(4.0, 0.707) ** 2)
    cfg.rope_scaling = RopeScaling(factor=4.0, mscale_all_dim=0.0)
    assert attention_scale(cfg) == 192 ** -0.5


def _storage_bytes(module: torch.nn.Module) -> int:
    """Bytes of the distinct storages behind `module`'s parameters."""
    seen = {}
    for p in module.parameters():
        st = p.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


@torch.no_grad()
def test_fused_gate_up_equals_the_separate_projections_in_place():
    torch.manual_seed(0)
    mlp = MLP(16, 40)
    x = torch.randn(3, 2, 16)
    before = mlp(x)
    params = dict(mlp.named_parameters())
    state = {k: v.clone() for k, v in mlp.state_dict().items()}
    nbytes = _storage_bytes(mlp)
    mlp.fuse_()
    assert mlp.fused and mlp.gate_up.shape == (80, 16)
    # the same parameter objects, names and values, now views of gate_up: no extra memory
    assert dict(mlp.named_parameters()) == params
    assert {k: v for k, v in mlp.state_dict().items()}.keys() == state.keys()
    assert all(torch.equal(mlp.state_dict()[k], v) for k, v in state.items())
    assert mlp.gate_proj.weight.untyped_storage().data_ptr() == mlp.gate_up.untyped_storage().data_ptr()
    assert _storage_bytes(mlp) == nbytes
    torch.testing.assert_close(mlp.forward_fused(x), before, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(mlp(x), before, atol=1e-6, rtol=1e-5)
    # in-place updates of a parameter reach the fused weight
    mlp.up_proj.weight.mul_(-1)
    torch.testing.assert_close(mlp.forward_fused(x), mlp(x), atol=1e-6, rtol=1e-5)
    assert not torch.allclose(mlp(x), before, atol=1e-3)
    gate_up = mlp.gate_up
    mlp.fuse_()  # idempotent
    assert mlp.gate_up is gate_up
    # a cast replaces the parameters' data: the layout is gone and says so
    mlp.double()
    assert not mlp.fused
    mlp.fuse_()
    assert mlp.fused and mlp.gate_up.dtype == torch.float64


def test_training_through_fused_views_still_trains_the_parameters():
    torch.manual_seed(0)
    mlp = MLP(8, 12)
    mlp.fuse_()
    x = torch.randn(4, 8)
    mlp(x).pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mlp.parameters())
    torch.optim.SGD(mlp.parameters(), lr=0.1).step()
    assert mlp.fused  # the optimizer updated the views in place
    with torch.no_grad():
        torch.testing.assert_close(mlp.forward_fused(x), mlp(x), atol=1e-6, rtol=1e-5)


def test_fusing_under_inference_mode_leaves_the_weights_updatable():
    mlp = MLP(8, 12)
    with torch.inference_mode():  # e.g. an engine built inside a no-grad region
        mlp.fuse_()
    assert not mlp.gate_up.is_inference()
    with torch.no_grad():
        mlp.gate_up.mul_(0.5)  # in-place updates outside inference mode
        mlp.gate_proj.weight.add_(1.0)
    assert mlp.fused and torch.equal(mlp.gate_up[:12], mlp.gate_proj.weight)
    mlp(torch.randn(2, 8)).sum().backward()  # and the weights still train
    assert mlp.gate_proj.weight.grad is not None


def test_a_copy_of_a_fused_mlp_carries_no_stale_fused_weight():
    import copy

    mlp = MLP(8, 12)
    mlp.fuse_()
    twin = copy.deepcopy(mlp)
    assert twin.gate_up is None and not twin.fused and mlp.fused  # no second copy of the MLP
    assert torch.equal(twin.gate_proj.weight, mlp.gate_proj.weight)
    twin.fuse_()
    assert twin.fused and twin.gate_up.data_ptr() != mlp.gate_up.data_ptr()
