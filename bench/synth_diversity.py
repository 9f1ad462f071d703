"""Diversity of synthesized agentic trajectories: duplicates, near-duplicates, distinct reasoning
skeletons, the share of tokens from real-content environments, and synthesis throughput.

    python bench/synth_diversity.py --tasks 50000 --workers 2
    python bench/synth_diversity.py --tasks 3200 --out /tmp/synth   # quick look
    python bench/synth_diversity.py --tasks 50000 --only tools --show-pairs 3   # why near-dups

Runs `youtu.agentic.synthesize` with the scripted teachers on `--tasks` tasks split like the
default `[synth] mix`, with dedup off (so duplicates are counted, not dropped), then measures
per domain:

- exact duplicates: trajectories whose task (prompt + answer) was seen before, and those whose
  whole conversation was (share of trajectories);
- near-duplicates: share whose rendered text has estimated Jaccard >= 0.8 with an earlier one of
  the same domain (the data pipeline's MinHash LSH, `youtu.data.dedup.NearDedup`, 5-word
  shingles, 128 permutations);
- distinct reasoning skeletons: the reasoning of all assistant turns with numbers, quoted and
  back-quoted spans and capitalised words masked; distinct skeletons / trajectories;
- tokens (cl100k_base) per domain and the share from real content: the `REAL_CONTENT`
  environments, and tools episodes over the company database, time zones or unit tables;
- trajectories per second per core: verified trajectories / worker-seconds.

Targets (issue 20): exact < 1%, near < 5%, skeletons >= 60%, real-content tokens >= 40%.
Prints a table; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

_MASKS = [(re.compile(r"`[^`]*`"), "`X`"), (re.compile(r"'[^']*'|\"[^\"]*\""), "S"),
          (re.compile(r"\d+(\.\d+)?"), "N"), (re.compile(r"\b[A-Z][\w.]*"), "W")]


def skeleton(reasoning: str) -> str:
    """Reasoning text with its values masked: what remains is the argument's shape."""
    for pattern, repl in _MASKS:
        reasoning = pattern.sub(repl, reasoning)
    return " ".join(reasoning.split())


