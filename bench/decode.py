"""Decode throughput of the youtu engine vs transformers' `generate`, same weights, same run.

    PYTHONPATH=src python bench/decode.py --preset small --device cpu --new-tokens 32
    PYTHONPATH=src python bench/decode.py --preset youtu_2b --device cuda --cuda-graph

For each batch size (default 1 and 32, with 128- and 512-token prompts: the DESIGN.md anchors)
both stacks generate greedily from the same random prompts with EOS ignored:
  peer   transformers' YoutuForCausalLM.generate (sdpa, DynamicCache; in transformers 5.24 it
         holds the latent + rope key per token too, as measured here, not expanded K/V)
  ours   youtu.serve.engine.Engine (continuous batching over the latent cache; with
         --cuda-graph the decode step replays CUDA graphs)
Decode tokens/s = batch x (new_tokens - 1) / (time(generate new_tokens) - time(generate 1)),
i.e. prefill excluded; median of --reps, the two stacks' repetitions interleaved (on a shared
machine the load moves between runs). Cache bytes per token: ours from the LatentCache slab,
the peer's measured from the DynamicCache tensors it returned. The greedy tokens of the two
stacks are compared (share of positions that agree; bf16 drifts on near-ties). Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
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


@torch.inference_mode()
def bench_pair(engine: Engine, peer, prompts: list[list[int]], new: int, device: str, reps: int):
    """Median seconds of (ours new tokens, ours 1 token, peer new, peer 1), repetitions
    interleaved so both stacks see the same machine load; plus both stacks' tokens."""
    ids = torch.tensor(prompts, device=device)
    ours_tokens = [o.token_ids for o in engine.generate(prompts, greedy(new))]  # warm-up, capture
    runs = {"ours_full": lambda: engine.generate(prompts, greedy(new)),
            "ours_pre": lambda: engine.generate(prompts, greedy(1))}
    peer_out = None
    if peer is not None:
        peer_out = peer_generate(peer, ids, new)
        runs.update(peer_full=lambda: peer_generate(peer, ids, new),
                    peer_pre=lambda: peer_generate(peer, ids, 1))
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(reps):
        for key, fn in runs.items():
            times[key].append(timed(fn, device))
    return ours_tokens, peer_out, {k: statistics.median(v) for k, v in times.items()}


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
    ap.add_argument("--cuda-graph", action="store_true")
    ap.add_argument("--compile", action="store_true", help="torch.compile the graphed decode step")
    ap.add_argument("--no-peer", action="store_true", help="skip transformers")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32"))
    batches = [int(b) for b in args.batches.split(",")]
    lens = [int(x) for x in args.prompt_lens.split(",")]
    if len(lens) != len(batches):
        raise SystemExit("--prompt-lens needs one length per batch size")
    cfg, ours, peer = build_models(args.preset, args.device, dtype, not args.no_peer)
    hw = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    print(f"# decode, {args.preset} ({ours.num_params() / 1e6:.0f}M params) {dtype}, {args.new_tokens} "
          f"new tokens, greedy; {hw}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"commit {commit}, cuda_graph={args.cuda_graph}, compile={args.compile}")
    rows = []
    for batch, plen in zip(batches, lens):
        g = torch.Generator().manual_seed(batch)
        prompts = torch.randint(0, cfg.vocab_size - 256, (batch, plen), generator=g).tolist()
        engine = Engine(ours, max_batch=batch, max_seq_len=plen + args.new_tokens, eos_ids=[],
                        use_cuda_graph=args.cuda_graph, compile=args.compile)
        toks, peer_out, t = bench_pair(engine, peer, prompts, args.new_tokens, args.device, args.reps)
        decoded = batch * (args.new_tokens - 1)
        row = {"batch": batch, "prompt_len": plen, "new_tokens": args.new_tokens,
               "ours_tok_s": decoded / max(t["ours_full"] - t["ours_pre"], 1e-9),
               "ours_e2e_tok_s": batch * args.new_tokens / t["ours_full"],
               "ours_cache_bytes_per_token": engine.cache.bytes_per_token()}
        del engine
        if peer_out is not None:
            ptoks = peer_out.sequences[:, plen:].tolist()
            row.update(peer_tok_s=decoded / max(t["peer_full"] - t["peer_pre"], 1e-9),
                       peer_e2e_tok_s=batch * args.new_tokens / t["peer_full"],
                       peer_cache_bytes_per_token=peer_cache_bytes_per_token(
                           peer_out, batch, plen + args.new_tokens - 1),
                       greedy_agreement=agreement(toks, ptoks))
            row["speedup"] = row["ours_tok_s"] / row["peer_tok_s"]
        rows.append(row)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()

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
                      "cuda_graph": args.cuda_graph, "compile": args.compile, "threads": torch.get_num_threads(),
                      "commit": commit, "rows": rows}))


if __name__ == "__main__":
    main()
