"""Training throughput: our trainer step vs a peer (torchtitan or transformers), same config,
same batch, same initial weights, in the same run.

    python bench/train_throughput.py                                   # CPU, tiny model, fp32
    python bench/train_throughput.py --preset youtu_2b --seq 4096 --batch 4 --compile --peer torchtitan
    python bench/train_throughput.py --preset youtu_2b --seq 4096 --batch 4 --compile --fp8 off,tensorwise,rowwise --peer none
    python bench/train_throughput.py --preset youtu_2b --seq 32768 --batch 1 --compile --ac full,selective --peer none
    python bench/train_throughput.py --preset small --seq 2048 --batch 8 --compile --fp8 off,rowwise --curve 300

Ours is `youtu.train.trainer.Trainer.train_step` (bf16 autocast on CUDA with fp32 master weights,
cuDNN causal attention, fused chunked lm_head + cross-entropy, fused AdamW, clipping), once per
`--fp8` x `--ac` variant. Peers: `--peer torchtitan` is torchtitan's own DeepSeek-V3 model at our
shape through its parallelize/compile path (0.2.2 or 0.3.0, whichever is installed;
bench/torchtitan_peer.py says what is matched);
`--peer transformers` is transformers' `YoutuForCausalLM` with the same fp32 weights under the
same bf16 autocast, `labels=` loss, fused AdamW and clipping. `--packed` also times ours on
rows of several documents (FlexAttention block mask).

MFU is youtu's one convention (`YoutuForCausalLM.flops_per_token`: 6N + attention over all
seq_len keys, PaLM's and torchtitan's), the same function the trainer's log line uses. Reports
tokens/s, MFU, peak memory and the first step's loss of each (a parity check: same weights and
batch give the same loss). `--curve N` instead trains N steps of each `--fp8` variant from the
same initial weights on the same data (the UTF-8 bytes of the embedded corpus as token ids)
and reports the loss curves. `--profile N` profiles one more step of each after its timed
steps and prints its N costliest GPU kernels and its GPU time per kind of kernel (GEMM,
attention, Triton/Inductor-fused, optimizer, copies and casts, other): where ours and the peer
differ. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import copy
import functools
import gc
import json
import re
import tempfile
import time
from dataclasses import dataclass

import torch

from youtu.data.packing import PackedBatch
from youtu.model import ModelConfig, YoutuForCausalLM
from youtu.train.config import TrainConfig
from youtu.train.trainer import Trainer
from youtu.train.metrics import mfu, peak_flops
from youtu.train.parallel import Dist, resolve_device
from youtu.train.schedule import StageSpan


@dataclass
class Result:
    name: str
    tokens_per_s: float
    step_ms: float
    mfu: float | None
    peak_mem_gb: float | None
    first_loss: float
    fp8: str = "off"
    ac: str = "off"
    profile: dict | None = None


# Kernel kinds by name (CUDA kernel names as the profiler reports them), first match wins.
KERNEL_KINDS = (
    ("attention", re.compile(r"flash|fmha|cudnn|attention|sdpa", re.I)),
    ("gemm", re.compile(r"gemm|xmma|cutlass|cublas|nvjet|sm90_|sm80_|matmul|aten::(mm|addmm|bmm|linear)$", re.I)),
    ("optimizer", re.compile(r"adam|multi_tensor|foreach", re.I)),
    ("triton/inductor", re.compile(r"^triton|fused", re.I)),
    ("copy/cast", re.compile(r"copy|memcpy|memset|fill|cast|to_copy|elementwise", re.I)),
)


def kernel_kind(name: str) -> str:
    return next((kind for kind, pat in KERNEL_KINDS if pat.search(name)), "other")


def profile_step(step, top: int, device: torch.device) -> dict:
    """One call of `step` under torch.profiler: its `top` costliest kernels and its time per
    kernel kind, in ms. CUDA: GPU kernel time; CPU: the self time of each operator."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
        step()
        _sync(device)
    kernels = []
    for ev in prof.key_averages():
        # self time: a kernel's own, so an operator and its kernels do not both count (torch
        # 2.11's FunctionEventAvg has self_device_time_total, no cuda_time_total)
        t = ev.self_device_time_total if cuda else ev.self_cpu_time_total
        if t > 0:
            kernels.append((ev.key, t / 1e3, ev.count))
    kernels.sort(key=lambda k: -k[1])
    kinds: dict[str, float] = {}
    for name, ms, _ in kernels:
        kinds[kernel_kind(name)] = kinds.get(kernel_kind(name), 0.0) + ms
    return {"total_ms": round(sum(k[1] for k in kernels), 2),
            "kinds_ms": {k: round(v, 2) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
            "top": [{"kernel": n[:120], "ms": round(ms, 3), "calls": c}
                    for n, ms, c in kernels[:top]]}


def print_profile(name: str, prof: dict) -> None:
    print(f"\nprofile of one step, {name}: {prof['total_ms']:.1f} ms of kernels; by kind: "
          + ", ".join(f"{k} {v:.1f}" for k, v in prof["kinds_ms"].items()))
    for k in prof["top"]:
        print(f"  {k['ms']:9.2f} ms {k['calls']:6d}x  {k['kernel']}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def make_batch(cfg: ModelConfig, batch: int, seq: int, packed: bool, seed: int = 0) -> PackedBatch:
    """Random tokens; one document per row, or (packed) four documents per row."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.vocab_size - 256, (batch, seq + 1), generator=g)
    targets = ids[:, 1:].clone()
    targets[:, -1] = -100  # as transformers' labels= loss: T - 1 predictions per row
    if packed:
        doc_len = seq // 4
        doc_ids = (torch.arange(seq) // doc_len).clamp(max=3).expand(batch, seq).contiguous()
        positions = (torch.arange(seq) - doc_ids[0] * doc_len).expand(batch, seq).contiguous()
        ends = (doc_ids[0, 1:] != doc_ids[0, :-1]).nonzero().flatten()
        targets[:, ends] = -100
    else:
        doc_ids = torch.zeros(batch, seq, dtype=torch.long)
        positions = torch.arange(seq).expand(batch, seq).contiguous()
    return PackedBatch(ids[:, :-1].contiguous(), targets, positions, doc_ids)


def _trainer(cfg: ModelConfig, state: dict, device: torch.device, tmp: str, compile: bool,
             loss_kernel: str, ac: str, fp8: str, fp8_linears: str = "all") -> Trainer:
    """Our Trainer on a fresh copy of `state` (training updates parameters in place)."""
    with torch.device("meta"):
        model = YoutuForCausalLM(copy.deepcopy(cfg))
    model.load_state_dict({k: v.clone() for k, v in state.items()}, assign=True)
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    model.init_rope()
    tcfg = TrainConfig(lr=1e-4, compile=compile, tensorboard=False, spike_factor=0.0,
                       loss_kernel=loss_kernel, activation_checkpointing=ac, fp8=fp8,
                       fp8_linears=fp8_linears)
    return Trainer(tcfg, model, dist=Dist(device=device), out_dir=tmp)


def bench_ours(cfg: ModelConfig, state: dict, batch: PackedBatch, device: torch.device,
               steps: int, warmup: int, compile: bool, name: str, loss_kernel: str = "chunked",
               ac: str = "off", fp8: str = "off", fp8_linears: str = "all",
               profile: int = 0) -> Result:
    _reset_memory(device)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(cfg, state, device, tmp, compile, loss_kernel, ac, fp8, fp8_linears)
        B, T = batch.input_ids.shape
        span = StageSpan(index=0, name="bench", start_step=0, end_step=steps + warmup, seq_len=T,
                         rows=B, rope_theta=cfg.rope_theta, lr_phase="stable")
        first = trainer.train_step(batch, 1e-4, span).loss
        for _ in range(warmup - 1):
            trainer.train_step(batch, 1e-4, span)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(batch, 1e-4, span)
        _sync(device)
        dt = (time.perf_counter() - t0) / steps
        peak = _peak_gb(device)
        prof = (profile_step(lambda: trainer.train_step(batch, 1e-4, span), profile, device)
                if profile else None)
        trainer.close()
    del trainer
    r = _result(name, cfg, batch, device, dt, peak, first)
    r.fp8, r.ac, r.profile = fp8, ac, prof
    return r


def bench_hf(cfg: ModelConfig, state: dict, batch: PackedBatch, device: torch.device,
             steps: int, warmup: int, compile: bool) -> Result:
    from transformers import YoutuConfig
    from transformers import YoutuForCausalLM as HFYoutu

    from youtu.model.hf import config_to_hf

    _reset_memory(device)
    hf_cfg = {k: v for k, v in config_to_hf(cfg).items() if k not in ("architectures", "model_type")}
    with torch.device(device):
        model = HFYoutu(YoutuConfig(**hf_cfg))
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("rotary" in k for k in missing), (missing, unexpected)
    model.train()
    if compile:
        model = torch.compile(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1,
                            fused=device.type in ("cuda", "cpu"))
    ids = batch.input_ids.to(device)
    labels = ids  # HF shifts labels itself; make_batch leaves the last position untrained
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step() -> float:
        with amp:
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    first = step()
    for _ in range(warmup - 1):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    dt = (time.perf_counter() - t0) / steps
    peak = _peak_gb(device)
    return _result("transformers", cfg, batch, device, dt, peak, first)


def _result(name: str, cfg: ModelConfig, batch: PackedBatch, device: torch.device, dt: float,
            peak: float | None, first: float) -> Result:
    B, T = batch.input_ids.shape
    tok_s = B * T / dt
    return Result(name, tok_s, dt * 1e3, bench_mfu(cfg, T, tok_s, peak_flops(device)), peak, first)


def bench_mfu(cfg: ModelConfig, seq_len: int, tokens_per_s: float, peak: float | None) -> float | None:
    """MFU as the trainer logs it: `metrics.mfu` over `flops_per_token(seq_len)`."""
    with torch.device("meta"):
        flops = YoutuForCausalLM(cfg).flops_per_token(seq_len)
    return mfu(tokens_per_s, flops, peak)


def bench_torchtitan(cfg: ModelConfig, state: dict, batch: PackedBatch, device: torch.device,
                     steps: int, warmup: int, compile: bool, ac: str, profile: int = 0) -> Result:
    from torchtitan_peer import bench_torchtitan as run_titan

    _reset_memory(device)
    profiled: list[dict] = []
    after = (lambda step: profiled.append(profile_step(step, profile, device))) if profile else None
    r = run_titan(cfg, state, batch.input_ids, batch.targets, device, steps, warmup, compile, ac,
                  after=after)
    out = _result(f"torchtitan {r.version}", cfg, batch, device, r.seconds_per_step,
                  r.peak_mem_gb, r.first_loss)
    out.ac, out.titan_version = ac, r.version
    out.profile = profiled[0] if profiled else None
    B, T = batch.input_ids.shape
    peak = peak_flops(device)  # torchtitan's own FLOP count (norm gains too), for the record
    out.titan_mfu_own_count = (B * T / r.seconds_per_step * r.flops_per_token / peak
                               if peak else None)
    return out


@functools.cache
def corpus_bytes(n_tokens: int, seed: int = 0) -> torch.Tensor:
    """`n_tokens` UTF-8 bytes of the embedded corpus (stdlib code and docs) as token ids 0-255:
    real text with no tokenizer to train, identical for every variant."""
    from youtu.data.sources import embedded_corpus

    chunks, total = [], 0
    for doc in embedded_corpus(seed, code_chars=n_tokens, prose_chars=n_tokens // 2,
                               stem_chars=n_tokens // 4):
        chunks.append(doc.text.encode("utf-8"))
        total += len(chunks[-1])
        if total > n_tokens:
            break
    data = b"".join(chunks)
    if len(data) <= n_tokens:
        raise ValueError(f"the embedded corpus gave {len(data)} bytes, fewer than {n_tokens}")
    return torch.frombuffer(bytearray(data[:n_tokens + 1]), dtype=torch.uint8).long()


def loss_curve(cfg: ModelConfig, state: dict, device: torch.device, *, steps: int, batch: int,
               seq: int, compile: bool, loss_kernel: str, fp8: str, lr: float) -> list[float]:
    """Train `steps` steps from `state` on consecutive corpus rows; the loss of every step."""
    data = corpus_bytes(steps * batch * seq)
    losses = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(cfg, state, device, tmp, compile, loss_kernel, "off", fp8)
        span = StageSpan(index=0, name="curve", start_step=0, end_step=steps, seq_len=seq,
                         rows=batch, rope_theta=cfg.rope_theta, lr_phase="stable")
        warmup = max(1, steps // 10)
        for step in range(steps):
            rows = data[step * batch * seq:(step + 1) * batch * seq + 1]
            ids = rows[:-1].view(batch, seq)
            targets = rows[1:].view(batch, seq).clone()
            b = PackedBatch(ids, targets, torch.arange(seq).expand(batch, seq).contiguous(),
                            torch.zeros(batch, seq, dtype=torch.long))
            step_lr = lr * min(1.0, (step + 1) / warmup)
            losses.append(trainer.train_step(b, step_lr, span).loss)
        trainer.close()
    return losses


def _curve_main(args, cfg: ModelConfig, state: dict, device: torch.device) -> None:
    variants = args.fp8.split(",")
    curves = {v: loss_curve(cfg, state, device, steps=args.curve, batch=args.batch, seq=args.seq,
                            compile=args.compile, loss_kernel=args.loss_kernel, fp8=v,
                            lr=args.curve_lr) for v in variants}
    base = curves[variants[0]]
    tail = max(1, args.curve // 6)
    print(f"\nloss curve: {args.preset}, {args.curve} steps x {args.batch} x {args.seq} bytes of "
          f"the embedded corpus, lr {args.curve_lr:g}")
    print(f"{'fp8':12s} {'loss@1':>8s} {'loss@%d' % args.curve:>10s} {'mean last ' + str(tail):>14s} "
          f"{'max |d| vs ' + variants[0]:>18s}")
    summary = {}
    for v, c in curves.items():
        diff = max(abs(a - b) for a, b in zip(c, base))
        mean_tail = sum(c[-tail:]) / tail
        summary[v] = {"first": c[0], "last": c[-1], "mean_tail": mean_tail, "max_abs_diff": diff}
        print(f"{v:12s} {c[0]:8.4f} {c[-1]:10.4f} {mean_tail:14.4f} {diff:18.4f}")
    # run-to-run noise of the reference: the step-to-step spread of its last `tail` losses
    mean = sum(base[-tail:]) / tail
    noise = (sum((x - mean) ** 2 for x in base[-tail:]) / tail) ** 0.5
    print(f"step-to-step std of {variants[0]} over the last {tail} steps: {noise:.4f}")
    out = {"mode": "curve", "preset": args.preset, "steps": args.curve, "batch": args.batch,
           "seq": args.seq, "lr": args.curve_lr, "summary": summary, "tail_std": noise,
           "curves": curves}
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(out, f)
    print(json.dumps({k: v for k, v in out.items() if k != "curves"}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="tiny", choices=["tiny", "small", "youtu_2b"])
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile (ours and the peer per block)")
    p.add_argument("--loss-kernel", default="chunked", choices=["chunked", "chunked_compiled", "compiled"],
                   help="ours: the trainer's loss_kernel")
    p.add_argument("--ac", default="off",
                   help="ours: activation checkpointing modes to time, comma-separated "
                        "(off, full, selective); the peer runs the first")
    p.add_argument("--ckpt", action="store_true", help="same as --ac full")
    p.add_argument("--fp8", default="off",
                   help="ours: train.fp8 recipes to time, comma-separated (off, tensorwise, rowwise)")
    p.add_argument("--fp8-linears", default="all", choices=["all", "auto"],
                   help="ours: train.fp8_linears for every fp8 variant")
    p.add_argument("--packed", action="store_true", help="also time ours on packed rows")
    p.add_argument("--peer", default="transformers", choices=["transformers", "torchtitan", "none"])
    p.add_argument("--curve", type=int, default=0,
                   help="train this many steps per --fp8 variant and compare the loss curves")
    p.add_argument("--curve-lr", type=float, default=1e-3)
    p.add_argument("--json-out", default="", help="also write the JSON result to this file")
    p.add_argument("--profile", type=int, default=0,
                   help="profile one more step of each and print its N costliest kernels")
    args = p.parse_args()
    if args.ckpt:
        args.ac = "full"

    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    # Each variant is a new set of blocks (fp8 swaps module types, AC wraps forward): its own
    # compile; above dynamo's default of 8 per code object it would silently run eager.
    torch._dynamo.config.cache_size_limit = 64
    cfg = getattr(ModelConfig, args.preset)()
    torch.manual_seed(0)
    with torch.device(device):  # init where it is fast; keep the copy on the CPU
        ref = YoutuForCausalLM(cfg)
        ref.init_weights()
    state = {k: v.detach().to("cpu", copy=True) for k, v in ref.state_dict().items()}
    del ref
    if args.curve:
        return _curve_main(args, cfg, state, device)
    batch = make_batch(cfg, args.batch, args.seq, packed=False)

    common = dict(steps=args.steps, warmup=args.warmup, compile=args.compile,
                  loss_kernel=args.loss_kernel, profile=args.profile)
    results = []
    for ac in args.ac.split(","):
        for fp8 in args.fp8.split(","):
            name = "ours" + (f" fp8 {fp8}" if fp8 != "off" else "") + (f" ac {ac}" if ac != "off" else "")
            if fp8 != "off" and args.fp8_linears != "all":
                name += f" ({args.fp8_linears} linears)"
            results.append(bench_ours(cfg, state, batch, device, name=name, ac=ac, fp8=fp8,
                                      fp8_linears=args.fp8_linears, **common))
    if args.packed:
        packed = make_batch(cfg, args.batch, args.seq, packed=True)
        results.append(bench_ours(cfg, state, packed, device, name="ours (packed, 4 docs/row)",
                                  ac=args.ac.split(",")[0], **common))
    peer, peer_error = None, None
    try:  # a peer that cannot run here (e.g. torchtitan on an older torch) is reported, not fatal
        if args.peer == "transformers":
            peer = bench_hf(cfg, state, batch, device, args.steps, args.warmup, args.compile)
        elif args.peer == "torchtitan":
            peer = bench_torchtitan(cfg, state, batch, device, args.steps, args.warmup,
                                    args.compile, args.ac.split(",")[0], args.profile)
    except Exception as e:  # noqa: BLE001 (any failure of the peer's own code)
        peer_error = f"{type(e).__name__}: {e}"
        print(f"peer {args.peer} failed: {peer_error}")
    if peer is not None:
        results.append(peer)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"\ntraining step: {args.preset}, batch {args.batch} x {args.seq}, {name}, "
          f"{'bf16 autocast' if device.type == 'cuda' else 'fp32'}"
          f"{', compiled' if args.compile else ''}, {args.steps} timed steps")
    print(f"{'impl':28s} {'tok/s':>10s} {'step ms':>9s} {'MFU':>6s} {'peak GB':>8s} {'loss@1':>8s}")
    for r in results:
        util = f"{100 * r.mfu:.1f}%" if r.mfu is not None else "-"
        mem = f"{r.peak_mem_gb:.1f}" if r.peak_mem_gb is not None else "-"
        print(f"{r.name:28s} {r.tokens_per_s:10.0f} {r.step_ms:9.1f} {util:>6s} {mem:>8s} "
              f"{r.first_loss:8.4f}")
    out = {"preset": args.preset, "seq": args.seq, "batch": args.batch, "device": name,
           "compile": args.compile, "loss_kernel": args.loss_kernel, "ac": args.ac,
           "fp8": args.fp8, "fp8_linears": args.fp8_linears, "peer": args.peer, "results": [r.__dict__ for r in results]}
    for r in results:
        if r.profile:
            print_profile(r.name, r.profile)
    base = results[0]
    for r in results[1:]:
        print(f"{base.name} / {r.name}: {base.tokens_per_s / r.tokens_per_s:.2f}x")
    if peer is not None:
        out["speedup_vs_peer"] = base.tokens_per_s / peer.tokens_per_s
    if peer_error:
        out["peer_error"] = peer_error
        print(f"peer {args.peer}: {peer_error}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(out, f)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
