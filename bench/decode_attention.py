"""One absorbed-MLA decode attention layer: today's plain path vs bmm vs the fused kernel (CUDA).

    PYTHONPATH=src python bench/decode_attention.py            # the 2B's shapes, bf16, H200

Per case (batch B, cache length L; 16 heads, latent 512 + rope 64, lengths ragged within the
batch only where noted), microseconds per call (triton.testing.do_bench median, launch
overhead included) of:
  sdpa_mask  gather the rows (`LatentCache.read`) + SDPA with the boolean absorbed mask (the
             plain path, what decode ran before the kernel)
  bmm        gather + bmm + fp32 softmax + bmm (the issue's 'plain bmm' column)
  fused      `mla_decode_attention`: split-K over the slab read in place + combine
and the fused kernel's achieved bandwidth over the bytes it must read (B x L x 1152).
`--cases 1x256,1x1024 --splits 1,2,4,8` instead times the fused kernel alone at each forced
split count beside its own choice (`num_splits`), inside a CUDA graph as the engine runs it
(each group's new row stored by the kernel, W_uv applied: the decode step's call), for short
caches where latency, not bytes, sets the time, or long ones where the splits' partials add
bytes. `--configs 32x2x4,64x3x8` repeats the sweep per split-kernel launch config
(BLOCK_N x stages x warps: `BLOCK_N_HALF`, `SPLIT_NUM_STAGES`, `SPLIT_NUM_WARPS`), with the
achieved cache bandwidth of each config's own split choice. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from youtu.model.attention import absorbed_mask
from youtu.model import decode_attention
from youtu.model.decode_attention import mla_decode_attention

H, C, R = 16, 512, 64
SCALE = 192 ** -0.5
CASES = [(1, 1024), (1, 8192), (1, 32768), (1, 131072), (32, 640), (64, 4096)]


GRAPH_CALLS = 16  # calls per CUDA-graph replay in the split sweep, each on its own slab


def graph_us(fns, replays: int = 20) -> float:
    """Microseconds per call of `fns` captured back to back in one CUDA graph, as the engine's
    decode step runs them (no host launch cost; a different slab each call, so the cache is
    read from HBM, not L2)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for fn in fns:
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for fn in fns:
            fn()
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1e3 / (replays * len(fns))


CONFIG_KNOBS = ("BLOCK_N_HALF", "SPLIT_NUM_STAGES", "SPLIT_NUM_WARPS")


