"""The fused absorbed-MLA decode kernel (`youtu.model.decode_attention`) against the plain path.

GPU tests (`-m gpu`, on the H200): the kernel equals the plain SDPA path (dense boolean mask over
gathered rows) on ragged batches, the 2B's shapes in bf16, lengths 1..40k, batch 1..64; slots past
each length hold garbage that must not leak in; the model's decode forward with the kernel equals
the 'sdpa' reference for one and several query tokens; given each token's new row, the kernel
stores it and attends to it. CPU: the module imports without triton; the new-row store under
Triton's interpreter where triton is installed (not in CI).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from youtu.model import decode_attention
from youtu.model.attention import absorbed_mask


def test_importable_and_declines_cpu_and_odd_shapes():
    assert not decode_attention.available(torch.device("cpu"))
    assert decode_attention.supports(512, 64, 16) and decode_attention.supports(32, 16, 4)
    assert not decode_attention.supports(500, 64, 16) and not decode_attention.supports(512, 8, 16)
    # ~4 programs per SM; a long single sequence splits, a full batch does not
    assert decode_attention.num_splits(1, 131072, 32, 132) == 528
    assert decode_attention.num_splits(1, 32768, 32, 132) == 256  # >= 128 slots per split
    assert decode_attention.num_splits(64, 32768, 32, 132) == 8
    assert decode_attention.num_splits(1, 10, 32, 132) == 1
    # few groups, short caches (latency-bound): one 32-slot tile per split, up to one program
    # per SM and LATENCY_MAX_SPLITS; where the groups fill the SMs the byte rule stays
    assert decode_attention.num_splits(1, 256, 32, 132) == 8
    assert decode_attention.num_splits(1, 1024, 32, 132) == 32
    assert decode_attention.num_splits(1, 4096, 32, 132) == 64
    assert decode_attention.num_splits(8, 256, 32, 132) == 8
    assert decode_attention.num_splits(32, 640, 32, 132) == 5
    assert decode_attention.num_splits(64, 256, 32, 132) == 2


def _plain(q, kv, rows, lengths, scale, C):
    """Today's plain path: gather the rows, SDPA with the absorbed boolean mask."""
    B, H, D = q.shape
    S = int(lengths.max())
    mask = absorbed_mask((lengths - 1)[:, None], S, H)  # [B, 1, H, S]
    k = kv.index_select(0, rows)[:, None, :S]  # [B, 1, S, D]
    return F.scaled_dot_product_attention(q[:, None], k, k[..., :C], attn_mask=mask,
                                          scale=scale)[:, 0]


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


CASES = {  # batch -> lengths (ragged; slot counts not multiples of the kernel's tiles)
    "b1-40k": [40_000],
    "b1-1": [1],
    "b3-mixed": [1, 777, 12_345],
    "b4-short": [5, 100, 123, 77],  # one split: no combine, stored in bf16 directly
    "b64-ragged": None,  # 64 random lengths in 1..40k
}


@pytest.mark.gpu
@pytest.mark.parametrize("case", list(CASES))
@torch.no_grad()
def test_kernel_equals_plain_sdpa_on_ragged_batches(case):
    g = torch.Generator(device="cuda").manual_seed(len(case))
    lengths = CASES[case]
    if lengths is None:
        lengths = torch.randint(1, 40_001, (64,), generator=g, device="cuda").tolist()
        lengths[0], lengths[1] = 1, 40_000
    B, H, C, R = len(lengths), 16, 512, 64
    N, S = B + 3, max(lengths) + 5
    lengths = torch.tensor(lengths, device="cuda")
    rows = torch.randperm(N, generator=g, device="cuda")[:B]  # rows need not be 0..B-1
    kv = torch.randn(N, S, C + R, generator=g, device="cuda", dtype=torch.bfloat16)
    # garbage past each length (a reused row's stale slots): must not leak into the output
    past = torch.arange(S, device="cuda")[None] >= lengths[:, None]
    kv[rows] = torch.where(past[..., None], torch.full_like(kv[rows], 30.0), kv[rows])
    q = torch.randn(B, H, C + R, generator=g, device="cuda", dtype=torch.bfloat16)
    scale = 192 ** -0.5 * 4  # sharper than uniform: the softmax is not near-flat
    out = decode_attention.mla_decode_attention(q, kv, rows, lengths, scale, S, R)
    plain = _plain(q, kv, rows, lengths, scale, C)
    ref = _plain(q.double(), kv.double(), rows, lengths, scale, C)  # fp64 ground truth
    assert out.shape == (B, H, C) and out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert _rel(out, plain) < 1e-2, _rel(out, plain)
    assert _rel(out, ref) < 1e-2 and _rel(out, ref) < 3 * _rel(plain, ref) + 1e-3
    # a bound on the grid (CUDA-graph length bucket) far above every length changes nothing
    wide = decode_attention.mla_decode_attention(q, kv, rows, lengths, scale, S, R, splits=997)
    assert _rel(wide, out) < 1e-2


