"""Training throughput: our trainer step vs transformers' YoutuForCausalLM step, same config,
same batch, same weights, in the same run.

    python bench/train_throughput.py                                   # CPU, tiny model, fp32
    python bench/train_throughput.py --preset youtu_2b --seq 4096 --batch 4      # one GPU, bf16
    python bench/train_throughput.py --preset youtu_2b --seq 4096 --batch 4 --compile
    python bench/train_throughput.py --preset youtu_2b --seq 4096 --batch 4 --compile --loss-kernel compiled
    python bench/train_throughput.py --preset youtu_2b --seq 32768 --batch 1 --compile --ckpt

Ours is `youtu.train.trainer.Trainer.train_step` (bf16 autocast on CUDA with fp32 master weights,
cuDNN causal attention, fused chunked lm_head + cross-entropy, fused AdamW, clipping). The peer
is transformers' `YoutuForCausalLM` with the same fp32 weights under the same bf16 autocast,
`labels=` loss, fused AdamW and the same clipping. `--packed` also times ours on rows of several
documents (FlexAttention block mask), which the peer has no equivalent for.

Reports tokens/s, MFU (6N + attention FLOPs per token with full-length attention, the
convention of DESIGN.md's peer anchor: MFU 0.42 at 26.1k tok/s), peak memory, and the first
step's loss of each (a parity check: same weights and batch must give the same loss). Prints a
table, then one JSON line.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import time
from dataclasses import dataclass

import torch

from youtu.data.packing import PackedBatch
from youtu.model import ModelConfig, YoutuForCausalLM
from youtu.train.config import TrainConfig
from youtu.train.trainer import Trainer
from youtu.train.metrics import peak_flops
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


def bench_ours(cfg: ModelConfig, state: dict, batch: PackedBatch, device: torch.device,
               steps: int, warmup: int, compile: bool, name: str, loss_kernel: str = "chunked",
               ckpt: bool = False) -> Result:
    _reset_memory(device)
    with torch.device("meta"):
        model = YoutuForCausalLM(copy.deepcopy(cfg))
    # Copies: training updates the parameters in place, and the peer needs the initial weights.
    model.load_state_dict({k: v.clone() for k, v in state.items()}, assign=True)
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    model.init_rope()
    tcfg = TrainConfig(lr=1e-4, compile=compile, tensorboard=False, spike_factor=0.0,
                       loss_kernel=loss_kernel, activation_checkpointing=ckpt)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(tcfg, model, dist=Dist(device=device), out_dir=tmp)
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
        trainer.close()
    peak = _peak_gb(device)
    del trainer, model
    return _result(name, cfg, batch, device, dt, peak, first)


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
    with torch.device("meta"):
        flops = YoutuForCausalLM(cfg).flops_per_token(T, causal=False)
    peak_f = peak_flops(device)
    return Result(name, tok_s, dt * 1e3, tok_s * flops / peak_f if peak_f else None, peak, first)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="tiny", choices=["tiny", "small", "youtu_2b"])
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile both (ours per block)")
    p.add_argument("--loss-kernel", default="chunked", choices=["chunked", "compiled"],
                   help="ours: the trainer's loss_kernel")
    p.add_argument("--ckpt", action="store_true", help="ours: activation checkpointing")
    p.add_argument("--packed", action="store_true", help="also time ours on packed rows")
    p.add_argument("--no-hf", action="store_true", help="skip the transformers peer")
    args = p.parse_args()

    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    cfg = getattr(ModelConfig, args.preset)()
    torch.manual_seed(0)
    with torch.device(device):  # init where it is fast; keep the copy on the CPU
        ref = YoutuForCausalLM(cfg)
        ref.init_weights()
    state = {k: v.detach().to("cpu", copy=True) for k, v in ref.state_dict().items()}
    del ref
    batch = make_batch(cfg, args.batch, args.seq, packed=False)

    ours = dict(steps=args.steps, warmup=args.warmup, compile=args.compile,
                loss_kernel=args.loss_kernel, ckpt=args.ckpt)
    results = [bench_ours(cfg, state, batch, device, name="ours", **ours)]
    if args.packed:
        packed = make_batch(cfg, args.batch, args.seq, packed=True)
        results.append(bench_ours(cfg, state, packed, device, name="ours (packed, 4 docs/row)", **ours))
    if not args.no_hf:
        results.append(bench_hf(cfg, state, batch, device, args.steps, args.warmup, args.compile))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"\ntraining step: {args.preset}, batch {args.batch} x {args.seq}, {name}, "
          f"{'bf16 autocast' if device.type == 'cuda' else 'fp32'}"
          f"{', compiled' if args.compile else ''}, {args.steps} timed steps")
    print(f"{'impl':28s} {'tok/s':>10s} {'step ms':>9s} {'MFU':>6s} {'peak GB':>8s} {'loss@1':>8s}")
    for r in results:
        mfu = f"{100 * r.mfu:.1f}%" if r.mfu is not None else "-"
        mem = f"{r.peak_mem_gb:.1f}" if r.peak_mem_gb is not None else "-"
        print(f"{r.name:28s} {r.tokens_per_s:10.0f} {r.step_ms:9.1f} {mfu:>6s} {mem:>8s} "
              f"{r.first_loss:8.4f}")
    out = {"preset": args.preset, "seq": args.seq, "batch": args.batch, "device": name,
           "compile": args.compile, "loss_kernel": args.loss_kernel, "ckpt": args.ckpt, "results": [r.__dict__ for r in results]}
    hf = next((r for r in results if r.name == "transformers"), None)
    if hf is not None:
        out["speedup_vs_transformers"] = results[0].tokens_per_s / hf.tokens_per_s
        print(f"ours / transformers: {out['speedup_vs_transformers']:.2f}x")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
