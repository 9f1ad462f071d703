"""The 2B decode step's weight GEMVs one by one: separate vs fused projections, bytes vs time.

    PYTHONPATH=src python bench/decode_gemv.py                    # H200, bf16, batch 1 (seconds)
    PYTHONPATH=src python bench/decode_gemv.py --batch 1,8 --triton      # + the decode GEMV kernels
    PYTHONPATH=src python bench/decode_gemv.py --batch 1 --triton --pdl  # + dependent launch
    PYTHONPATH=src python bench/decode_gemv.py --batch 1,32 --autotune   # + inductor's own GEMMs

The batch-1 profile (bench/results/2026-12-04_h200_decode.md) put 1.95 ms of a 2.97 ms step in
cuBLAS GEMVs whose bytes need 0.93 ms. This times every weight matmul of one layer (and
lm_head) as the decode step runs it: x [B, in] @ W^T in bf16, replayed from a CUDA graph (no
launch overhead, as in the graphed step), over enough distinct copies of W (>= 256 MB, more
than the L2 cache) that every call streams its weight from HBM as decode does. Per weight:
microseconds per call, achieved GB/s, and with --autotune the same matmul compiled by
inductor's max-autotune (Triton templates vs cuBLAS). Then per step (x 32 layers + lm_head):
the GEMV total with today's separate q_a / kv_a and gate / up against the fused ones the
engine now uses (`fuse_weights`), next to the bytes floor at --bandwidth. With --triton
(batches <= 8), every weight the `decode_gemv` kernels read (the fused layout) gets two more
columns, both doing the same work with the prologue/epilogue on (norm into q_kv_a / q_b /
gate_up / lm_head, residual after o_proj / down_proj, SwiGLU after gate_up): `torch ops` = the
model's own torch operations (norm kernels + cuBLAS + elementwise, as the cuBLAS step runs
them), `triton` = one autotuned kernel (its chosen config printed); and a per-step total of
the kernels against cuBLAS. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import math

import torch
import torch.nn.functional as F

from youtu.model import ModelConfig

STREAM_BYTES = 256 * 2**20  # more than an H200's L2 (50 MB): each copy is read from HBM


def shapes(cfg: ModelConfig) -> dict[str, tuple[int, int]]:
    """(out, in) of every weight GEMV of one decode layer, separate and fused, and lm_head."""
    D, Q, I = cfg.hidden_size, cfg.q_lora_rank, cfg.intermediate_size
    kv_a = cfg.kv_lora_rank + cfg.qk_rope_head_dim
    H = cfg.num_attention_heads
    return {
        "q_a_proj": (Q, D), "kv_a_proj_with_mqa": (kv_a, D), "q_kv_a (fused)": (Q + kv_a, D),
        "q_b_proj": (H * cfg.qk_head_dim, Q), "o_proj": (D, H * cfg.v_head_dim),
        "gate_proj": (I, D), "up_proj": (I, D), "gate_up (fused)": (2 * I, D),
        "down_proj": (D, I), "lm_head": (cfg.vocab_size, D),
    }


def absorption_shapes(cfg: ModelConfig) -> dict[str, tuple[int, int, int, bool]]:
    """(heads, in, out, transposed) of the two per-head absorption matmuls: W_uk^T q_nope reads
    kv_b_proj's [H, Dn, C] rows as stored, W_uv o reads its [H, Dv, C] rows transposed."""
    H = cfg.num_attention_heads
    return {"W_uk (bmm)": (H, cfg.qk_nope_head_dim, cfg.kv_lora_rank, False),
            "W_uv (bmm)": (H, cfg.kv_lora_rank, cfg.v_head_dim, True)}


def time_per_call_us(fn, copies: int) -> float:
    """Median microseconds of one call, `fn` running all `copies` in one CUDA-graph replay."""
    from triton.testing import do_bench_cudagraph

    return do_bench_cudagraph(fn, rep=100, return_mode="median") * 1e3 / copies


def bench_linear(out_f: int, in_f: int, batch: int, autotune: bool) -> dict[str, float]:
    w_bytes = out_f * in_f * 2
    copies = max(1, math.ceil(STREAM_BYTES / w_bytes))
    ws = [torch.randn(out_f, in_f, device="cuda", dtype=torch.bfloat16) * in_f ** -0.5
          for _ in range(copies)]
    x = torch.randn(batch, in_f, device="cuda", dtype=torch.bfloat16)

    def cublas():
        for w in ws:
            F.linear(x, w)

    row = {"mb": w_bytes / 1e6, "copies": copies, "cublas_us": time_per_call_us(cublas, copies)}
    if autotune:
        mm = torch.compile(F.linear, mode="max-autotune-no-cudagraphs", dynamic=False)
        torch.testing.assert_close(mm(x, ws[0]), F.linear(x, ws[0]), atol=2e-2, rtol=2e-2)

        def tuned():
            for w in ws:
                mm(x, w)

        row["autotune_us"] = time_per_call_us(tuned, copies)
    ws.clear()
    torch.cuda.empty_cache()
    return row


