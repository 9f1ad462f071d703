"""MinHash near-dedup at scale through the pipeline's datatrove stages: recall and precision on
synthetic documents with planted near-duplicates, and the memory it takes.

    python bench/dedup_recall.py --docs 1000000 --workers 2
    python bench/dedup_recall.py --docs 100000 --workers 16 --tasks 16

Documents: `--words` random words from a 50,000-word vocabulary (two unrelated documents share
almost no 5-word shingle). A share `--dup-rate` of them are copies of an earlier document (which
may itself be a copy) with 1 to 4 words replaced: true Jaccard similarity of their 5-shingle
sets from ~0.92 (1 edit in 100 words) down to ~0.70 (4 edits). The stages are the ones `youtu
data prepare` runs (`youtu.data.steps.MinhashSignature` with our `minhash_config`: 9 bands x 13
rows for threshold 0.8 and 128 hashes; datatrove's MinhashDedupBuckets and MinhashDedupCluster)
on `youtu.data.engine.run_local`, with documents generated inside each task (no input files).

Reported: recall per true-similarity bucket (a copy is found when it lands in the same cluster
as its source), precision (of the documents removed, the share that has a planted
near-duplicate kept in its cluster), wall time per stage, and peak RSS of the coordinator and of
the largest task of each stage: nothing holds all signatures in memory (stage 2 streams the sorted
signature files of one band; stage 3 keeps only documents that have a duplicate). Last line JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
VOCAB = 50_000


def source_of(i: int, seed: int, dup_rate: float) -> int | None:
    """The document doc `i` copies, or None for an original."""
    rng = random.Random(f"{seed}-src-{i}")
    return rng.randrange(i) if i and rng.random() < dup_rate else None


def words_of(i: int, seed: int, dup_rate: float, n_words: int) -> list[str]:
    src = source_of(i, seed, dup_rate)
    if src is None:
        rng = random.Random(f"{seed}-doc-{i}")
        return [f"w{rng.randrange(VOCAB)}" for _ in range(n_words)]
    words = words_of(src, seed, dup_rate, n_words)
    rng = random.Random(f"{seed}-edit-{i}")
    for _ in range(rng.randint(1, 4)):
        words[rng.randrange(len(words))] = f"e{rng.randrange(10**9)}"
    return words


def jaccard(a: list[str], b: list[str], k: int = 5) -> float:
    sa = {tuple(a[i:i + k]) for i in range(len(a) - k + 1)}
    sb = {tuple(b[i:i + k]) for i in range(len(b) - k + 1)}
    return len(sa & sb) / len(sa | sb)


class Synthetic:
    """A pipeline callable yielding this task's contiguous range of the synthetic documents."""

    def __init__(self, docs: int, seed: int, dup_rate: float, n_words: int):
        self.docs, self.seed, self.dup_rate, self.n_words = docs, seed, dup_rate, n_words

    def __call__(self, data, rank: int = 0, world_size: int = 1):
        from datatrove.data import Document

        lo, hi = rank * self.docs // world_size, (rank + 1) * self.docs // world_size
        for i in range(lo, hi):
            text = " ".join(words_of(i, self.seed, self.dup_rate, self.n_words))
            yield Document(text=text, id=str(i), metadata={"domain": "commonsense"})


def _rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


