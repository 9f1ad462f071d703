"""`youtu data inspect`: the shard tree with document/token counts per domain (training and
held out) and per curriculum stage, what the filters removed, and a few decoded samples.

    youtu data inspect configs/tiny.toml
    youtu data inspect configs/tiny.toml --data.dir=/data/shards --data.inspect_samples=3
    youtu data inspect configs/tiny.toml --data.dir=runs/tiny/data/heldout   # the held-out split
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

from youtu.data.config import StageConfig
from youtu.data.mixture import normalized_mix
from youtu.data.shards import ShardError, ShardSet
from youtu.errors import ConfigError

if TYPE_CHECKING:
    from youtu.config import RunConfig
    from youtu.tokenizer import Tokenizer


def _n(x: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.2f}{unit}"
    return f"{x:.0f}"


def render_tree(shards: ShardSet, stages: list[StageConfig]) -> str:
    """The shard tree, sources, filter removals, and the curriculum's demand per domain."""
    m = shards.manifest
    lines = [f"{shards.folder}  (tokenizer {shards.fingerprint}, vocab "
             f"{m['tokenizer']['vocab_size']}, {m['totals']['docs']:,} docs, "
             f"{_n(m['totals']['tokens'])} tokens)"]
    held = m.get("heldout", {})  # manifests from before the held-out split have none
    if m.get("split") == "heldout":
        lines.append(f"held-out split (data.heldout_fraction {m['heldout_fraction']:g}): kept out "
                     f"of training, scored by the trainer")
    elif held.get("path"):
        lines.append(f"held out (data.heldout_fraction {held['fraction']:g}): "
                     f"{held['totals']['docs']:,} docs, {_n(held['totals']['tokens'])} tokens in "
                     f"{shards.folder / held['path']}")
    names = shards.domains
    for k, domain in enumerate(names):
        info = m["domains"][domain]
        branch = "└──" if k == len(names) - 1 else "├──"
        cpt = info["chars"] / max(info["tokens"], 1)
        h = held.get("domains", {}).get(domain, {"docs": 0, "tokens": 0})
        out = (f"  + held out {h['docs']:,d} docs {_n(h['tokens'])} tokens"
               if held.get("path") else "")
        lines.append(f"{branch} {domain:<12s} {info['docs']:>9,d} docs {_n(info['tokens']):>8s} "
                     f"tokens  {len(info['shards'])} shard(s)  {cpt:.2f} chars/token{out}")
        for s in info["shards"]:
            pre = "    " if k == len(names) - 1 else "│   "
            srcs = ", ".join(f"{n} {c}" for n, c in sorted(s["sources"].items()))
            lines.append(f"{pre}{s['name'].split('/')[-1]}  {s['docs']:,} docs  "
                         f"{_n(s['tokens'])} tokens  ({srcs})")
    into = {"heldout": " held out"}.get(m.get("split", ""), " for training" if held.get("path")
                                         else "")
    lines += ["", f"sources (documents read -> kept{into} per domain):"]
    for name, counts in m["sources"].items():
        kept = ", ".join(f"{d} {n}" for d, n in sorted(counts.items()) if d != "read")
        lines.append(f"  {name:<20s} {counts.get('read', 0):>8,d} -> {kept or 'none'}")
    lines += ["", "filters (documents removed, est. tokens):"]
    for stage, info in m["filters"].items():
        if stage == "input":
            continue
        reasons = ", ".join(f"{r} {v['docs']}" for r, v in sorted(info["reasons"].items()))
        lines.append(f"  {stage:<10s} {info['removed_docs']:>7,d} docs "
                     f"{_n(info['removed_tokens_est']):>8s} tokens  ({reasons})")
    build = m.get("build", {})
    if build.get("stages"):  # manifests from before the datatrove pipeline have none
        lines += ["", f"pipeline ({build.get('executor', 'local')} executor, "
                  f"{build.get('workers', 0)} workers, {build.get('wall_s', 0):.1f}s; documents "
                  f"in -> out per step):"]
        for st in build["stages"]:
            lines.append(f"  {st['stage']}  ({st['tasks_finished']} task(s))")
            for step in st["steps"]:
                name = step["step"].split(": ", 1)[-1]
                into = f"{step['in']:>8,d}" if step["in"] else f"{'':>8s}"
                flow = f"{into} -> {step['out']:<8,d}" if step["out"] or step["in"] else " " * 20
                why = ", ".join(f"{r} {n}" for r, n in sorted(step["dropped"].items()))
                lines.append(f"    {name:<34s} {flow} {step['seconds']:7.2f}s"
                             + (f"  dropped: {why}" if why else ""))
    if stages:
        lines += ["", "curriculum (tokens asked per domain; epochs = cumulative demand / tokens "
                  "held):"]
        demand: dict[str, float] = {}
        for i, stage in enumerate(stages):
            lines.append(f"  stage {i} {stage.name}: {_n(stage.tokens)} tokens, seq_len "
                         f"{stage.seq_len}, {stage.lr_phase}")
            for domain, w in normalized_mix(stage).items():
                want = stage.tokens * w
                demand[domain] = demand.get(domain, 0.0) + want
                held = m["domains"].get(domain, {}).get("tokens", 0)
                epochs = f"{demand[domain] / held:.2f} epochs" if held else "MISSING: no shards"
                flag = "  (upsampled)" if held and demand[domain] > held else ""
                lines.append(f"    {domain:<12s} {w:6.1%}  {_n(want):>8s} tokens  {epochs}{flag}")
    return "\n".join(lines)


def render_samples(shards: ShardSet, tokenizer: Tokenizer, per_domain: int = 1,
                   max_chars: int = 400, seed: int = 0) -> str:
    """`per_domain` decoded documents of each domain (first `max_chars` characters)."""
    rng = random.Random(seed)
    lines = []
    for domain in shards.domains:
        for _ in range(per_domain):
            i = rng.randrange(shards.num_docs(domain))
            doc = shards.document(domain, i)
            text = tokenizer.decode(doc.tolist())
            more = f" ... (+{len(text) - max_chars} chars)" if len(text) > max_chars else ""
            lines += [f"--- {domain} #{i} ({len(doc)} tokens) ---", text[:max_chars] + more, ""]
    return "\n".join(lines)


def main(cfg: RunConfig) -> int:
    """`youtu data inspect`: print the tree of `data.dir` (default `<run_dir>/data`)."""
    from youtu.tokenizer import Tokenizer

    folder = Path(cfg.data.dir) if cfg.data.dir else cfg.run_dir / "data"
    try:
        shards = ShardSet.open(folder, None, verify_checksums=cfg.data.verify_checksums)
    except ShardError as e:
        raise ConfigError(str(e)) from e
    print(render_tree(shards, list(cfg.train.stages)))
    tokenizer_dir = folder / shards.manifest["tokenizer"]["path"]
    if cfg.data.inspect_samples and (tokenizer_dir / "tokenizer.json").is_file():
        tok = Tokenizer.load(tokenizer_dir)
        print("\nsamples:\n" + render_samples(shards, tok, cfg.data.inspect_samples,
                                              seed=cfg.data.seed))
    return 0
