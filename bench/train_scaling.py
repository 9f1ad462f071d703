"""FSDP2 data-parallel scaling of the training step: the 2B preset, bf16, seq 4096, on 1-8 GPUs.

    python bench/train_scaling.py --gpus 1,2,4,8                 # one H200 node (the issue's run)
    python bench/train_scaling.py --gpus 1,2,4,8 --compile       # per-block torch.compile
    python bench/train_scaling.py --preset tiny --device cpu --gpus 1,2    # logic check, gloo

The script is its own launcher: for each GPU count it starts
`python -m torch.distributed.run --standalone --nproc-per-node N bench/train_scaling.py --worker`
(NCCL on GPU, gloo on CPU) with NVLink multicast off in the child environment
(NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1, NVSHMEM_DISABLE_NVLS=1), collects
rank 0's JSON result, and prints a table and one JSON line. A worker can also be launched by
hand under torchrun (`--worker --result out.json`).

Each count runs `youtu.train.trainer.Trainer.train_step` (the production step: fused chunked
lm_head + cross-entropy, gradient clipping, fused AdamW) at the same per-GPU batch
(`--batch` rows x `--seq`, default 4 x 4096 = 16k tokens per GPU), on random tokens, one
document per row. One GPU is the plain single-process trainer (what `youtu train` runs on one
GPU: bf16 autocast over fp32 weights, no FSDP); N > 1 is FSDP2 (`fully_shard` per block and the
root, bf16 parameters for compute, fp32 gradient reduction, fp32 master weights and AdamW state
sharded). Reported per count: tokens/s per GPU (median step after `--warmup` steps), MFU of the
989 TFLOP/s H200 dense bf16 peak (6N + attention FLOPs per token; "full" counts attention over
all T keys, the DESIGN.md anchor's convention, "causal" T/2), peak memory per GPU (max over
ranks of torch.cuda.max_memory_allocated; on CPU the peak RSS), and scaling efficiency =
(tokens/s per GPU at N) / (tokens/s per GPU at the smallest count, normally 1).

GPU numbers: PENDING. Only the single-GPU device kind was lent when this was written, and its
time was used up, so no multi-GPU run has been made; only the CPU/gloo path
(`--preset tiny --device cpu --gpus 1,2`) has been run. Results go in
`bench/results/<date>_h200_train_scaling.md` once measured (target: efficiency >= 0.90).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

# Keep NCCL / PyTorch symmetric memory / NVSHMEM off NVLink multicast: a program using it can
# take the host's shared GPUs out of service (the device README).
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
                "NVSHMEM_DISABLE_NVLS": "1"}
PEAK_TFLOPS = 989.0
"""H200 (= H100 SXM) dense bf16 tensor-core peak, TFLOP/s."""
DEFAULT_SEQ = {"youtu_2b": 4096, "small": 4096, "tiny": 256}


# ---- worker: one GPU count, under torchrun -------------------------------------------------------


def _batch(vocab: int, rows: int, seq: int, seed: int = 0):
    """Random tokens below the special ids, one document per row (plain causal attention)."""
    from youtu.data.packing import PackedBatch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab - 256, (rows, seq + 1), generator=g)
    targets = ids[:, 1:].clone()
    targets[:, -1] = -100
    positions = torch.arange(seq).expand(rows, seq).contiguous()
    return PackedBatch(ids[:, :-1].contiguous(), targets, positions,
                       torch.zeros(rows, seq, dtype=torch.long))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def worker(args: argparse.Namespace) -> None:
    """Time `args.steps` training steps on this torchrun job; rank 0 writes the result JSON."""
    from youtu.model import ModelConfig, YoutuForCausalLM
    from youtu.train import parallel
    from youtu.train.config import TrainConfig
    from youtu.train.schedule import StageSpan
    from youtu.train.trainer import Trainer

    dist = parallel.init_distributed(args.device)
    try:
        dev = dist.device
        if dev.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
        cfg = getattr(ModelConfig, args.preset)()
        torch.manual_seed(0)
        with torch.device(dev):  # initialise where it is fast; the same weights on every rank
            model = YoutuForCausalLM(cfg)
            model.init_weights()
        tcfg = TrainConfig(lr=1e-4, warmup_steps=0, spike_factor=0.0, tensorboard=False,
                           precision=args.precision, compile=args.compile,
                           activation_checkpointing=args.activation_checkpointing,
                           micro_batch_tokens=args.micro_batch_tokens)
        rows = args.batch * dist.world_size  # the global batch: each rank trains its slice
        batch = _batch(cfg.vocab_size, rows, args.seq)
        span = StageSpan(index=0, name="bench", start_step=0, end_step=args.warmup + args.steps,
                         seq_len=args.seq, rows=rows, rope_theta=cfg.rope_theta,
                         lr_phase="stable")
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(tcfg, model, dist=dist, out_dir=tmp)
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            losses, times = [], []
            for i in range(args.warmup + args.steps):
                _sync(dev)
                t0 = time.perf_counter()
                stats = trainer.train_step(batch, 1e-4, span)
                _sync(dev)
                losses.append(stats.loss)
                if i >= args.warmup:
                    times.append(time.perf_counter() - t0)
            trainer.close()
        if dev.type == "cuda":
            mem = (torch.cuda.max_memory_allocated(dev) / 2**30,
                   torch.cuda.max_memory_reserved(dev) / 2**30)
        else:  # Linux ru_maxrss is in KiB
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            mem = (rss, rss)
        mems = dist.all_gather_object(mem)
        if dist.is_main:
            step_s = statistics.median(times)
            tok_s = rows * args.seq / step_s
            per_gpu = tok_s / dist.world_size
            with torch.device("meta"):
                probe = YoutuForCausalLM(cfg)
            flops_full = probe.flops_per_token(args.seq, causal=False)
            flops_causal = probe.flops_per_token(args.seq, causal=True)
            on_gpu = dev.type == "cuda"
            peak = args.peak_tflops * 1e12 if on_gpu else None  # no meaningful CPU peak
            result = {
                "gpus": dist.world_size,
                "device": torch.cuda.get_device_name(dev) if on_gpu else "cpu",
                "params": model.num_params(), "rows_per_gpu": args.batch, "seq": args.seq,
                "step_s": step_s, "step_s_all": times, "tokens_per_s": tok_s,
                "tokens_per_s_per_gpu": per_gpu,
                "mfu": per_gpu * flops_full / peak if peak else None,
                "mfu_causal": per_gpu * flops_causal / peak if peak else None,
                "mem_kind": "cuda_max_allocated" if on_gpu else "cpu_max_rss",
                "peak_mem_gib_per_gpu": max(m[0] for m in mems),
                "reserved_gib_per_gpu": max(m[1] for m in mems),
                "loss_first": losses[0], "loss_last": losses[-1],
            }
            Path(args.result).write_text(json.dumps(result))
    finally:
        parallel.shutdown(dist)


# ---- driver: one torchrun job per GPU count ------------------------------------------------------


def _reason(log: str) -> str:
    """The worker's exception line (torchrun's own summary, which follows it, names no cause),
    else the end of the log."""
    found = re.findall(r"^(?:[\w.]+(?:Error|Exception)|torch\.OutOfMemoryError)\b.*$", log, re.M)
    found = [line for line in found if "ChildFailedError" not in line]
    return found[-1][:500] if found else log[-500:]


def _launch(args: argparse.Namespace, n: int, result: Path) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           str(n), str(Path(__file__).resolve()), "--worker", "--result", str(result),
           "--preset", args.preset, "--seq", str(args.seq), "--batch", str(args.batch),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device,
           "--precision", args.precision, "--micro-batch-tokens", str(args.micro_batch_tokens),
           "--peak-tflops", str(args.peak_tflops)]
    cmd += ["--compile"] if args.compile else []
    cmd += ["--activation-checkpointing"] if args.activation_checkpointing else []
    env = {**os.environ, **NO_MULTICAST}
    env.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0 or not result.is_file():
        reason = _reason(proc.stderr or proc.stdout)
        return {"gpus": n, "error": f"exit {proc.returncode}: {reason}"}
    out = json.loads(result.read_text())
    out["wall_s"] = time.perf_counter() - t0
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gpus", default="1,2,4,8",
                   help="comma-separated process counts (GPUs; processes on --device cpu)")
    p.add_argument("--preset", default="youtu_2b", choices=["tiny", "small", "youtu_2b"])
    p.add_argument("--seq", type=int, default=0, help="tokens per row (0 = 4096; tiny: 256)")
    p.add_argument("--batch", type=int, default=4, help="rows per GPU per step")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                   help="auto = bf16 on CUDA, fp32 on CPU")
    p.add_argument("--compile", action="store_true", help="torch.compile each block")
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument("--micro-batch-tokens", type=int, default=0,
                   help="tokens per forward per GPU (gradient accumulation); 0 = whole batch")
    p.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS, help="per-GPU bf16 peak")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per GPU count")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.seq = args.seq or DEFAULT_SEQ[args.preset]
    if args.worker:
        worker(args)
        return

    counts = sorted({int(x) for x in args.gpus.split(",") if x.strip()})
    if not counts or counts[0] < 1:
        p.error(f"--gpus must list positive counts, got {args.gpus!r}")
    if args.device == "cuda":
        have = torch.cuda.device_count()
        if counts[-1] > have:
            p.error(f"--gpus asks for {counts[-1]} GPUs but {have} are visible; lower --gpus "
                    "(or use --device cpu for a logic check)")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            print(f"[{n} {'GPU' if args.device == 'cuda' else 'process'}(s)] ...", flush=True)
            runs.append(_launch(args, n, Path(tmp) / f"result_{n}.json"))
    ok = [r for r in runs if "error" not in r]
    base = ok[0] if ok else None
    for r in ok:
        r["efficiency"] = r["tokens_per_s_per_gpu"] / base["tokens_per_s_per_gpu"]

    dev = ok[0]["device"] if ok else args.device
    print(f"\nFSDP2 scaling: {args.preset}, {args.batch} x {args.seq} tokens per GPU, {dev}, "
          f"{'bf16' if args.device == 'cuda' and args.precision != 'fp32' else 'fp32'}"
          f"{', compiled' if args.compile else ''}, median of {args.steps} steps")
    mem_head = "peak GiB/GPU" if args.device == "cuda" else "peak RSS GiB"
    print(f"{'GPUs':>4} {'step s':>8} {'tok/s':>10} {'tok/s/GPU':>10} {'MFU':>6} "
          f"{mem_head:>13} {'efficiency':>10} {'loss@1':>8}")
    for r in runs:
        if "error" in r:
            print(f"{r['gpus']:>4} failed: {r['error'][:200]}")
            continue
        print(f"{r['gpus']:>4} {r['step_s']:8.3f} {r['tokens_per_s']:10.0f} "
              f"{r['tokens_per_s_per_gpu']:10.0f} {_pct(r['mfu']):>6} "
              f"{r['peak_mem_gib_per_gpu']:13.2f} {r['efficiency']:10.3f} {r['loss_first']:8.4f}")
    summary = {"bench": "train_scaling", "preset": args.preset, "seq": args.seq,
               "rows_per_gpu": args.batch, "device": dev, "compile": args.compile,
               "activation_checkpointing": args.activation_checkpointing,
               "peak_tflops": args.peak_tflops,
               "baseline_gpus": base["gpus"] if base else None,
               "efficiency": {str(r["gpus"]): r["efficiency"] for r in ok},
               "runs": [{k: v for k, v in r.items() if k != "step_s_all"} for r in runs]}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
