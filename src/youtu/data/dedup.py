"""Dedup settings and decontamination against eval sets.

    bands, rows = lsh_bands(threshold=0.8, num_perm=128)   # MinHash LSH split: (9, 13)
    decon = Decontaminator(eval_texts, n=13); decon.contaminated(text)  # -> bool

Exact and MinHash dedup themselves run as datatrove's sharded stages (`youtu.data.steps`,
`youtu.data.prepare`): signatures written per task, duplicates found per hash range or LSH band,
clusters resolved once, one document kept per cluster; nothing holds the corpus in memory. The
Decontaminator runs inside each filtering task: it holds the eval items' n-grams only.
"""

from __future__ import annotations

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


def namespace(domain: str) -> str:
    """Dedup namespace of a domain: pretraining domains are deduplicated against each other,
    `chat` (SFT) only against itself (the same verified trajectory is meant to be both agent
    mid-training text and an SFT conversation)."""
    return "chat" if domain == "chat" else "pretrain"


def exact_key(text: str, domain: str) -> str:
    """What exact dedup compares: the namespace and the whitespace-normalised text."""
    return namespace(domain) + "\x00" + " ".join(text.split())


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) of MinHash LSH for a Jaccard `threshold` with at most `num_perm`
    hashes: the split minimising the false-positive plus false-negative area under the
    S-curve 1 - (1 - s^r)^b (equal weights), as datasketch's MinHashLSH chooses it. For 0.8 and
    128 hashes: 9 bands of 13 rows (P(found) is 0.998 at s = 0.95, 0.93 at 0.9, 0.40 at 0.8,
    1e-4 at 0.5)."""
    s = np.linspace(0.0, 1.0, 1001)
    below, above = s <= threshold, s >= threshold
    best, best_err = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = 1.0 - (1.0 - s ** r) ** b
            err = np.trapezoid(p[below], s[below]) + np.trapezoid(1.0 - p[above], s[above])
            if err < best_err:
                best, best_err = (b, r), err
    return best


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
