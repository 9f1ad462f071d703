"""One training step (forward + backward) of the youtu model vs transformers' YoutuForCausalLM.

    PYTHONPATH=src python bench/model_step.py                          # 2B, 4 x 4096, all variants
    PYTHONPATH=src python bench/model_step.py --batch 2 --seq 8192 --variants peer,compiled
    PYTHONPATH=src python bench/model_step.py --batch 1 --seq 32768 --ckpt --variants peer,compiled
    PYTHONPATH=src python bench/model_step.py --profile eager          # + where the time goes

Both models hold the same bf16 weights (ours initialised, copied into transformers' by state-dict
name) and see the same batch; each step is logits -> fp32 cross-entropy -> backward, no
optimizer (AdamW is the trainer's and is the same for both). Variants:
  peer        transformers 5.x YoutuForCausalLM, attn_implementation="sdpa" (its default)
  eager_sdpa  ours, plain SDPA (PyTorch picks the backend; the model engineer's baseline)
  eager       ours, default fast paths (cuDNN attention; FlexAttention for --doc-len)
  compiled    ours, `compile_blocks()` (compile time reported separately)
  fused_ce    compiled + the trainer's chunked fused lm_head/cross-entropy (no full logits)
  compiled_loss  compiled + final norm, lm_head and cross-entropy in one torch.compile'd function
              (Inductor fuses the fp32 cast, log-softmax and its backward over the logits)
`--ckpt` recomputes each block in backward (ours: youtu.train.parallel; transformers:
gradient_checkpointing_enable). `--doc-len N` packs documents of N tokens (doc_ids and
restarting positions; transformers gets the equivalent dense 4D mask).

MFU = tokens/s * flops_per_token / 989 TFLOP/s (H100/H200 dense bf16). Two conventions:
'full' counts attention over all T keys (nanochat/PaLM; the one the DESIGN.md anchor 0.42 used),
'causal' over T/2 (what a causal kernel executes). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict

import torch
import torch.nn.functional as F

from youtu.model import ModelConfig, YoutuForCausalLM
from youtu.model.hf import config_to_hf

PEAK_FLOPS = 989e12


def build_ours(cfg: ModelConfig) -> YoutuForCausalLM:
    torch.manual_seed(0)
    with torch.device("meta"):
        model = YoutuForCausalLM(cfg)
    model.to_empty(device="cuda")
    model.init_weights()
    return model.to(torch.bfloat16)


def build_peer(cfg: ModelConfig, ours: YoutuForCausalLM, ckpt: bool):
    from transformers import YoutuConfig
    from transformers import YoutuForCausalLM as HFYoutu

    hf_cfg = YoutuConfig(**config_to_hf(cfg))
    hf_cfg._attn_implementation = "sdpa"
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # weights in bf16; the rotary table stays fp32
    try:
        with torch.device("cuda"):
            peer = HFYoutu(hf_cfg)
    finally:
        torch.set_default_dtype(default)
    missing, unexpected = peer.load_state_dict(ours.state_dict(), strict=False)
    assert not unexpected, unexpected
    assert set(missing) <= {"lm_head.weight"}, missing
    peer.tie_weights()
    if ckpt:
        peer.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    peer.train()
    return peer


def make_batch(cfg: ModelConfig, batch: int, seq: int, doc_len: int):
    g = torch.Generator(device="cuda").manual_seed(1)
    ids = torch.randint(0, cfg.vocab_size - 256, (batch, seq + 1), device="cuda", generator=g)
    inputs, targets = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
    t = torch.arange(seq, device="cuda")
    if doc_len <= 0:
        return inputs, targets, t.expand(batch, seq), None
    doc_ids = (t // doc_len).expand(batch, seq).contiguous()
    return inputs, targets, (t % doc_len).expand(batch, seq).contiguous(), doc_ids


def step_fn(variant: str, model, peer, batch):
    inputs, targets, positions, doc_ids = batch
    if variant == "peer":
        mask = None
        if doc_ids is not None:
            from youtu.model.attention import expanded_mask

            dense = expanded_mask(doc_ids)  # [B, 1, T, T] bool
            mask = torch.zeros(dense.shape, dtype=torch.bfloat16, device="cuda").masked_fill_(
                ~dense, torch.finfo(torch.bfloat16).min)

        def run():
            logits = peer(input_ids=inputs, position_ids=positions, attention_mask=mask, use_cache=False).logits
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
            loss.backward()
            return loss
        return run
    if variant == "fused_ce":
        from youtu.train.loss import fused_linear_cross_entropy

        def run():
            hidden = model.hidden_states(inputs, positions, doc_ids)
            loss_sum, _ = fused_linear_cross_entropy(hidden.flatten(0, 1), model.lm_head.weight,
                                                     targets.flatten(), chunk_tokens=8192)
            loss = loss_sum / targets.numel()
            loss.backward()
            return loss
        return run

    if variant == "compiled_loss":
        loss_fn = torch.compile(lambda hidden, weight, t: F.cross_entropy(
            (hidden @ weight.T).float().flatten(0, 1), t.flatten()))

        def run():
            hidden = model.hidden_states(inputs, positions, doc_ids)
            loss = loss_fn(hidden, model.lm_head.weight, targets)
            loss.backward()
            return loss
        return run

    def run():
        logits = model(inputs, positions, doc_ids)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        loss.backward()
        return loss
    return run


def time_steps(run, params, warmup: int, steps: int) -> tuple[list[float], float, float]:
    """Per-step ms (CUDA events), first-call seconds (compile), last loss."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    loss = run()
    torch.cuda.synchronize()
    first_s = time.perf_counter() - t0
    for p in params:
        p.grad = None
    for _ in range(warmup - 1):
        run()
        for p in params:
            p.grad = None
    times = []
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        loss = run()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
        for p in params:
            p.grad = None
    return times, first_s, loss.item()


