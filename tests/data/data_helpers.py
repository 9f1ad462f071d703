"""Helpers for youtu.data tests: synthetic shards with known documents (no tokenizer needed).
(Named uniquely: pytest puts each test folder on sys.path, so a plain `helpers` would clash.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from youtu.data.shards import build_manifest, write_manifest, write_shard


def make_shards(folder: Path, docs: dict[str, list[list[int]]], fingerprint: str = "fp-test",
                vocab_size: int = 1 << 20, per_shard: int = 0) -> Path:
    """Write `docs` (domain -> token lists) as shards + manifest, `per_shard` docs per shard
    (0 = one shard per domain)."""
    records = []
    for domain, items in docs.items():
        step = per_shard or len(items)
        for index, start in enumerate(range(0, len(items), step)):
            records.append(write_shard(folder, domain, index, items[start:start + step], None,
                                       {"tokenizer": fingerprint, "chars": 0, "sources": {}}))
    write_manifest(folder, build_manifest(records, fingerprint, vocab_size))
    return folder


def tagged_docs(domain_base: int, n_docs: int, min_len: int, max_len: int, seed: int
                ) -> list[list[int]]:
    """Documents whose every token encodes (domain, document): token = base + 1000 * doc + pos
    % 1000, so a test can tell from any token which document it came from."""
    rng = np.random.default_rng(seed)
    out = []
    for d in range(n_docs):
        n = int(rng.integers(min_len, max_len + 1))
        out.append([domain_base + 1000 * d + (p % 1000) for p in range(n)])
    return out


def doc_of(token: int) -> int:
    """The (domain, document) identity of a token written by `tagged_docs`."""
    return token // 1000
