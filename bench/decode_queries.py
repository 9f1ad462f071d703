"""The decode step's queries kernel (`decode_attention.mla_decode_queries`) at several latent
slices per program, 2B shapes, batch 1 and 8, one call per layer on its own W_uk (32 layers:
64 MB, more than L2), timed inside a CUDA graph (launch overhead as in the engine's step):

    PYTHONPATH=src python bench/decode_queries.py --block-c 32,64,128 --batch 1,8

Prints a table (us per call) and a JSON line; every variant is checked against block 128.
"""
from __future__ import annotations

import argparse
import json

import torch

from youtu.model import decode_attention


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--block-c", default="32,64,128")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--replays", type=int, default=50)
    args = ap.parse_args()
    H, Dn, R, C, L = 16, 128, 64, 512, args.layers
    dev, dt = "cuda", torch.bfloat16
    g = torch.Generator(device=dev).manual_seed(0)
    kv_b = [torch.randn(H, 2 * Dn, C, generator=g, device=dev, dtype=dt) * C ** -0.5
            for _ in range(L)]
    norm = torch.rand(C, generator=g, device=dev, dtype=dt) + 0.5
    rows = []
    for B in (int(b) for b in args.batch.split(",")):
        q = torch.randn(B, H * (Dn + R), generator=g, device=dev, dtype=dt)
        kv = torch.randn(B, C + R, generator=g, device=dev, dtype=dt)
        ang = torch.rand(B, 1, R // 2, generator=g, device=dev) * 6.28
        cos, sin = ang.cos().to(dt), ang.sin().to(dt)
        ref = None
        for block in sorted((int(b) for b in args.block_c.split(",")), reverse=True):
            decode_attention.QUERIES_BLOCK_C = block

            def step():
                return [decode_attention.mla_decode_queries(q, kv, cos, sin, w[:, :Dn], norm,
                                                            1e-6, R) for w in kv_b]
            outs = step()  # compiles
            if ref is None:
                ref = outs
            err = max(float((a - b).float().abs().max()) for o, r in zip(outs, ref)
                      for a, b in zip(o, r))
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                step()
            graph.replay()
            torch.cuda.synchronize()
            t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            t0.record()
            for _ in range(args.replays):
                graph.replay()
            t1.record()
            torch.cuda.synchronize()
            us = t0.elapsed_time(t1) * 1e3 / (args.replays * L)
            rows.append({"batch": B, "block_c": block, "us_per_call": us, "max_abs_vs_128": err})
            print(f"| {B} | {block} | {us:.2f} | {err:.1e} |", flush=True)
    print(json.dumps({"bench": "decode_queries", "hardware": torch.cuda.get_device_name(),
                      "rows": rows}))


if __name__ == "__main__":
    main()
