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
_HASH_MULT2 = np.uint64(0x9E3779B97F4A7C15)  # odd: an independent second rolling hash
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


def rolling_hash(ids: np.ndarray, n: int, mult: np.uint64) -> np.ndarray:
    """Polynomial hash of every window of `n` ids (uint64, wrap-around intended)."""
    h = np.zeros(len(ids) - n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * mult + ids[k:k + len(h)]
    return h


class Decontaminator:
    """Flags documents sharing a word n-gram with any eval item (lowercased `\\w+` words).

    Items of at least `n` words contribute all their n-grams; items of 8..n-1 words contribute
    themselves whole; shorter items are ignored (see DECONTAM_MIN_WORDS). An n-gram is its two
    64-bit rolling hashes over eval-vocabulary ids (independent multipliers: a false match
    needs both to collide, ~2^-128 per pair), kept sorted: built with numpy in about a second
    for the default eval sets' ~730k 13-grams, saved once and loaded by every pipeline task
    (`save` / `load`) instead of being rebuilt per task."""

    def __init__(self, eval_texts: Iterable[str], n: int = 13) -> None:
        self.n = n
        self.vocab: dict[str, int] = {}
        self.items = 0
        parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        for text in eval_texts:
            words = _words(text)
            if len(words) < DECONTAM_MIN_WORDS:
                continue
            self.items += 1
            ids = np.fromiter((self.vocab.setdefault(w, len(self.vocab) + 1) for w in words),
                              dtype=np.uint64, count=len(words))
            length = min(n, len(ids))
            parts.setdefault(length, []).append((rolling_hash(ids, length, _HASH_MULT),
                                                 rolling_hash(ids, length, _HASH_MULT2)))
        self.keys: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for length, p in parts.items():
            h1 = np.concatenate([a for a, _ in p])
            h2 = np.concatenate([b for _, b in p])
            order = np.lexsort((h2, h1))
            self.keys[length] = (h1[order], h2[order])

    def __bool__(self) -> bool:
        return self.items > 0

    def save(self, path: str | Path) -> None:
        """Write the index (`.npz`: vocabulary and hashes) for `Decontaminator.load`."""
        arrays = {f"h{k}_{length}": h for length, pair in self.keys.items()
                  for k, h in enumerate(pair, 1)}
        words = np.array(sorted(self.vocab, key=self.vocab.__getitem__), dtype=object)
        with open(path, "wb") as f:
            np.savez(f, words=words.astype(str), meta=np.array([self.n, self.items]), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Decontaminator:
        """The index `save` wrote."""
        with np.load(path) as z:
            self = cls((), int(z["meta"][0]))
            self.items = int(z["meta"][1])
            self.vocab = {w: i for i, w in enumerate(z["words"].tolist(), 1)}
            lengths = sorted({int(k.split("_")[1]) for k in z.files if k.startswith("h1_")})
            self.keys = {n: (z[f"h1_{n}"], z[f"h2_{n}"]) for n in lengths}
        return self

    def contaminated(self, text: str) -> bool:
        """True if `text` contains an n-gram (or a whole short item) of the eval set."""
        if not self.items:
            return False
        ids = np.fromiter((self.vocab.get(w, 0) for w in _words(text)), dtype=np.uint64)
        unknown = np.concatenate([[0], np.cumsum(ids == 0)])
        for length, (h1s, h2s) in self.keys.items():
            if len(ids) < length:
                continue
            clean = (unknown[length:] - unknown[:-length]) == 0  # windows of eval words only
            if not clean.any():
                continue
            h1 = rolling_hash(ids, length, _HASH_MULT)
            # Sorted once: a binary search per window, not np.isin's per-call sort of both
            # arrays (the APTBench items alone hold ~730k 13-grams).
            lo = np.searchsorted(h1s, h1, "left")
            hi = np.searchsorted(h1s, h1, "right")
            hit = clean & (hi > lo)
            if not hit.any():
                continue
            h2 = rolling_hash(ids, length, _HASH_MULT2)
            for w in np.flatnonzero(hit):
                if (h2s[lo[w]:hi[w]] == h2[w]).any():
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
