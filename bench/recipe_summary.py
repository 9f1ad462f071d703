"""The tables of a `bench/h200_recipe.sh` run, read from what it copied out:

    python bench/recipe_summary.py OUT_DIR        # OUT_DIR/run/{pipeline.json, *.metrics.jsonl, eval/}

Prints the step times (pipeline.json), the median tokens/s and MFU of each training stage over
its steps after the first two (the first steps carry compiles), and each model's eval seconds and
timing counters per group (results.json). A run folder of `youtu run` works too:
`python bench/recipe_summary.py runs/tiny` (its metrics sit in <step>/metrics.jsonl).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

STAGE_FILES = ("train", "train_agent", "train_noagent", "sft")


def _metrics(root: Path) -> dict[str, Path]:
    found = {}
    for name in STAGE_FILES:
        for path in (root / f"{name}.metrics.jsonl", root / name / "metrics.jsonl"):
            if path.is_file():
                found[name] = path
                break
    return found


def stage_rows(name: str, path: Path) -> list[tuple[str, int, float, float | None]]:
    """(stage label, steps, median tok/s, median MFU) per stage of one metrics file."""
    by_stage: dict[float, list[dict]] = defaultdict(list)
    ns = "sft" if name == "sft" else "train"
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if f"{ns}/tokens_per_s" in row:
            by_stage[row.get(f"{ns}/stage", 0.0)].append(row)
    out = []
    for stage, rows in sorted(by_stage.items()):
        rest = rows[2:] or rows
        tok = statistics.median(r[f"{ns}/tokens_per_s"] for r in rest)
        mfus = [r[f"{ns}/mfu"] for r in rest if f"{ns}/mfu" in r]
        label = f"{name} stage {int(stage)}" if len(by_stage) > 1 else name
        out.append((label, len(rows), tok, statistics.median(mfus) if mfus else None))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    root = args.out / "run" if (args.out / "run").is_dir() else args.out
    pipeline = root / "pipeline.json"
    if pipeline.is_file():
        print("| step | seconds | done |\n|---|---:|---|")
        for step, st in json.loads(pipeline.read_text()).items():
            print(f"| {step} | {st.get('seconds', 0):.1f} | {st.get('done')} |")
    print("\n| metrics | steps | median tok/s | median MFU |\n|---|---:|---:|---:|")
    for name, path in _metrics(root).items():
        for label, n, tok, util in stage_rows(name, path):
            mfu = f"{100 * util:.1f}%" if util is not None else "-"
            print(f"| {label} | {n} | {tok / 1e3:.1f}k | {mfu} |")
    for res in sorted([*root.glob("eval/**/results.json"), *root.glob("eval/*.json")]):
        r = json.loads(res.read_text())
        print(f"\n{r.get('label', res.parent)}: {sum(r['seconds'].values()):.1f} s")
        for group, s in r["seconds"].items():
            print(f"  {group:18s} {s:7.1f} s  {r.get('timing', {}).get(group, {})}")


if __name__ == "__main__":
    main()
