"""Fused chunked lm_head + cross-entropy against the unfused reference: loss and gradients."""

from __future__ import annotations

import pytest
import torch

from youtu.train import loss as loss_mod
from youtu.train.loss import (IGNORE_INDEX, compiled_cross_entropy, full_cross_entropy,
                              fused_linear_cross_entropy, reference_cross_entropy)


def _chunked(chunk, compiled_chunks=False):
    return lambda h, w, t: fused_linear_cross_entropy(h, w, t, chunk_tokens=chunk,
                                                      compiled_chunks=compiled_chunks)


@pytest.fixture
def eager_chunk_body(monkeypatch):
    """compiled_chunks=True runs `chunk_loss_and_grad` as written (no torch.compile on CPU)."""
    monkeypatch.setattr(loss_mod, "_compiled_chunk_loss_and_grad",
                        lambda: loss_mod.chunk_loss_and_grad)


KERNELS = {**{f"chunked{c}": _chunked(c) for c in (0, 1, 7, 64)}, "full": full_cross_entropy,
           "compiled": pytest.param(compiled_cross_entropy, marks=pytest.mark.slow)}


@pytest.mark.parametrize("kernel", KERNELS.values(), ids=KERNELS.keys())
def test_matches_unfused_loss_and_grads(kernel):
    _check_against_unfused(kernel)


@pytest.mark.parametrize("chunk", [0, 7])
def test_the_compiled_chunks_body_matches_unfused_loss_and_grads(eager_chunk_body, chunk):
    """`chunk_loss_and_grad`, what loss_kernel 'chunked_compiled' compiles, run eagerly."""
    _check_against_unfused(_chunked(chunk, compiled_chunks=True))


def _check_against_unfused(kernel):
    torch.manual_seed(0)
    hidden = torch.randn(3, 13, 16, requires_grad=True)
    weight = torch.randn(50, 16, requires_grad=True)
    targets = torch.randint(0, 50, (3, 13))
    targets[0, :4] = IGNORE_INDEX
    loss, token_loss = kernel(hidden, weight, targets)
    (0.37 * loss).backward()
    gh, gw = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    ref = reference_cross_entropy(hidden, weight, targets)
    (0.37 * ref).backward()
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(gh, hidden.grad)
    torch.testing.assert_close(gw, weight.grad)
    assert token_loss.shape == (39,) and not token_loss.requires_grad
    assert (token_loss[:4] == 0).all() and (token_loss[4:] > 0).all()
    torch.testing.assert_close(token_loss.sum(), loss.detach())


def test_no_grad_and_all_ignored():
    hidden, weight = torch.randn(5, 8), torch.randn(11, 8)
    with torch.no_grad():
        loss, token_loss = fused_linear_cross_entropy(hidden, weight, torch.full((5,), IGNORE_INDEX))
    assert loss.item() == 0.0 and token_loss.abs().sum() == 0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="targets"):
        fused_linear_cross_entropy(torch.randn(4, 8), torch.randn(11, 8), torch.zeros(5, dtype=torch.long))


def _two_kernels_on_cuda(kernels, rows: int):
    """(loss, token_loss, grad_hidden, grad_weight) of each kernel on one bf16-autocast batch
    (128k-class vocabulary shape, the first 100 targets ignored)."""
    torch.manual_seed(0)
    hidden = torch.randn(rows, 256, device="cuda", requires_grad=True)
    weight = (0.02 * torch.randn(32768, 256, device="cuda")).requires_grad_()
    targets = torch.randint(0, 32768, (rows,), device="cuda")
    targets[:100] = IGNORE_INDEX
    results = []
    for kernel in kernels:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, token_loss = kernel(hidden, weight, targets)
        loss.backward()
        results.append((loss.detach(), token_loss, hidden.grad.clone(), weight.grad.clone()))
        hidden.grad = weight.grad = None
    return results


def _assert_grads_close(grads_a, grads_b) -> None:
    # Gradients as a whole: elementwise, a few of 8.4M weight-gradient entries differ by 3e-3
    # (bf16 rounding of full vs chunked logits; seen on the H200); a wrong kernel is off by
    # far more than 1% of the norm.
    for a, b in zip(grads_a, grads_b):
        rel = ((a.float() - b.float()).norm() / b.float().norm()).item()
        assert rel < 1e-2, rel


@pytest.mark.gpu
def test_compiled_kernel_matches_chunked_under_bf16_autocast_on_cuda():
    """The trainer's two loss kernels on the GPU path: same loss and gradients within bf16
    matmul noise."""
    (loss_a, tok_a, *grads_a), (loss_b, tok_b, *grads_b) = _two_kernels_on_cuda(
        (_chunked(512), compiled_cross_entropy), 2048)
    torch.testing.assert_close(loss_a.float(), loss_b.float(), rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(tok_a.float(), tok_b.float(), rtol=2e-2, atol=2e-3)
    _assert_grads_close(grads_a, grads_b)


@pytest.mark.gpu
def test_compiled_chunks_match_eager_chunks_under_bf16_autocast_on_cuda():
    """loss_kernel 'chunked_compiled' against 'chunked', a ragged last chunk (2000 rows in
    chunks of 512) included: the same loss and gradients within bf16 noise."""
    (loss_a, tok_a, *grads_a), (loss_b, tok_b, *grads_b) = _two_kernels_on_cuda(
        (_chunked(512), _chunked(512, compiled_chunks=True)), 2000)
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(tok_a, tok_b, rtol=1e-3, atol=1e-3)
    assert (tok_b[:100] == 0).all()
    _assert_grads_close(grads_a, grads_b)
