"""Token shards on disk: memory-mapped uint32 tokens, document offsets, a manifest; checked on open.

    shards = ShardSet.open("runs/tiny/data", tokenizer.fingerprint)
    shards.domains                       # ['code', 'commonsense', 'stem']
    shards.document("code", 17)          # np.ndarray[uint32], BOS ... EOS

Layout of a shard folder (written by `youtu.data.prepare`):

    manifest.json                        sources, filters, counts per domain, tokenizer, checksums
    tokenizer/                           the tokenizer the shards were built with
    <domain>/shard_00000.bin             uint32 little-endian token ids, documents back to back
    <domain>/shard_00000.idx             header (magic, doc count) + uint64 offsets[docs + 1]
    <domain>/shard_00000.mask            (chat only) uint8 loss mask per token
    <domain>/shard_00000.json            the shard's record; written last: marks a finished shard

Every stored document is complete and framed: `BOS text EOS` for text, the chat template's own
framing for conversations. Opening checks, for every shard: the tokenizer fingerprint, file sizes
against the recorded token/document counts, the offsets, and (by default) sha256 checksums; any
failure raises `ShardError` naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from youtu import fsutil
from youtu.errors import ConfigError

logger = logging.getLogger(__name__)

FORMAT = "youtu-shards/1"
TOKEN_DTYPE = np.dtype("<u4")
IDX_MAGIC = b"YTUIDX\x00\x01"
IDX_HEADER = struct.Struct("<8sQ")  # magic, number of documents
FIX = "delete it and re-run `youtu data prepare` (finished shards are kept)"


class ShardError(ConfigError):
    """A shard folder is unusable (wrong tokenizer, truncated, corrupt); the message says how to
    fix it. (`youtu.errors` is import-light: tokenizer worker processes start fast.)"""


def shard_stem(domain: str, index: int) -> str:
    """'code/shard_00003': the shard's path relative to the folder, without suffix."""
    return f"{domain}/shard_{index:05d}"


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _write_atomic(path: Path, data: bytes) -> str:
    fsutil.atomic_write(path, data)  # fsync, rename, fsync of the folder
    return hashlib.sha256(data).hexdigest()


def write_shard(folder: Path, domain: str, index: int, docs: Sequence[Sequence[int]],
                masks: Sequence[Sequence[int]] | None, record: dict) -> dict:
    """Write one shard's files, then its record (last, so a crash never leaves a 'finished' shard
    with missing data). Returns the record with docs, tokens and checksums filled in."""
    stem = folder / shard_stem(domain, index)
    stem.parent.mkdir(parents=True, exist_ok=True)
    lengths = np.fromiter((len(d) for d in docs), dtype=np.uint64, count=len(docs))
    if not len(docs) or not lengths.all():
        raise ValueError(f"{domain} shard {index}: a shard holds at least one document and no "
                         f"empty ones (every document is at least BOS EOS)")
    offsets = np.zeros(len(docs) + 1, dtype="<u8")
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.fromiter((t for d in docs for t in d), dtype=TOKEN_DTYPE, count=int(offsets[-1]))
    files = {"bin": _write_atomic(stem.with_suffix(".bin"), tokens.tobytes()),
             "idx": _write_atomic(stem.with_suffix(".idx"),
                                  IDX_HEADER.pack(IDX_MAGIC, len(docs)) + offsets.tobytes())}
    if masks is not None:
        mask = np.fromiter((m for d in masks for m in d), dtype=np.uint8, count=int(offsets[-1]))
        files["mask"] = _write_atomic(stem.with_suffix(".mask"), mask.tobytes())
    record = {**record, "name": shard_stem(domain, index), "domain": domain, "index": index,
              "docs": len(docs), "tokens": int(offsets[-1]), "sha256": files}
    _write_atomic(stem.with_suffix(".json"), json.dumps(record, indent=1).encode())
    return record


def place_shard(src: Path, record: dict, dest: Path, index: int) -> dict:
    """Put a finished shard written elsewhere (a pipeline task's folder) into `dest` as shard
    `index` of its domain: hard links (a copy where links are not possible), then its record,
    renamed, written last. Returns the new record."""
    stem = dest / shard_stem(record["domain"], index)
    stem.parent.mkdir(parents=True, exist_ok=True)
    for suffix in record["sha256"]:
        target = stem.with_suffix(f".{suffix}")
        target.unlink(missing_ok=True)
        source = (src / record["name"]).with_suffix(f".{suffix}")
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    record = {**record, "name": shard_stem(record["domain"], index), "index": index}
    _write_atomic(stem.with_suffix(".json"), json.dumps(record, indent=1).encode())
    return record


