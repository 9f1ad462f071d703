"""The decode kernels built for sm_90 without a GPU: registers, spills, shared memory and
software pipelining of each launch config, from Triton's compiler and ptxas -v (the numbers
that decide how many programs an SM holds; no timing):

    python bench/kernel_builds.py --split 32x2x4,32x2x8,64x2x8 --gemv

Every pointer and int argument is marked 16-divisible, as a 2B launch specialises them
(without it no load is wide enough for cp.async, so nothing would show as pipelined). Needs
triton (compiled mode: TRITON_INTERPRET unset). Prints a table and a JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile

REGS_PER_SM, SMEM_PER_SM, WARPS_PER_SM = 65536, 232448, 64


def build(fn, sig: dict, const: dict, warps: int, stages: int, unaligned=()) -> dict:
    """One sm_90 build: its ptxas registers / spill bytes, shared memory and async copies."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import get_ptxas
    from triton.compiler import ASTSource

    aligned = {(i,): [["tt.divisibility", 16]] for i, k in enumerate(sig) if k not in unaligned}
    src = ASTSource(fn, {**sig, **{k: "constexpr" for k in const}}, const, aligned)
    built = triton.compile(src, target=GPUTarget("cuda", 90, 32),
                           options={"num_warps": warps, "num_stages": stages})
    with tempfile.TemporaryDirectory() as tmp:
        with open(f"{tmp}/k.ptx", "w") as f:
            f.write(built.asm["ptx"])
        done = subprocess.run([get_ptxas(90).path, "-arch=sm_90a", "-v", f"{tmp}/k.ptx", "-o",
                               f"{tmp}/k.cubin"], capture_output=True, text=True, check=True)
    log = done.stderr + done.stdout
    regs = int(re.search(r"Used (\d+) registers", log).group(1))
    smem = built.metadata.shared
    spills = int(re.search(r"(\d+) bytes spill stores", log).group(1))
    copies = built.asm["ttgir"].count("async_copy_global_to_local")
    return {"registers": regs, "spill_bytes": spills, "shared_bytes": smem, "async_copies": copies,
            "programs_per_sm": min(REGS_PER_SM // (regs * 32 * warps), SMEM_PER_SM // max(smem, 1),
                                   WARPS_PER_SM // warps)}


def split_rows(configs: list[str]) -> list[dict]:
    from youtu.model import decode_attention

    split_kernel = decode_attention._kernels()[0]
    sig = {"Q": "*bf16", "KV": "*bf16", "Rows": "*i64", "Lens": "*i64", "O": "*fp32",
           "LSE": "*fp32", "New": "*bf16", "scale_log2": "fp32"}
    sig.update({k: "i32" for k in ("H", "chunk", "s_qg", "s_qh", "s_kn", "s_ks", "s_og", "s_op",
                                   "s_oh", "s_lg", "s_lp", "s_ng")})
    rows = []
    for config in configs:
        block_n, stages, warps = (int(v) for v in config.split("x"))
        for write, gdc in [(True, True), (True, False), (False, False)]:
            const = dict(C=512, R=64, BLOCK_H=16, BLOCK_N=block_n, IEEE=False, WRITE=write, GDC=gdc)
            rows.append({"kernel": "split", "config": config, "new_row": write, "pdl": gdc,
                         **build(split_kernel, sig, const, warps, stages, ("scale_log2",))})
    return rows


def gemv_rows() -> list[dict]:
    from youtu.model import decode_gemv

    kernel = decode_gemv._kernels()[0]
    sig = {n: "*bf16" for n in ("X", "W", "Out", "Res", "NormW")}
    sig.update({n: "i32" for n in ("B", "N", "K", "s_xb", "s_wn", "s_ob", "s_rb", "up_offset")})
    sig["eps"] = "fp32"
    rows = []
    for c in decode_gemv.AUTOTUNE_CONFIGS:
        for (pro, epi), work in [((1, 2), "norm+swiglu"), ((0, 1), "residual")]:
            const = dict(PROLOGUE=pro, EPILOGUE=epi, BLOCK_B=1, IEEE=False, BLOCK_N=c.block_n,
                         BLOCK_K=c.block_k, DOT=c.dot, PDL=True, GDC=True)
            config = f"{c.block_n}x{c.block_k}{'dot' if c.dot else ''}x{c.num_stages}x{c.num_warps}"
            rows.append({"kernel": f"gemv {work}", "config": config, "new_row": None, "pdl": True,
                         **build(kernel, sig, const, c.num_warps, c.num_stages, ("B", "eps"))})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="32x2x4,32x3x4,32x2x8,64x2x4,64x2x8,16x4x4",
                    help="split-kernel configs BLOCK_NxSTAGESxWARPS")
    ap.add_argument("--gemv", action="store_true", help="also every GEMV autotune candidate")
    args = ap.parse_args()
    os.environ.pop("TRITON_INTERPRET", None)
    rows = split_rows([c for c in args.split.split(",") if c]) + (gemv_rows() if args.gemv else [])
    print("| kernel | config | new row | pdl | registers | spill B | shared KB | async copies | "
          "programs/SM |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['kernel']} | {r['config']} | {r['new_row']} | {r['pdl']} | {r['registers']} | "
              f"{r['spill_bytes']} | {r['shared_bytes'] / 1024:.0f} | {r['async_copies']} | "
              f"{r['programs_per_sm']} |", flush=True)
    print(json.dumps({"bench": "kernel_builds", "target": "sm_90a", "rows": rows}))


if __name__ == "__main__":
    main()
