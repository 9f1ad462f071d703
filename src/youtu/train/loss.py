"""Fused lm_head + cross-entropy, chunked: full fp32 logits for the batch never exist at once.

For the 2B at 4 x 4096 tokens, full fp32 logits are 16,384 x 128,256 x 4 B = 8.4 GB, plus as
much again for their gradient. Here the hidden states are cut into chunks of `chunk_tokens`
rows; each chunk's logits are formed, turned into its loss and into its gradients with respect
to the hidden states and the lm_head weight, and dropped (the Liger-Kernel "fused linear cross
entropy" scheme, in plain PyTorch). Peak extra memory: one chunk of logits + a weight-sized
gradient buffer. FLOPs match the unfused loss (3 matmuls of N x D x V); nothing is recomputed.

    loss_sum, token_loss = fused_linear_cross_entropy(hidden, model.lm_head.weight, targets,
                                                      chunk_tokens=4096)
    (loss_sum / n_target_tokens).backward()

`full_cross_entropy` is the other kernel: the whole batch's logits at once, meant to run under
torch.compile (`compiled_cross_entropy`), which fuses the fp32 upcast, log-sum-exp and gather
into the matmul's epilogue and its backward. Faster on a GPU with the memory for B*T*V logits
(the trainer's `loss_kernel = "compiled"`); the chunked kernel is the bounded-memory default.

Between the two, `compiled_chunks=True` (`loss_kernel = "chunked_compiled"`) keeps the chunks
and their bounded memory, and runs each chunk's softmax and gradient (`chunk_loss_and_grad`)
as one torch.compile'd function. Eager, that is ~7 passes over the chunk's fp32 logits (the
upcast, log-sum-exp, exp, the target scatter, the ignore mask, the downcast); compiled, the
bf16 logits are read twice and the bf16 gradient is written once. On an H100 (2B, 2 x 4096,
2026-12-07) the eager chunks ran 8% behind the compiled full loss, 28.5k vs 31.0k tok/s; the
compiled chunks ran 29.95k, 0.975x the compiled full loss
(bench/results/2026-12-07_h100_train_profile.md).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def chunk_loss_and_grad(logits: torch.Tensor, targets: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token losses [n] (fp32, 0 where ignored) and d loss_sum / d logits [n, V] (softmax -
    onehot(target), 0 on ignored rows) in logits' dtype; the softmax in fp32. Written without
    in-place ops for torch.compile, which fuses it; eager, `_FusedLinearCrossEntropy` runs the
    same math in place instead (less memory)."""
    x = logits.float()
    keep, safe_t, lse, loss = _token_losses(x, targets)
    onehot = torch.arange(x.shape[1], device=x.device)[None, :] == safe_t[:, None]
    grad = torch.where(keep[:, None], torch.exp(x - lse[:, None]) - onehot.float(), 0.0)
    return loss, grad.to(logits.dtype)


def _token_losses(x: torch.Tensor, targets: torch.Tensor):
    """(keep [n] bool, safe targets [n], log-sum-exp [n], per-token loss [n], 0 where ignored)
    of fp32 logits x [n, V]; shared by both chunk paths."""
    keep = targets != IGNORE_INDEX
    safe_t = torch.where(keep, targets, 0)
    lse = torch.logsumexp(x, dim=-1)
    picked = x.gather(1, safe_t[:, None]).squeeze(1)
    return keep, safe_t, lse, torch.where(keep, lse - picked, 0.0)


@functools.cache
def _compiled_chunk_loss_and_grad():
    return torch.compile(chunk_loss_and_grad)


