"""The Triton kernels of `youtu.model.decode_attention` (see its docstring for the design and
the shape legend). This module imports triton at the top, so only `decode_attention._kernels()`
imports it, on first use: CPU-only installs never need triton. Under Triton's interpreter
(`TRITON_INTERPRET=1` before triton's import, the tests' `interpreter` fixture) the same
kernels run on the CPU in fp32."""

import triton
import triton.language as tl


@triton.jit
def split_kernel(Q, KV, Rows, Lens, O, LSE, New, scale_log2, H, chunk,
                 s_qg, s_qh, s_kn, s_ks, s_og, s_op, s_oh, s_lg, s_lp, s_ng,
                 C: tl.constexpr, R: tl.constexpr, BLOCK_H: tl.constexpr,
                 BLOCK_N: tl.constexpr, IEEE: tl.constexpr, WRITE: tl.constexpr,
                 GDC: tl.constexpr):
    g = tl.program_id(0)
    split = tl.program_id(1)
    length = tl.load(Lens + g).to(tl.int32)
    row = tl.load(Rows + g).to(tl.int64)
    start = split * chunk
    end = tl.minimum(start + chunk, length)
    last = length - 1
    # With WRITE the slab's slot `last` is this step's own row, not yet stored: the tiles
    # stop before it and its split's program attends to it from registers after the loop. (The
    # row swapped into every tile took each tile through registers; with the first tile also
    # held across the wait below, the decode step's sm_90 build (BLOCK_N 32, 2 stages, 4 warps)
    # needed 255 registers a thread and spilled: 2 programs an SM. Now 168: 3; ptxas -v.)
    stop = tl.minimum(end, last) if WRITE else end
    offs_h = tl.arange(0, BLOCK_H)
    offs_c = tl.arange(0, C)
    offs_r = tl.arange(0, R)
    mask_h = offs_h < H
    kv_ptr = KV + row * s_kn
    if GDC:  # launched with launch_pdl: the split's first tile fetched into L2 (not into
        # registers, held across the wait), then wait for the kernel before (q, new) and let
        # the next start. L2 is where every write lands, so the prefetch cannot read stale
        # lines whatever the kernel before writes.
        _prefetch_tile(kv_ptr, start, last, s_ks, C + R, BLOCK_N)
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()
    q_ptr = Q + g.to(tl.int64) * s_qg + offs_h[:, None] * s_qh
    q_lat = tl.load(q_ptr + offs_c[None, :], mask=mask_h[:, None], other=0.0)  # [BH, C]
    q_rope = tl.load(q_ptr + C + offs_r[None, :], mask=mask_h[:, None], other=0.0)  # [BH, R]
    m_i = tl.full([BLOCK_H], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
    acc = tl.zeros([BLOCK_H, C], dtype=tl.float32)
    for s0 in range(start, stop, BLOCK_N):
        offs_n = s0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < stop
        slot = kv_ptr + offs_n[:, None].to(tl.int64) * s_ks
        k_lat = tl.load(slot + offs_c[None, :], mask=mask_n[:, None], other=0.0)  # [BN, C]
        k_rope = tl.load(slot + C + offs_r[None, :], mask=mask_n[:, None], other=0.0)  # [BN, R]
        if IEEE:
            s = tl.dot(q_lat, tl.trans(k_lat), input_precision="ieee")
            s += tl.dot(q_rope, tl.trans(k_rope), input_precision="ieee")
        else:
            s = tl.dot(q_lat, tl.trans(k_lat))
            s += tl.dot(q_rope, tl.trans(k_rope))
        s = tl.where(mask_n[None, :], s * scale_log2, float("-inf"))  # [BH, BN], log2 units
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        if IEEE:
            acc = acc * alpha[:, None] + tl.dot(p.to(k_lat.dtype), k_lat, input_precision="ieee")
        else:
            acc = acc * alpha[:, None] + tl.dot(p.to(k_lat.dtype), k_lat)
        m_i = m_new
    if WRITE:
        if (last >= start) & (last < end):  # this split holds the step's own row: store it
            # and attend to it (one more column of the online softmax)
            new_ptr = New + g.to(tl.int64) * s_ng
            new_lat = tl.load(new_ptr + offs_c)  # [C]
            new_rope = tl.load(new_ptr + C + offs_r)  # [R]
            last_slot = kv_ptr + last.to(tl.int64) * s_ks
            tl.store(last_slot + offs_c, new_lat)
            tl.store(last_slot + C + offs_r, new_rope)
            s_new = (tl.sum(q_lat.to(tl.float32) * new_lat.to(tl.float32)[None, :], axis=1)
                     + tl.sum(q_rope.to(tl.float32) * new_rope.to(tl.float32)[None, :], axis=1)
                     ) * scale_log2  # [BH]
            m_new = tl.maximum(m_i, s_new)
            alpha = tl.exp2(m_i - m_new)
            p_new = tl.exp2(s_new - m_new)
            l_i = l_i * alpha + p_new
            acc = acc * alpha[:, None] + p_new[:, None] * new_lat.to(tl.float32)[None, :]
            m_i = m_new
    nonempty = l_i > 0
    out = acc / tl.where(nonempty, l_i, 1.0)[:, None]
    lse = tl.where(nonempty, m_i + tl.log2(tl.where(nonempty, l_i, 1.0)), float("-inf"))
    o_ptr = O + g.to(tl.int64) * s_og + split * s_op + offs_h[:, None] * s_oh + offs_c[None, :]
    tl.store(o_ptr, out, mask=mask_h[:, None])
    tl.store(LSE + g * s_lg + split * s_lp + offs_h, lse, mask=mask_h)


@triton.jit
def _prefetch_tile(kv_ptr, s0, last, s_ks, D: tl.constexpr, BLOCK_N: tl.constexpr):
    """Slots s0 .. s0 + BLOCK_N - 1 of one slab row (clamped to `last`, a slot the row holds)
    fetched into L2, one `prefetch` per 128-byte line of each slot's D values."""
    BYTES: tl.constexpr = kv_ptr.dtype.element_ty.primitive_bitwidth // 8
    LINES: tl.constexpr = (D * BYTES + 127) // 128
    tl.static_assert(LINES <= 32)
    offs_n = tl.minimum(s0 + tl.arange(0, BLOCK_N), last)
    offs_l = tl.minimum(tl.arange(0, 32), LINES - 1) * (128 // BYTES)
    lines = kv_ptr + offs_n[:, None].to(tl.int64) * s_ks + offs_l[None, :]
    tl.inline_asm_elementwise("prefetch.global.L2 [$1];\n\tmov.u32 $0, 0;", "=r,l", [lines],
                              dtype=tl.int32, is_pure=False, pack=1)


@triton.jit
def _combine_splits(base, lse_ptr, P, s_op, s_lp, offs_c, WIDTH: tl.constexpr,
                    BLOCK_P: tl.constexpr):
    """One head's P split partials (`base`: its [P, C] fp32 rows at stride s_op; `lse_ptr`:
    their log2-sum-exps at stride s_lp) weighted by exp2(lse - max) over the latent columns
    offs_c ([WIDTH] of them), read BLOCK_P splits at a time: (weighted sum [WIDTH], sum of
    the weights). Splits past a group's length hold lse = -inf and weigh nothing; the max is
    finite, as split 0 always holds slot 0."""
    m = float("-inf")
    for p0 in range(0, P, BLOCK_P):
        offs_p = p0 + tl.arange(0, BLOCK_P)
        m = tl.maximum(m, tl.max(tl.load(lse_ptr + offs_p * s_lp, mask=offs_p < P,
                                         other=float("-inf")), axis=0))
    total = tl.zeros([WIDTH], dtype=tl.float32)
    norm = 0.0
    for p0 in range(0, P, BLOCK_P):
        offs_p = p0 + tl.arange(0, BLOCK_P)
        w = tl.exp2(tl.load(lse_ptr + offs_p * s_lp, mask=offs_p < P, other=float("-inf")) - m)
        tile = tl.load(base + offs_p[:, None] * s_op + offs_c[None, :],
                       mask=(offs_p < P)[:, None] & (w > 0)[:, None], other=0.0)
        total += tl.sum(w[:, None] * tile, axis=0)
        norm += tl.sum(w, axis=0)
    return total, norm


@triton.jit
def combine_kernel(O, LSE, Out, P, s_og, s_op, s_oh, s_lg, s_lp, s_outg, s_outh,
                   BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    # One program per (group, head, BLOCK_C slice of the latent): the splits are read
    # BLOCK_P at a time as [BLOCK_P, BLOCK_C] tiles (a serial loop over 512 splits cost
    # ~200 us per layer at 32k).
    g = tl.program_id(0)
    h = tl.program_id(1)
    offs_c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    total, norm = _combine_splits(O + g.to(tl.int64) * s_og + h * s_oh, LSE + g * s_lg + h, P,
                                  s_op, s_lp, offs_c, BLOCK_C, BLOCK_P)
    tl.store(Out + g * s_outg + h * s_outh + offs_c, (total / norm).to(Out.dtype.element_ty))


@triton.jit
def combine_values_kernel(O, LSE, Q, W, Out, P, Dv, s_og, s_op, s_oh, s_lg, s_lp,
                          s_wh, s_wv, s_outg, C: tl.constexpr, BLOCK_P: tl.constexpr,
                          BLOCK_V: tl.constexpr, GDC: tl.constexpr):
    # One program per (group, head, BLOCK_V of the head's Dv outputs): the combine of the
    # head's splits over the whole latent (rounded to q's dtype, as the unfused output is),
    # then its W_uv rows [BLOCK_V, C] against it. Each of a head's Dv / BLOCK_V programs
    # redoes the head's combine (P x C fp32 from L2), so only few splits take this kernel.
    g = tl.program_id(0)
    h = tl.program_id(1)
    offs_v = tl.program_id(2) * BLOCK_V + tl.arange(0, BLOCK_V)
    offs_c = tl.arange(0, C)
    mask_v = offs_v < Dv
    w_uv = tl.load(W + h * s_wh + offs_v[:, None] * s_wv + offs_c[None, :],
                   mask=mask_v[:, None], other=0.0)  # [BLOCK_V, C], a weight: before the wait
    if GDC:  # launched with launch_pdl: wait for the split kernel, let the next kernel start
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()
    total, norm = _combine_splits(O + g.to(tl.int64) * s_og + h * s_oh, LSE + g * s_lg + h, P,
                                  s_op, s_lp, offs_c, C, BLOCK_P)
    o = (total / norm).to(Q.dtype.element_ty).to(tl.float32)  # [C]
    y = tl.sum(w_uv.to(tl.float32) * o[None, :], axis=1)
    tl.store(Out + g * s_outg + h * Dv + offs_v, y.to(Out.dtype.element_ty), mask=mask_v)


@triton.jit
def queries_kernel(Q, KV, Cos, Sin, W, G, Out, New, eps, H, Dn, s_qb, s_kvb, s_cb, s_wh, s_wd,
                   C: tl.constexpr, R: tl.constexpr, BLOCK_D: tl.constexpr,
                   BLOCK_C: tl.constexpr, GDC: tl.constexpr):
    # One program per (row, head, BLOCK_C of the latent): q_latent = q_nope @ W_uk[h] for
    # its latent slice; the first slice's program also rotates the head's q_rope, and head
    # 0's first program builds the row's new cache entry (kv_a_layernorm, rotated k_rope).
    b = tl.program_id(0)
    h = tl.program_id(1)
    cb = tl.program_id(2)
    offs_d = tl.arange(0, BLOCK_D)
    offs_c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    half = tl.arange(0, R // 2)
    w_uk = tl.load(W + h * s_wh + offs_d[:, None] * s_wd + offs_c[None, :],
                   mask=(offs_d < Dn)[:, None], other=0.0)  # [BLOCK_D, BLOCK_C], a weight
    if GDC:  # launched with launch_pdl: wait for the GEMV before (q, kv), let the next start
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()
    q_head = Q + b.to(tl.int64) * s_qb + h * (Dn + R)
    q_nope = tl.load(q_head + offs_d, mask=offs_d < Dn, other=0.0).to(tl.float32)
    q_lat = tl.sum(q_nope[:, None] * w_uk.to(tl.float32), axis=0)
    out_head = Out + (b.to(tl.int64) * H + h) * (C + R)
    tl.store(out_head + offs_c, q_lat.to(Out.dtype.element_ty))
    cos = tl.load(Cos + b * s_cb + half).to(tl.float32)
    sin = tl.load(Sin + b * s_cb + half).to(tl.float32)
    if cb == 0:  # rotate interleaved pairs into [evens | odds], as `layers.apply_rope`
        x1 = tl.load(q_head + Dn + 2 * half).to(tl.float32)
        x2 = tl.load(q_head + Dn + 2 * half + 1).to(tl.float32)
        tl.store(out_head + C + half, (x1 * cos - x2 * sin).to(Out.dtype.element_ty))
        tl.store(out_head + C + R // 2 + half, (x2 * cos + x1 * sin).to(Out.dtype.element_ty))
        if h == 0:  # the new cache row: RMSNorm of the latent (`layers.rms_norm`), k_rope
            kv_row = KV + b.to(tl.int64) * s_kvb
            lat = tl.load(kv_row + tl.arange(0, C)).to(tl.float32)
            inv = 1.0 / tl.sqrt(tl.sum(lat * lat, axis=0) / C + eps)
            normed = (lat * inv).to(New.dtype.element_ty).to(tl.float32)
            g = tl.load(G + tl.arange(0, C)).to(tl.float32)
            new_row = New + b.to(tl.int64) * (C + R)
            tl.store(new_row + tl.arange(0, C), (g * normed).to(New.dtype.element_ty))
            k1 = tl.load(kv_row + C + 2 * half).to(tl.float32)
            k2 = tl.load(kv_row + C + 2 * half + 1).to(tl.float32)
            tl.store(new_row + C + half, (k1 * cos - k2 * sin).to(New.dtype.element_ty))
            tl.store(new_row + C + R // 2 + half,
                     (k2 * cos + k1 * sin).to(New.dtype.element_ty))
