"""What a new prefill shape costs the first time it runs, per attention path: the suspect for
the first model's extra eval time (`bench/results/2026-12-07_h100_recipe_eval.md`).

    PYTHONPATH=src python bench/first_use.py                   # small preset, bf16, CUDA
    PYTHONPATH=src python bench/first_use.py --preset tiny --device cpu --rows 1,2 --tokens 16,32

For each (rows, tokens) shape with rows x tokens <= --max-tokens, a no-grad fresh prefill into
a latent cache, as the engine and the cloze scorer run it (`hidden_states` with positions
0..T-1 and cache rows 0..B-1). The first call's time and the median of the next --reps, for
each attention implementation:
  auto  cuDNN fused attention where it applies (the default)
  sdpa  PyTorch's SDPA, left to pick its own backend
The sum over shapes of (first - steady) is what meeting those shapes costs once. The last
line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from youtu.model import LatentCache, ModelConfig, YoutuForCausalLM


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _forward(model: YoutuForCausalLM, cache: LatentCache, rows: int, tokens: int) -> float:
    dev = cache.kv.device
    ids = torch.randint(0, model.config.vocab_size, (rows, tokens), device=dev)
    pos = torch.arange(tokens, device=dev).expand(rows, tokens)
    _sync(dev)
    start = time.perf_counter()
    model.hidden_states(ids, positions=pos, cache=cache, cache_rows=torch.arange(rows, device=dev))
    _sync(dev)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="small", choices=["small", "tiny", "youtu_2b"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--rows", default="1,2,3,5,8,13,21,34,64")
    ap.add_argument("--tokens", default="128,256,512,1024,2048,4096")
    ap.add_argument("--max-tokens", type=int, default=131072, help="most rows x tokens a shape")
    ap.add_argument("--impls", default="auto,sdpa")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    cfg = getattr(ModelConfig, args.preset)()
    torch.manual_seed(0)
    model = YoutuForCausalLM(cfg).to(device=device, dtype=dtype).eval()
    rows_list = [int(r) for r in args.rows.split(",")]
    tokens_list = [int(t) for t in args.tokens.split(",")]
    shapes = [(b, t) for t in tokens_list for b in rows_list if b * t <= args.max_tokens]
    cache = LatentCache(cfg, max(rows_list), max(tokens_list) + 1, device=device, dtype=dtype)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"# first_use: {args.preset} ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M), "
          f"{dtype}, {name}, torch {torch.__version__}, {len(shapes)} shapes")
    report: dict[str, dict] = {}
    with torch.inference_mode():
        for impl in args.impls.split(","):
            model.set_attention_impl(impl)
            warm = min(64, max(tokens_list))  # module loading, cuBLAS handles: no shape's cost
            _forward(model, cache, 1, warm)
            _forward(model, cache, 1, warm)
            rows = []
            for b, t in shapes:
                first = _forward(model, cache, b, t)
                steady = statistics.median(_forward(model, cache, b, t) for _ in range(args.reps))
                rows.append({"rows": b, "tokens": t, "first_s": first, "steady_s": steady})
                print(f"{impl:5s} {b:3d} x {t:5d}  first {first * 1e3:9.1f} ms  steady "
                      f"{steady * 1e3:8.2f} ms  ({b * t / steady / 1e3:8.1f}k tok/s)")
            extra = sum(r["first_s"] - r["steady_s"] for r in rows)
            steady = sum(r["steady_s"] for r in rows)
            print(f"{impl:5s} first-use extra over {len(rows)} shapes: {extra:.2f} s "
                  f"(steady total {steady:.3f} s)")
            report[impl] = {"first_use_extra_s": extra, "steady_total_s": steady, "shapes": rows}
    print(json.dumps({"bench": "first_use", "preset": args.preset, "device": name,
                      "dtype": str(dtype), "impls": report}))


if __name__ == "__main__":
    main()
