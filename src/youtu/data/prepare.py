"""`youtu data prepare`: sources -> classify -> filter -> decontaminate -> exact and MinHash
dedup -> token shards, as a datatrove pipeline (local processes or Slurm job arrays).

    youtu data prepare configs/tiny.toml                       # -> runs/tiny/data/
    youtu data prepare configs/tiny.toml --data.workers=4 --data.executor.tasks=16
    youtu data prepare configs/big.toml --data.executor.kind=slurm --data.executor.partition=cpu

    manifest = prepare(cfg.data, tokenizer, "runs/tiny/data", extra=trajectory_documents)

Stages (each a datatrove executor over `tasks` tasks; `youtu.data.engine` runs them):

    filter      our readers (`steps.SourceReader`) -> domain -> language -> quality ->
                13-gram decontamination -> filtered/<rank>.jsonl + exact-dedup signatures
    exact_find  datatrove ExactFindDedups (1 task): duplicates across all tasks
    exact       filtered/ -> datatrove ExactDedupFilter -> deduped/ + MinHash signatures
    minhash_buckets   datatrove MinhashDedupBuckets (one task per LSH band)
    minhash_cluster   datatrove MinhashDedupCluster (1 task): union-find, one kept per cluster
    shards      deduped/ -> datatrove MinhashDedupFilter -> train/held-out split -> tokenize
                -> shards/<rank>/ (`encode.ShardWriter`)
    finalize    shards linked into `<out>/<domain>/shard_NNNNN.*` (numbered in task order),
                `manifest.json` written last (on Slurm: a last one-task job)

Work files live in `<out>/.pipeline/<key>/`, where the key hashes everything the output depends
on (the `[data]` settings except workers and executor placement, the task count, the tokenizer,
the extra documents, the eval items, `PIPELINE_VERSION`): a re-run with the same key skips
every finished task (datatrove completion markers) and gives byte-identical shards; another
key starts afresh.
A task that fails, or a worker that dies, stops the command with one error line. The shard
files are hard links to the tasks' own (`.pipeline/<key>/shards/`): deleting `.pipeline` frees
the intermediate JSONL and signatures but not the shards, and makes the next run start over.

With `data.heldout_fraction = f > 0`, a share f of the kept documents of every domain (chosen by
a keyed hash of each text, see `encode.is_heldout`) goes to `<out>/heldout/`: the same layout
with its own `manifest.json` and tokenizer copy. No document is in both.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from youtu.data.config import RESERVED_NAMES, DataConfig
from youtu.data.dedup import Decontaminator, load_eval_texts
from youtu.data.document import Document
from youtu.data.encode import HELDOUT, TRAIN, ShardWriter, is_heldout, tokenize_documents
from youtu.data.engine import Stage, run_local, submit_slurm
from youtu.data.filters import FilterStats
from youtu.data.shards import (ShardError, build_manifest, place_shard, verify_shard,
                               write_manifest)
from youtu.errors import ConfigError

if TYPE_CHECKING:
    from youtu.config import RunConfig
    from youtu.tokenizer import Tokenizer

__all__ = ["prepare", "main", "finalize", "is_heldout", "tokenize_documents", "TRAIN", "HELDOUT",
           "HELDOUT_DIR", "WORK_DIR"]

logger = logging.getLogger(__name__)

HELDOUT_DIR = "heldout"
"""Subfolder of a prepared folder holding the held-out split (what `train.heldout_dir` defaults
to)."""
WORK_DIR = ".pipeline"
"""Subfolder of a prepared folder holding the pipeline's work files and (by default) logs."""
EXTRA_CHUNK = 5000
"""Extra documents per input file (a read unit: the unit of parallelism for them)."""
AUTO_TASKS = {"local": 8, "slurm": 64}
"""Tasks per parallel stage when `data.executor.tasks = 0`, at most one per read unit. Fixed
(not `data.workers`): the output depends on the task count, never on the number of processes."""
PIPELINE_VERSION = 2
"""Part of the work key: raised when a stage's work files change meaning (2: MinHash shingles
hashed per word, 2026-12-07), so a re-run after such an upgrade starts afresh instead of
mixing the old tasks' signatures with the new ones'."""
_SHARD_FILE = re.compile(r"^shard_(\d{5})\.(bin|idx|mask|json)$")


