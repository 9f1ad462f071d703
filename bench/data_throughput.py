"""Data pipeline throughput: the datatrove pipeline (`youtu.data.prepare` now) against the
one-process pipeline it replaced (`prepare` at --baseline, default c08b2c5), same input, same
tokenizer, same machine, in the same run; and the new one at several worker counts.

    python bench/data_throughput.py                               # tiny embedded + JSONL corpus
    python bench/data_throughput.py --workers 1 2 4 8 16 --jsonl-docs 64000 --tasks 16

Inputs: (a) `configs/tiny.toml`'s `[data]` (the embedded corpus), (b) a generated JSONL corpus
of English-like documents in `--jsonl-files` files (so tasks have units to share), with exact
and near duplicates planted. Measured per run: wall seconds, documents read per second, and the
kept documents per domain and split, compared as multisets of token sequences (the shards'
own content: both pipelines tokenize with the same tokenizer). The baseline runs from a
`git archive` of the old source tree in a subprocess, with its `data.workers` tokenizer
processes; the new one with `data.workers` task processes. Prints a table; last line JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = """
import dataclasses, json, sys, time, tomllib
from youtu.configlib import from_dict
from youtu.data.config import DataConfig, SourceConfig
from youtu.data.prepare import prepare
from youtu.tokenizer import Tokenizer

def known(table, cls, prefix="data"):
    # Only the [data] table, as this tree's DataConfig knows it: a key an older tree lacks is
    # dropped when it is off (0, empty, false), else the inputs would differ, so refuse.
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for k, v in table.items():
        if k not in fields:
            if v:
                raise SystemExit(f"{prefix}.{k} = {v!r} is unknown to this tree: inputs differ")
            continue
        sub = fields[k].default_factory if fields[k].default_factory is not dataclasses.MISSING else None
        out[k] = (known(v, type(sub()), f"{prefix}.{k}") if isinstance(v, dict) and sub
                  and dataclasses.is_dataclass(sub()) else v)
    return out

if __name__ == "__main__":
    import logging
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)  # the per-stage times
    spec = json.loads(sys.argv[1])
    with open(spec["config"], "rb") as f:
        cfg = from_dict(DataConfig, known(tomllib.load(f).get("data", {}), DataConfig))
    cfg.workers = spec["workers"]
    if spec.get("jsonl"):
        cfg.embedded.enabled = False
        cfg.heldout_fraction = 0.0
        cfg.sources = [SourceConfig(path=spec["jsonl"], domain="commonsense", name="gen")]
    cfg.dedup.near = spec.get("near", True)
    if spec.get("tasks") and hasattr(cfg, "executor"):
        cfg.executor.tasks = spec["tasks"]
    t = time.perf_counter()
    m = prepare(cfg, Tokenizer.load(spec["tokenizer"]), spec["out"])
    print("RESULT " + json.dumps({"wall_s": time.perf_counter() - t,
                                  "read": sum(v["read"] for v in m["sources"].values())}))
