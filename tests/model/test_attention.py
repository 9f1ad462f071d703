"""MLA masks and the absorbed path at the level of one attention layer."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from youtu.model import LatentCache, ModelConfig, attention
from youtu.model.attention import (MultiHeadLatentAttention, absorbed_mask, doc_block_mask, doc_segments,
                                   expanded_mask, pad_head_dims)
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


@pytest.fixture
def segments_everywhere(monkeypatch):
    """Spans for rows of any length and documents of any size (tests use tiny rows)."""
    monkeypatch.setattr(attention, "SEGMENT_MIN_ROW", 1)
    monkeypatch.setattr(attention, "SEGMENT_MIN_MEAN_LEN", 1)


def test_doc_segments_are_the_runs_of_each_row(segments_everywhere):
    segments = doc_segments(torch.tensor([[0, 0, 1, 1, 1], [4, 4, 4, 4, 4]]))
    assert segments.rows == (((0, 2), (2, 5)), ((0, 5),))
    assert doc_segments(torch.tensor([[0, 1, 0]])) is None  # id 0 recurs: only the dense mask is exact


def test_doc_segments_decline_where_the_dense_mask_is_faster():
    row = attention.SEGMENT_MIN_ROW
    long_docs = torch.arange(row).div(4 * attention.SEGMENT_MIN_MEAN_LEN, rounding_mode="floor")
    assert doc_segments(long_docs[None]) is not None
    assert doc_segments(long_docs[None, : row // 2]) is None  # a short row
    short_docs = torch.arange(row).div(attention.SEGMENT_MIN_MEAN_LEN // 2, rounding_mode="floor")
    assert doc_segments(short_docs[None]) is None  # many short documents


def test_segmented_layer_equals_dense_mask_forward_and_backward(segments_everywhere):
    cfg = ModelConfig.tiny()
    torch.manual_seed(0)
    attn = MultiHeadLatentAttention(cfg, layer_idx=1)
    doc_ids = torch.tensor([[0] * 5 + [1] * 9 + [2] * 2, [7] * 16])
    positions = torch.cat([torch.arange(5), torch.arange(9), torch.arange(2)]).expand(2, 16).clone()
    positions[1] = torch.arange(16)
    inv_freq, factor = rope_inv_freq(cfg.qk_rope_head_dim, cfg.rope_theta)
    cos, sin = rope_cos_sin(positions, inv_freq, factor, torch.float32)
    x = torch.randn(2, 16, cfg.hidden_size, requires_grad=True)
    outs, grads = [], []
    for mask in (expanded_mask(doc_ids), doc_segments(doc_ids)):
        out = attn(x, cos, sin, mask)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outs.append(out.detach())
        grads.append((x.grad.clone(), attn.kv_b_proj.weight.grad.clone()))
        x.grad = None
        attn.zero_grad()
    torch.testing.assert_close(outs[0], outs[1])
    for a, b in zip(grads[0], grads[1]):
        torch.testing.assert_close(a, b)


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


def test_cudnn_serves_training_rows_and_never_a_cached_prefill(monkeypatch):
    """cuDNN plans each new shape (45-165 ms once, H100): the training forward may use it
    (impl 'auto'), a fresh prefill into a cache (engine, eval scoring) takes plain SDPA."""
    seen = []
    real = attention.causal_attention

    def spy(q, k, v, scale, impl="auto"):
        seen.append(impl)
        return real(q, k, v, scale, impl)

    monkeypatch.setattr(attention, "causal_attention", spy)
    cfg = ModelConfig.tiny()
    torch.manual_seed(0)
    attn = MultiHeadLatentAttention(cfg, layer_idx=0)
    T = attention.PREFILL_EXPANDED_MIN_TOKENS
    x = torch.randn(2, T, cfg.hidden_size)
    positions = torch.arange(T).expand(2, T)
    inv_freq, factor = rope_inv_freq(cfg.qk_rope_head_dim, cfg.rope_theta)
    cos, sin = rope_cos_sin(positions, inv_freq, factor, torch.float32)
    training = attn(x, cos, sin)
    prefill = attn(x, cos, sin, None, LatentCache(cfg, max_batch=2, max_seq_len=T), positions,
                   torch.arange(2))
    assert seen == ["auto", "sdpa"]
    assert (training - prefill).abs().max() < 1e-5


# ---- GPU fast paths vs the plain SDPA path ------------------------------------------------------

def _gpu_model(cfg: ModelConfig, seed: int = 0):
    from youtu.model import YoutuForCausalLM

    torch.manual_seed(seed)
    model = YoutuForCausalLM(cfg).cuda().to(torch.bfloat16)
    model.init_weights()
    return model


def _loss_and_grads(model, ids, doc_ids=None, positions=None):
    model.zero_grad(set_to_none=True)
    logits = model(ids, positions=positions, doc_ids=doc_ids).float()
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    grads = {n: p.grad.float().clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def _assert_close_to_reference(fast, ref, tol=2e-2):
    (lf, gf), (lr, gr) = fast, ref
    assert torch.isfinite(lf).all()
    assert _rel(lf, lr) < tol, _rel(lf, lr)
    for name in gr:
        assert _rel(gf[name], gr[name]) < tol, (name, _rel(gf[name], gr[name]))


def _gpu_layer_run(attn, x, positions, mask, backend=None):
    """Output, input gradient and parameter gradients of one attention layer (bf16, CUDA)."""
    from torch.nn.attention import sdpa_kernel

    cfg_r = attn.qk_rope_head_dim
    inv_freq, factor = rope_inv_freq(cfg_r, 1e4)
    cos, sin = rope_cos_sin(positions, inv_freq.cuda(), factor, torch.bfloat16)
    attn.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    if backend is None:
        out = attn(x, cos, sin, mask)
    else:
        with sdpa_kernel(backend):
            out = attn(x, cos, sin, mask)
    out.float().pow(2).sum().backward()
    grads = {n: p.grad.float().clone() for n, p in attn.named_parameters()}
    return out.detach().float(), x.grad.float(), grads


def _assert_layer_close(fast, ref, tol=2e-2):
    for a, b in ((fast[0], ref[0]), (fast[1], ref[1]), *((fast[2][n], ref[2][n]) for n in ref[2])):
        assert torch.isfinite(a).all()
        assert _rel(a, b) < tol, _rel(a, b)


def _gpu_layer(seed: int):
    cfg = ModelConfig.small(vocab_size=4096)
    cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim = 128, 64, 128  # the 2B's heads
    torch.manual_seed(seed)
    attn = MultiHeadLatentAttention(cfg, layer_idx=0).cuda().to(torch.bfloat16)
    for p in attn.parameters():
        if p.dim() == 2:
            torch.nn.init.normal_(p, std=p.shape[1] ** -0.5)  # unit-scale activations
    return cfg, attn


@pytest.mark.gpu
def test_cudnn_causal_attention_matches_the_math_backend_forward_and_backward():
    """qk 192 / v 128 in bf16: the 'auto' path (cuDNN) vs SDPA's math backend."""
    from torch.nn.attention import SDPBackend

    cfg, attn = _gpu_layer(seed=0)
    T = 777  # not a multiple of the kernel's tiles
    x = torch.randn(2, T, cfg.hidden_size, device="cuda", dtype=torch.bfloat16)
    positions = torch.arange(T, device="cuda").expand(2, T)
    fast = _gpu_layer_run(attn, x, positions, None)
    attn.impl = "sdpa"
    ref = _gpu_layer_run(attn, x, positions, None, SDPBackend.MATH)
    _assert_layer_close(fast, ref)


