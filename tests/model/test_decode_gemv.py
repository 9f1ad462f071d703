"""The decode GEMV kernels (`youtu.model.decode_gemv`) against the model's torch operations.

CPU: the kernels run under Triton's interpreter when triton is importable (it is not in CI: the
interpreter tests then skip). The `interpreter` fixture (tests/model/conftest.py) switches this process's triton to
interpreter mode, which has to happen before triton is first imported (its standard library
is built at import); it does nothing on a machine with a GPU (the gpu tests there need the
compiled kernels), sets TRITON_INTERPRET only around the import (so subprocesses never inherit
it) and skips when triton was already imported in compiled mode. Known interpreter limits,
measured with triton 3.6: tl.dot on bf16 returns garbage (a 16 x 16 product off by 2.7e10; fp16
and fp32 are right), so bf16 runs the FMA path here and the gpu tests cover bf16 tl.dot; casts
to bf16 truncate instead of rounding to nearest (bf16 is checked loosely here); and
numpy >= 2.4 refuses int() of a 1-element array, which the interpreter does for a loop bound
(patched here for the fixture's duration).

GPU (`-m gpu`, the H200): the autotuned kernels and every config == torch at the 2B's shapes in
bf16; the engine with gemv='triton' is in tests/serve/test_engine.py.
"""

from __future__ import annotations

import pytest
import torch

from youtu.model import decode_gemv
from youtu.model.decode_gemv import GemvConfig, gemv, gemv_reference


EPILOGUES = {  # name -> (norm prologue, epilogue)
    "plain": (False, None), "norm": (True, None), "residual": (False, "residual"),
    "norm+residual": (True, "residual"), "swiglu": (False, "swiglu"), "norm+swiglu": (True, "swiglu"),
}
FMA = decode_gemv.DEFAULT_CONFIG  # 16 x 64 tiles
DOT = GemvConfig(block_n=16, block_k=32, dot=True)