# weight -> the kernel's prologue/epilogue in the decode step (graphs.gemv_layer_*)
TRITON_KINDS = {"q_kv_a (fused)": "norm", "q_b_proj": "norm", "o_proj": "residual",
                "gate_up (fused)": "norm+swiglu", "down_proj": "residual", "lm_head": "norm"}


def bench_triton(out_f: int, in_f: int, batch: int, kind: str, pdl: bool = False
                 ) -> dict[str, float | str]:
    """Per call: the model's torch ops for the same fused work, and the decode GEMV kernel
    (with `pdl`: also launched dependently, each call prefetching while the one before ends)."""
    from youtu.model import decode_gemv

    w_bytes = out_f * in_f * 2
    copies = max(1, math.ceil(STREAM_BYTES / w_bytes))
    ws = [torch.randn(out_f, in_f, device="cuda", dtype=torch.bfloat16) * in_f ** -0.5
          for _ in range(copies)]
    x = torch.randn(batch, in_f, device="cuda", dtype=torch.bfloat16)
    kw: dict = {}
    if "norm" in kind:
        kw.update(norm_weight=torch.rand(in_f, device="cuda", dtype=torch.bfloat16) + 0.5, eps=1e-6)
    if "residual" in kind:
        kw["residual"] = torch.randn(batch, out_f, device="cuda", dtype=torch.bfloat16)
    kw["swiglu"] = "swiglu" in kind
    ref = decode_gemv.gemv_reference(x, ws[0], **kw)
    out = decode_gemv.gemv(x, ws[0], **kw)  # autotunes this (N, K, B, kind) outside the timing
    err = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
    best = decode_gemv._kernels()[1].best_config

    def torch_ops():
        for w in ws:
            decode_gemv.gemv_reference(x, w, **kw)

    def kernel():
        for w in ws:
            decode_gemv.gemv(x, w, **kw)

    def bare():
        for w in ws:
            decode_gemv.gemv(x, w)

    row = {"kind": kind, "torch_ops_us": time_per_call_us(torch_ops, copies),
           "triton_us": time_per_call_us(kernel, copies), "rel_err": err, "config": str(best)}
    decode_gemv.gemv(x, ws[0])  # the bare GEMV (no fused work) autotunes outside the timing
    row["bare_config"] = str(decode_gemv._kernels()[1].best_config)
    row["bare_us"] = time_per_call_us(bare, copies)
    if pdl:
        decode_gemv.gemv(x, ws[0], pdl=True, **kw)  # autotunes the PDL variant outside the timing
        row["pdl_config"] = str(decode_gemv._kernels()[1].best_config)

        def dependent():
            for w in ws:
                decode_gemv.gemv(x, w, pdl=True, **kw)

        row["pdl_us"] = time_per_call_us(dependent, copies)
    ws.clear()
    torch.cuda.empty_cache()
    return row