"""
WORDS = ("the be to of and that have with it for not on as you do at this but his by from they "
         "we say her she or an will my one all would there their what so up out if about who get "
         "which go me when make can like time no just him know take people into year your good "
         "some could them see other than then now look only come its over think also back after "
         "use two how our work first well way even new want because any these give day most us "
         "river town market bridge water stone field winter harbour engine letter garden "
         "mountain village station window summer library music doctor teacher island forest "
         "farmer street paper council school history morning evening weather road light").split()


def _commit() -> str:
    """YOUTU_COMMIT where set (the GPU machine's copy of the tree can carry a stale HEAD)."""
    if os.environ.get("YOUTU_COMMIT"):
        return os.environ["YOUTU_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 18))]
    return " ".join(words).capitalize() + "."


def make_jsonl(folder: Path, docs: int, files: int, seed: int = 0) -> dict:
    """`docs` documents of ~150 words in `files` JSONL files; 5% exact and 5% near duplicates
    (one word in ~60 replaced) of earlier documents, planted across files."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    texts: list[str] = []
    planted = Counter()
    for i in range(docs):
        r = rng.random()
        if texts and r < 0.05:
            texts.append(rng.choice(texts))
            planted["exact"] += 1
        elif texts and r < 0.10:
            words = rng.choice(texts).split(" ")
            for _ in range(max(1, len(words) // 60)):
                words[rng.randrange(len(words))] = rng.choice(WORDS)
            texts.append(" ".join(words))
            planted["near"] += 1
        else:
            paras = ["\n".join(_sentence(rng) for _ in range(rng.randint(2, 4)))
                     for _ in range(rng.randint(3, 5))]
            texts.append("\n\n".join(paras))
    for k in range(files):
        with open(folder / f"part_{k:04d}.jsonl", "w") as f:
            for t in texts[k::files]:
                f.write(json.dumps({"text": t}) + "\n")
    return dict(planted)


def kept_documents(folder: Path) -> dict[str, Counter]:
    """Per split/domain: a multiset of sha1s of each stored document's token ids."""
    import numpy as np

    out: dict[str, Counter] = {}
    for manifest in [folder / "manifest.json", folder / "heldout" / "manifest.json"]:
        if not manifest.is_file():
            continue
        m = json.loads(manifest.read_text())
        for domain, info in m["domains"].items():
            c = out.setdefault(f"{m.get('split', 'train')}/{domain}", Counter())
            for rec in info["shards"]:
                stem = manifest.parent / rec["name"]
                tokens = np.fromfile(stem.with_suffix(".bin"), dtype="<u4")
                offsets = np.fromfile(stem.with_suffix(".idx"), dtype="<u8", offset=16)
                for a, b in zip(offsets[:-1], offsets[1:]):
                    c[hashlib.sha1(tokens[a:b].tobytes()).hexdigest()] += 1
    return out


def run(src: Path, spec: dict) -> dict:
    # `src` first: its `youtu` shadows any other on the path; the rest stays (the device's
    # carried wheels live on PYTHONPATH: without them the run died on `import tomli_w`).
    path = os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH", "")]))
    env = {**os.environ, "PYTHONPATH": path, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-c", RUN, json.dumps(spec)], capture_output=True,
                          text=True, env=env, cwd=ROOT)
    if proc.returncode:
        raise SystemExit(f"run failed ({src}): {proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line.removeprefix("RESULT "))
    # the datatrove pipeline logs each stage's wall time (the baseline has no stages)
    out["stages_s"] = {name: float(sec) for name, sec in re.findall(
        r"stage (\w+): \d+ task\(s\) in ([\d.]+)s", proc.stderr)}
    # the worker pool's start, apart from the first stage (trees since 2026-12-07)
    out["stages_s"].update({"pool_start": float(sec) for sec in re.findall(
        r"pool of \d+ worker\(s\) started in ([\d.]+)s", proc.stderr)})
    return out


def _cpu_unit(seed: int) -> int:
    """A fixed piece of pure-Python CPU work (~0.25 s on one core): the machine's own ceiling
    for process-parallel Python, which the pipeline's scaling is read against."""
    h = hashlib.sha1(str(seed).encode())
    acc = 0
    for i in range(3_000_000):
        acc = (acc * 31 + i) % 1_000_003
        if i % 1000 == 0:
            h.update(acc.to_bytes(4, "little"))
    return acc


def cpu_control(workers: list[int], units: int) -> list[dict]:
    """Wall seconds of `units` pieces of `_cpu_unit` over each worker count (forkserver
    processes, as the pipeline's pool), and the speedup over the first count."""
    import concurrent.futures as cf
    import multiprocessing as mp
    import time

    rows = []
    for w in workers:
        with cf.ProcessPoolExecutor(w, mp_context=mp.get_context("forkserver")) as pool:
            list(pool.map(_cpu_unit, range(w)))  # start the workers first: not part of the work
            t = time.perf_counter()
            list(pool.map(_cpu_unit, range(units)))
            wall = time.perf_counter() - t
        rows.append({"workers": w, "wall_s": round(wall, 3),
                     "speedup": round(rows[0]["wall_s"] / wall, 2) if rows else 1.0})
        print(f"  cpu control, {units} units of pure-Python work: {w} workers {wall:.2f} s "
              f"({rows[-1]['speedup']}x)", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/tiny.toml")
    p.add_argument("--tokenizer", default="", help="tokenizer folder; default: train a 4096 one")
    p.add_argument("--baseline", default="c08b2c5", help="commit of the pipeline to compare to")
    p.add_argument("--baseline-workers", type=int, default=2)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--tasks", type=int, default=8, help="data.executor.tasks of the new runs")
    p.add_argument("--jsonl-docs", type=int, default=8000)
    p.add_argument("--jsonl-files", type=int, default=16)
    p.add_argument("--skip-embedded", action="store_true")
    p.add_argument("--skip-near-off", action="store_true",
                   help="skip the MinHash-off comparison (two more runs per input)")
    p.add_argument("--control-units", type=int, default=0,
                   help="first time this many units of pure-Python CPU work at each --workers "
                        "count: the machine's own scaling (0: skip)")
    args = p.parse_args()
    control = cpu_control(args.workers, args.control_units) if args.control_units else []

    tmp = Path(tempfile.mkdtemp(prefix="youtu-data-bench-"))
    archive = tmp / "old.tar"
    subprocess.run(["git", "archive", "-o", str(archive), args.baseline, "src"], check=True,
                   cwd=ROOT)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp / "old", filter="data")
    old_src, new_src = tmp / "old" / "src", ROOT / "src"
    tok_dir = args.tokenizer
    if not tok_dir:
        sys.path.insert(0, str(new_src))
        from youtu.config import load_config
        from youtu.data.sources import embedded_corpus
        from youtu.tokenizer.train import train_from_texts

        seed = load_config(str(ROOT / args.config)).data.seed
        sample = embedded_corpus(seed, code_chars=400_000, prose_chars=400_000,
                                 stem_chars=200_000)
        tok_dir = str(train_from_texts((d.text for d in sample), vocab_size=4096)
                      .save(tmp / "tokenizer"))
    inputs = {} if args.skip_embedded else {"embedded (tiny.toml)": None}
    planted = make_jsonl(tmp / "jsonl", args.jsonl_docs, args.jsonl_files)
    inputs[f"jsonl ({args.jsonl_docs} docs, {args.jsonl_files} files)"] = str(tmp / "jsonl")
    load = os.getloadavg()[0]
    results = []
    # Rows print as each run ends (flushed): a run cut by a time limit keeps what it measured.
    print(f"data prepare, baseline {args.baseline} vs datatrove (commit {_commit()}), load avg "
          f"{load:.1f} on {os.cpu_count()} cores", flush=True)
    print("| input | pipeline | workers | wall s | docs/s | x baseline | kept (split/domain) |")
    print("|---|---|---:|---:|---:|---:|---|", flush=True)
    for name, jsonl in inputs.items():
        base = {"config": str(ROOT / args.config), "tokenizer": tok_dir, "jsonl": jsonl}
        out = tmp / f"old-{len(results)}"
        old = run(old_src, {**base, "workers": args.baseline_workers, "out": str(out)})
        old_kept = kept_documents(out)
        row = {"input": name, "docs_read": old["read"],
               "baseline": {"workers": args.baseline_workers, "wall_s": round(old["wall_s"], 2),
                            "docs_per_s": round(old["read"] / old["wall_s"], 1),
                            "kept": {k: sum(v.values()) for k, v in old_kept.items()}},
               "datatrove": []}
        b = row["baseline"]
        print(f"| {name} | baseline | {b['workers']} | {b['wall_s']} | {b['docs_per_s']} "
              f"| 1.000 | {b['kept']} |", flush=True)
        for w in args.workers:
            out = tmp / f"new-{len(results)}-{w}"
            new = run(new_src, {**base, "workers": w, "tasks": args.tasks, "out": str(out)})
            kept = kept_documents(out)
            diff = {k: {"only_baseline": sum((old_kept.get(k, Counter()) - kept.get(k, Counter()))
                                             .values()),
                        "only_datatrove": sum((kept.get(k, Counter()) - old_kept.get(k, Counter()))
                                              .values())}
                    for k in sorted(set(old_kept) | set(kept))}
            row["datatrove"].append({
                "workers": w, "tasks": args.tasks, "wall_s": round(new["wall_s"], 2),
                "docs_per_s": round(new["read"] / new["wall_s"], 1),
                "ratio_vs_baseline": round(old["wall_s"] / new["wall_s"], 3),
                "kept": {k: sum(v.values()) for k, v in kept.items()}, "diff": diff,
                "stages_s": new["stages_s"]})
            r = row["datatrove"][-1]
            print(f"| {name} | datatrove | {w} | {r['wall_s']} | {r['docs_per_s']} | "
                  f"{r['ratio_vs_baseline']} | {r['kept']} |", flush=True)
            print(f"  stages (s): {r['stages_s']}", flush=True)
        print(f"  kept-document difference vs baseline ({args.workers[0]} workers): "
              f"{row['datatrove'][0]['diff']}", flush=True)
        if args.skip_near_off:
            results.append(row)
            continue
        # The same comparison with MinHash dedup off: every other filter is the same code.
        out_a, out_b = tmp / f"old-{len(results)}-exact", tmp / f"new-{len(results)}-exact"
        run(old_src, {**base, "workers": args.baseline_workers, "out": str(out_a), "near": False})
        run(new_src, {**base, "workers": args.workers[0], "tasks": args.tasks, "out": str(out_b),
                      "near": False})
        a, b = kept_documents(out_a), kept_documents(out_b)
        row["near_off"] = {k: {"baseline": sum(a.get(k, Counter()).values()),
                               "datatrove": sum(b.get(k, Counter()).values()),
                               "identical_multiset": a.get(k) == b.get(k)}
                           for k in sorted(set(a) | set(b))}
        print(f"  with MinHash dedup off (all other filters equal): {row['near_off']}",
              flush=True)
        results.append(row)

    print(json.dumps({"bench": "data_throughput", "commit": _commit(), "baseline": args.baseline,
                      "load_avg": round(load, 1), "cores": os.cpu_count(),
                      "planted": planted, "cpu_control": control, "results": results}))


if __name__ == "__main__":
    main()