def _with_new_rows(lengths, S, splits, device, dtype, H=4, C=32, R=16, pad=0, seed=0, pdl=False):
    """The kernel given each group's new row (`new=`) against writing the rows first and the
    fp64 plain path; the last `pad` groups share one row at length 1 (a graph's padding)."""
    g = torch.Generator(device=device).manual_seed(seed)
    B, N = len(lengths), len(lengths) + 2
    lengths = torch.tensor(lengths, device=device)
    rows = torch.randperm(N, generator=g, device=device)[:B]
    if pad:
        rows[-pad:] = rows[-1]
    kv = torch.randn(N, S, C + R, generator=g, device=device, dtype=dtype)
    q = torch.randn(B, H, C + R, generator=g, device=device, dtype=dtype)
    new = torch.randn(B, C + R, generator=g, device=device, dtype=dtype)
    written = kv.clone()
    written[rows, lengths - 1] = new
    out = decode_attention.mla_decode_attention(q, kv, rows, lengths, 0.3, S, R, splits=splits,
                                                new=new, pdl=pdl)
    real = slice(0, B - pad)
    ref = _plain(q.double(), written.double(), rows, lengths, 0.3, C)
    assert torch.equal(kv[rows[real]], written[rows[real]])  # the kernel stored the rows
    assert torch.equal(kv[~torch.isin(torch.arange(N, device=device), rows)],
                       written[~torch.isin(torch.arange(N, device=device), rows)])
    return _rel(out[real], ref[real])


# (lengths, slots, forced splits, padded groups): one split; several with the new row in a
# middle split; one tile per split; graph padding on a shared row; the new row first in its
# split (16-slot splits: its split's tile loop is empty) or last
WRITE_CASES = [([5, 100, 123, 77], 128, None, 0), ([250], 256, 3, 0), ([90, 1], 256, 997, 0),
               ([1, 300, 200, 1, 1], 300, None, 2), ([97, 33, 16], 128, 997, 0)]


@pytest.mark.parametrize("case", range(len(WRITE_CASES)))
def test_the_kernel_stores_each_new_row_and_attends_to_it_interpreted(interpreter, case):
    """CPU, Triton's interpreter, fp32 (skips without triton, as in CI)."""
    lengths, S, splits, pad = WRITE_CASES[case]
    assert _with_new_rows(lengths, S, splits, "cpu", torch.float32, pad=pad) < 1e-5


def test_a_long_cache_combines_in_wide_split_tiles_over_latent_slices_interpreted(interpreter):
    """CPU, Triton's interpreter, fp32: 44 splits take the plain combine's 64-split tiles, the
    latent (64 here) then in two 32-wide slices (COMBINE_MAX_BLOCK_P)."""
    assert _with_new_rows([700, 3, 650], 704, 64, "cpu", torch.float32, C=64) < 1e-5


@pytest.mark.gpu
@pytest.mark.parametrize("pdl", [False, True], ids=["", "pdl"])
@pytest.mark.parametrize("case", range(len(WRITE_CASES)))
@torch.no_grad()
def test_the_kernel_stores_each_new_row_and_attends_to_it(case, pdl):
    lengths, S, splits, pad = WRITE_CASES[case]
    err = _with_new_rows(lengths, S, splits, "cuda", torch.bfloat16, H=16, C=512, R=64, pad=pad,
                         pdl=pdl)
    assert err < 1e-2, err