class RecordRSS:
    """Last step of a stage: writes the task process' peak RSS (MB) to `<folder>/<rank>`
    (pool workers are the forkserver's children, not ours: RUSAGE_CHILDREN cannot see them)."""

    def __init__(self, folder: str):
        self.folder = folder

    def __call__(self, data, rank: int = 0, world_size: int = 1):
        for _ in data or ():
            pass
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        (Path(self.folder) / f"{rank:05d}").write_text(str(_rss_mb(resource.RUSAGE_SELF)))
        return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=1_000_000)
    p.add_argument("--words", type=int, default=100)
    p.add_argument("--dup-rate", type=float, default=0.1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--tasks", type=int, default=0, help="signature tasks; 0 = 4 x workers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="")
    args = p.parse_args()

    from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets, MinhashDedupCluster

    from youtu.data.config import DedupConfig
    from youtu.data.engine import Stage, run_local
    from youtu.data.steps import MinhashSignature, minhash_config

    work = Path(args.out or tempfile.mkdtemp(prefix="youtu-dedup-bench-"))
    dcfg = DedupConfig()
    mh = minhash_config(dcfg)
    tasks = args.tasks or 4 * max(args.workers, 1)
    gen = Synthetic(args.docs, args.seed, args.dup_rate, args.words)
    stages = [
        Stage("signatures", [gen, MinhashSignature(str(work / "sigs"), mh, ["commonsense"]),
                             RecordRSS(str(work / "rss" / "signatures"))], tasks),
        Stage("buckets", [MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"),
                                              config=mh), RecordRSS(str(work / "rss" / "buckets"))],
              mh.num_buckets),
        Stage("cluster", [MinhashDedupCluster(str(work / "buckets"), str(work / "remove"),
                                              config=mh, save_cluster_id=True),
                          RecordRSS(str(work / "rss" / "cluster"))], 1)]
    load = os.getloadavg()[0]
    seconds = {}
    for stage in stages:
        t = time.perf_counter()
        run_local([stage], args.workers, work / "logs")
        seconds[stage.name] = round(time.perf_counter() - t, 1)

    # Ground truth and what the stages found. Documents are numbered per task: global index =
    # the task's first document + the index in its stream.
    starts = [r * args.docs // tasks for r in range(tasks)]
    cluster: dict[int, int] = {}
    removed: set[int] = set()
    for rank in range(tasks):
        f = work / "remove" / f"{rank:06d}.clusters"
        if f.exists():
            data = f.read_bytes()
            for doc, cid in struct.iter_unpack("<II", data):
                cluster[starts[rank] + doc] = cid
        f = work / "remove" / f"{rank:06d}.remove"
        if f.exists():
            removed.update(starts[rank] + d for (d,) in struct.iter_unpack("<I", f.read_bytes()))
    planted, found = Counter(), Counter()
    sizes = Counter(cluster.values())
    has_dup: set[int] = set()  # documents with a planted relative (source or copy)
    for i in range(args.docs):
        src = source_of(i, args.seed, args.dup_rate)
        if src is None:
            continue
        has_dup.update((i, src))
        j = jaccard(words_of(i, args.seed, args.dup_rate, args.words),
                    words_of(src, args.seed, args.dup_rate, args.words))
        bucket = f"{min(int(j * 20) / 20, 0.95):.2f}"
        planted[bucket] += 1
        if i in cluster and cluster.get(i) == cluster.get(src):
            found[bucket] += 1
    true_pos = sum(1 for d in removed if d in has_dup)
    strong = [b for b in planted if float(b) >= 0.85]
    result = {
        "bench": "dedup_recall", "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
            cwd=ROOT).stdout.strip(),
        "docs": args.docs, "words": args.words, "dup_rate": args.dup_rate,
        "workers": args.workers, "tasks": tasks, "bands_rows": [mh.num_buckets,
                                                                 mh.hashes_per_bucket],
        "load_avg": round(load, 1), "cores": os.cpu_count(), "seconds": seconds,
        "planted_copies": sum(planted.values()), "removed": len(removed),
        "clusters": len(sizes),
        "recall_by_jaccard": {b: round(found[b] / planted[b], 4) for b in sorted(planted)},
        "planted_by_jaccard": dict(sorted(planted.items())),
        "recall_jaccard_ge_0.85": round(sum(found[b] for b in strong)
                                        / max(sum(planted[b] for b in strong), 1), 4),
        "precision": round(true_pos / max(len(removed), 1), 4),
        "peak_rss_mb": {"coordinator_incl_evaluation": round(_rss_mb(resource.RUSAGE_SELF)),
                        **{stage.name: round(max(float(f.read_text()) for f in
                                                 (work / "rss" / stage.name).iterdir()))
                           for stage in stages}},
        "signature_bytes_on_disk": sum(f.stat().st_size for f in (work / "sigs").rglob("*.sig")),
    }
    print(f"MinHash dedup of {args.docs:,} synthetic documents ({args.words} words, "
          f"{args.dup_rate:.0%} planted copies), {args.workers} workers / {tasks} tasks, load avg "
          f"{load:.1f} on {os.cpu_count()} cores")
    print("| true Jaccard (copy vs source) | planted | recall |")
    print("|---|---:|---:|")
    for b in sorted(planted):
        print(f"| {b}-{float(b) + 0.05:.2f} | {planted[b]:,} | {found[b] / planted[b]:.3f} |")
    print(f"precision {result['precision']:.4f}; removed {len(removed):,}; seconds {seconds}; "
          f"peak RSS MB {result['peak_rss_mb']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