def bench_bmm(heads: int, in_f: int, out_f: int, transposed: bool, batch: int) -> dict[str, float]:
    w_bytes = heads * in_f * out_f * 2
    copies = max(1, math.ceil(STREAM_BYTES / w_bytes))
    stored = (heads, out_f, in_f) if transposed else (heads, in_f, out_f)
    ws = [torch.randn(*stored, device="cuda", dtype=torch.bfloat16) for _ in range(copies)]
    ws = [w.transpose(1, 2) if transposed else w for w in ws]  # [heads, in, out] views
    x = torch.randn(heads, batch, in_f, device="cuda", dtype=torch.bfloat16)

    def run():
        for w in ws:
            torch.bmm(x, w)

    row = {"mb": w_bytes / 1e6, "copies": copies, "cublas_us": time_per_call_us(run, copies)}
    ws.clear()
    torch.cuda.empty_cache()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="youtu_2b", choices=["small", "youtu_2b"])
    ap.add_argument("--batch", default="1", help="rows per GEMV, comma-separated")
    ap.add_argument("--autotune", action="store_true",
                    help="also inductor max-autotune per shape (compiles: ~10-30 s per shape)")
    ap.add_argument("--triton", action="store_true",
                    help="also the decode GEMV kernels with their fused work (batches <= 8)")
    ap.add_argument("--pdl", action="store_true",
                    help="with --triton: also the kernels with programmatic dependent launch")
    ap.add_argument("--bandwidth", type=float, default=4.2e12,
                    help="bytes/s for the floor column (~4.2 TB/s measured copy on an H200)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/decode_gemv.py needs a CUDA device")
    cfg = getattr(ModelConfig, args.preset)()
    L = cfg.num_hidden_layers
    out = {"bench": "decode_gemv", "preset": args.preset, "hardware": torch.cuda.get_device_name(),
           "torch": torch.__version__, "batches": {}}
    for batch in [int(b) for b in args.batch.split(",")]:
        rows = {name: bench_linear(o, i, batch, args.autotune) for name, (o, i) in shapes(cfg).items()}
        rows.update({name: bench_bmm(h, i, o, t, batch)
                     for name, (h, i, o, t) in absorption_shapes(cfg).items()})
        print(f"# batch {batch}, bf16, {cfg.num_hidden_layers} layers, {torch.cuda.get_device_name()}, "
              f"torch {torch.__version__}; CUDA-graph replay, weights streamed from HBM")
        print("| weight | MB | cuBLAS us | cuBLAS GB/s | floor us |"
              + (" autotune us | autotune GB/s |" if args.autotune else ""))
        print("|---|---|---|---|---|" + ("---|---|" if args.autotune else ""))
        for name, r in rows.items():
            line = (f"| {name} | {r['mb']:.1f} | {r['cublas_us']:.2f} | "
                    f"{r['mb'] * 1e3 / r['cublas_us']:.0f} | {r['mb'] * 1e12 / args.bandwidth:.2f} |")
            if "autotune_us" in r:
                line += f" {r['autotune_us']:.2f} | {r['mb'] * 1e3 / r['autotune_us']:.0f} |"
            print(line)
        common = ["q_b_proj", "o_proj", "down_proj", "W_uk (bmm)", "W_uv (bmm)"]
        layouts = {"separate": common + ["q_a_proj", "kv_a_proj_with_mqa", "gate_proj", "up_proj"],
                   "fused": common + ["q_kv_a (fused)", "gate_up (fused)"]}
        summary = {}
        for layout, names in layouts.items():
            us = L * sum(rows[n]["cublas_us"] for n in names) + rows["lm_head"]["cublas_us"]
            mb = L * sum(rows[n]["mb"] for n in names) + rows["lm_head"]["mb"]
            summary[layout] = {"gemv_ms_per_step": us / 1e3, "floor_ms": mb * 1e6 / args.bandwidth * 1e3,
                               "kernels": L * len(names) + 1}
            print(f"# {layout}: GEMVs {us / 1e3:.3f} ms per step ({summary[layout]['kernels']} "
                  f"kernels), bytes floor {summary[layout]['floor_ms']:.3f} ms")
        if args.triton and batch <= 8:
            tri = {name: bench_triton(*shapes(cfg)[name], batch, kind, args.pdl)
                   for name, kind in TRITON_KINDS.items()}
            print(f"# batch {batch}: decode GEMV kernels (fused work on) vs the same torch ops")
            print("| weight | fused work | MB | cuBLAS GEMV us | torch ops us | triton us | "
                  "triton GB/s | triton vs torch ops | rel. error | config | bare triton us | "
                  "bare config |")
            print("|---|---|---|---|---|---|---|---|---|---|---|---|")
            for name, t in tri.items():
                r = rows[name]
                print(f"| {name} | {t['kind']} | {r['mb']:.1f} | {r['cublas_us']:.2f} | "
                      f"{t['torch_ops_us']:.2f} | {t['triton_us']:.2f} | "
                      f"{r['mb'] * 1e3 / t['triton_us']:.0f} | "
                      f"{t['torch_ops_us'] / t['triton_us']:.2f}x | {t['rel_err']:.1e} | {t['config']} | "
                      f"{t['bare_us']:.2f} | {t['bare_config']} |"
                      + (f" pdl {t['pdl_us']:.2f} us ({t['pdl_config']})" if args.pdl else ""))
            per_layer = [n for n in TRITON_KINDS if n != "lm_head"]
            bmm = sum(rows[n]["cublas_us"] for n in ("W_uk (bmm)", "W_uv (bmm)"))
            cols = [("torch ops", "torch_ops_us"), ("triton", "triton_us")]
            for label, col in cols + ([("triton+pdl", "pdl_us")] if args.pdl else []):
                us = L * (sum(tri[n][col] for n in per_layer) + bmm) + tri["lm_head"][col]
                summary[f"{label} (fused work)"] = {"gemv_ms_per_step": us / 1e3,
                                                    "floor_ms": summary["fused"]["floor_ms"],
                                                    "kernels": L * (len(per_layer) + 2) + 1}
                print(f"# {label}: GEMVs + their norms/SwiGLU/residuals + the absorption bmms "
                      f"{us / 1e3:.3f} ms per step, bytes floor {summary['fused']['floor_ms']:.3f} ms")
            out["batches"][batch] = {"rows": rows, "triton": tri, "per_step": summary}
            continue
        out["batches"][batch] = {"rows": rows, "per_step": summary}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