def _case(B: int, N: int, K: int, kind: str, dtype: torch.dtype, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    norm, epilogue = EPILOGUES[kind]
    rows = 2 * N if epilogue == "swiglu" else N
    x = torch.randn(B, K + 3, generator=g)[:, :K]  # a column slice: row stride K + 3
    kw = {"weight": torch.randn(rows, K, generator=g) * K ** -0.5}
    if norm:
        kw["norm_weight"] = torch.rand(K, generator=g) + 0.5
        kw["eps"] = 1e-5
        x = x * 3  # the norm must do something
    if epilogue == "residual":
        kw["residual"] = torch.randn(B, N, generator=g)
    kw["swiglu"] = epilogue == "swiglu"
    x = x.to(dtype)
    kw = {k: v.to(dtype) if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
    return x, kw


@pytest.mark.parametrize("kind", list(EPILOGUES))
@pytest.mark.parametrize("B", [1, 3, 8])
@pytest.mark.parametrize("config", [FMA, DOT], ids=["fma", "dot"])
def test_every_prologue_and_epilogue_matches_torch_in_fp32(interpreter, kind, B, config):
    # N, K ragged: neither a multiple of BLOCK_N (16) nor of BLOCK_K (64 / 32)
    x, kw = _case(B, 37, 100, kind, torch.float32, seed=B)
    out = gemv(x, config=config, **kw)
    ref = gemv_reference(x, **kw)
    assert out.shape == ref.shape and out.dtype == torch.float32 and out.is_contiguous()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", list(EPILOGUES))
@pytest.mark.parametrize("config", [FMA, DOT], ids=["fma", "dot"])
def test_the_prefetched_first_tile_path_matches_torch(interpreter, kind, config):
    """pdl=True takes the first weight tile before the prologue and uses it in the first loop
    step (the dependent-launch calls themselves need CUDA); K = 100 is two tiles and a bit."""
    x, kw = _case(3, 37, 100, kind, torch.float32, seed=7)
    torch.testing.assert_close(gemv(x, config=config, pdl=True, **kw), gemv_reference(x, **kw),
                               atol=1e-5, rtol=1e-5)


def _truncating_reference(x, weight, norm_weight=None, eps=1e-6, residual=None, swiglu=False):
    """gemv_reference in fp32 with every bf16 rounding of the model done by truncation."""
    def bf16(t):
        return (t.float().contiguous().view(torch.int32) & -65536).view(torch.float32)

    h = x.float()
    if norm_weight is not None:
        h = bf16(norm_weight.float() * bf16(h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)))
    y = h @ weight.float().T
    if swiglu:
        gate, up = bf16(y).chunk(2, dim=-1)
        return bf16(bf16(gate * torch.sigmoid(gate)) * up)
    return bf16(bf16(y) + residual.float()) if residual is not None else bf16(y)


@pytest.mark.parametrize("kind", ["norm", "norm+residual", "norm+swiglu"])
@pytest.mark.parametrize("dtype,config", [(torch.bfloat16, FMA), (torch.float16, DOT),
                                          (torch.float16, FMA)], ids=["bf16-fma", "fp16-dot", "fp16-fma"])
def test_half_precision_rounds_where_the_model_does(interpreter, kind, dtype, config):
    """fp16: within one rounding of torch's own result and no further from the fp64 truth
    than torch is (up to accumulation order). The interpreter casts fp32
    to bf16 by truncation (53% of 1,024 random values differ from torch's round-to-nearest;
    the GPU rounds to nearest), so bf16 is checked against the model's operations with each
    bf16 rounding done by truncation (the gpu tests check it against the truth)."""
    x, kw = _case(5, 45, 130, kind, dtype, seed=7)
    out = gemv(x, config=config, **kw)
    ref = gemv_reference(x, **kw)
    truth = gemv_reference(x.double(), **{k: v.double() if isinstance(v, torch.Tensor) else v
                                          for k, v in kw.items()})
    assert out.dtype == dtype
    if dtype == torch.bfloat16:
        trunc = _truncating_reference(x, **kw)
        assert _rel(out, trunc) < 1e-4, _rel(out, trunc)  # measured 0.0
        assert _rel(out, ref) < 3e-2, _rel(out, ref)  # the truncations alone: 2.4e-2
        return
    torch.testing.assert_close(out, ref, atol=2e-3, rtol=2e-3)
    assert _rel(out, truth) < 1.5 * _rel(ref, truth) + 1e-4, (_rel(out, truth), _rel(ref, truth))


def test_a_changed_rounding_point_is_caught(interpreter):
    """The fp32 tolerance above can fail: an eps of 1e-2 instead of 1e-5 is caught."""
    x, kw = _case(2, 37, 100, "norm", torch.float32)
    x = x / 30  # small rows: eps matters
    out = gemv(x, **kw)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(out, gemv_reference(x, **{**kw, "eps": 1e-2}), atol=1e-5, rtol=1e-5)


def test_bad_arguments_are_one_line_errors():
    x, w = torch.randn(9, 16), torch.randn(8, 16)
    with pytest.raises(ValueError, match="1..8"):
        gemv(x, w)
    with pytest.raises(ValueError, match="does not take"):
        gemv(x[:2], torch.randn(8, 15))
    with pytest.raises(ValueError, match="must match"):
        gemv(x[:2], w.double())
    with pytest.raises(ValueError, match="exclusive"):
        gemv(x[:2], w, residual=torch.randn(2, 4), swiglu=True)
    with pytest.raises(ValueError, match="norm_weight"):
        gemv(x[:2], w, norm_weight=torch.ones(15))
    with pytest.raises(ValueError, match="residual must be"):
        gemv(x[:2], w, residual=torch.randn(2, 7))
    if not decode_gemv._interpreting():
        with pytest.raises(ValueError, match="runs on CUDA"):
            gemv(x[:2], w)
    assert not decode_gemv.available(torch.device("cpu"))


@torch.no_grad()
def test_decode_step_with_the_kernels_equals_the_plain_step(interpreter, model):
    """graphs.decode_step, gemv='triton' vs cuBLAS (fused and separate layouts), on a tiny
    model's filled cache rows: ragged positions, batch 3 and 8 (kernels) and 9 (cuBLAS)."""
    import copy

    from youtu.model import LatentCache
    from youtu.serve.graphs import decode_step, fuse_decode_weights

    model = copy.deepcopy(model)
    cfg = model.config
    cache = LatentCache(cfg, 9, 64, dtype=torch.float32)
    g = torch.Generator().manual_seed(3)
    lens = torch.randint(1, 40, (9,), generator=g)
    for row, n in enumerate(lens.tolist()):
        ids = torch.randint(0, cfg.vocab_size, (1, n), generator=g)
        model(ids, cache=cache, cache_rows=torch.tensor([row]))
    assert fuse_decode_weights(model)
    for B in (3, 8, 9):
        ids = torch.randint(0, cfg.vocab_size, (B, 1), generator=g)
        rows = torch.randperm(9, generator=g)[:B]
        pos = lens[rows][:, None]
        max_len = int(pos.max()) + 1
        plain = decode_step(model, cache, ids, pos, rows, max_len)
        fused = decode_step(model, cache, ids, pos, rows, max_len, fused=True)
        kernels = decode_step(model, cache, ids, pos, rows, max_len, fused=True, gemv="triton")
        dependent = decode_step(model, cache, ids, pos, rows, max_len, fused=True,
                                gemv="triton+pdl")  # the prefetch path (no launch on the CPU)
        torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(kernels, plain, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(dependent, kernels, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="fused"):
        decode_step(model, cache, ids[:2], pos[:2], rows[:2], max_len, gemv="triton")


@torch.no_grad()
def test_engine_with_the_kernels_generates_the_cublas_tokens(interpreter, model, monkeypatch):
    """The whole engine (prefill, decode steps, sampling) with gemv='triton' on the CPU under
    the interpreter (its CUDA-only check lifted for the test) == the default engine."""
    import copy

    from youtu.serve.engine import Engine, SamplingParams

    g = torch.Generator().manual_seed(5)
    prompts = [torch.randint(0, 500, (n,), generator=g).tolist() for n in (3, 11, 6)]
    params = [SamplingParams(temperature=0, max_tokens=n) for n in (6, 3, 5)]
    model = copy.deepcopy(model)
    with pytest.raises(ValueError, match="CUDA"):
        Engine(model, max_batch=3, max_seq_len=32, eos_ids=[], gemv="triton")
    ref = Engine(model, max_batch=3, max_seq_len=32, eos_ids=[]).generate(prompts, params)
    monkeypatch.setattr(decode_gemv, "available", lambda device: True)
    with pytest.raises(ValueError, match="fuse_weights"):
        Engine(model, max_batch=3, max_seq_len=32, eos_ids=[], gemv="triton", fuse_weights=False)
    engine = Engine(model, max_batch=3, max_seq_len=32, eos_ids=[], gemv="triton")
    out = engine.generate(prompts, params)
    assert [o.token_ids for o in out] == [o.token_ids for o in ref]
    torch.testing.assert_close(torch.tensor([lp for o in out for lp in o.logprobs]),
                               torch.tensor([lp for o in ref for lp in o.logprobs]),
                               atol=1e-4, rtol=1e-4)


_COMPILE_FOR_H200 = """
import itertools
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from youtu.model import decode_gemv as dg

kernel, _ = dg._kernels()
sig = {n: "*bf16" for n in ("X", "W", "Out", "Res", "NormW")}
sig.update({n: "i32" for n in ("B", "N", "K", "s_xb", "s_wn", "s_ob", "s_rb", "up_offset")})
sig["eps"] = "fp32"
# pointers and sizes 16-divisible, as a 2B launch specialises them (cp.async needs it)
aligned = {(i,): [["tt.divisibility", 16]] for i, k in enumerate(sig) if k not in ("B", "eps")}
n = 0
for c, (pro, epi) in itertools.product(dg.AUTOTUNE_CONFIGS + [dg.DEFAULT_CONFIG],
                                       [(0, 0), (1, 1), (1, 2)]):
    prefetches = []
    for pdl in (False, True):
        const = dict(PROLOGUE=pro, EPILOGUE=epi, BLOCK_B=8, IEEE=False, BLOCK_N=c.block_n,
                     BLOCK_K=c.block_k, DOT=c.dot, PDL=pdl, GDC=pdl)
        src = ASTSource(kernel, {**sig, **{k: "constexpr" for k in const}}, const, aligned)
        out = triton.compile(src, target=GPUTarget("cuda", 90, 32),
                             options={"num_warps": c.num_warps, "num_stages": c.num_stages,
                                      "launch_pdl": pdl})
        assert len(out.asm["cubin"]) > 1000
        assert ("griddepcontrol.wait" in out.asm["ptx"]) == pdl
        prefetches.append(out.asm["ttgir"].count("async_copy_global_to_local"))
        n += 1
    # the early tile leaves the loop's pipelining as it is (tl.dot configs prefetch W and x)
    assert prefetches[0] == prefetches[1] and (prefetches[0] > 0) == c.dot, (c, epi, prefetches)
print("compiled", n)
"""


@pytest.mark.slow
def test_every_config_compiles_for_the_h200_without_a_gpu(compiled_mode_run):
    """Triton's compiler and ptxas target sm_90 without a device: every autotune candidate
    with the heaviest prologue/epilogue at 8 rows, with and without programmatic dependent
    launch, builds a cubin (the interpreter checks the math, not that the kernel compiles);
    the tl.dot configs' loops are software-pipelined with and without the dependent launch's
    early tile. ~70 s on 2 cores; in a subprocess (compiled mode)."""
    out = compiled_mode_run(_COMPILE_FOR_H200)
    assert f"compiled {6 * (len(decode_gemv.AUTOTUNE_CONFIGS) + 1)}" in out


# ---- GPU (the H200) ------------------------------------------------------------------------


def _shapes_2b() -> dict[str, tuple[int, int, str]]:
    """(N out, K, kind) of each kernel call of the 2B decode step."""
    from youtu.model import ModelConfig

    c = ModelConfig.youtu_2b()
    D, Q, I = c.hidden_size, c.q_lora_rank, c.intermediate_size
    return {"q_kv_a": (Q + c.kv_lora_rank + c.qk_rope_head_dim, D, "norm"),
            "q_b": (c.num_attention_heads * c.qk_head_dim, Q, "norm"),
            "o_proj": (D, c.num_attention_heads * c.v_head_dim, "residual"),
            "gate_up": (I, D, "norm+swiglu"), "down_proj": (D, I, "residual"),
            "lm_head": (c.vocab_size, D, "norm")}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.gpu
@pytest.mark.parametrize("B", [1, 3, 8])
@pytest.mark.parametrize("name", list(_shapes_2b()))
@torch.no_grad()
def test_autotuned_kernel_equals_torch_at_the_2b_shapes(name, B):
    N, K, kind = _shapes_2b()[name]
    x, kw = _case(B, N, K, kind, torch.bfloat16, seed=B)
    x, kw = x.cuda(), {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
    out = gemv(x, **kw)
    ref = gemv_reference(x, **kw)
    truth = gemv_reference(x.float(), **{k: v.float() if isinstance(v, torch.Tensor) else v
                                         for k, v in kw.items()})
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert _rel(out, ref) < 1e-2 and _rel(out, truth) < 1.5 * _rel(ref, truth) + 2e-3


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(_shapes_2b()))
@torch.no_grad()
def test_dependent_launch_in_a_cuda_graph_equals_the_plain_launch(name):
    """pdl=True (launch_pdl, gdc_wait) chained in one graph, each kernel reading what the one
    before wrote: the same outputs as the plain launches, bit for bit (same config)."""
    N, K, kind = _shapes_2b()[name]
    x, kw = _case(1, N, K, kind, torch.bfloat16, seed=3)
    x, kw = x.cuda(), {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
    config = GemvConfig(4, 1024, False, num_warps=8)
    chain_w = torch.randn(K, N, device="cuda", dtype=torch.bfloat16) * N ** -0.5

    def chain(pdl: bool) -> torch.Tensor:
        y = gemv(x, config=config, pdl=pdl, **kw)  # [1, N] (N/2 with swiglu)
        w = chain_w[:, :y.shape[1]].contiguous()
        return gemv(y, w, config=config, pdl=pdl)  # reads y: must wait for the kernel before

    plain = chain(False)
    chain(True)  # compile outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = chain(True)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, plain)


@pytest.mark.gpu
@pytest.mark.parametrize("config", decode_gemv.AUTOTUNE_CONFIGS + [FMA, DOT], ids=str)
@pytest.mark.parametrize("kind", ["norm+residual", "norm+swiglu"])
@torch.no_grad()
def test_every_config_compiles_and_is_exact_enough(config, kind):
    """Every autotune candidate (the tuner may pick any) on a ragged shape, 8 rows, bf16 and
    fp32 (IEEE tl.dot)."""
    for dtype, tol in ((torch.bfloat16, 1e-2), (torch.float32, 1e-5)):
        x, kw = _case(8, 1000, 2100, kind, dtype)
        x, kw = x.cuda(), {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
        assert _rel(gemv(x, config=config, **kw), gemv_reference(x, **kw)) < tol
