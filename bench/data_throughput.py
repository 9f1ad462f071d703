"""Data pipeline throughput: documents -> token shards in tokens/s, with the time split into
reading (incl. generating the embedded corpus), filtering (language id, quality, decontamination,
exact + near dedup), tokenization and writing; then the curriculum sampler's time per training
batch against the training step it feeds.

    python bench/data_throughput.py                                   # configs/tiny.toml [data]
    python bench/data_throughput.py --tokenizer runs/tiny/tokenizer --workers 2 --batches 100

Reading and filtering run in the main process while the tokenizer workers run concurrently, so
the time shares are of busy seconds (main-process seconds + the sum over worker processes), and
tokens/s is over wall time. The sampler is timed per `next_batch` for each stage of `[train]`;
the step it feeds is (a) the tiny model's forward + backward on this CPU for the same batch and
(b) the DESIGN.md anchor for Youtu-2B on one H200 (26.1k tokens/s at 4 x 4096, peer number), for
which the sampler is timed at 4 x 4096. Prints a table; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

H200_TOKENS_PER_S = 26_100  # DESIGN.md: 2B, bs 4 x 4096, bf16, one H200 (the peer's number)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _tokenizer(path: str, data_cfg):
    from youtu.data.sources import embedded_corpus
    from youtu.tokenizer import Tokenizer
    from youtu.tokenizer.train import train_from_texts

    if path:
        return Tokenizer.load(path)
    sample = embedded_corpus(data_cfg.seed, code_chars=400_000, prose_chars=400_000,
                             stem_chars=200_000)
    return train_from_texts((d.text for d in sample), vocab_size=4096)


def _time_batches(sampler, stage: int, batch: int, seq_len: int, n: int) -> float:
    """Median seconds per next_batch over n calls (after one warm-up)."""
    sampler.next_batch(stage, batch, seq_len)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        sampler.next_batch(stage, batch, seq_len)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _train_step_s(model_cfg, batch) -> float:
    """Median seconds of forward + backward of the config's model on `batch` (fp32, CPU)."""
    import torch
    import torch.nn.functional as F

    from youtu.model import YoutuForCausalLM

    torch.manual_seed(0)
    model = YoutuForCausalLM(model_cfg)
    model.init_weights()
    times = []
    for i in range(3):
        t = time.perf_counter()
        logits = model(batch.input_ids, positions=batch.positions, doc_ids=batch.doc_ids)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch.targets.flatten(),
                               ignore_index=-100)
        loss.backward()
        model.zero_grad(set_to_none=True)
        if i:  # the first step warms up allocators
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/tiny.toml")
    p.add_argument("--tokenizer", default="", help="tokenizer folder; default: train a 4096 one")
    p.add_argument("--workers", type=int, default=None, help="override data.workers")
    p.add_argument("--batches", type=int, default=50, help="sampler batches timed per stage")
    p.add_argument("--out", default="", help="shard folder (default: a temp folder)")
    p.add_argument("--no-step", action="store_true", help="skip the CPU training-step timing")
    args = p.parse_args()

    from youtu.config import load_config
    from youtu.data.mixture import CurriculumSampler
    from youtu.data.prepare import prepare
    from youtu.data.shards import ShardSet

    cfg = load_config(args.config)
    if args.workers is not None:
        cfg.data.workers = args.workers
    tok = _tokenizer(args.tokenizer, cfg.data)
    out = Path(args.out or tempfile.mkdtemp(prefix="youtu-data-bench-"))
    load_before = os.getloadavg()[0]

    manifest = prepare(cfg.data, tok, out)
    build = manifest["build"]
    t = time.perf_counter()
    rerun = prepare(cfg.data, tok, out)["build"]
    rerun_wall = time.perf_counter() - t
    tokens, docs = manifest["totals"]["tokens"], manifest["totals"]["docs"]
    chars = sum(d["chars"] for d in manifest["domains"].values())
    sec = build["seconds"]
    parts = {"read (I/O + embedded generation)": sec["read"],
             "filter": sum(sec["filter"].values()),
             "tokenize (workers)": sec["tokenize_worker_sum"],
             "write shards (workers)": sec["write_worker_sum"]}
    busy = sum(parts.values())

    t = time.perf_counter()
    shards = ShardSet.open(out, tok.fingerprint, verify_checksums=True)
    open_s = time.perf_counter() - t
    stages = list(cfg.train.stages)
    sampler = CurriculumSampler(shards, [s for s in stages if all(d in shards for d in s.mix
                                                                   if s.mix[d] > 0)], seed=0)
    sampler_rows = []
    for i, stage in enumerate(sampler.stages):
        rows = max(stage.batch_tokens // stage.seq_len, 1)
        sampler_rows.append((stage.name, rows, stage.seq_len,
                             _time_batches(sampler, i, rows, stage.seq_len, args.batches)))
    big = _time_batches(CurriculumSampler(shards, sampler.stages, seed=1), 0, 4, 4096,
                        max(args.batches // 5, 5))
    h200_step = 4 * 4096 / H200_TOKENS_PER_S

    step_s = None
    if not args.no_step and sampler_rows:
        first = sampler.stages[0]
        batch = sampler.next_batch(0, first.batch_tokens // first.seq_len, first.seq_len)
        step_s = _train_step_s(cfg.model, batch)

    print(f"documents -> shards ({args.config} [data], workers={cfg.data.workers}, "
          f"load avg {load_before:.1f} on {os.cpu_count()} cores)")
    print(f"| {'what':40s} | {'value':>14s} |")
    print(f"|{'-' * 42}|{'-' * 16}|")
    rows = [("documents kept", f"{docs:,}"), ("chars kept", f"{chars:,}"),
            ("tokens", f"{tokens:,}"), ("wall s", f"{build['wall_s']:.2f}"),
            ("tokens/s (wall)", f"{tokens / build['wall_s']:,.0f}"),
            ("tokens/s per tokenizer worker", f"{tokens / max(sec['tokenize_worker_sum'], 1e-9):,.0f}"),
            ("re-run wall s (all shards skipped)", f"{rerun_wall:.2f}"),
            ("re-run shards skipped", f"{rerun['shards_skipped']}")]
    rows += [(f"share: {k}", f"{v / busy:6.1%} {v:6.2f}s") for k, v in parts.items()]
    rows += [(f"  filter: {k}", f"{v:.2f}s") for k, v in sec["filter"].items()]
    rows += [("ShardSet.open incl. sha256 s", f"{open_s:.3f}")]
    rows += [(f"sampler ms/batch {n} ({b}x{s})", f"{ms * 1e3:.2f}") for n, b, s, ms in sampler_rows]
    rows += [("sampler ms/batch 4x4096", f"{big * 1e3:.2f}"),
             ("H200 2B step s (DESIGN anchor)", f"{h200_step:.3f}"),
             ("sampler share of H200 2B step", f"{big / h200_step:.4%}")]
    if step_s is not None:
        n, b, s, ms = sampler_rows[0]
        rows += [(f"tiny CPU step s fwd+bwd ({b}x{s})", f"{step_s:.3f}"),
                 ("sampler share of tiny CPU step", f"{ms / step_s:.4%}")]
    for k, v in rows:
        print(f"| {k:40s} | {v:>14s} |")
    result = {
        "bench": "data_throughput", "commit": _commit(), "config": args.config,
        "workers": cfg.data.workers, "load_avg": round(load_before, 1), "docs": docs,
        "tokens": tokens, "chars": chars, "wall_s": build["wall_s"],
        "tokens_per_s": round(tokens / build["wall_s"]),
        "tokens_per_s_per_worker": round(tokens / max(sec["tokenize_worker_sum"], 1e-9)),
        "shares": {k: round(v / busy, 4) for k, v in parts.items()},
        "seconds": sec, "rerun_wall_s": round(rerun_wall, 3),
        "rerun_shards_skipped": rerun["shards_skipped"], "open_s": round(open_s, 4),
        "sampler_ms_per_batch": {n: round(ms * 1e3, 3) for n, _, _, ms in sampler_rows},
        "sampler_ms_4x4096": round(big * 1e3, 3),
        "sampler_share_h200_2b_step": round(big / h200_step, 6),
        "tiny_cpu_step_s": None if step_s is None else round(step_s, 4),
        "sampler_share_tiny_cpu_step": None if step_s is None else
        round(sampler_rows[0][3] / step_s, 6),
    }
    print(json.dumps(result))


if __name__ == "__main__":  # required: prepare() starts worker processes with spawn
    main()
