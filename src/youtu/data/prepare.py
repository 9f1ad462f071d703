"""`youtu data prepare`: read sources, classify, filter, dedup, decontaminate, and tokenize into
token shards in parallel worker processes.

    youtu data prepare configs/tiny.toml                       # -> runs/tiny/data/
    youtu data prepare configs/tiny.toml --data.workers=4 --data.embedded.stem_chars=5000000

    manifest = prepare(cfg.data, tokenizer, "runs/tiny/data", extra=trajectory_documents)

One pass over the documents in this process (reading, domain classification, language id,
quality rules, decontamination, exact and MinHash near-dedup are all streaming), cutting each
domain's surviving documents into shards of `data.shard_chars` characters. Each shard goes to a
worker process that loads the tokenizer from `<out>/tokenizer/`, tokenizes (`BOS text EOS`; chat
documents through the chat template with their loss mask) and writes the shard files. Strings
like "<tool_call>" in the text stay plain text unless the document's producer marked it
`meta["trusted_special"] = True` (see `youtu.data.document.TRUSTED_SPECIAL`). A shard
whose record already names the same input (sha256 of its documents) and tokenizer, and whose
files pass their checksums, is not tokenized again: an interrupted run resumes where it stopped.
`manifest.json` is written last.

With `data.heldout_fraction = f > 0`, a share f of the kept documents of every domain (chosen by
a keyed hash of each text, see `is_heldout`) goes to `<out>/heldout/` instead: the same layout
with its own `manifest.json` and tokenizer copy, the held-out set the trainer scores per domain
(loss, bits per byte). No document is in both; the training manifest's `heldout` entry counts
the held-out documents and tokens per domain.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import multiprocessing as mp
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from youtu.data.config import RESERVED_NAMES, DataConfig
from youtu.data.dedup import Decontaminator, ExactDedup, NearDedup, load_eval_texts
from youtu.data.document import TRUSTED_SPECIAL, Document
from youtu.data.domain import NaiveBayesClassifier, classify_rules
from youtu.data.filters import FilterStats, detect_language, profile, quality_reason
from youtu.data.shards import (ShardError, build_manifest, shard_stem, verify_shard,
                               write_manifest, write_shard)
from youtu.data.sources import embedded_corpus, iter_documents
from youtu.errors import ConfigError

if TYPE_CHECKING:
    from youtu.config import RunConfig
    from youtu.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

TRAIN, HELDOUT = "train", "heldout"
"""The two splits a prepared folder holds (the manifests' `split`)."""
HELDOUT_DIR = "heldout"
"""Subfolder of a prepared folder holding the held-out split (what `train.heldout_dir` defaults
to)."""
_HELDOUT_KEY = b"youtu-heldout/1"  # keys is_heldout's hash; changing it reshuffles every split
ENCODE_CHUNK = 512
"""Documents per `encode_batch` call in a worker (bounds the worker's peak memory)."""
_SHARD_FILE = re.compile(r"^shard_(\d{5})\.(bin|idx|mask|json)$")


# ---------------------------------------------------------------------------------------------
# worker side

_WORKER_TOKENIZER: Tokenizer | None = None


def _init_worker(tokenizer_dir: str, single_thread: bool = True) -> None:
    global _WORKER_TOKENIZER
    if single_thread:
        # One process per core already: Rust-side threads would only oversubscribe the cores.
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from youtu.tokenizer import Tokenizer

    _WORKER_TOKENIZER = Tokenizer.load(tokenizer_dir)


def tokenize_documents(tok: Tokenizer, docs: list[dict]) -> tuple[list[list[int]],
                                                                  list[list[int]] | None]:
    """Token ids of each document (`BOS text EOS`, or the chat template for documents carrying
    `messages`), and loss masks when any document is a conversation."""
    from youtu.tokenizer.chat import encode_chat

    ids: list[list[int]] = [[] for _ in docs]
    masks: list[list[int]] | None = None
    plain = [i for i, d in enumerate(docs) if "messages" not in d]
    for allow_special in (False, True):
        group = [i for i in plain if docs[i]["allow_special"] == allow_special]
        for start in range(0, len(group), ENCODE_CHUNK):
            chunk = group[start:start + ENCODE_CHUNK]
            encoded = tok.encode_batch([docs[i]["text"] for i in chunk], allow_special)
            for i, e in zip(chunk, encoded):
                # Text rendered in the chat format (agent trajectories) already carries its own
                # BOS/EOS once special strings are allowed: frame each document exactly once.
                head = [] if e[:1] == [tok.bos_id] else [tok.bos_id]
                tail = [] if e[-1:] == [tok.eos_id] else [tok.eos_id]
                ids[i] = [*head, *e, *tail]
    if len(plain) < len(docs):
        masks = [[1] * len(x) for x in ids]
        for i, d in enumerate(docs):
            if "messages" in d:
                try:
                    ids[i], masks[i] = encode_chat(tok, d["messages"], d.get("tools"))
                except (ValueError, KeyError, TypeError) as e:
                    raise ValueError(f"chat document from source {d.get('source')!r} cannot be "
                                     f"rendered: {e}; fix its messages") from e
    return ids, masks


def _tokenize_shard(job: dict) -> tuple[dict, float, float]:
    """Worker entry: tokenize and write one shard. Returns (record, tokenize_s, write_s)."""
    tok = _WORKER_TOKENIZER
    assert tok is not None, "worker started without _init_worker"
    t0 = time.perf_counter()
    ids, masks = tokenize_documents(tok, job["docs"])
    t1 = time.perf_counter()
    record = write_shard(Path(job["out_dir"]), job["domain"], job["index"], ids, masks,
                         job["record"])
    return record, t1 - t0, time.perf_counter() - t1


# ---------------------------------------------------------------------------------------------
# planning side


@dataclasses.dataclass
class _Pending:
    """Documents of one domain waiting to fill a shard."""

    docs: list[dict] = dataclasses.field(default_factory=list)
    chars: int = 0
    digest: Any = dataclasses.field(default_factory=hashlib.sha256)
    sources: Counter = dataclasses.field(default_factory=Counter)


class _Timer:
    def __init__(self) -> None:
        self.seconds: Counter = Counter()

    def timed(self, key: str, fn, *args):
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds[key] += time.perf_counter() - t


def _timed_iter(docs: Iterable[Document], timer: _Timer) -> Iterator[Document]:
    it = iter(docs)
    while True:
        t = time.perf_counter()
        try:
            doc = next(it)
        except StopIteration:
            return
        finally:
            timer.seconds["read"] += time.perf_counter() - t
        yield doc


def _classifier(cfg: DataConfig):
    if cfg.classifier == "rules":
        return classify_rules
    # Fit on ~300k chars per domain of the labelled embedded corpus (always available, whatever
    # the run's caps): about a second's work.
    sample = embedded_corpus(cfg.seed, code_chars=300_000, prose_chars=300_000,
                             stem_chars=300_000)
    return NaiveBayesClassifier.fit((d.text, d.domain) for d in sample).predict


def _payload(doc: Document) -> dict:
    # Never inferred from the domain: the classifier labels any text with "<tool_call>" `agent`.
    out = {"text": doc.text, "source": doc.source,
           "allow_special": doc.meta.get(TRUSTED_SPECIAL) is True}
    if doc.meta.get("messages"):
        out["messages"] = doc.meta["messages"]
        if doc.meta.get("tools"):
            out["tools"] = doc.meta["tools"]
    return out


class _Filters:
    """The per-document decision chain; records every removal in `stats`."""

    def __init__(self, cfg: DataConfig, eval_texts: Iterable[str]):
        self.cfg = cfg
        self._classify = None  # built on the first 'auto' document (bayes trains a model)
        # Two dedup namespaces: pretraining domains against each other, and `chat` (SFT) on its
        # own; the same verified trajectory is meant to be both agent mid-training text and an
        # SFT conversation.
        self.exact = {ns: ExactDedup() for ns in ("pretrain", "chat")} if cfg.dedup.exact else None
        self.near = {ns: NearDedup(cfg.dedup.threshold, cfg.dedup.num_perm,
                                   cfg.dedup.shingle_words)
                     for ns in ("pretrain", "chat")} if cfg.dedup.near else None
        texts = itertools.chain(load_eval_texts(cfg.dedup.decontam_paths,
                                                cfg.dedup.decontam_field), eval_texts)
        self.decontam = Decontaminator(texts, cfg.dedup.decontam_ngram)
        self.stats = FilterStats()
        self.timer = _Timer()

    def keep(self, doc: Document) -> bool:
        """Classify `doc` in place (domain 'auto') and say whether it survives."""
        t, q, d = self.timer, self.cfg.quality, self.cfg.dedup
        if doc.domain == "auto":
            if self._classify is None:
                self._classify = t.timed("classify", _classifier, self.cfg)
            doc.domain = t.timed("classify", self._classify, doc.text)
        text, domain = doc.text, doc.domain
        self.stats.saw(domain, len(text))
        language = "en"
        if profile(domain) == "prose":
            language = t.timed("language", detect_language, text)
            if language not in q.languages:
                self.stats.remove("language", language, domain, len(text))
                return False
        if q.enabled:
            reason = t.timed("quality", quality_reason, text, domain, q, language)
            if reason:
                self.stats.remove("quality", reason, domain, len(text))
                return False
        if self.decontam and t.timed("decontam", self.decontam.contaminated, text):
            self.stats.remove("decontam", "ngram_overlap", domain, len(text))
            return False
        ns = "chat" if domain == "chat" else "pretrain"
        if self.exact and t.timed("exact_dedup", self.exact[ns].seen_before, text):
            self.stats.remove("dedup", "exact", domain, len(text))
            return False
        if self.near and domain in d.near_domains and t.timed("near_dedup",
                                                               self.near[ns].seen_before, text):
            self.stats.remove("dedup", "near", domain, len(text))
            return False
        return True


def _existing_record(out_dir: Path, domain: str, index: int, input_sha: str,
                     fingerprint: str) -> dict | None:
    """The finished shard's record if it was built from the same input with the same tokenizer
    and its files verify; else None (it will be rebuilt)."""
    path = out_dir / f"{shard_stem(domain, index)}.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if record.get("input_sha256") != input_sha or record.get("tokenizer") != fingerprint:
        return None
    try:
        verify_shard(out_dir, record, fingerprint, checksums=True)
    except ShardError as e:
        logger.warning("rebuilding %s: %s", record["name"], e)
        return None
    return record


def _remove_stale(out_dir: Path, planned: dict[str, int]) -> None:
    """Delete shard files of earlier runs that this run did not produce (fewer shards now), and
    temp files a crash left behind."""
    for folder in sorted(p for p in out_dir.iterdir()
                         if p.is_dir() and p.name not in RESERVED_NAMES):
        for file in sorted(folder.iterdir()):
            m = _SHARD_FILE.match(file.name.removesuffix(".tmp"))
            if m and (file.suffix == ".tmp" or int(m.group(1)) >= planned.get(folder.name, 0)):
                logger.info("removing stale %s", file)
                file.unlink()


def is_heldout(text: str, fraction: float) -> bool:
    """Whether a document belongs to the held-out split: a keyed 64-bit hash of its text, read as
    a number in [0, 1), falls below `fraction`.

    The decision depends on the text alone, not on the corpus around it, the shard size or the
    order of sources: a document is on the same side in every run, a trajectory given both as
    `agent` text and as a `chat` conversation (each the `render_chat` text of its messages) goes
    the same way in both, and the held-out set at one fraction contains the held-out set at
    every smaller one.
    """
    if fraction <= 0.0:
        return False
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8,
                             key=_HELDOUT_KEY).digest()
    return int.from_bytes(digest, "big") < fraction * 2.0 ** 64