def _with_values(lengths, S, splits, device, dtype, H=4, C=32, R=16, Dn=8, Dv=16, seed=0):
    """The kernel with W_uv (`w_uv=`, a strided view as kv_b_proj's value rows are) against
    the fp64 plain path mapped through the same W_uv, and against the call without it."""
    g = torch.Generator(device=device).manual_seed(seed)
    B, N = len(lengths), len(lengths) + 1
    lengths = torch.tensor(lengths, device=device)
    rows = torch.randperm(N, generator=g, device=device)[:B]
    kv = torch.randn(N, S, C + R, generator=g, device=device, dtype=dtype)
    q = torch.randn(B, H, C + R, generator=g, device=device, dtype=dtype)
    kv_b = torch.randn(H, Dn + Dv, C, generator=g, device=device, dtype=dtype) * C ** -0.5
    w_uv = kv_b[:, Dn:]  # [H, Dv, C], row stride (Dn + Dv) * C
    got = decode_attention.mla_decode_attention(q, kv, rows, lengths, 0.3, S, R, splits=splits,
                                                w_uv=w_uv)
    latent = decode_attention.mla_decode_attention(q, kv, rows, lengths, 0.3, S, R,
                                                   splits=splits)
    unfused = torch.einsum("ghc,hvc->ghv", latent, w_uv)
    ref = torch.einsum("ghc,hvc->ghv", _plain(q.double(), kv.double(), rows, lengths, 0.3, C),
                       w_uv.double())
    assert got.shape == (B, H, Dv) and got.dtype == dtype
    assert got.is_contiguous(), got.stride()  # callers view it as o_proj's [B, T, H * Dv]
    return _rel(got, ref), _rel(got, unfused)


# (lengths, slots, forced splits): one split; a few (the combine applies W_uv); more than
# VALUES_MAX_SPLITS (combine, then the bmm; with several groups its output must still come back
# contiguous, as the fused kernel's does)
VALUES_CASES = [([5, 30, 1], 64, 1), ([250, 3], 256, 3), ([90, 1], 256, 997), ([300], 320, 20),
                ([600, 7], 640, 20)]


@pytest.mark.parametrize("case", range(len(VALUES_CASES)))
def test_the_combine_maps_the_outputs_through_w_uv_interpreted(interpreter, case):
    """CPU, Triton's interpreter, fp32 (skips without triton, as in CI)."""
    lengths, S, splits = VALUES_CASES[case]
    to_ref, to_unfused = _with_values(lengths, S, splits, "cpu", torch.float32)
    assert to_ref < 1e-5 and to_unfused < 1e-5, (to_ref, to_unfused)


@pytest.mark.gpu
@pytest.mark.parametrize("case", range(len(VALUES_CASES)))
@torch.no_grad()
def test_the_combine_maps_the_outputs_through_w_uv(case):
    lengths, S, splits = VALUES_CASES[case]
    to_ref, to_unfused = _with_values(lengths, S, splits, "cuda", torch.bfloat16, H=16, C=512,
                                      R=64, Dn=128, Dv=128)
    assert to_ref < 1e-2 and to_unfused < 1e-2, (to_ref, to_unfused)


def _queries_case(device, dtype, cfg_name="tiny", B=3, seed=0):
    """`mla_decode_queries` against the model's torch ops (`absorbed_queries`) for random
    projections of B rows at ragged positions; q and kv as column slices of one buffer, as the
    fused q_kv_a GEMV leaves them. Returns the two relative errors (q_abs, new rows)."""
    from youtu.model import ModelConfig, YoutuForCausalLM

    cfg = getattr(ModelConfig, cfg_name)()
    cfg.vocab_size, cfg.num_hidden_layers = 256, 1
    torch.manual_seed(seed)
    model = YoutuForCausalLM(cfg).to(device=device, dtype=dtype).eval()
    model.init_weights()
    attn = model.model.layers[0].self_attn
    with torch.no_grad():
        attn.kv_a_layernorm.weight.uniform_(0.5, 1.5)
    H, R = cfg.num_attention_heads, cfg.qk_rope_head_dim
    Q, KV = H * (cfg.qk_nope_head_dim + R), cfg.kv_lora_rank + R
    g = torch.Generator(device=device).manual_seed(seed)
    both = torch.randn(B, Q + KV + 5, generator=g, device=device, dtype=dtype)
    q, kv = both[:, :Q], both[:, Q:Q + KV]
    positions = torch.tensor([[7], [0], [1234]][:B], device=device)
    cos, sin = model._rope(positions, dtype)
    w_uk, _ = attn._w_uk_uv()
    norm = attn.kv_a_layernorm
    q_abs, new = decode_attention.mla_decode_queries(q, kv, cos, sin, w_uk, norm.weight, norm.eps, R)
    want_q, want_new = attn.absorbed_queries(q[:, None], kv[:, None], cos, sin)
    assert q_abs.shape == (B, H, cfg.kv_lora_rank + R) and new.shape == (B, KV)
    return _rel(q_abs, want_q[:, 0]), _rel(new, want_new[:, 0])