def build_manifest(records: list[dict], fingerprint: str, vocab_size: int, **extra) -> dict:
    """The manifest of a shard folder from its shard records (plus sources, filters, config,
    build stats in `extra`)."""
    domains: dict[str, dict] = {}
    for record in sorted(records, key=lambda r: (r["domain"], r["index"])):
        d = domains.setdefault(record["domain"], {"docs": 0, "tokens": 0, "chars": 0,
                                                  "shards": []})
        d["docs"] += record["docs"]
        d["tokens"] += record["tokens"]
        d["chars"] += record.get("chars", 0)
        d["shards"].append(record)
    return {"format": FORMAT,
            "tokenizer": {"fingerprint": fingerprint, "vocab_size": vocab_size,
                          "path": "tokenizer"},
            "dtype": "uint32", "domains": domains,
            "totals": {"docs": sum(d["docs"] for d in domains.values()),
                       "tokens": sum(d["tokens"] for d in domains.values())},
            **extra}


def write_manifest(folder: Path, manifest: dict) -> None:
    """Write `manifest.json` atomically (its presence marks a finished folder)."""
    _write_atomic(Path(folder) / "manifest.json", json.dumps(manifest, indent=1).encode())


_CHECKED = ("docs", "tokens", "sha256")
"""Fields of a shard's record that its files are checked against (sizes, checksums); a
manifest that disagrees with the shard's own record on them was edited, and is named."""