@pytest.mark.gpu
def test_flex_document_attention_matches_the_dense_mask():
    """Packed rows: FlexAttention's block mask vs SDPA (math backend) with the dense
    [B, 1, T, T] mask; documents start mid-block, one is a single token, row 1 is one document."""
    from torch.nn.attention import SDPBackend

    cfg, attn = _gpu_layer(seed=1)
    T = 512
    starts = torch.tensor([0, 37, 200, 201, 390], device="cuda")
    t = torch.arange(T, device="cuda")
    doc = torch.searchsorted(starts, t, right=True) - 1
    doc_ids = torch.stack([doc, torch.zeros_like(doc)])
    positions = torch.stack([t - starts[doc], t])
    x = torch.randn(2, T, cfg.hidden_size, device="cuda", dtype=torch.bfloat16)
    fast = _gpu_layer_run(attn, x, positions, doc_block_mask(doc_ids))
    ref = _gpu_layer_run(attn, x, positions, expanded_mask(doc_ids), SDPBackend.MATH)
    _assert_layer_close(fast, ref)
    # the documents matter: plain causal attention over row 0 gives a different output
    causal = _gpu_layer_run(attn, x, positions, None)
    assert _rel(causal[0][0], ref[0][0]) > 0.1


def test_zero_padded_head_dims_give_the_same_attention():
    # FlexAttention needs head dims >= 16; the tiny preset's v head is 8 (the CUDA training
    # forward crashed in inductor before the padding).
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 9, 12), torch.randn(2, 3, 9, 12), torch.randn(2, 3, 9, 8)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3)
    pq, pk, pv = pad_head_dims(q, k, v, 16)
    assert pq.shape[-1] == pk.shape[-1] == pv.shape[-1] == 16
    out = F.scaled_dot_product_attention(pq, pk, pv, is_causal=True, scale=0.3)[..., :8]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    assert pad_head_dims(q, k, v, 8)[0] is q  # nothing to pad


