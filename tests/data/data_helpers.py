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


_SUBJECTS = ("the miller", "a merchant", "the old clerk", "her brother", "the mayor", "a sailor",
             "the teacher", "my neighbour", "the baker", "a young farmer", "the doctor", "his aunt")
_ACTS = ("carried grain to", "wrote a letter about", "walked slowly past", "painted a picture of",
         "argued loudly with", "built a fence around", "sold apples near", "dreamed often of",
         "counted the boats in", "sang quietly beside", "repaired the roof of", "forgot all about")
_PLACES = ("the river", "the market square", "a quiet harbour", "the northern hills",
           "the stone bridge", "an empty warehouse", "the village school", "the wheat fields",
           "a narrow lane", "the railway station", "the town library", "a small chapel")

_ENDINGS = (" before the first snow", ", because the weather had turned", " while everyone slept",
            " with great care", ", as the letters tell us", " for the last time",
            " during a long summer", " on a market day")


def prose(i: int) -> str:
    """A distinct, clean English paragraph (passes the quality rules), ~120 words."""
    lines = []
    for k in range(8):
        j = i * 8 + k
        lines.append(f"In {1700 + j}, {_SUBJECTS[j % 12]} {_ACTS[(j * 5 + i) % 12]} "
                     f"{_PLACES[(j * 7 + 3 * i) % 12]}{_ENDINGS[(j * 3 + i) % 8]}.")
    return "\n".join(lines)