def _commit() -> str:
    """The commit of the checkout whose `youtu` is imported (a peer run may import another)."""
    import youtu

    try:
        return subprocess.run(["git", "-C", str(Path(youtu.__file__).parent), "rev-parse",
                               "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class _NearDedup:
    """MinHash (5-word shingles, sha1, 128 permutations) + datasketch's LSH: `seen_before` is
    True when a text's estimated Jaccard similarity to an earlier one reaches `threshold` (what
    `youtu.data.dedup.NearDedup` did before the pipeline moved to datatrove's stages)."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128) -> None:
        try:
            from datasketch import MinHashLSH
        except ImportError as e:
            raise ImportError("near-duplicate rates need datasketch: pip install datasketch") from e
        self.num_perm, self._count = num_perm, 0
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)

    def seen_before(self, text: str) -> bool:
        return self.match(text) is not None

    def match(self, text: str) -> int | None:
        """The index (in insertion order) of an earlier text this one near-duplicates, or None
        (then this text is inserted as the next index)."""
        from datasketch import MinHash

        words = text.lower().split()
        shingles = {" ".join(words[i:i + 5]) for i in range(max(len(words) - 4, 1))}
        m = MinHash(num_perm=self.num_perm, seed=1)
        m.update_batch([s.encode("utf-8") for s in shingles])
        hits = self._lsh.query(m)
        if hits:
            return min(int(h) for h in hits)
        self._lsh.insert(str(self._count), m, check_duplication=False)
        self._count += 1
        return None


def _show_pairs(pairs: dict[str, list[tuple[str, str]]], k: int) -> None:
    """Print `k` near-duplicate pairs per domain as unified diffs of their rendered text."""
    import difflib

    for d, found in pairs.items():
        for a, b in random.Random(0).sample(found, min(k, len(found))):
            print(f"--- near-duplicate pair ({d}): {len(a.split())} and {len(b.split())} words")
            diff = difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0)
            print("\n".join(line[:160] for line in list(diff)[2:42]))


def measure(folder: Path, token_counter: str, show_pairs: int = 0) -> dict[str, dict[str, float]]:
    """Per-domain duplicate, near-duplicate and skeleton rates of the trajectories in `folder`,
    and their tokens: all, and those of real-content episodes (`REAL_CONTENT` environments, and
    tools episodes whose calls use the database, time zones or unit tables: `meta["real"]`).
    `show_pairs` > 0 prints that many near-duplicate pairs per domain (the texts are kept)."""
    from youtu.agentic import envs
    from youtu.agentic.render import render_text
    from youtu.agentic.synthesize import _token_counter
    from youtu.agentic.trajectory import load_trajectories
    try:
        from youtu.data.dedup import NearDedup
    except ImportError:  # the pipeline's dedup moved into datatrove stages (e756c23)
        NearDedup = _NearDedup
    if show_pairs:
        NearDedup = _NearDedup  # (it names the earlier text matched)
    kept: dict[str, list[str]] = defaultdict(list)
    pairs: dict[str, list[tuple[str, str]]] = defaultdict(list)

    count = _token_counter(token_counter)
    real_content = getattr(envs, "REAL_CONTENT", ())  # () on commits before issue 20

    seen_task: dict[str, set] = defaultdict(set)
    seen_conv: dict[str, set] = defaultdict(set)
    skeletons: dict[str, set] = defaultdict(set)
    near: dict[str, NearDedup] = {}
    counts: dict[str, Counter] = defaultdict(Counter)
    for traj in load_trajectories(folder, validate=False):
        d, c = traj.domain, counts[traj.domain]
        c["n"] += 1
        task_key = (traj.task.prompt, traj.task.answer,
                    traj.task.meta.get("files", {}).get(
                        traj.task.meta.get("test_file", "tests/test_solution.py"), ""))
        c["task_dup"] += task_key in seen_task[d]
        seen_task[d].add(task_key)
        conv = traj.content_hash()
        c["conv_dup"] += conv in seen_conv[d]
        seen_conv[d].add(conv)
        if d not in near:  # (not setdefault: building the LSH costs ~70 ms)
            near[d] = NearDedup(threshold=0.8)
        text = render_text(traj)
        if show_pairs:
            earlier = near[d].match(text)
            if earlier is None:
                kept[d].append(text)
            else:
                pairs[d].append((kept[d][earlier], text))
            c["near_dup"] += earlier is not None
        else:
            c["near_dup"] += near[d].seen_before(text)
        tokens = count(text)
        c["tokens"] += tokens
        c["real_tokens"] += tokens if (d in real_content or traj.task.meta.get("real")) else 0
        skeletons[d].add(skeleton("\n".join(m.get("reasoning_content", "")
                                            for m in traj.messages if m["role"] == "assistant")))
    if show_pairs:
        _show_pairs(pairs, show_pairs)
    return {d: {"trajectories": c["n"], "task_dup": c["task_dup"] / c["n"],
                "conv_dup": c["conv_dup"] / c["n"], "near_dup": c["near_dup"] / c["n"],
                "skeletons": len(skeletons[d]) / c["n"], "tokens": c["tokens"],
                "real_tokens": c["real_tokens"]} for d, c in counts.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=50_000, help="tasks in all (split like the mix)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="", help="synthesis folder (default: a temporary one)")
    ap.add_argument("--only", default="", help="comma-separated domains to run (the others' "
                    "counts are dropped; each kept domain's count is as in the full split)")
    ap.add_argument("--sandbox-cap", type=int, default=0,
                    help="at most this many tasks for each sandboxed domain (code, swe: ~1 "
                         "trajectory/s/core); the token share is then also given re-weighted "
                         "to the default mix")
    ap.add_argument("--show-pairs", type=int, default=0, metavar="K",
                    help="print K near-duplicate pairs per domain as diffs (why they match)")
    args = ap.parse_args()

    from youtu.agentic import envs
    from youtu.agentic.config import SynthConfig
    from youtu.agentic.synthesize import synthesize

    real_content = getattr(envs, "REAL_CONTENT", ())

    base = SynthConfig().mix
    scale = args.tasks / sum(base.values())
    mix = {d: max(1, round(n * scale)) for d, n in base.items()}
    if args.sandbox_cap:
        mix.update({d: min(mix[d], args.sandbox_cap) for d in ("code", "swe") if d in mix})
    if args.only:
        mix = {d: n for d, n in mix.items() if d in args.only.split(",")}
    cfg = SynthConfig(mix=mix, workers=args.workers, dedup=False)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        t0 = time.perf_counter()
        stats = synthesize(cfg, out)
        wall = time.perf_counter() - t0
        t1 = time.perf_counter()
        rates = measure(out, cfg.token_counter, args.show_pairs)
        measure_s = time.perf_counter() - t1
    doms = stats["domains"]
    total_tokens = sum(r["tokens"] for r in rates.values())
    real_tokens = sum(r["real_tokens"] for r in rates.values())
    print(f"synth_diversity | commit {_commit()} | {sum(mix.values())} tasks | "
          f"{args.workers} workers | synth {wall:.0f} s wall | measure {measure_s:.0f} s")
    print(f"{'domain':9} {'tasks':>6} {'kept':>6} {'task dup':>9} {'conv dup':>9} "
          f"{'near dup':>9} {'skeletons':>10} {'tokens':>10} {'traj/s/core':>12}")
    rows = {}
    for d, s in doms.items():
        r = rates.get(d, {"task_dup": 0, "conv_dup": 0, "near_dup": 0, "skeletons": 0,
                          "tokens": 0, "real_tokens": 0})
        per_core = s["verified"] / max(s["worker_seconds"], 1e-9)
        rows[d] = {**{k: round(v, 4) for k, v in r.items()}, "attempted": s["attempted"],
                   "verified": s["verified"], "traj_per_s_per_core": round(per_core, 1)}
        print(f"{d:9} {s['attempted']:>6} {s['verified']:>6} {100 * r['task_dup']:>8.2f}% "
              f"{100 * r['conv_dup']:>8.2f}% {100 * r['near_dup']:>8.2f}% "
              f"{100 * r['skeletons']:>9.1f}% {r['tokens']:>10} {per_core:>12.1f}")
    share = real_tokens / max(total_tokens, 1)
    # per-trajectory token means weighted by the default mix's task counts (= share at 50k
    # uncapped, if the capped domains' per-trajectory means hold)
    weight = {d: base[d] * r["tokens"] / r["trajectories"] for d, r in rates.items()}
    mix_share = sum(weight[d] * r["real_tokens"] / max(r["tokens"], 1) for d, r in rates.items()) \
        / max(sum(weight.values()), 1e-9)
    print(f"real content ({', '.join(real_content)}, tools over the database / time zones / "
          f"units): {100 * share:.1f}% of {total_tokens} tokens; {100 * mix_share:.1f}% at the "
          "default mix's proportions")
    print(json.dumps({"bench": "synth_diversity", "commit": _commit(), "tasks": sum(mix.values()),
                      "workers": args.workers, "wall_s": round(wall, 1),
                      "mix": mix, "real_content_token_share": round(share, 4),
                      "real_content_token_share_default_mix": round(mix_share, 4),
                      "domains": rows}))


if __name__ == "__main__":
    main()
