"""Decode throughput of the youtu engine vs transformers' `generate`, same weights, same run.

    PYTHONPATH=src python bench/decode.py --preset small --device cpu --new-tokens 32 --long-lens ""
    PYTHONPATH=src python bench/decode.py --preset youtu_2b --device cuda
    PYTHONPATH=src python bench/decode.py --preset youtu_2b --variants today,fused,fused+overlap \
        --long-lens 32768 --peer-max-len 32768          # the engine's decode settings, one run
    PYTHONPATH=src python bench/decode.py --preset youtu_2b --batches 1,8 --prompt-lens 128,512 \
        --variants fused,fused+gemv,fused+overlap+gemv --long-lens "" --no-peer --profile

Rows: batch 1 with a 128-token prompt and batch 32 with 512-token prompts (the DESIGN.md
anchors), then batch 1 at long contexts (--long-lens, default 8k, 32k and ~128k, with
--long-new-tokens). Both stacks generate greedily from the same random prompts, EOS ignored:
  peer   transformers' YoutuForCausalLM.generate (sdpa, DynamicCache; in transformers 5.x it
         holds the latent + rope key per token too, as measured here, not expanded K/V)
  ours   youtu.serve.engine.Engine with its defaults (on CUDA: CUDA graphs, the compiled
         decode step, the fused split-K latent attention kernel)
Decode tokens/s excludes prefill. Ours: the engine's decode steps are timed directly (the
first step prefills every prompt and samples the first token; the rest decode), so a long
prefill adds no noise. The peer's: batch x (new - 1) / (time(generate new) - time(generate 1)).
--variants measures several engine settings (VARIANTS: today's path = separate projections,
no overlap; fused = gate+up and q_a+kv_a as one GEMV each; fused+overlap = also step N+1
launched before step N's tokens are read back; +gemv = the weight GEMVs of batches <= 8 as
`youtu.model.decode_gemv` kernels with the norms, SwiGLU and residuals fused in) on the same weights in the same process, each a
column of the table; `ours_tok_s` is then the last variant's. Median of --reps (long rows:
--long-reps), every variant's and the peer's repetitions interleaved. Cache bytes
per token: ours from the LatentCache slab, the peer's measured from the DynamicCache it
returned. The greedy tokens are compared (share of leading positions that agree; random bf16
weights give near-flat logits, so near-ties flip early). Last line: JSON with `rows`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

from youtu.model import ModelConfig, YoutuForCausalLM
from youtu.model.hf import config_to_hf
from youtu.serve.engine import Engine
from youtu.serve.sampling import SamplingParams


def build_models(preset: str, device: str, dtype: torch.dtype, with_peer: bool):
    cfg = getattr(ModelConfig, preset)()
    torch.manual_seed(0)
    with torch.device("meta"):
        ours = YoutuForCausalLM(cfg)
    ours.to_empty(device=device)
    ours.init_weights()
    ours = ours.to(dtype).eval()
    peer = None
    if with_peer:
        from transformers import YoutuConfig
        from transformers import YoutuForCausalLM as HFYoutu

        hf_cfg = YoutuConfig(**config_to_hf(cfg))
        hf_cfg._attn_implementation = "sdpa"
        default = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.device(device):
                peer = HFYoutu(hf_cfg)
        finally:
            torch.set_default_dtype(default)
        missing, unexpected = peer.load_state_dict(ours.state_dict(), strict=False)
        assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
        peer.tie_weights()
        peer.eval()
    return cfg, ours, peer


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


# Engine settings --variants can name (Engine keyword arguments); "default" = the Engine's own.
VARIANTS = {
    "default": {},
    "today": {"fuse_weights": False, "overlap": False, "gemv": "cublas"},
    "fused": {"fuse_weights": True, "overlap": False, "gemv": "cublas"},
    "fused+overlap": {"fuse_weights": True, "overlap": True, "gemv": "cublas"},
    "fused+gemv": {"fuse_weights": True, "overlap": False, "gemv": "triton"},
    "fused+overlap+gemv": {"fuse_weights": True, "overlap": True, "gemv": "triton"},
    "fused+overlap+auto": {"fuse_weights": True, "overlap": True, "gemv": "auto"},
    "fused+overlap+auto+pdl": {"fuse_weights": True, "overlap": True, "gemv": "auto+pdl"},
}


def greedy(n: int) -> SamplingParams:
    return SamplingParams(temperature=0, max_tokens=n, ignore_eos=True)


def peer_generate(peer, ids: torch.Tensor, n: int):
    return peer.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                         min_new_tokens=n, do_sample=False, return_dict_in_generate=True,
                         pad_token_id=0)


def peer_cache_bytes_per_token(out, batch: int, tokens: int) -> float:
    """Bytes of the DynamicCache `generate` returned, per cached token."""
    cache = out.get("cache") or out.get("past_key_values")
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total / (batch * tokens) if total else float("nan")


def ours_run(engine: Engine, prompts: list[list[int]], new: int, device: str):
    """(tokens, prefill seconds, decode seconds) of one engine generation: step 1 admits and
    prefills every prompt (the engine has a row per prompt) and samples each first token."""
    handles = [engine.submit(p, greedy(new)) for p in prompts]
    sync(device)
    t0 = time.perf_counter()
    engine.step()
    sync(device)
    t1 = time.perf_counter()
    while not all(h.done for h in handles):
        engine.step()
    sync(device)
    t2 = time.perf_counter()
    return [h.result().token_ids for h in handles], t1 - t0, t2 - t1


@torch.inference_mode()
def bench_pair(engines: dict[str, Engine], peer, prompts: list[list[int]], new: int, device: str,
               reps: int):
    """Median seconds of each engine's (prefill, decode) and the peer's (generate new,
    generate 1), repetitions interleaved so every stack sees the same machine load; the
    engines' and the peer's tokens."""
    ids = torch.tensor(prompts, device=device)
    short = [p[:8] for p in prompts]
    for engine in engines.values():
        if engine.graphs is not None:
            engine.graphs.capture_all()  # compiles and captures outside the timed region
        engine.generate(short, greedy(4))  # warm-up: prefill kernels, sampling
    times: dict[str, list[float]] = {}
    peer_out, ours_tokens = None, {}
    if peer is not None:
        peer_generate(peer, ids[:, :8], 2)  # warm-up
        times.update(peer_full=[], peer_pre=[])
    for _ in range(reps):
        for name, engine in engines.items():
            ours_tokens[name], pre, dec = ours_run(engine, prompts, new, device)
            times.setdefault(f"{name}_prefill", []).append(pre)
            times.setdefault(f"{name}_decode", []).append(dec)
        if peer is not None:
            t = time.perf_counter()
            sync(device)
            peer_out = peer_generate(peer, ids, new)
            sync(device)
            times["peer_full"].append(time.perf_counter() - t)
            times["peer_pre"].append(timed(lambda: peer_generate(peer, ids, 1), device))
    return ours_tokens, peer_out, {k: statistics.median(v) for k, v in times.items()}


@torch.inference_mode()
def profile_steps(model, cfg, compiled: bool, settings: dict, steps: int = 16) -> None:
    """Kernels of `steps` batch-1 decode steps (128-token prompt) by total GPU time, with the
    engine `settings` (a VARIANTS entry: the last --variants one)."""
    from torch.profiler import ProfilerActivity, profile

    engine = Engine(model, max_batch=1, max_seq_len=512, eos_ids=[], compile=compiled, **settings)
    prompt = torch.randint(0, cfg.vocab_size - 256, (128,)).tolist()
    engine.generate([prompt], greedy(steps + 8))  # capture + warm-up
    h = engine.submit(prompt, greedy(steps + 1))
    engine.step()
    sync("cuda")
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        while not h.done:
            engine.step()
        sync("cuda")
    print(f"# profile: {steps} batch-1 decode steps ({settings or 'engine defaults'}), kernels "
          f"by GPU time")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=22, max_name_column_width=60))


def agreement(a: list[list[int]], b: list[list[int]]) -> float:
    """Share of sequences' leading tokens that agree (up to each pair's first divergence)."""
    total = same = 0
    for x, y in zip(a, b):
        n = 0
        while n < min(len(x), len(y)) and x[n] == y[n]:
            n += 1
        same += n
        total += len(x)
    return same / max(1, total)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="small", choices=["tiny", "small", "youtu_2b"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="", help="float32 | bfloat16 (default: bf16 on CUDA, fp32 on CPU)")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--prompt-lens", default="128,512", help="one per batch size")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--long-lens", default="8192,32768,131000",
                    help="batch-1 long-context prompt lengths ('' = none)")
    ap.add_argument("--long-new-tokens", type=int, default=32)
    ap.add_argument("--long-reps", type=int, default=1)
    ap.add_argument("--no-cuda-graph", action="store_true", help="eager decode (CUDA default: graphs)")
    ap.add_argument("--no-compile", action="store_true", help="graphs without torch.compile")
    ap.add_argument("--no-peer", action="store_true", help="skip transformers")
    ap.add_argument("--peer-max-len", type=int, default=0,
                    help="skip transformers on prompts longer than this (0 = never skip)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--variants", default="default",
                    help=f"engine settings to measure side by side, comma-separated, from "
                         f"{', '.join(VARIANTS)}; the last one is `ours_tok_s`")
    ap.add_argument("--profile", action="store_true",
                    help="after the rows, profile 16 batch-1 decode steps (kernels by GPU time)")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32"))
    batches = [int(b) for b in args.batches.split(",")]
    lens = [int(x) for x in args.prompt_lens.split(",")]
    if len(lens) != len(batches):
        raise SystemExit("--prompt-lens needs one length per batch size")
    long_lens = [int(x) for x in args.long_lens.split(",") if x]
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise SystemExit(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    cuda = args.device.startswith("cuda")
    graphs = cuda and not args.no_cuda_graph
    compiled = graphs and not args.no_compile
    cfg, ours, peer = build_models(args.preset, args.device, dtype, not args.no_peer)
    hw = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    # YOUTU_COMMIT: the commit of a copied tree (the device machine runs a copy, not a checkout)
    commit = os.environ.get("YOUTU_COMMIT") or subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
        cwd=Path(__file__).parent).stdout.strip()
    print(f"# decode, {args.preset} ({ours.num_params() / 1e6:.0f}M params) {dtype}, {args.new_tokens} "
          f"new tokens, greedy; {hw}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"commit {commit}, cuda_graph={graphs}, compile={compiled}, variants={','.join(variants)}")
    if cuda:  # the fused layout must not add a copy of the weights (parameters become views)
        from youtu.serve.graphs import fuse_decode_weights

        before = torch.cuda.memory_allocated()
        fuse_decode_weights(ours)
        print(f"# GPU memory allocated before / after fusing the decode weights: "
              f"{before / 2**30:.3f} / {torch.cuda.memory_allocated() / 2**30:.3f} GiB")
    cases = [(b, n, args.new_tokens, args.reps, False) for b, n in zip(batches, lens)]
    cases += [(1, n, args.long_new_tokens, args.long_reps, True) for n in long_lens]
    rows = []
    for batch, plen, new, reps, long in cases:
        g = torch.Generator().manual_seed(batch + plen)
        prompts = torch.randint(0, cfg.vocab_size - 256, (batch, plen), generator=g).tolist()
        engines = {v: Engine(ours, max_batch=batch, max_seq_len=plen + new, eos_ids=[],
                             use_cuda_graph=graphs, compile=compiled,
                             prefill_chunk_tokens=8192 if long else 2048, **VARIANTS[v])
                   for v in variants}
        with_peer = peer if not (args.peer_max_len and plen > args.peer_max_len) else None
        try:
            all_toks, peer_out, t = bench_pair(engines, with_peer, prompts, new, args.device, reps)
        except torch.OutOfMemoryError:
            if with_peer is None:
                raise
            print(f"# transformers ran out of memory at batch {batch} x {plen}; ours alone")
            torch.cuda.empty_cache()
            all_toks, peer_out, t = bench_pair(engines, None, prompts, new, args.device, reps)
        decoded = batch * (new - 1)
        last = variants[-1]
        toks = all_toks[last]
        row = {"batch": batch, "prompt_len": plen, "new_tokens": new,
               "ours_tok_s": decoded / max(t[f"{last}_decode"], 1e-9),
               "ours_e2e_tok_s": batch * new / (t[f"{last}_prefill"] + t[f"{last}_decode"]),
               "ours_prefill_s": t[f"{last}_prefill"],
               "ours_cache_bytes_per_token": engines[last].cache.bytes_per_token()}
        if len(variants) > 1:
            row["variants_tok_s"] = {v: decoded / max(t[f"{v}_decode"], 1e-9) for v in variants}
            # the settings change no greedy token beyond bf16 near-ties (the tests are exact)
            row["variants_agreement"] = {v: agreement(all_toks[v], all_toks[variants[0]])
                                         for v in variants[1:]}
        del engines
        if peer_out is not None:
            ptoks = peer_out.sequences[:, plen:].tolist()
            gap = t["peer_full"] - t["peer_pre"]  # <= 0 only when noise swamps a tiny run
            row.update(peer_tok_s=decoded / gap if gap > 0 else float("nan"),
                       peer_e2e_tok_s=batch * new / t["peer_full"],
                       peer_cache_bytes_per_token=peer_cache_bytes_per_token(
                           peer_out, batch, plen + new - 1),
                       greedy_agreement=agreement(toks, ptoks))
            row["speedup"] = row["ours_tok_s"] / row["peer_tok_s"]
            del peer_out
        rows.append(row)
        print(json.dumps(row), flush=True)
        if cuda:
            torch.cuda.empty_cache()

    if args.profile and cuda:
        profile_steps(ours, cfg, compiled, VARIANTS[variants[-1]])
    if len(variants) > 1:
        print("| batch | prompt | " + " | ".join(f"{v} tok/s" for v in variants)
              + " | peer tok/s | " + " | ".join(f"{v} / {variants[0]}" for v in variants[1:]) + " |")
        print("|---" * (2 + 2 * len(variants)) + "|")
        for r in rows:
            vs = r["variants_tok_s"]
            print(f"| {r['batch']} | {r['prompt_len']} | " + " | ".join(f"{vs[v]:.1f}" for v in variants)
                  + f" | {r.get('peer_tok_s', float('nan')):.1f} | "
                  + " | ".join(f"{vs[v] / vs[variants[0]]:.3f}x" for v in variants[1:]) + " |")
    print("| batch | prompt | ours decode tok/s | peer decode tok/s | speedup | ours e2e tok/s | "
          "peer e2e tok/s | cache B/token ours | cache B/token peer | greedy agreement |")
    print("|---" * 10 + "|")
    for r in rows:
        print(f"| {r['batch']} | {r['prompt_len']} | {r['ours_tok_s']:.1f} | {r.get('peer_tok_s', float('nan')):.1f} "
              f"| {r.get('speedup', float('nan')):.2f}x | {r['ours_e2e_tok_s']:.1f} | "
              f"{r.get('peer_e2e_tok_s', float('nan')):.1f} | {r['ours_cache_bytes_per_token']} | "
              f"{r.get('peer_cache_bytes_per_token', float('nan')):.0f} | {r.get('greedy_agreement', float('nan')):.3f} |")
    print(json.dumps({"bench": "decode", "preset": args.preset, "device": args.device,
                      "hardware": hw, "dtype": str(dtype).replace("torch.", ""),
                      "cuda_graph": graphs, "compile": compiled, "threads": torch.get_num_threads(),
                      "variants": variants,
                      "commit": commit, "rows": rows}))


if __name__ == "__main__":
    main()
