"""Exact and near-duplicate removal (MinHash LSH) and decontamination against eval sets.

    exact, near = ExactDedup(), NearDedup(threshold=0.8)
    keep = not exact.seen_before(text) and not near.seen_before(text)
    decon = Decontaminator(eval_texts, n=13); decon.contaminated(text)  # -> bool

All three are streaming: each document is checked against what came before it and the first
occurrence is kept, so a prepare run stays one pass over the sources.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

_WORD = re.compile(r"\w+")
_HASH_MULT = np.uint64(1_000_003)
DECONTAM_MIN_WORDS = 8
"""Eval items shorter than this many words are too short to be evidence of contamination
("What is 2 + 2?" occurs in plenty of clean text); GPT-3 (Brown et al. 2020, App. C) likewise
drew its n from the 5th-percentile item length, never below 8."""


class ExactDedup:
    """Drops documents whose whitespace-normalised text was seen before (16-byte sha1 digests)."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def seen_before(self, text: str) -> bool:
        digest = hashlib.sha1(" ".join(text.split()).encode("utf-8")).digest()[:16]
        if digest in self._seen:
            return True
        self._seen.add(digest)
        return False


class NearDedup:
    """MinHash over word shingles + LSH banding (datasketch): drops a document whose estimated
    Jaccard similarity to an earlier one reaches `threshold` (Broder 1997; the LSH band/row split
    is datasketch's, chosen to minimise false positives + negatives at the threshold)."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, shingle_words: int = 5,
                 seed: int = 1) -> None:
        from datasketch import MinHashLSH

        self.num_perm, self.shingle_words, self.seed = num_perm, shingle_words, seed
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._count = 0

    def minhash(self, text: str):
        """The MinHash of `text`'s word shingles (lowercased)."""
        from datasketch import MinHash

        words = text.lower().split()
        k = self.shingle_words
        shingles = {" ".join(words[i:i + k]) for i in range(max(len(words) - k + 1, 1))}
        # datasketch's default sha1 shingle hash. Not crc32, though 3x faster: a linear hash
        # under MinHash's linear permutations (a * h + b mod p) gives correlated minima, and
        # a 3-word edit in 300 words then went undetected (tests/data/test_dedup.py).
        m = MinHash(num_perm=self.num_perm, seed=self.seed)
        m.update_batch([s.encode("utf-8") for s in shingles])
        return m

    def seen_before(self, text: str) -> bool:
        m = self.minhash(text)
        if self._lsh.query(m):
            return True
        self._lsh.insert(str(self._count), m, check_duplication=False)
        self._count += 1
        return False


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _rolling(ids: np.ndarray, n: int) -> np.ndarray:
    """Polynomial hash of every window of `n` ids (uint64, wrap-around intended)."""
    h = np.zeros(len(ids) - n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * _HASH_MULT + ids[k:k + len(h)]
    return h


def _hash_tuple(ids: tuple[int, ...]) -> int:
    """`_rolling` of one window, in Python ints (the same value mod 2**64)."""
    h = 0
    for i in ids:
        h = (h * int(_HASH_MULT) + i) & 0xFFFF_FFFF_FFFF_FFFF
    return h


class Decontaminator:
    """Flags documents sharing a word n-gram with any eval item (lowercased `\\w+` words).

    Items of at least `n` words contribute all their n-grams; items of 8..n-1 words contribute
    themselves whole; shorter items are ignored (see DECONTAM_MIN_WORDS). Matching uses a
    64-bit rolling hash over eval-vocabulary ids, then confirms the words of a hit exactly."""

    def __init__(self, eval_texts: Iterable[str], n: int = 13) -> None:
        self.n = n
        self.vocab: dict[str, int] = {}
        self.grams: dict[int, set[tuple[int, ...]]] = {}  # window length -> id tuples
        self.items = 0
        for text in eval_texts:
            words = _words(text)
            if len(words) < DECONTAM_MIN_WORDS:
                continue
            self.items += 1
            ids = [self.vocab.setdefault(w, len(self.vocab) + 1) for w in words]
            length = min(n, len(ids))
            grams = self.grams.setdefault(length, set())
            for i in range(len(ids) - length + 1):
                grams.add(tuple(ids[i:i + length]))
        self._hashes = {length: np.array(sorted({_hash_tuple(t) for t in g}), dtype=np.uint64)
                        for length, g in self.grams.items()}

    def __bool__(self) -> bool:
        return self.items > 0

    def contaminated(self, text: str) -> bool:
        """True if `text` contains an n-gram (or a whole short item) of the eval set."""
        if not self.items:
            return False
        ids = np.fromiter((self.vocab.get(w, 0) for w in _words(text)), dtype=np.uint64)
        unknown = np.concatenate([[0], np.cumsum(ids == 0)])
        for length, hashes in self._hashes.items():
            if len(ids) < length:
                continue
            h = _rolling(ids, length)
            clean = (unknown[length:] - unknown[:-length]) == 0  # windows of eval words only
            # `hashes` is sorted once: a binary search per window, not np.isin's per-call sort
            # of both arrays (the APTBench items alone hold millions of 13-grams).
            found = hashes[np.minimum(np.searchsorted(hashes, h), len(hashes) - 1)] == h
            for start in np.flatnonzero(clean & found):
                if tuple(int(i) for i in ids[start:start + length]) in self.grams[length]:
                    return True
        return False


def load_eval_texts(paths: Iterable[str], field: str = "text") -> Iterator[str]:
    """Eval items from .jsonl files (`field`, else question/prompt/problem/input), .txt files
    (blank-line separated items) and folders of those."""
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise ValueError(f"decontamination set {raw!r} does not exist; fix data.dedup."
                             f"decontam_paths")
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            if file.suffix in (".jsonl", ".json", ".ndjson"):
                for lineno, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
                    if not line.strip():
                        continue
                    record = json.loads(line)
                    for key in (field, "question", "prompt", "problem", "input"):
                        if isinstance(record, dict) and isinstance(record.get(key), str):
                            yield record[key]
                            break
                    else:
                        raise ValueError(f"{file}:{lineno}: no text field {field!r}; set "
                                         f"data.dedup.decontam_field")
            elif file.suffix in (".txt", ".md"):
                yield from (b for b in file.read_text(encoding="utf-8").split("\n\n") if b.strip())