KERNEL_CLASSES = [
    ("attention", ("flash", "fmha", "attention", "cudnn", "sdpa", "flex", "triton_tem_fused")),
    ("matmul", ("gemm", "cutlass", "xmma", "nvjet", "sm90_", "cublas", "matmul")),
    ("cross_entropy", ("log_softmax", "nll_loss", "softmax")),
    ("copy/cat", ("copy", "cat", "index", "gather", "scatter", "fill")),
]


def profile_step(run, params, out_path: str | None) -> dict[str, float]:
    """One profiled step: CUDA ms per kernel class and the top kernels."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    for p in params:
        p.grad = None
    per_class: dict[str, float] = defaultdict(float)
    kernels = []
    for evt in prof.key_averages():
        ms = evt.self_device_time_total / 1e3
        if ms <= 0:
            continue
        kernels.append((ms, evt.count, evt.key))
        name = evt.key.lower()
        cls = next((c for c, keys in KERNEL_CLASSES if any(k in name for k in keys)), "elementwise/other")
        per_class[cls] += ms
    kernels.sort(reverse=True)
    total = sum(per_class.values())
    print(f"  profile: {total:.1f} ms of kernels in one step")
    for cls, ms in sorted(per_class.items(), key=lambda kv: -kv[1]):
        print(f"    {cls:<18} {ms:8.1f} ms  {100 * ms / total:5.1f}%")
    print("    top kernels:")
    for ms, count, key in kernels[:15]:
        print(f"    {ms:8.1f} ms  x{count:<4} {key[:110]}")
    if out_path:
        with open(out_path, "w") as f:
            f.write(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=60))
    return dict(per_class)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="youtu_2b", choices=["youtu_2b", "small"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--doc-len", type=int, default=0, help="pack documents of this many tokens (0 = one per row)")
    ap.add_argument("--ckpt", action="store_true", help="activation checkpointing per block")
    ap.add_argument("--variants", default="peer,eager_sdpa,eager,compiled,fused_ce,compiled_loss")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--profile", default="", help="comma list of variants to profile one step of")
    ap.add_argument("--profile-out", default="", help="folder for the full profiler tables")
    args = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = True
    cfg = getattr(ModelConfig, args.preset)()
    model = build_ours(cfg)
    variants = args.variants.split(",")
    peer = build_peer(cfg, model, args.ckpt) if "peer" in variants else None
    if args.ckpt:
        from youtu.train.parallel import apply_activation_checkpointing

        apply_activation_checkpointing(model.model.layers)
    model.train()
    batch = make_batch(cfg, args.batch, args.seq, args.doc_len)
    tokens = args.batch * args.seq
    # with packed documents attention only spans a document
    span = min(args.doc_len, args.seq) if args.doc_len > 0 else args.seq
    f_causal = model.flops_per_token(span, causal=True)
    f_full = model.flops_per_token(span, causal=False)
    print(f"# {args.preset} ({model.num_params() / 1e9:.3f}B), batch {args.batch} x {args.seq}"
          f"{f', docs of {args.doc_len}' if args.doc_len else ''}{', activation checkpointing' if args.ckpt else ''}; "
          f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"# FLOPs/token: {f_full / 1e9:.2f} G (full attention), {f_causal / 1e9:.2f} G (causal)")

    results = {}
    compiled = False
    for variant in variants:
        if variant in ("compiled", "fused_ce", "compiled_loss") and not compiled:
            model.compile_blocks()
            compiled = True
        model.set_attention_impl("sdpa" if variant == "eager_sdpa" else "auto")
        net = peer if variant == "peer" else model
        params = [p for p in net.parameters()]
        run = step_fn(variant, model, peer, batch)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            times, first_s, loss = time_steps(run, params, args.warmup, args.steps)
        except Exception as e:  # report and go on with the other variants
            print(f"{variant}: FAILED {type(e).__name__}: {str(e)[:400]}")
            results[variant] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
            continue
        ms = statistics.median(times)
        tps = tokens / (ms / 1e3)
        row = {"ms": round(ms, 1), "spread_ms": round(max(times) - min(times), 1),
               "tok_s": round(tps), "mfu_full": round(tps * f_full / PEAK_FLOPS, 3),
               "mfu_causal": round(tps * f_causal / PEAK_FLOPS, 3),
               "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1),
               "first_call_s": round(first_s, 1), "loss": round(loss, 4)}
        results[variant] = row
        print(f"{variant:<11} {ms:8.1f} ms  {tps:9.0f} tok/s  MFU full {row['mfu_full']:.3f} "
              f"causal {row['mfu_causal']:.3f}  peak {row['peak_gib']:6.1f} GiB  first call "
              f"{first_s:5.1f} s  loss {loss:.4f}", flush=True)
        if variant in args.profile.split(","):
            out = f"{args.profile_out}/profile_{variant}_{args.seq}.txt" if args.profile_out else None
            row["profile_ms"] = profile_step(run, params, out)

    base = results.get("peer", {}).get("tok_s")
    print(f"\n| variant | ms/step | tok/s | vs peer | MFU full | MFU causal | peak GiB | first call s |")
    print("|---|---|---|---|---|---|---|---|")
    for variant, r in results.items():
        if "error" in r:
            print(f"| {variant} | failed: {r['error'][:60]} | | | | | | |")
            continue
        ratio = f"{r['tok_s'] / base:.2f}x" if base else "-"
        print(f"| {variant} | {r['ms']} | {r['tok_s']} | {ratio} | {r['mfu_full']} | {r['mfu_causal']} | "
              f"{r['peak_gib']} | {r['first_call_s']} |")
    print(json.dumps({"bench": "model_step", "preset": args.preset, "batch": args.batch, "seq": args.seq,
                      "doc_len": args.doc_len, "ckpt": args.ckpt, "torch": torch.__version__,
                      "results": results}))


if __name__ == "__main__":
    main()