def sweep(cases: list[tuple[int, int]], splits: list[int],
          configs: list[tuple[int, int, int]] | None = None) -> None:
    """The fused kernel at forced split counts (0 = its own choice), us per call in a CUDA
    graph (`graph_us`): eager timing of a ~10 us kernel measures the host's launch cost.
    `configs`: (BLOCK_N, stages, warps) of the split kernel, each swept in turn (None: the
    module's own)."""
    dev = "cuda"
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    own = tuple(getattr(decode_attention, k) for k in CONFIG_KNOBS)
    configs = configs or [own]
    print(f"# fused kernel by split count, {torch.cuda.get_device_name()} ({sms} SMs), bf16, "
          f"{GRAPH_CALLS} calls per CUDA graph, new rows stored and W_uv applied")
    print("| B | L | BLOCK_N x stages x warps | " + " | ".join(f"P={p or 'auto'} us" for p in splits)
          + " | auto P | auto GB/s |")
    print("|---|---|---|" + "---|" * (len(splits) + 2))
    rows_out = []
    for B, L in cases:
        g = torch.Generator(device=dev).manual_seed(B * L)
        kvs = [torch.randn(B + 1, L, C + R, device=dev, dtype=torch.bfloat16, generator=g)
               for _ in range(GRAPH_CALLS)]
        q = torch.randn(B, H, C + R, device=dev, dtype=torch.bfloat16, generator=g)
        new = torch.randn(B, C + R, device=dev, dtype=torch.bfloat16, generator=g)
        w_uv = torch.randn(H, 128, C, device=dev, dtype=torch.bfloat16, generator=g) * C ** -0.5
        rows = torch.arange(1, B + 1, device=dev)
        lengths = torch.full((B,), L, device=dev)
        ref = mla_decode_attention(q, kvs[0], rows, lengths, SCALE, L, R, new=new,
                                   w_uv=w_uv).float()
        for config in configs:
            for knob, value in zip(CONFIG_KNOBS, config):
                setattr(decode_attention, knob, value)
            try:
                t = {}
                for p in splits:
                    def fn(kv, p=p):
                        return mla_decode_attention(q, kv, rows, lengths, SCALE, L, R,
                                                    splits=p or None, new=new, w_uv=w_uv)
                    err = ((fn(kvs[0]).float() - ref).norm() / ref.norm()).item()
                    assert err < 1e-2, f"splits={p}, config {config}: rel err {err:.1e}"
                    t[p] = graph_us([lambda kv=kv, fn=fn: fn(kv) for kv in kvs])
                auto = decode_attention.num_splits(B, L, config[0], sms)
            except Exception as e:  # e.g. a config past the SM's shared memory
                if isinstance(e, AssertionError):
                    raise
                print(f"| {B} | {L} | {'x'.join(map(str, config))} | failed: "
                      f"{str(e).splitlines()[0][:120]} |", flush=True)
                continue
            finally:
                for knob, value in zip(CONFIG_KNOBS, own):
                    setattr(decode_attention, knob, value)
            auto_us = t.get(0, float("nan"))
            gbs = B * L * (C + R) * 2 / (auto_us * 1e-6) / 1e9
            label = "x".join(map(str, config))
            rows_out.append({"batch": B, "cache_len": L, "config": label, "auto_splits": auto,
                             "auto_gb_s": gbs, **{f"splits_{p}_us": v for p, v in t.items()}})
            print(f"| {B} | {L} | {label} | " + " | ".join(f"{t[p]:.1f}" for p in splits)
                  + f" | {auto} | {gbs:.0f} |", flush=True)
        del kvs
        torch.cuda.empty_cache()
    print(json.dumps({"bench": "decode_attention_splits", "hardware": torch.cuda.get_device_name(),
                      "graph_calls": GRAPH_CALLS, "rows": rows_out}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="", help="BxL,... for the split sweep (e.g. 1x256,1x1024)")
    ap.add_argument("--splits", default="0,1,2,4,8,16", help="split counts (0 = the kernel's own)")
    ap.add_argument("--configs", default="",
                    help="split-kernel launch configs BLOCK_NxSTAGESxWARPS,... for the sweep "
                         "(e.g. 32x2x4,64x3x8; default: the module's own)")
    args = ap.parse_args()
    if args.cases:
        cases = [tuple(int(v) for v in c.split("x")) for c in args.cases.split(",")]
        configs = [tuple(int(v) for v in c.split("x")) for c in args.configs.split(",") if c]
        return sweep(cases, [int(p) for p in args.splits.split(",")], configs or None)
    from triton.testing import do_bench

    dev = "cuda"
    rows_out = []
    print(f"# absorbed MLA decode attention, {torch.cuda.get_device_name()}, bf16, H={H}, "
          f"C+R={C + R}, torch {torch.__version__}")
    print("| B | L | sdpa_mask us | bmm us | fused us | fused GB/s | fused vs sdpa | rel err |")
    print("|---|---|---|---|---|---|---|---|")
    for B, L in CASES:
        g = torch.Generator(device=dev).manual_seed(B * L)
        kv = torch.randn(B + 1, L, C + R, device=dev, dtype=torch.bfloat16, generator=g)
        q = torch.randn(B, H, C + R, device=dev, dtype=torch.bfloat16, generator=g)
        rows = torch.arange(1, B + 1, device=dev)
        lengths = torch.full((B,), L, device=dev)
        mask = absorbed_mask((lengths - 1)[:, None], L, H)

        def sdpa_mask():
            k = kv[:, :L].index_select(0, rows)[:, None]
            return F.scaled_dot_product_attention(q[:, None], k, k[..., :C], attn_mask=mask,
                                                  scale=SCALE)[:, 0]

        def bmm():
            k = kv[:, :L].index_select(0, rows)  # [B, L, C+R]
            s = torch.bmm(q, k.transpose(1, 2)).float() * SCALE
            return torch.bmm(s.softmax(-1).to(k.dtype), k[..., :C])

        def fused():
            return mla_decode_attention(q, kv, rows, lengths, SCALE, L, R)

        ref = sdpa_mask().float()
        err = ((fused().float() - ref).norm() / ref.norm()).item()
        t = {name: do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e3
             for name, fn in (("sdpa_mask", sdpa_mask), ("bmm", bmm), ("fused", fused))}
        gbs = B * L * (C + R) * 2 / (t["fused"] * 1e-6) / 1e9
        row = {"batch": B, "cache_len": L, **{f"{k}_us": v for k, v in t.items()},
               "fused_gb_s": gbs, "rel_err": err}
        rows_out.append(row)
        print(f"| {B} | {L} | {t['sdpa_mask']:.1f} | {t['bmm']:.1f} | {t['fused']:.1f} | "
              f"{gbs:.0f} | {t['sdpa_mask'] / t['fused']:.1f}x | {err:.1e} |", flush=True)
        del kv, q, mask
        torch.cuda.empty_cache()
    print(json.dumps({"bench": "decode_attention", "hardware": torch.cuda.get_device_name(),
                      "rows": rows_out}))


if __name__ == "__main__":
    main()
