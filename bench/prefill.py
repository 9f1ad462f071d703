"""Prefill throughput of the youtu 2B (bf16) at 8k and 32k tokens vs transformers, same weights.

    PYTHONPATH=src python bench/prefill.py                       # seq 8192 and 32768, batch 1
    PYTHONPATH=src python bench/prefill.py --seqs 8192 --batch 4

A prefill is one no-grad forward over the prompt that fills the KV cache and returns the last
token's logits. Variants:
  peer       transformers' YoutuForCausalLM (sdpa), DynamicCache (expanded per-head K/V),
             logits_to_keep=1
  ours       forward with a bf16 LatentCache (the serving path: expanded attention over the
             cache for long chunks, cuDNN causal kernel), last-token logits
  ours_sdpa  the same with the plain SDPA reference path
Reports tokens/s (median of --reps), the cache's bytes and the peak memory. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_step import build_ours, build_peer  # noqa: E402

from youtu.model import LatentCache, ModelConfig  # noqa: E402


def timed(fn, reps: int) -> list[float]:
    fn()  # warm-up (kernel selection, cuDNN plans)
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return times


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seqs", default="8192,32768")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--variants", default="peer,ours,ours_sdpa")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    cfg = ModelConfig.youtu_2b()
    model = build_ours(cfg).eval()
    variants = args.variants.split(",")
    peer = build_peer(cfg, model, ckpt=False).eval() if "peer" in variants else None
    print(f"# prefill, 2B bf16, batch {args.batch}; {torch.cuda.get_device_name()}, torch {torch.__version__}")
    results: dict[str, dict] = {}
    for seq in map(int, args.seqs.split(",")):
        ids = torch.randint(0, cfg.vocab_size - 256, (args.batch, seq), device="cuda")
        for variant in variants:
            key = f"{variant}@{seq}"
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            if variant == "peer":
                def fn():
                    return peer(input_ids=ids, use_cache=True, logits_to_keep=1).logits
                cache_bytes = None
            else:
                model.set_attention_impl("sdpa" if variant == "ours_sdpa" else "auto")
                cache = LatentCache(cfg, args.batch, seq, device="cuda", dtype=torch.bfloat16)
                cache_bytes = cache.nbytes

                def fn():
                    hidden = model.hidden_states(ids, cache=cache)
                    return hidden[:, -1] @ model.lm_head.weight.T
            try:
                times = timed(fn, args.reps)
            except Exception as e:  # report and go on
                print(f"{key}: FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)
                results[key] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
                continue
            ms = statistics.median(times)
            results[key] = {"ms": round(ms, 1), "tok_s": round(args.batch * seq / (ms / 1e3)),
                            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1),
                            "cache_gib": round(cache_bytes / 2**30, 2) if cache_bytes else None}
            print(f"{key:<16} {ms:9.1f} ms  {results[key]['tok_s']:8d} tok/s  peak "
                  f"{results[key]['peak_gib']} GiB", flush=True)
    print("\n| variant@seq | ms | tok/s | peak GiB | cache GiB |\n|---|---|---|---|---|")
    for key, r in results.items():
        if "error" in r:
            print(f"| {key} | failed: {r['error'][:60]} | | | |")
        else:
            print(f"| {key} | {r['ms']} | {r['tok_s']} | {r['peak_gib']} | {r['cache_gib']} |")
    print(json.dumps({"bench": "prefill", "batch": args.batch, "torch": torch.__version__, "results": results}))


if __name__ == "__main__":
    main()
