"""The Triton kernel of `youtu.model.decode_gemv` (see its docstring for the design, the fused
prologue/epilogue and the shape legend). This module imports triton at the top, so only
`decode_gemv._kernels()` imports it, on first use: CPU-only installs never need triton."""

import triton
import triton.language as tl


@triton.jit
def load_tile(w_rows, k0, K, mask_n, up_shift, BLOCK_K: tl.constexpr, EPILOGUE: tl.constexpr):
    """Weight columns k0 .. k0 + BLOCK_K - 1 of the program's rows, and (swiglu) of their
    up rows `up_shift` elements below; else the gate tile twice."""
    offs_k = k0 + tl.arange(0, BLOCK_K)
    w_mask = mask_n[:, None] & (offs_k < K)[None, :]
    w = tl.load(w_rows + offs_k[None, :], mask=w_mask, other=0.0)
    wu = w
    if EPILOGUE == 2:
        wu = tl.load(w_rows + up_shift + offs_k[None, :], mask=w_mask, other=0.0)
    return w, wu


@triton.jit
def product(acc, xk, w, DOT: tl.constexpr, IEEE: tl.constexpr):
    """acc + xk @ w^T: tensor cores (rows padded to 16) or a multiply + reduce over K."""
    if DOT:
        if IEEE:
            acc += tl.dot(xk, tl.trans(w), input_precision="ieee")
        else:
            acc += tl.dot(xk, tl.trans(w))
    else:
        acc += tl.sum(xk.to(tl.float32)[:, None, :] * w.to(tl.float32)[None, :, :], axis=2)
    return acc


@triton.jit
def tile_step(acc, acc_up, x_rows, w, wu, k0, K, mask_b, inv, NormW, BLOCK_K: tl.constexpr,
              PROLOGUE: tl.constexpr, EPILOGUE: tl.constexpr, DOT: tl.constexpr,
              IEEE: tl.constexpr):
    """One K tile: its x columns (normed: layers.rms_norm, weight * (x * rsqrt(mean(x^2)
    + eps)).to(dtype)) against the weight tile, and (swiglu) the up tile."""
    offs_k = k0 + tl.arange(0, BLOCK_K)
    mask_k = offs_k < K
    xk = tl.load(x_rows + offs_k[None, :], mask=mask_b[:, None] & mask_k[None, :], other=0.0)
    if PROLOGUE == 1:
        g = tl.load(NormW + offs_k, mask=mask_k, other=0.0).to(tl.float32)
        xn = (xk.to(tl.float32) * inv[:, None]).to(w.dtype).to(tl.float32)
        xk = (g[None, :] * xn).to(w.dtype)
    acc = product(acc, xk, w, DOT, IEEE)
    if EPILOGUE == 2:  # the up row of feature n sits I rows below its gate row
        acc_up = product(acc_up, xk, wu, DOT, IEEE)
    return acc, acc_up


@triton.jit
def gemv_kernel(X, W, Out, Res, NormW, B, N, K, eps, s_xb, s_wn, s_ob, s_rb, up_offset,
                PROLOGUE: tl.constexpr, EPILOGUE: tl.constexpr, BLOCK_B: tl.constexpr,
                IEEE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                DOT: tl.constexpr, PDL: tl.constexpr, GDC: tl.constexpr):
    ROWS: tl.constexpr = 16 if DOT else BLOCK_B  # tl.dot takes >= 16 rows: pad B
    dt = W.dtype.element_ty
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    offs_b = tl.arange(0, ROWS)
    mask_b = offs_b < B
    x_rows = X + offs_b[:, None] * s_xb
    w_rows = W + offs_n[:, None].to(tl.int64) * s_wn
    if PDL:  # the first weight tile before anything an earlier kernel writes (x, residual)
        w0, wu0 = load_tile(w_rows, 0, K, mask_n, up_offset * s_wn, BLOCK_K, EPILOGUE)
        if GDC:  # launched with launch_pdl: wait for the kernel before, let the next start
            tl.extra.cuda.gdc_wait()
            tl.extra.cuda.gdc_launch_dependents()
    inv = tl.zeros([ROWS], dtype=tl.float32)
    if PROLOGUE == 1:  # RMSNorm: each program redoes its rows' sum of squares (x is in L2)
        ss = tl.zeros([ROWS], dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            xk = tl.load(x_rows + offs_k[None, :], mask=mask_b[:, None] & (offs_k < K)[None, :],
                         other=0.0).to(tl.float32)
            ss += tl.sum(xk * xk, axis=1)
        inv = tl.rsqrt(ss / K + eps)
    acc = tl.zeros([ROWS, BLOCK_N], dtype=tl.float32)
    acc_up = tl.zeros([ROWS, BLOCK_N], dtype=tl.float32)
    first = 0
    if PDL:  # the early tile, peeled off the loop: a load under an `if` in the loop body
        # would keep Triton's pipeliner from prefetching the loop's weight tiles
        acc, acc_up = tile_step(acc, acc_up, x_rows, w0, wu0, 0, K, mask_b, inv, NormW,
                                BLOCK_K, PROLOGUE, EPILOGUE, DOT, IEEE)
        first = BLOCK_K
    for k0 in range(first, K, BLOCK_K):
        w, wu = load_tile(w_rows, k0, K, mask_n, up_offset * s_wn, BLOCK_K, EPILOGUE)
        acc, acc_up = tile_step(acc, acc_up, x_rows, w, wu, k0, K, mask_b, inv, NormW,
                                BLOCK_K, PROLOGUE, EPILOGUE, DOT, IEEE)
    y = acc.to(dt).to(tl.float32)  # F.linear's output, rounded
    out_mask = mask_b[:, None] & mask_n[None, :]
    if EPILOGUE == 1:
        r = tl.load(Res + offs_b[:, None] * s_rb + offs_n[None, :], mask=out_mask, other=0.0)
        y = y + r.to(tl.float32)
    if EPILOGUE == 2:  # F.silu(gate) rounded, times up rounded
        silu = (y / (1.0 + tl.exp(-y))).to(dt).to(tl.float32)
        y = silu * acc_up.to(dt).to(tl.float32)
    tl.store(Out + offs_b[:, None] * s_ob + offs_n[None, :], y.to(dt), mask=out_mask)