@pytest.mark.gpu
def test_flex_document_attention_with_heads_below_16():
    """Heads below 16 (the test configs' qk 16 / v 8, here qk 12 / v 8) through the compiled
    block-mask path."""
    from torch.nn.attention import SDPBackend

    cfg = ModelConfig.tiny(vocab_size=256)
    cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim = 4, 8, 8
    torch.manual_seed(3)
    attn = MultiHeadLatentAttention(cfg, layer_idx=0).cuda().to(torch.bfloat16)
    T = 128
    starts = torch.tensor([0, 45, 46, 100], device="cuda")
    t = torch.arange(T, device="cuda")
    doc = (torch.searchsorted(starts, t, right=True) - 1)[None]
    positions = t[None] - starts[doc]
    x = torch.randn(1, T, cfg.hidden_size, device="cuda", dtype=torch.bfloat16)
    fast = _gpu_layer_run(attn, x, positions, doc_block_mask(doc))
    ref = _gpu_layer_run(attn, x, positions, expanded_mask(doc), SDPBackend.MATH)
    _assert_layer_close(fast, ref)


@pytest.mark.gpu
def test_compiled_blocks_match_eager():
    cfg = ModelConfig.small(vocab_size=4096)
    cfg.num_hidden_layers = 2
    model = _gpu_model(cfg, seed=2)
    ids = torch.randint(0, 4096, (2, 256), device="cuda")
    ref = _loss_and_grads(model, ids)
    model.compile_blocks()
    _assert_close_to_reference(_loss_and_grads(model, ids), ref)


@pytest.mark.gpu
@torch.no_grad()
def test_long_prefill_on_gpu_matches_the_training_forward():
    cfg = ModelConfig.small(vocab_size=4096)
    model = _gpu_model(cfg, seed=3)
    ids = torch.randint(0, 4096, (2, 1024), device="cuda")
    cache = LatentCache(cfg, 2, 1024, device="cuda", dtype=torch.bfloat16)
    assert _rel(model(ids, cache=cache).float(), model(ids).float()) < 2e-2


@pytest.mark.parametrize("variant", ["qlora", "noqlora"])
@torch.no_grad()
def test_fused_down_projections_equal_the_separate_ones(make_config, variant):
    """q_a (or q_proj) + kv_a_proj_with_mqa as one GEMV: same absorbed inputs, same params."""
    cfg = make_config(variant)
    torch.manual_seed(0)
    attn = MultiHeadLatentAttention(cfg, layer_idx=0)
    x = torch.randn(2, 3, cfg.hidden_size)
    positions = torch.arange(3).expand(2, 3) + 5
    inv_freq, factor = rope_inv_freq(cfg.qk_rope_head_dim, cfg.rope_theta)
    cos, sin = rope_cos_sin(positions, inv_freq, factor, torch.float32)
    q_ref, kv_ref = attn.absorbed_inputs(x, cos, sin)
    names = [n for n, _ in attn.named_parameters()]
    attn.fuse_()
    assert attn.fused and [n for n, _ in attn.named_parameters()] == names
    q_in = attn.q_a_proj if variant == "qlora" else attn.q_proj
    assert attn.q_kv_a.shape[0] == q_in.out_features + attn.kv_a_proj_with_mqa.out_features
    q, kv = attn.absorbed_inputs(x, cos, sin, fused=True)
    torch.testing.assert_close(q, q_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(kv, kv_ref, atol=1e-5, rtol=1e-5)
    assert copy.deepcopy(attn).q_kv_a is None  # a copy carries no stale fused weight
    attn.kv_a_proj_with_mqa.weight.add_(0.5)  # an in-place update reaches the fused weight
    q, kv = attn.absorbed_inputs(x, cos, sin, fused=True)
    torch.testing.assert_close(kv, attn.absorbed_inputs(x, cos, sin)[1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(kv, kv_ref, atol=1e-3)


@pytest.mark.gpu
def test_flex_under_a_force_eager_stance_keeps_the_fused_kernel():
    """The trainer's held-out eval runs under set_stance("force_eager"); FlexAttention there
    must stay the compiled kernel: eager flex_attention materialises [B, H, T, T] fp32 scores
    (3.2 GiB here; 24 GiB for the small recipe's eval batch, out of memory on an H100)."""
    torch.manual_seed(0)
    H, T, D = 12, 8192, 64
    q, k, v = (torch.randn(1, H, T, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    doc = (torch.arange(T, device="cuda") >= 3000).long()[None]
    mask = doc_block_mask(doc)
    ref = attention._flex(q, k, v, mask, 0.125)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    with torch.compiler.set_stance("force_eager"), torch.no_grad():
        out = attention._flex(q, k, v, mask, 0.125)
    peak = torch.cuda.max_memory_allocated() - base
    assert peak < 256 * 2**20, f"{peak / 2**30:.2f} GiB: the dense fallback ran"
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
