"""SFT vs pretraining throughput of the same model at the same seq_len, through the trainer.

    python bench/sft_throughput.py                                  # CPU, tiny model, fp32
    python bench/sft_throughput.py --preset small --seq 4096 --rows 16 --compile   # one GPU

Pretraining rows hold one document each (plain causal attention); SFT rows are what `youtu sft`
feeds the trainer: `SFTBatches` packing conversations of trajectory-like lengths (log-normal,
median ~600 tokens) first-fit into rows, a fresh batch every step (document masks through
FlexAttention on CUDA). Reports tokens/s of each (all row tokens, padding included, as the
trainer counts them), the SFT/pretraining ratio, the host time to build an SFT batch, and the
number of torch.compile recompiles during the timed steps (a new block mask per step must not
recompile). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch

from youtu.data.packing import PackedBatch
from youtu.model import ModelConfig, YoutuForCausalLM
from youtu.train.config import TrainConfig
from youtu.train.metrics import mfu, peak_flops
from youtu.train.parallel import Dist, resolve_device
from youtu.train.schedule import StageSpan
from youtu.train.sft import SFTBatches
from youtu.train.trainer import Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sft_examples(cfg: ModelConfig, n: int, seq: int, seed: int = 0):
    """Random conversations: log-normal lengths (median ~600 tokens, clipped to seq), loss on
    the second half of each (the reply)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(600), 0.8, n).astype(int), 32, seq)
    out = []
    for L in lengths:
        ids = rng.integers(0, cfg.vocab_size - 256, L).tolist()
        mask = [0] * (L // 2) + [1] * (L - L // 2)
        out.append((ids, mask, "agent"))
    return out


def pretrain_batch(cfg: ModelConfig, rows: int, seq: int) -> PackedBatch:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg.vocab_size - 256, (rows, seq + 1), generator=g)
    return PackedBatch(ids[:, :-1].contiguous(), ids[:, 1:].contiguous(),
                       torch.arange(seq).expand(rows, seq).contiguous(),
                       torch.zeros(rows, seq, dtype=torch.long))


def run(cfg: ModelConfig, state: dict, device: torch.device, rows: int, seq: int, steps: int,
        warmup: int, compile: bool, micro_tokens: int, sft: bool) -> dict:
    model = YoutuForCausalLM(cfg).to(device)
    model.load_state_dict(state)
    tcfg = TrainConfig(lr=1e-4, compile=compile, tensorboard=False, spike_factor=0.0,
                       micro_batch_tokens=micro_tokens)
    source = SFTBatches(sft_examples(cfg, 20000, seq), seed=0, pad_id=cfg.pad_token_id)
    fixed = pretrain_batch(cfg, rows, seq)
    host_s = 0.0

    def batch() -> PackedBatch:
        nonlocal host_s
        if not sft:
            return fixed
        t = time.perf_counter()
        b = source.next_batch(0, rows, seq)
        host_s += time.perf_counter() - t
        return b

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(tcfg, model, dist=Dist(device=device), out_dir=tmp)
        span = StageSpan(index=0, name="b", start_step=0, end_step=steps + warmup, seq_len=seq,
                         rows=rows, rope_theta=cfg.rope_theta, lr_phase="stable")
        for _ in range(warmup):
            trainer.train_step(batch(), 1e-4, span)
        _sync(device)
        from torch._dynamo.utils import counters

        before = sum(counters["recompiles"].values()) if "recompiles" in counters else 0
        host_s = 0.0
        t0 = time.perf_counter()
        for _ in range(steps):
            stats = trainer.train_step(batch(), 1e-4, span)
        _sync(device)
        dt = (time.perf_counter() - t0) / steps
        after = sum(counters["recompiles"].values()) if "recompiles" in counters else 0
        trainer.close()
    flops = model.flops_per_token(seq, causal=False)
    tok_s = rows * seq / dt
    return {"name": "sft" if sft else "pretrain", "tok_s": tok_s, "step_ms": dt * 1e3,
            "mfu": mfu(tok_s, flops, peak_flops(device)), "host_batch_ms": host_s / steps * 1e3,
            "recompiles": after - before, "last_loss": stats.loss}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="tiny", choices=["tiny", "small", "youtu_2b"])
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--micro-tokens", type=int, default=0)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    device = resolve_device(args.device)
    cfg = getattr(ModelConfig, args.preset)()
    torch.manual_seed(0)
    ref = YoutuForCausalLM(cfg)
    ref.init_weights()
    state = ref.state_dict()
    common = dict(rows=args.rows, seq=args.seq, steps=args.steps, warmup=args.warmup,
                  compile=args.compile, micro_tokens=args.micro_tokens)
    results = [run(cfg, state, device, sft=False, **common), run(cfg, state, device, sft=True, **common)]
    print(f"\n{args.preset}, {args.rows} x {args.seq}, {device}, compile={args.compile}")
    print(f"{'':10s} {'tok/s':>10s} {'step ms':>9s} {'MFU':>6s} {'host ms':>8s} {'recompiles':>10s}")
    for r in results:
        m = f"{100 * r['mfu']:.1f}%" if r["mfu"] else "-"
        print(f"{r['name']:10s} {r['tok_s']:10.0f} {r['step_ms']:9.1f} {m:>6s} "
              f"{r['host_batch_ms']:8.1f} {r['recompiles']:10d}")
    ratio = results[1]["tok_s"] / results[0]["tok_s"]
    print(f"SFT / pretraining: {ratio:.2f}x")
    print(json.dumps({**vars(args), "results": results, "sft_over_pretrain": ratio}))


if __name__ == "__main__":
    main()