def prepare(cfg: DataConfig, tokenizer: Tokenizer, out_dir: str | Path,
            extra: Iterable[Document] = (), *, eval_texts: Iterable[str] = ()) -> dict:
    """Build token shards from the configured sources plus `extra` documents.

    With `cfg.heldout_fraction > 0`, each kept document (after filters and dedup) goes either to
    the training shards or, by `is_heldout` of its text, to `<out_dir>/heldout/`: a shard folder
    of the same layout with its own `manifest.json` and tokenizer copy, opened by the trainer for
    held-out loss and bits per byte. With 0, an old `heldout/` folder is removed (its documents
    would now be in training).

    Args:
        cfg: The `[data]` section.
        tokenizer: Tokenizer to encode with; saved to `<out_dir>/tokenizer/` for the workers
            (and for `youtu data inspect`).
        out_dir: Shard folder (`<domain>/shard_*.bin|idx|json`, `manifest.json`).
        extra: More documents, e.g. agentic trajectories rendered as text (domain `agent`) and
            SFT conversations (domain `chat`, `meta["messages"]` / `meta["tools"]`). Special-token
            strings in a document's text become special ids only when its
            `meta["trusted_special"]` is True (`youtu.data.document.TRUSTED_SPECIAL`; set it on
            synthesized trajectories); all other text, `agent` or not, is encoded as plain text.
        eval_texts: Eval items to decontaminate against, besides `cfg.dedup.decontam_paths`.

    Returns:
        The training manifest (also written to `<out_dir>/manifest.json`); its `heldout` entry
        has the held-out split's fraction, path and docs/tokens/chars per domain.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # present only once this run finishes
    held_dir = out_dir / HELDOUT_DIR
    dirs = {TRAIN: out_dir}
    if cfg.heldout_fraction > 0:
        dirs[HELDOUT] = held_dir
        held_dir.mkdir(exist_ok=True)
        (held_dir / "manifest.json").unlink(missing_ok=True)
        tokenizer.save(held_dir / "tokenizer")
    elif held_dir.exists():
        logger.info("removing %s: data.heldout_fraction is 0, its documents now train", held_dir)
        shutil.rmtree(held_dir)
    tokenizer_dir = tokenizer.save(out_dir / "tokenizer")
    fingerprint = tokenizer.fingerprint
    filters = _Filters(cfg, eval_texts)
    timer = filters.timer
    # Everything below is per split (train, heldout): shards are numbered per split and domain.
    pending: dict[tuple[str, str], _Pending] = {}
    next_index: dict[str, Counter] = {split: Counter() for split in dirs}
    records: dict[str, list[dict]] = {split: [] for split in dirs}
    kept: dict[str, dict[str, Counter]] = {split: {} for split in dirs}  # split -> source -> domain
    read: Counter = Counter()  # documents read per source
    skipped = 0
    pool = None  # started on the first shard that needs tokenizing (a re-run may need none)
    in_flight: list = []
    worker_s = Counter()

    def collect(block_until: int) -> None:
        while len(in_flight) > block_until:
            split, result = in_flight.pop(0)
            record, tok_s, write_s = result.get()
            records[split].append(record)
            worker_s["tokenize"] += tok_s
            worker_s["write"] += write_s

    def flush(split: str, domain: str) -> None:
        nonlocal skipped, pool
        p = pending.pop((split, domain))
        index = next_index[split][domain]
        next_index[split][domain] += 1
        input_sha = p.digest.hexdigest()
        done = _existing_record(dirs[split], domain, index, input_sha, fingerprint)
        if done is not None:
            records[split].append(done)
            skipped += 1
            return
        job = {"out_dir": str(dirs[split]), "domain": domain, "index": index, "docs": p.docs,
               "record": {"input_sha256": input_sha, "tokenizer": fingerprint, "chars": p.chars,
                          "sources": dict(p.sources)}}
        if pool is None and cfg.workers:
            # spawn, not fork: fork would copy this process' tokenizer threads and locks. As with
            # a torch DataLoader, a script calling prepare() needs `if __name__ == "__main__":`.
            pool = mp.get_context("spawn").Pool(cfg.workers, _init_worker, (str(tokenizer_dir),))
        if pool is None:
            if _WORKER_TOKENIZER is None or _WORKER_TOKENIZER.fingerprint != fingerprint:
                _init_worker(str(tokenizer_dir), single_thread=False)
            record, tok_s, write_s = _tokenize_shard(job)
            records[split].append(record)
            worker_s["tokenize"] += tok_s
            worker_s["write"] += write_s
        else:
            in_flight.append((split, pool.apply_async(_tokenize_shard, (job,))))
            collect(block_until=2 * cfg.workers)  # bound the texts held in memory

    try:
        docs = itertools.chain(iter_documents(cfg), extra)
        for doc in tqdm(_timed_iter(docs, timer), desc="data prepare", unit=" docs", disable=None):
            if doc.domain == "chat" and not doc.text and doc.meta.get("messages"):
                from youtu.tokenizer.chat import render_chat

                doc.text = render_chat(doc.meta["messages"], doc.meta.get("tools"))
            read[doc.source] += 1
            if not filters.keep(doc):
                continue
            if doc.domain in RESERVED_NAMES:
                raise ValueError(f"a document from source {doc.source!r} has domain "
                                 f"{doc.domain!r}, the name of a shard subfolder "
                                 f"({', '.join(RESERVED_NAMES)}); give it another domain")
            split = HELDOUT if timer.timed("heldout", is_heldout, doc.text,
                                           cfg.heldout_fraction) else TRAIN
            kept[split].setdefault(doc.source, Counter())[doc.domain] += 1
            p = pending.setdefault((split, doc.domain), _Pending())
            payload = _payload(doc)
            p.docs.append(payload)
            p.chars += len(doc.text)
            p.digest.update(json.dumps(payload, sort_keys=True).encode())
            p.sources[doc.source] += 1
            if p.chars >= cfg.shard_chars:
                flush(split, doc.domain)
        for split, domain in sorted(pending):
            flush(split, domain)
        collect(block_until=0)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    for split, folder in dirs.items():
        _remove_stale(folder, dict(next_index[split]))

    from youtu.configlib import to_dict

    all_records = [r for split in dirs for r in records[split]]
    domain_chars = Counter()
    domain_tokens = Counter()
    for r in all_records:
        domain_chars[r["domain"]] += r["chars"]
        domain_tokens[r["domain"]] += r["tokens"]
    chars_per_token = {d: domain_chars[d] / domain_tokens[d] for d in domain_tokens
                       if domain_tokens[d]}
    wall = time.perf_counter() - start
    build = {
        "shards_written": len(all_records) - skipped, "shards_skipped": skipped,
        "workers": cfg.workers, "wall_s": round(wall, 3),
        "seconds": {"read": round(timer.seconds["read"], 3),
                    "filter": {k: round(v, 3) for k, v in sorted(timer.seconds.items())
                               if k != "read"},
                    "tokenize_worker_sum": round(worker_s["tokenize"], 3),
                    "write_worker_sum": round(worker_s["write"], 3)},
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    common = {"filters": filters.stats.to_dict(chars_per_token), "config": to_dict(cfg),
              "build": build}

    def sources(split: str) -> dict[str, dict[str, int]]:
        # Per source: documents read (both splits) and kept into this split, per domain.
        return {name: {"read": n, **dict(sorted(kept[split].get(name, {}).items()))}
                for name, n in sorted(read.items())}

    held = {"fraction": cfg.heldout_fraction, "path": "", "domains": {},
            "totals": {"docs": 0, "tokens": 0}}
    if HELDOUT in dirs:
        held_manifest = build_manifest(records[HELDOUT], fingerprint, tokenizer.vocab_size,
                                       split=HELDOUT, heldout_fraction=cfg.heldout_fraction,
                                       sources=sources(HELDOUT), **common)
        write_manifest(held_dir, held_manifest)
        held.update(path=HELDOUT_DIR, totals=held_manifest["totals"],
                    domains={d: {k: info[k] for k in ("docs", "tokens", "chars")}
                             for d, info in held_manifest["domains"].items()})
    manifest = build_manifest(records[TRAIN], fingerprint, tokenizer.vocab_size, split=TRAIN,
                              heldout=held, sources=sources(TRAIN), **common)
    if HELDOUT in dirs:
        for domain in sorted(set(manifest["domains"]) - set(held["domains"])):
            logger.warning("domain %r has no held-out documents (%d kept for training): raise "
                           "data.heldout_fraction (now %g) to measure its held-out loss", domain,
                           manifest["domains"][domain]["docs"], cfg.heldout_fraction)
    write_manifest(out_dir, manifest)  # last: its presence marks a finished folder
    totals = manifest["totals"]
    logger.info("prepared %d docs, %d tokens for training and %d docs, %d tokens held out in %d "
                "shards (%d reused) -> %s in %.1fs", totals["docs"], totals["tokens"],
                held["totals"]["docs"], held["totals"]["tokens"], len(all_records), skipped,
                out_dir, wall)
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