# ---------------------------------------------------------------------------------------------
# inputs and the work folder


def _write_inputs(folder: Path, extra: Iterable[Document], eval_items: Iterable[str]
                  ) -> tuple[list[str], str, str, list[str]]:
    """Extra documents as JSONL chunks; returns (extra files, sha256 of the extra documents,
    sha256 of the eval items, the eval items)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("extra_*.jsonl"):
        old.unlink()
    files, digest, chunk = [], hashlib.sha256(), []

    def flush() -> None:
        path = folder / f"extra_{len(files):05d}.jsonl"
        path.write_text("".join(chunk), encoding="utf-8")
        files.append(str(path))
        chunk.clear()

    for doc in extra:
        line = json.dumps({"text": doc.text, "domain": doc.domain, "source": doc.source,
                           "meta": doc.meta}, sort_keys=True, ensure_ascii=False) + "\n"
        digest.update(line.encode("utf-8", "surrogatepass"))
        chunk.append(line)
        if len(chunk) >= EXTRA_CHUNK:
            flush()
    if chunk:
        flush()
    items = list(eval_items)
    eval_sha = hashlib.sha256(json.dumps(items).encode("utf-8", "surrogatepass")).hexdigest()
    return files, digest.hexdigest(), eval_sha, items


def _input_files(cfg: DataConfig) -> list[tuple[str, int, int]]:
    """(path, size, mtime) of every file of every configured source: an edited source gives
    another key (the embedded corpus is keyed by the Python version)."""
    files = []
    for source in cfg.sources:
        path = Path(source.path)
        for f in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            st = f.stat()
            files.append((str(f.absolute()), st.st_size, st.st_mtime_ns))
    return files


def _key(cfg: DataConfig, tasks: int, fingerprint: str, extra_sha: str, eval_sha: str) -> str:
    import sys

    from youtu.configlib import to_dict

    settings = to_dict(cfg)
    for k in ("dir", "workers", "executor", "verify_checksums", "inspect_samples"):
        settings.pop(k, None)
    e = cfg.embedded
    installed = ""
    if e.enabled and (e.packages_chars or e.package_docstrings_chars):
        from youtu.data.installed_docs import installed_fingerprint

        installed = installed_fingerprint()  # a package installed or upgraded: other docs
    blob = json.dumps([settings, tasks, fingerprint, extra_sha, eval_sha, _input_files(cfg),
                       sys.version, PIPELINE_VERSION] + ([installed] if installed else []),
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _recheck_shards(work: Path, logs: Path) -> None:
    """A finished tokenizing task whose shard files no longer pass their checksums (the
    shard folder links to them) loses its completion marker: the run redoes that task."""
    for task in sorted((work / "shards").iterdir()) if (work / "shards").is_dir() else ():
        marker = logs / "shards" / "completions" / task.name
        if not marker.exists():
            continue
        for f in sorted(task.glob("*/*/shard_*.json")):
            try:
                verify_shard(f.parent.parent, json.loads(f.read_text()), None, checksums=True)
            except (ShardError, json.JSONDecodeError, KeyError) as e:
                logger.warning("redoing tokenizing task %s: %s", int(task.name), e)
                marker.unlink()
                break


def _stages(cfg: DataConfig, units, work: Path, out_dir: Path, tasks: int,
            decontam_index: str) -> list[Stage]:
    from datatrove.pipeline.dedup.exact_dedup import (ExactDedupConfig, ExactDedupFilter,
                                                      ExactDedupSignature, ExactFindDedups)
    from datatrove.pipeline.dedup.minhash import (MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter)
    from datatrove.utils.hashing import HashConfig

    from youtu.data import steps

    d, w = cfg.dedup, str(work)
    near = d.near and bool(d.near_domains)
    exact_cfg = ExactDedupConfig(content_getter=steps.exact_content,
                                 document_priority=steps.exact_priority,
                                 hash_config=HashConfig(64, "sha1"))
    mh_cfg = steps.minhash_config(d)
    filt = [steps.SourceReader(units), steps.Classify(cfg),
            steps.LanguageFilter(cfg.quality.languages)]
    if cfg.quality.enabled:
        filt.append(steps.QualityFilter(cfg.quality))
    filt += [steps.DecontamFilter(decontam_index), steps.Tally("filtered"),
             steps.task_file_writer(f"{w}/filtered")]
    stages = [Stage("filter", filt, tasks)]
    source = f"{w}/filtered"
    if d.exact:
        filt.append(ExactDedupSignature(f"{w}/exact/sigs", config=exact_cfg))
        exact = [steps.task_file_reader(source),
                 ExactDedupFilter(f"{w}/exact/dups", config=exact_cfg), steps.Tally("exact"),
                 steps.task_file_writer(f"{w}/deduped")]
        stages += [Stage("exact_find", [ExactFindDedups(f"{w}/exact/sigs", f"{w}/exact/dups",
                                                        config=exact_cfg)], 1),
                   Stage("exact", exact, tasks)]
        source = f"{w}/deduped"
    last = [steps.task_file_reader(source)]
    if near:
        stages[-1].pipeline.append(steps.MinhashSignature(f"{w}/minhash/sigs", mh_cfg,
                                                          d.near_domains))
        stages += [Stage("minhash_buckets", [MinhashDedupBuckets(
                       f"{w}/minhash/sigs", f"{w}/minhash/buckets", config=mh_cfg)],
                       mh_cfg.num_buckets),
                   Stage("minhash_cluster", [MinhashDedupCluster(
                       f"{w}/minhash/buckets", f"{w}/minhash/remove", config=mh_cfg)], 1)]
        last += [MinhashDedupFilter(f"{w}/minhash/remove"), steps.Tally("near")]
    last.append(ShardWriter(w, str(out_dir / "tokenizer"), cfg.shard_chars,
                            cfg.heldout_fraction))
    stages.append(Stage("shards", last, tasks))
    return stages


# ---------------------------------------------------------------------------------------------
# finalize: shards into place, statistics, manifests


def _load_stats(logs: Path, stages: list[str]) -> tuple[Counter, list[dict]]:
    """(every stat label summed over all tasks and steps, per-stage per-step progress)."""
    labels: Counter = Counter()
    progress = []
    for name in stages:
        steps: dict[str, dict] = {}
        files = sorted((logs / name / "stats").glob("*.json"))
        for f in files:
            for step in json.loads(f.read_text()):
                s = steps.setdefault(step["name"], {"step": step["name"], "in": 0, "out": 0,
                                                    "dropped": Counter(), "seconds": 0.0,
                                                    "forwarded_seen": False})
                t = step.get("time_stats") or {}
                s["seconds"] += t.get("total", 0.0) if isinstance(t, dict) else 0.0
                for label, m in (step.get("stats") or {}).items():
                    value = m.get("total", 0) if isinstance(m, dict) else m
                    labels[label] += value
                    if label in ("total", "documents"):
                        s["in"] += value
                    elif label == "forwarded":
                        s["out"] += value
                        s["forwarded_seen"] = True
                    elif label.startswith("dropped_"):
                        s["dropped"][label.removeprefix("dropped_")] += value
        for s in steps.values():
            if not s.pop("forwarded_seen"):
                s["out"] = s["in"]  # writers, signatures: every document passes on
        progress.append({"stage": name, "tasks_finished": len(files),
                         "steps": [{**s, "dropped": dict(s["dropped"]),
                                    "seconds": round(s["seconds"], 3)} for s in steps.values()]})
    return labels, progress


def _filter_stats(labels: Counter, exact: bool, near: bool) -> FilterStats:
    """Our FilterStats from the step labels (dedup removals = what came in minus what left)."""
    stats = FilterStats()
    tallies: dict[str, Counter] = defaultdict(Counter)
    for label, value in labels.items():
        parts = label.split("/")
        if parts[0] == "removed" and len(parts) == 5:
            c = stats.removed[(parts[1], parts[2], parts[3])]
            setattr(c, parts[4], getattr(c, parts[4]) + value)
        elif parts[0] in ("input", "filtered", "exact", "near") and len(parts) == 3:
            tallies[parts[0]][parts[1], parts[2]] += value
    for (domain, what), value in tallies["input"].items():
        setattr(stats.seen[domain], what, value)
    steps = [("exact", "exact")] if exact else []
    steps += [("near", "near")] if near else []
    before = "filtered"
    for tally, reason in steps:
        for (domain, what), value in tallies[before].items():
            gone = value - tallies[tally][domain, what]
            if gone:
                c = stats.removed[("dedup", reason, domain)]
                setattr(c, what, getattr(c, what) + gone)
        before = tally
    return stats


def _place(work: Path, dirs: dict[str, Path]) -> dict[str, list[dict]]:
    """Link every task's shards into the split folders, numbered per domain in task order;
    remove shard files of earlier runs beyond the new counts, and temp files."""
    records: dict[str, list[dict]] = {split: [] for split in dirs}
    count: dict[str, Counter] = {split: Counter() for split in dirs}
    for task in sorted((work / "shards").iterdir()) if (work / "shards").is_dir() else ():
        for split in dirs:
            for f in sorted((task / split).glob("*/shard_*.json")):
                rec = json.loads(f.read_text())
                i = count[split][rec["domain"]]
                count[split][rec["domain"]] += 1
                records[split].append(place_shard(task / split, rec, dirs[split], i))
    for split, folder in dirs.items():
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in
                          RESERVED_NAMES):
            for file in sorted(sub.iterdir()):
                m = _SHARD_FILE.match(file.name.removesuffix(".tmp"))
                if m and (file.suffix == ".tmp" or int(m.group(1)) >= count[split][sub.name]):
                    file.unlink()
    return records


def finalize(cfg: DataConfig, out_dir: Path, work: Path, logs: Path, stage_names: list[str],
             fingerprint: str, vocab_size: int, started: float,
             tasks_run: dict[str, int] | None = None) -> dict:
    """Shards into place and the manifests (training, held out); returns the training one."""
    from youtu.configlib import to_dict

    dirs = {TRAIN: out_dir}
    if cfg.heldout_fraction > 0:
        dirs[HELDOUT] = out_dir / HELDOUT_DIR
    records = _place(work, dirs)
    labels, progress = _load_stats(logs, stage_names)
    d = cfg.dedup
    fstats = _filter_stats(labels, d.exact, d.near and bool(d.near_domains))
    chars, tokens = Counter(), Counter()
    for r in (r for split in records.values() for r in split):
        chars[r["domain"]] += r["chars"]
        tokens[r["domain"]] += r["tokens"]
    cpt = {k: chars[k] / tokens[k] for k in tokens if tokens[k]}
    read = {lab.removeprefix("read/"): n for lab, n in labels.items() if lab.startswith("read/")}
    kept: dict[str, dict[str, Counter]] = {split: defaultdict(Counter) for split in dirs}
    for lab, n in labels.items():
        if lab.startswith("kept/"):
            _, split, rest = lab.split("/", 2)
            source, domain = rest.rsplit("/", 1)
            if split in kept:
                kept[split][source][domain] += n

    def sources(split: str) -> dict[str, dict[str, int]]:
        return {name: {"read": n, **dict(sorted(kept[split].get(name, {}).items()))}
                for name, n in sorted(read.items())}

    build = {"executor": cfg.executor.kind, "workers": cfg.workers,
             "tasks": max(p["tasks_finished"] for p in progress) if progress else 0,
             "wall_s": round(time.perf_counter() - started, 3), "stages": progress,
             "tasks_run": tasks_run or {},
             "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    common = {"filters": fstats.to_dict(cpt), "config": to_dict(cfg), "build": build}
    held = {"fraction": cfg.heldout_fraction, "path": "", "domains": {},
            "totals": {"docs": 0, "tokens": 0}}
    if HELDOUT in dirs:
        hm = build_manifest(records[HELDOUT], fingerprint, vocab_size, split=HELDOUT,
                            heldout_fraction=cfg.heldout_fraction, sources=sources(HELDOUT),
                            **common)
        write_manifest(dirs[HELDOUT], hm)
        held.update(path=HELDOUT_DIR, totals=hm["totals"],
                    domains={k: {x: v[x] for x in ("docs", "tokens", "chars")}
                             for k, v in hm["domains"].items()})
    manifest = build_manifest(records[TRAIN], fingerprint, vocab_size, split=TRAIN,
                              heldout=held, sources=sources(TRAIN), **common)
    if HELDOUT in dirs:
        for domain in sorted(set(manifest["domains"]) - set(held["domains"])):
            logger.warning("domain %r has no held-out documents (%d kept for training): raise "
                           "data.heldout_fraction (now %g) to measure its held-out loss", domain,
                           manifest["domains"][domain]["docs"], cfg.heldout_fraction)
    write_manifest(out_dir, manifest)  # last: its presence marks a finished folder
    return manifest


class Finalize:
    """`finalize` as the last Slurm stage (a datatrove pipeline callable)."""

    def __init__(self, **kwargs: Any):
        self.kwargs = kwargs

    def __call__(self, data, rank: int = 0, world_size: int = 1):
        finalize(**self.kwargs, started=time.perf_counter())
        return data


# ---------------------------------------------------------------------------------------------
# entry points


def prepare(cfg: DataConfig, tokenizer: Tokenizer, out_dir: str | Path,
            extra: Iterable[Document] = (), *, eval_texts: Iterable[str] = ()) -> dict:
    """Build token shards from the configured sources plus `extra` documents.

    Args:
        cfg: The `[data]` section (`[data.executor]`: local or slurm, tasks, logging folder).
        tokenizer: Tokenizer to encode with; saved to `<out_dir>/tokenizer/` for the tasks
            (and for `youtu data inspect`).
        out_dir: Shard folder (`<domain>/shard_*.bin|idx|json`, `manifest.json`).
        extra: More documents, e.g. agentic trajectories rendered as text (domain `agent`) and
            SFT conversations (domain `chat`, `meta["messages"]` / `meta["tools"]`). Special-token
            strings in a document's text become special ids only when its
            `meta["trusted_special"]` is True (`youtu.data.document.TRUSTED_SPECIAL`).
        eval_texts: Eval items to decontaminate against, besides `cfg.dedup.decontam_paths`.

    Returns:
        The training manifest (also `<out_dir>/manifest.json`); its `heldout` entry has the
        held-out split's fraction, path and counts, its `build.stages` the documents in/out and
        drop reasons of every step. Under Slurm: `{"slurm_job_id": ..., "logging_dir": ...}`
        (the last job writes the manifest).

    Raises:
        DataPipelineError: a task failed or a worker died (one line naming the task's log).
    """
    from youtu.data.steps import plan_units

    started = time.perf_counter()
    out_dir = Path(out_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # present only once this run finishes
    held_dir = out_dir / HELDOUT_DIR
    if cfg.heldout_fraction > 0:
        held_dir.mkdir(exist_ok=True)
        (held_dir / "manifest.json").unlink(missing_ok=True)
        tokenizer.save(held_dir / "tokenizer")
    elif held_dir.exists():
        logger.info("removing %s: data.heldout_fraction is 0, its documents now train", held_dir)
        shutil.rmtree(held_dir)
    tokenizer.save(out_dir / "tokenizer")

    root = out_dir / WORK_DIR
    inputs = root / "inputs"
    items = load_eval_texts(cfg.dedup.decontam_paths, cfg.dedup.decontam_field)
    extra_files, extra_sha, eval_sha, eval_items = _write_inputs(inputs, extra,
                                                                 [*items, *eval_texts])
    units = plan_units(cfg, extra_files)
    kind = cfg.executor.kind
    tasks = cfg.executor.tasks or max(1, min(AUTO_TASKS[kind], len(units)))
    key = _key(cfg, tasks, tokenizer.fingerprint, extra_sha, eval_sha)
    work = root / key
    for old in [*root.iterdir(), *((root / "logs").iterdir() if (root / "logs").is_dir()
                                    else ())]:
        if old.is_dir() and old.name not in ("inputs", "logs", key):
            shutil.rmtree(old)  # work (and default logs) of another configuration
    logs = (Path(cfg.executor.logging_dir) if cfg.executor.logging_dir else root / "logs") / key
    work.mkdir(parents=True, exist_ok=True)
    index = work / "decontam.npz"
    if not index.is_file():  # built once here, loaded by every filtering task
        Decontaminator(eval_items, cfg.dedup.decontam_ngram).save(index.with_suffix(".tmp"))
        index.with_suffix(".tmp").replace(index)
    stages = _stages(cfg, units, work, out_dir, tasks, str(index))
    names = [s.name for s in stages]
    logger.info("data prepare: %d read unit(s), %d task(s) per stage, stages %s, logs in %s",
                len(units), tasks, " -> ".join(names), logs)
    fin = dict(cfg=cfg, out_dir=out_dir, work=work, logs=logs, stage_names=names,
               fingerprint=tokenizer.fingerprint, vocab_size=tokenizer.vocab_size)
    if kind == "slurm":
        stages.append(Stage("finalize", [Finalize(**fin)], 1))
        job = submit_slurm(stages, cfg.executor, cfg.workers, logs)
        return {"slurm_job_id": job, "logging_dir": str(logs)}
    _recheck_shards(work, logs)
    ran = run_local(stages, cfg.workers, logs)
    manifest = finalize(**fin, started=started, tasks_run=ran)
    t, h = manifest["totals"], manifest["heldout"]["totals"]
    logger.info("prepared %d docs, %d tokens for training and %d docs, %d tokens held out -> "
                "%s in %.1fs", t["docs"], t["tokens"], h["docs"], h["tokens"], out_dir,
                time.perf_counter() - started)
    return manifest


def main(cfg: RunConfig, extra: Iterable[Document] = (), eval_texts: Iterable[str] = ()) -> int:
    """`youtu data prepare`: shards into `data.dir` (default `<run_dir>/data`) with the tokenizer
    at `tokenizer.path` (default `<run_dir>/tokenizer`). The command (youtu.commands'
    `data_prepare_main`) passes the synthesized trajectories as `extra` and the eval items as
    `eval_texts`, which this package cannot read itself."""
    from youtu.tokenizer import Tokenizer

    tokenizer_dir = Path(cfg.tokenizer.path) if cfg.tokenizer.path else cfg.run_dir / "tokenizer"
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise ConfigError(f"no tokenizer at {tokenizer_dir}: run `youtu tokenizer train` first, "
                          f"or set --tokenizer.path to a folder with tokenizer.json")
    out_dir = Path(cfg.data.dir) if cfg.data.dir else cfg.run_dir / "data"
    manifest = prepare(cfg.data, Tokenizer.load(tokenizer_dir), out_dir, extra=extra,
                       eval_texts=eval_texts)
    if "slurm_job_id" in manifest:
        print(f"submitted to Slurm (last job {manifest['slurm_job_id']}); job scripts and logs "
              f"in {manifest['logging_dir']}; {out_dir / 'manifest.json'} appears when the last "
              f"job finishes")
        return 0
    held = manifest["heldout"]["domains"]
    for name, d in manifest["domains"].items():
        h = held.get(name, {"docs": 0, "tokens": 0})
        print(f"{name:12s} {d['docs']:>9,d} docs {d['tokens']:>13,d} tokens "
              f"{len(d['shards'])} shard(s)" + (f"  held out: {h['docs']:,d} docs "
                                                  f"{h['tokens']:,d} tokens" if held else ""))
    print(f"manifest: {out_dir / 'manifest.json'}")
    if manifest["heldout"]["path"]:
        print(f"held-out manifest: {out_dir / manifest['heldout']['path'] / 'manifest.json'}")
    return 0