def _own_record(stem: Path) -> dict | None:
    """The record `write_shard` wrote beside the shard (None if absent or unreadable)."""
    try:
        own = json.loads(stem.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    return own if isinstance(own, dict) else None


def verify_shard(folder: Path, record: dict, fingerprint: str | None, checksums: bool) -> None:
    """Raise `ShardError` unless the shard's files match `record` (and the tokenizer)."""
    stem = folder / record["name"]
    own = _own_record(stem)
    changed = [k for k in _CHECKED if own is not None and own.get(k) != record.get(k)]
    if changed:
        raise ShardError(f"{folder / 'manifest.json'} disagrees with {stem}.json, the record the "
                         f"shard was written with ({', '.join(changed)} differ): the manifest "
                         "was edited or mixed with another build; re-run `youtu data prepare` "
                         "(finished shards are kept and the manifest rewritten from them)")
    if fingerprint is not None and record.get("tokenizer") != fingerprint:
        raise ShardError(f"{stem}.bin was tokenized with tokenizer {record.get('tokenizer')} but "
                         f"this run uses {fingerprint}; {FIX}")
    for suffix, expected in (("bin", record["tokens"] * TOKEN_DTYPE.itemsize),
                             ("idx", IDX_HEADER.size + (record["docs"] + 1) * 8),
                             ("mask", record["tokens"])):
        path = stem.with_suffix(f".{suffix}")
        if suffix not in record["sha256"]:
            continue
        if not path.is_file():
            raise ShardError(f"{path} is missing (the manifest lists it); {FIX}")
        size = path.stat().st_size
        if size != expected:
            raise ShardError(f"{path} is truncated or corrupt: {size} bytes, the manifest says "
                             f"{expected}; {FIX}")
        if checksums and sha256_file(path) != record["sha256"][suffix]:
            raise ShardError(f"{path} fails its sha256 checksum (the file changed after it was "
                             f"written); {FIX}")
    magic, docs = IDX_HEADER.unpack(stem.with_suffix(".idx").read_bytes()[:IDX_HEADER.size])
    if magic != IDX_MAGIC or docs != record["docs"]:
        raise ShardError(f"{stem}.idx has a bad header (not a youtu index, or another shard's); "
                         f"{FIX}")


class DomainShards:
    """The documents of one domain across its shards, memory-mapped."""

    def __init__(self, folder: Path, domain: str, records: list[dict]):
        self.domain = domain
        self.tokens: list[np.ndarray] = []
        self.offsets: list[np.ndarray] = []
        self.masks: list[np.ndarray | None] = []
        for r in records:
            stem = folder / r["name"]
            self.tokens.append(np.memmap(stem.with_suffix(".bin"), dtype=TOKEN_DTYPE, mode="r"))
            offsets = np.fromfile(stem.with_suffix(".idx"), dtype="<u8", offset=IDX_HEADER.size)
            steps = np.diff(offsets.astype(np.int64))
            if offsets[0] != 0 or offsets[-1] != r["tokens"] or np.any(steps <= 0):
                raise ShardError(f"{stem}.idx has offsets that do not describe {stem}.bin; {FIX}")
            self.offsets.append(offsets.astype(np.int64))
            has_mask = "mask" in r["sha256"]
            self.masks.append(np.memmap(stem.with_suffix(".mask"), dtype=np.uint8, mode="r")
                              if has_mask else None)
        self.doc_starts = np.concatenate([[0], np.cumsum([len(o) - 1 for o in self.offsets])])
        self.num_docs = int(self.doc_starts[-1])
        self.num_tokens = int(sum(int(o[-1]) for o in self.offsets))
        self.lengths = np.concatenate([np.diff(o) for o in self.offsets]) if records else \
            np.zeros(0, dtype=np.int64)

    def _locate(self, i: int) -> tuple[int, int, int]:
        if not 0 <= i < self.num_docs:
            raise IndexError(f"{self.domain}: document {i} out of range 0..{self.num_docs - 1}")
        s = int(np.searchsorted(self.doc_starts, i, side="right")) - 1
        j = i - int(self.doc_starts[s])
        return s, int(self.offsets[s][j]), int(self.offsets[s][j + 1])

    def document(self, i: int) -> np.ndarray:
        """Tokens of document `i` (a read-only view into the memory map)."""
        s, a, b = self._locate(i)
        return self.tokens[s][a:b]

    def loss_mask(self, i: int) -> np.ndarray | None:
        """Per-token loss mask of document `i` (chat shards), else None."""
        s, a, b = self._locate(i)
        mask = self.masks[s]
        return None if mask is None else mask[a:b]


class ShardSet:
    """All token shards of a prepared folder, validated. Build with `ShardSet.open`."""

    def __init__(self, folder: Path, manifest: dict, domains: dict[str, DomainShards]):
        self.folder = folder
        self.manifest = manifest
        self._domains = domains

    @classmethod
    def open(cls, folder: str | Path, tokenizer_fingerprint: str | None, *,
             verify_checksums: bool = True) -> ShardSet:
        """Open and check a shard folder.

        Args:
            folder: Where `prepare` wrote `manifest.json` and the shards.
            tokenizer_fingerprint: The fingerprint of the tokenizer the caller will train or
                decode with; a mismatch is refused. None skips the check (inspection only).
            verify_checksums: Also compare every file's sha256 with the manifest (reads each
                shard once, ~1 GB/s); sizes, headers and offsets are always checked.

        Raises:
            ShardError: naming the file and the fix.
        """
        folder = Path(folder)
        path = folder / "manifest.json"
        if not path.is_file():
            raise ShardError(f"{path} does not exist: run `youtu data prepare` first (it writes "
                             f"the manifest last, so a missing one means it did not finish)")
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ShardError(f"{path} is not valid JSON ({e}); re-run `youtu data prepare`") from e
        if manifest.get("format") != FORMAT:
            raise ShardError(f"{path} has format {manifest.get('format')!r}, this code reads "
                             f"{FORMAT!r}; re-run `youtu data prepare`")
        built_with = manifest["tokenizer"]["fingerprint"]
        if tokenizer_fingerprint is not None and built_with != tokenizer_fingerprint:
            raise ShardError(f"{folder} was tokenized with tokenizer {built_with}, but this run "
                             f"uses tokenizer {tokenizer_fingerprint}: re-run `youtu data prepare` "
                             f"with this tokenizer, or point data.dir at shards built with it")
        domains = {}
        for domain, info in sorted(manifest["domains"].items()):
            for record in info["shards"]:
                verify_shard(folder, record, built_with, verify_checksums)
            domains[domain] = DomainShards(folder, domain, info["shards"])
        return cls(folder, manifest, domains)

    @property
    def domains(self) -> list[str]:
        return sorted(self._domains)

    @property
    def fingerprint(self) -> str:
        return self.manifest["tokenizer"]["fingerprint"]

    def __getitem__(self, domain: str) -> DomainShards:
        if domain not in self._domains:
            raise KeyError(f"no shards for domain {domain!r} in {self.folder} (domains: "
                           f"{', '.join(self.domains)})")
        return self._domains[domain]

    def __contains__(self, domain: str) -> bool:
        return domain in self._domains

    def num_docs(self, domain: str) -> int:
        return self[domain].num_docs

    def num_tokens(self, domain: str) -> int:
        return self[domain].num_tokens

    def document(self, domain: str, i: int) -> np.ndarray:
        return self[domain].document(i)

    def loss_mask(self, domain: str, i: int) -> np.ndarray | None:
        return self[domain].loss_mask(i)

    def examples(self, domain: str) -> Iterator[tuple[list[int], list[int]]]:
        """(ids, loss mask) per document, for `youtu.data.packing.pack_examples` (SFT). Documents
        without a stored mask get all ones."""
        shards = self[domain]
        for i in range(shards.num_docs):
            ids = shards.document(i).tolist()
            mask = shards.loss_mask(i)
            yield ids, (mask.tolist() if mask is not None else [1] * len(ids))