def _chunk_loss_and_grad_in_place(logits: torch.Tensor, targets: torch.Tensor, needs_grad: bool
                                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`chunk_loss_and_grad` eagerly, on one fp32 copy of the logits updated in place (the
    gradient only when `needs_grad`, else None)."""
    dtype = logits.dtype
    x = logits.float()
    del logits  # the caller keeps no reference: one copy of the chunk's logits from here on
    keep, safe_t, lse, loss = _token_losses(x, targets)
    if not needs_grad:
        return loss, None
    # d loss_sum / d logits = softmax - onehot(target), zero on ignored rows.
    grad_logits = torch.exp(x.sub_(lse[:, None]))
    del x
    grad_logits[torch.arange(len(targets), device=targets.device), safe_t] -= 1.0
    grad_logits.mul_(keep[:, None])
    return loss, grad_logits.to(dtype)


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """Loss and both gradients in the forward pass, chunk by chunk; backward only rescales.
    `body`: None for the eager in-place chunk math, else a `chunk_loss_and_grad` (compiled)."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                chunk_tokens: int, compute_dtype: torch.dtype, body=None):
        n = hidden.shape[0]
        needs_grad = hidden.requires_grad or weight.requires_grad
        w = weight.to(compute_dtype)
        token_loss = torch.zeros(n, dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if needs_grad else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if needs_grad else None
        for start in range(0, n, chunk_tokens):
            h = hidden[start:start + chunk_tokens].to(compute_dtype)  # [n_c, D]
            t = targets[start:start + chunk_tokens]  # [n_c]
            # the logits [n_c, V] (compute dtype) are unnamed here: the callee holds the only
            # reference, so the eager path frees them once it has its fp32 copy
            loss_c, g = (body(h @ w.T, t) if body is not None and needs_grad
                         else _chunk_loss_and_grad_in_place(h @ w.T, t, needs_grad))
            token_loss[start:start + chunk_tokens] = loss_c
            if g is not None:
                grad_hidden[start:start + chunk_tokens] = (g @ w).to(hidden.dtype)
                grad_weight.add_((g.T @ h).float())
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        ctx.mark_non_differentiable(token_loss)
        return token_loss.sum(), token_loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, grad_token_loss: torch.Tensor | None):
        grad_hidden, grad_weight = ctx.saved_tensors
        gh = grad_hidden * grad_loss.to(grad_hidden.dtype)
        gw = (grad_weight * grad_loss.float()).to(ctx.weight_dtype)
        return gh, gw, None, None, None, None


def fused_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *,
                               chunk_tokens: int = 4096,
                               compute_dtype: torch.dtype | None = None,
                               compiled_chunks: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token cross-entropy of `hidden @ weight.T` against `targets`, in chunks.

    Args:
        hidden: [N, D] (or [B, T, D]) final hidden states.
        weight: [V, D] lm_head weight.
        targets: [N] (or [B, T]) target ids; IGNORE_INDEX (-100) contributes nothing.
        chunk_tokens: rows per chunk; 0 = all rows in one chunk.
        compute_dtype: matmul dtype (bf16 under GPU autocast); softmax is always fp32.
            None = the autocast dtype when autocast is on for hidden's device, else hidden's.
        compiled_chunks: each chunk's softmax and gradient as one torch.compile'd function
            (`chunk_loss_and_grad`; a GPU option: compiling on a CPU takes tens of seconds).

    Returns:
        (loss_sum: scalar fp32 with gradient, token_loss: [N] fp32 per-token losses, detached,
        0 where ignored).
    """
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    if targets.shape[0] != hidden.shape[0]:
        raise ValueError(f"targets ({targets.shape[0]}) and hidden rows ({hidden.shape[0]}) differ")
    if compute_dtype is None:
        device_type = hidden.device.type
        compute_dtype = (torch.get_autocast_dtype(device_type)
                         if torch.is_autocast_enabled(device_type) else hidden.dtype)
    chunk = chunk_tokens if chunk_tokens > 0 else max(1, hidden.shape[0])
    body = _compiled_chunk_loss_and_grad() if compiled_chunks else None
    with torch.autocast(hidden.device.type, enabled=False):
        return _FusedLinearCrossEntropy.apply(hidden, weight, targets, chunk, compute_dtype, body)


def full_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor,
                       targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`fused_linear_cross_entropy`'s contract on full logits: (loss_sum with gradient,
    token_loss [N] fp32 detached, 0 where ignored). The matmul runs in the autocast dtype when
    autocast is on, the softmax in fp32."""
    hidden = hidden.reshape(-1, hidden.shape[-1])
    logits = (hidden @ weight.T).float()
    token_loss = F.cross_entropy(logits, targets.reshape(-1), ignore_index=IGNORE_INDEX,
                                 reduction="none")
    return token_loss.sum(), token_loss.detach()


@functools.cache
def _compiled_full_cross_entropy():
    return torch.compile(full_cross_entropy)


def compiled_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor,
                           targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`full_cross_entropy` through torch.compile (compiled once per process, on first use;
    new shapes recompile with dynamic sizes)."""
    return _compiled_full_cross_entropy()(hidden, weight, targets)


def reference_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Unfused summed cross-entropy (full logits), for tests and benchmarks."""
    logits = hidden.reshape(-1, hidden.shape[-1]) @ weight.T
    return F.cross_entropy(logits.float(), targets.reshape(-1), ignore_index=IGNORE_INDEX,
                           reduction="sum")