@torch.no_grad()
def test_the_queries_kernel_equals_the_torch_ops_interpreted(interpreter):
    """CPU, Triton's interpreter, fp32: q_abs (W_uk absorption, q RoPE) and the new cache
    rows (kv_a_layernorm, k RoPE) equal `absorbed_queries`."""
    to_q, to_new = _queries_case("cpu", torch.float32)
    assert to_q < 1e-5 and to_new < 1e-5, (to_q, to_new)


@pytest.mark.parametrize("gemv", ["triton", "triton+pdl"])
@torch.no_grad()
def test_decode_step_with_every_kernel_equals_the_plain_step_interpreted(interpreter, monkeypatch,
                                                                         gemv):
    """graphs.decode_step with the GEMV kernels, the queries kernel and the attention kernel
    (applying W_uv in its combine) against the plain step: tiny preset, fp32, ragged rows;
    with `+pdl` every one of those kernels is asked for its dependent launch."""
    from youtu.model import LatentCache, ModelConfig, YoutuForCausalLM, decode_gemv
    from youtu.serve import graphs

    cfg = ModelConfig.tiny(vocab_size=512)
    cfg.num_hidden_layers = 2
    torch.manual_seed(0)
    model = YoutuForCausalLM(cfg).eval()
    model.init_weights()
    cache = LatentCache(cfg, 4, 64, device="cpu", dtype=torch.float32)
    lens = [40, 9, 1]
    for row, n in enumerate(lens):
        ids = torch.randint(0, 512, (1, n), generator=torch.Generator().manual_seed(row))
        model(ids, cache=cache, cache_rows=torch.tensor([row]))
    assert graphs.fuse_decode_weights(model)
    ids = torch.randint(0, 512, (3, 1), generator=torch.Generator().manual_seed(9))
    pos, rows = torch.tensor(lens)[:, None], torch.tensor([0, 1, 2])
    plain_cache = LatentCache(cfg, 4, 64, device="cpu", dtype=torch.float32)
    plain_cache.kv.copy_(cache.kv)
    plain = graphs.decode_step(model, plain_cache, ids, pos, rows, 41)
    monkeypatch.setattr(decode_attention, "available", lambda device: True)
    monkeypatch.setattr(decode_gemv, "available", lambda device: True)
    calls, asked = [], []

    def spy(real):
        return lambda *a, **k: asked.append((real.__name__, k.get("pdl", False))) or real(*a, **k)
    real = graphs.kernel_layer_queries
    monkeypatch.setattr(graphs, "kernel_layer_queries",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    for name in ("mla_decode_queries", "mla_decode_attention"):
        monkeypatch.setattr(decode_attention, name, spy(getattr(decode_attention, name)))
    kernels = graphs.decode_step(model, cache, ids, pos, rows, 41, fused=True, gemv=gemv)
    assert len(calls) == cfg.num_hidden_layers
    pdl = gemv.endswith("+pdl")
    assert sorted(asked) == sorted([("mla_decode_queries", pdl), ("mla_decode_attention", pdl)]
                                   * cfg.num_hidden_layers), asked
    torch.testing.assert_close(kernels, plain, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(cache.kv, plain_cache.kv, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@torch.no_grad()
def test_the_queries_kernel_equals_the_torch_ops_at_the_2b_shapes():
    to_q, to_new = _queries_case("cuda", torch.bfloat16, "youtu_2b")
    assert to_q < 1e-2 and to_new < 1e-2, (to_q, to_new)


@pytest.mark.gpu
@torch.no_grad()
def test_kernel_in_fp32_matches_float64():
    g = torch.Generator(device="cuda").manual_seed(5)
    B, H, C, R, S = 5, 4, 32, 16, 300  # the tiny preset's shapes
    lengths = torch.tensor([1, 17, 300, 64, 65], device="cuda")
    kv = torch.randn(B, S, C + R, generator=g, device="cuda")
    q = torch.randn(B, H, C + R, generator=g, device="cuda")
    rows = torch.arange(B, device="cuda").flip(0)
    out = decode_attention.mla_decode_attention(q, kv, rows, lengths, 0.3, S, R)
    ref = _plain(q.double(), kv.double(), rows, lengths, 0.3, C)
    assert _rel(out, ref) < 1e-5


@pytest.mark.gpu
@pytest.mark.parametrize("T", [1, 4])
@torch.no_grad()
def test_model_decode_with_the_kernel_equals_the_sdpa_reference(T):
    """The decode forward (one token, and T=4 speculative-style tokens) through the model:
    impl 'auto' (kernel) vs 'sdpa' (plain path), ragged rows, bf16."""
    from youtu.model import LatentCache, ModelConfig, YoutuForCausalLM

    cfg = ModelConfig.small(vocab_size=4096)
    cfg.num_hidden_layers = 2
    torch.manual_seed(0)
    model = YoutuForCausalLM(cfg).cuda().to(torch.bfloat16).eval()
    model.init_weights()
    lens = [700, 33, 1]
    caches = [LatentCache(cfg, 4, 1024, device="cuda", dtype=torch.bfloat16) for _ in range(2)]
    rows = torch.tensor([3, 0, 1], device="cuda")
    outs = []
    for impl, cache in zip(("auto", "sdpa"), caches):
        model.set_attention_impl(impl)
        for b, n in enumerate(lens):
            ids = torch.randint(0, 4096, (1, n), generator=torch.Generator().manual_seed(b)).cuda()
            model(ids, cache=cache, cache_rows=rows[b:b + 1])
        nxt = torch.randint(0, 4096, (3, T), generator=torch.Generator().manual_seed(9)).cuda()
        pos = torch.tensor(lens, device="cuda")[:, None] + torch.arange(T, device="cuda")
        outs.append(model(nxt, positions=pos, cache=cache, cache_rows=rows).float())
    assert _rel(outs[0], outs[1]) < 2e-2, _rel(outs[0], outs[1])


@pytest.mark.parametrize("T", [1, 3])
@torch.no_grad()
def test_model_decode_steps_with_the_kernel_equal_the_plain_path_interpreted(interpreter,
                                                                            monkeypatch, T):
    """CPU, Triton's interpreter, fp32, the tiny preset: prompts, then three decode steps of
    T tokens a row through the model with the kernel (impl 'auto', the kernel storing each
    step's new rows when T = 1) against the plain path. A step reads the rows the steps
    before it stored."""
    from youtu.model import LatentCache, ModelConfig, YoutuForCausalLM

    cfg = ModelConfig.tiny(vocab_size=512)
    cfg.num_hidden_layers = 2
    torch.manual_seed(0)
    model = YoutuForCausalLM(cfg).eval()
    model.init_weights()
    lens, rows = [40, 9, 1], torch.tensor([3, 0, 1])
    caches = [LatentCache(cfg, 4, 64, device="cpu", dtype=torch.float32) for _ in range(2)]
    outs = {}
    for kernel, cache in zip((True, False), caches):
        monkeypatch.setattr(decode_attention, "available", lambda device, k=kernel: k)
        for b, n in enumerate(lens):
            ids = torch.randint(0, 512, (1, n), generator=torch.Generator().manual_seed(b))
            model(ids, cache=cache, cache_rows=rows[b:b + 1])
        steps = []
        for step in range(3):
            nxt = torch.randint(0, 512, (3, T), generator=torch.Generator().manual_seed(9 + step))
            pos = torch.tensor(lens)[:, None] + step * T + torch.arange(T)
            steps.append(model(nxt, positions=pos, cache=cache, cache_rows=rows))
        outs[kernel] = steps
    for got, want in zip(outs[True], outs[False]):
        assert _rel(got, want) < 1e-4, _rel(got, want)
    torch.testing.assert_close(caches[0].kv, caches[1].kv, atol=1e-5, rtol=1e-5)


_COMPILE_FOR_SM90 = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from youtu.model import decode_attention as da

split_kernel, combine_kernel, combine_values_kernel, queries_kernel = da._kernels()
n = 0


def waits(built):  # dependent launch: the PTX waits for the grid before
    return "griddepcontrol.wait" in built.asm["ptx"]


def registers(built):  # per thread, from ptxas -v on the kernel's PTX
    import re, subprocess, tempfile
    from triton.backends.nvidia.compiler import get_ptxas
    with tempfile.TemporaryDirectory() as tmp:
        with open(f"{tmp}/k.ptx", "w") as f:
            f.write(built.asm["ptx"])
        log = subprocess.run([get_ptxas(90).path, "-arch=sm_90a", "-v", f"{tmp}/k.ptx", "-o",
                              f"{tmp}/k.cubin"], capture_output=True, text=True, check=True)
    return int(re.search(r"Used (\\d+) registers", log.stderr + log.stdout).group(1))


# (WRITE, output dtype, dependent launch): the decode step's GDC launch always stores its row
for write, out, gdc in [(False, "*fp32", False), (False, "*bf16", False), (True, "*fp32", False),
                        (True, "*bf16", False), (True, "*fp32", True)]:
    sig = {"Q": "*bf16", "KV": "*bf16", "Rows": "*i64", "Lens": "*i64", "O": out, "LSE": "*fp32",
           "New": "*bf16", "scale_log2": "fp32"}
    sig.update({k: "i32" for k in ("H", "chunk", "s_qg", "s_qh", "s_kn", "s_ks", "s_og", "s_op",
                                   "s_oh", "s_lg", "s_lp", "s_ng")})
    const = dict(C=512, R=64, BLOCK_H=16, BLOCK_N=32, IEEE=False, WRITE=write, GDC=gdc)
    # every pointer and int 16-divisible, as a 2B launch specialises them (without it no
    # load is wide enough for cp.async and nothing is pipelined)
    aligned = {(i,): [["tt.divisibility", 16]] for i, k in enumerate(sig) if k != "scale_log2"}
    src = ASTSource(split_kernel, {**sig, **{k: "constexpr" for k in const}}, const, aligned)
    built = triton.compile(src, target=GPUTarget("cuda", 90, 32),
                           options={"num_warps": 4, "num_stages": 2})
    assert len(built.asm["cubin"]) > 1000 and waits(built) == gdc
    # the slab tiles' loop is software-pipelined (async copies into shared memory)
    assert "async_copy_global_to_local" in built.asm["ttgir"], (write, out, gdc)
    # the dependent launch's early tile goes to L2, not registers; the step's own row joins
    # after the loop, not swapped into every tile (each had made this build 255 + spills)
    assert ("prefetch.global.L2" in built.asm["ptx"]) == gdc
    if write and gdc:
        assert registers(built) <= 192, registers(built)
    n += 1
sig = {"O": "*fp32", "LSE": "*fp32", "Out": "*bf16", "P": "i32",
       **{k: "i32" for k in ("s_og", "s_op", "s_oh", "s_lg", "s_lp", "s_outg", "s_outh")}}
for block_c, block_p in [(128, 16), (32, 64)]:  # short caches; 256 splits (COMBINE_MAX_BLOCK_P)
    const = dict(BLOCK_C=block_c, BLOCK_P=block_p)
    src = ASTSource(combine_kernel, {**sig, **{k: "constexpr" for k in const}}, const)
    built = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    assert len(built.asm["cubin"]) > 1000
    n += 1
sig = {"O": "*fp32", "LSE": "*fp32", "Q": "*bf16", "W": "*bf16", "Out": "*bf16", "P": "i32",
       "Dv": "i32", **{k: "i32" for k in ("s_og", "s_op", "s_oh", "s_lg", "s_lp", "s_wh", "s_wv",
                                         "s_outg")}}
const = dict(C=512, BLOCK_P=16, BLOCK_V=16, GDC=True)
src = ASTSource(combine_values_kernel, {**sig, **{k: "constexpr" for k in const}}, const)
built = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 8})
assert len(built.asm["cubin"]) > 1000 and waits(built)
n += 1
sig = {"Q": "*bf16", "KV": "*bf16", "Cos": "*bf16", "Sin": "*bf16", "W": "*bf16", "G": "*bf16",
       "Out": "*bf16", "New": "*bf16", "eps": "fp32",
       **{k: "i32" for k in ("H", "Dn", "s_qb", "s_kvb", "s_cb", "s_wh", "s_wd")}}
const = dict(C=512, R=64, BLOCK_D=128, BLOCK_C=32, GDC=True)
src = ASTSource(queries_kernel, {**sig, **{k: "constexpr" for k in const}}, const)
built = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
assert len(built.asm["cubin"]) > 1000 and waits(built)
n += 1
print("compiled", n)
"""


@pytest.mark.slow
def test_the_split_kernel_builds_for_sm90_without_a_gpu(compiled_mode_run):
    """The 2B's split kernel, with and without the new-row store, into a partial (fp32) or the
    output (bf16, one split), both combines (plain, in short and long caches' tiles, and
    applying W_uv: they share `_combine_splits`) and the queries kernel, through Triton's
    compiler and ptxas for sm_90 (~20 s; in a subprocess, compiled mode); the
    dependent-launch builds (GDC) wait for the
    grid before in their PTX, the others do not; every split kernel's tile loop is
    pipelined (async copies), the dependent-launch build included, which prefetches its first
    tile into L2 and fits in 192 registers a thread."""
    assert "compiled 9" in compiled_mode_run(_COMPILE_FOR_SM90)
