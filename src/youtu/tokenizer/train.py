"""Multi-stage byte-level BPE training (HF `tokenizers`, Rust), with bounded memory.

    youtu tokenizer train configs/tiny.toml              # -> runs/tiny/tokenizer/
    tok = train_from_texts(texts, vocab_size=1024)       # quick single-stage, for tests

Stage 1 trains the base vocabulary (256 bytes + merges) on the general mix with the Rust
`BpeTrainer`. Each later stage CONTINUES that BPE on its own domains (STEM, code, math, agent
trajectories) without touching an existing id or merge:

1. the stage's text is pre-tokenized and segmented with the current merges (Rust `encode_batch`);
2. every current token id becomes one private-use character (U+F0000 + id), each word one
   whitespace-free string, so the stage's corpus is written in "current tokens" as letters;
3. a fresh `BpeTrainer` learns merges over those letters: exactly the BPE merges that would come
   next on this text given the current vocabulary;
4. the merges are mapped back to byte-level strings and appended, new tokens get the next ids.

Merges are ranked by order, so stage-1 merges always apply before the new ones and the text of
earlier stages tokenizes as before. The special block (special.py) is added last, on the top 256
ids. Memory is bounded by the corpus caps (`max_doc_chars`, `max_stage_chars`,
`doc_sample_rate`); the trainer holds word counts of at most `max_stage_chars` characters.
"""

from __future__ import annotations

import glob
import hashlib
import importlib
import json
import logging
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tokenizers
from tokenizers import models, pre_tokenizers, trainers
from tqdm import tqdm

from youtu.tokenizer.special import NUM_SPECIAL
from youtu.tokenizer.tokenizer import Tokenizer, build_backend, byte_alphabet, pre_tokenizer

if TYPE_CHECKING:
    from youtu.tokenizer.config import TokenizerConfig

logger = logging.getLogger(__name__)

PUA_BASE = 0xF0000
"""Token id i is written as chr(PUA_BASE + i) while training a continuation stage (room for
0x10FFFF - 0xF0000 = 131,071 ids, enough for the 128,256 vocabulary)."""

BPE = tuple[dict[str, int], list[tuple[str, str]]]
"""(vocab: token -> id, merges in rank order) of a byte-level BPE without special tokens."""


# ---------------------------------------------------------------------------------------------
# BPE stages


def _plain_backend(vocab: dict[str, int], merges: Sequence[tuple[str, str]] = ()
                   ) -> tokenizers.Tokenizer:
    backend = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=list(merges)) if vocab
                                   else models.BPE())
    backend.pre_tokenizer = pre_tokenizer()
    return backend


def train_base(texts: Iterable[str], n_tokens: int, min_frequency: int = 2,
               show_progress: bool = False) -> BPE:
    """Stage 1: a BPE of `n_tokens` tokens (256 bytes included) learned on `texts`.

    Ids are canonical: bytes 0..255 in byte order, then merged tokens in merge order.
    """
    if n_tokens <= 256:
        raise ValueError(f"n_tokens={n_tokens} must exceed the 256 byte tokens")
    backend = _plain_backend({})
    trainer = trainers.BpeTrainer(vocab_size=n_tokens, min_frequency=min_frequency,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[], show_progress=show_progress)
    backend.train_from_iterator(texts, trainer=trainer)
    merges = _merges_of(backend)
    vocab = {c: i for i, c in enumerate(byte_alphabet())}
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    return vocab, merges


def _merges_of(backend: tokenizers.Tokenizer) -> list[tuple[str, str]]:
    merges = json.loads(backend.to_str())["model"]["merges"]
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges]


def extend_bpe(bpe: BPE, texts: Iterable[str], n_new: int, min_frequency: int = 2,
               batch_docs: int = 256, show_progress: bool = False) -> BPE:
    """A later stage: append up to `n_new` new tokens (and their merges) learned on `texts`.

    Every existing token keeps its id and every existing merge its rank (module docstring).
    """
    vocab, merges = dict(bpe[0]), list(bpe[1])
    id_to_token = {i: t for t, i in vocab.items()}
    if len(vocab) + PUA_BASE > 0x10FFFF:
        raise ValueError(f"a vocabulary of {len(vocab)} does not fit the private-use mapping")
    current = _plain_backend(vocab, merges)
    alphabet: set[str] = set()

    def as_letters() -> Iterator[str]:
        texts_list = list(texts)
        for i in range(0, len(texts_list), batch_docs):
            # encode_batch (not _fast): word_ids are needed to keep words apart.
            for enc in current.encode_batch(texts_list[i:i + batch_docs],
                                            add_special_tokens=False):
                yield _words_as_letters(enc, alphabet)

    # Pass 1 collects the alphabet size, which the trainer counts inside its vocab_size.
    corpus = list(as_letters())
    # Some learned merges rebuild an existing token (e.g. 'ab'+'c' when stage 1 made 'a'+'bc'):
    # they add no id, so ask for a few more and cut at n_new below.
    slack = n_new // 8 + 64
    backend = tokenizers.Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(vocab_size=len(alphabet) + n_new + slack,
                                  min_frequency=min_frequency, special_tokens=[],
                                  show_progress=show_progress)
    backend.train_from_iterator(corpus, trainer=trainer)
    del corpus

    def to_bytes_level(letters: str) -> str:
        return "".join(id_to_token[ord(c) - PUA_BASE] for c in letters)

    known = set(merges)
    added = 0
    for left, right in _merges_of(backend):
        if added == n_new:
            break
        pair = (to_bytes_level(left), to_bytes_level(right))
        if pair in known:
            continue
        known.add(pair)
        merges.append(pair)
        token = pair[0] + pair[1]
        if token not in vocab:
            vocab[token] = len(vocab)
            id_to_token[vocab[token]] = token
            added += 1
    if added < n_new:
        logger.warning("stage found only %d of %d new tokens (min_frequency=%d); more text helps",
                       added, n_new, min_frequency)
    return vocab, merges


def _words_as_letters(enc: tokenizers.Encoding, alphabet: set[str]) -> str:
    """One document as space-separated words of private-use letters (one letter per token)."""
    words: list[list[str]] = []
    last_word = None
    for token_id, word in zip(enc.ids, enc.word_ids):
        if word != last_word:
            words.append([])
            last_word = word
        words[-1].append(chr(PUA_BASE + token_id))
    # A one-token word can take part in no merge: leave it out of the trainer's counts.
    kept = ["".join(w) for w in words if len(w) > 1]
    for w in kept:
        alphabet.update(w)
    return " ".join(kept)


def train_stages(stage_texts: Sequence[Sequence[str]], stage_sizes: Sequence[int],
                 vocab_size: int, min_frequency: int = 2, show_progress: bool = False
                 ) -> tuple[Tokenizer, list[int]]:
    """Train all stages; returns the tokenizer and the vocabulary size after each stage."""
    if len(stage_texts) != len(stage_sizes):
        raise ValueError("one list of texts per stage is needed")
    if sum(stage_sizes) + NUM_SPECIAL != vocab_size:
        raise ValueError(f"stage sizes {list(stage_sizes)} + {NUM_SPECIAL} specials != "
                         f"vocab_size {vocab_size}")
    bpe = train_base(stage_texts[0], stage_sizes[0], min_frequency, show_progress)
    boundaries = [len(bpe[0])]
    for texts, n_new in zip(stage_texts[1:], stage_sizes[1:]):
        bpe = extend_bpe(bpe, texts, n_new, min_frequency, show_progress=show_progress)
        boundaries.append(len(bpe[0]))
    return Tokenizer(build_backend(bpe[0], bpe[1], vocab_size)), boundaries


def train_from_texts(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """A quick single-stage tokenizer of `vocab_size` ids (special tokens on the last 256).

    Meant for tests and demos: 512..4096 ids on a few hundred KB of text in seconds.
    """
    if vocab_size < 2 * NUM_SPECIAL + 1:
        raise ValueError(f"vocab_size={vocab_size} must be > {2 * NUM_SPECIAL} "
                         "(256 bytes + 256 special tokens)")
    bpe = train_base(texts, vocab_size - NUM_SPECIAL, min_frequency)
    return Tokenizer(build_backend(bpe[0], bpe[1], vocab_size))


# ---------------------------------------------------------------------------------------------
# documents


def is_heldout(text: str, every: int) -> bool:
    """Deterministic held-out split by content hash (same answer in train and eval)."""
    return int(hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8], 16) % every == 0


def _as_pair(doc: Any) -> tuple[str, str]:
    if isinstance(doc, tuple):
        return doc[0], doc[1]
    return doc.domain, doc.text  # youtu.data.Document


def iter_documents(cfg: TokenizerConfig, seed: int = 0,
                   data_documents: Iterable[Any] | None = None) -> Iterator[tuple[str, str]]:
    """(domain, text) from `cfg.corpus` followed by `cfg.files`.

    Args:
        cfg: the `[tokenizer]` section.
        seed: passed to a `module:function` corpus hook as `func(seed)`.
        data_documents: the run's `[data]` documents ((domain, text) pairs or Documents), read
            when `corpus = "data"`; the commands pass them (youtu.commands), this
            package does not import youtu.data.
    """
    if cfg.corpus == "data":
        if data_documents is None:
            raise ValueError("tokenizer.corpus='data' needs the run's [data] documents; pass "
                             "data_documents, or use corpus='files' with tokenizer.files")
        yield from (_as_pair(doc) for doc in data_documents)
    elif cfg.corpus != "files":
        module_name, _, func_name = cfg.corpus.partition(":")
        try:
            func = getattr(importlib.import_module(module_name), func_name)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"tokenizer.corpus={cfg.corpus!r} cannot be imported: {e}") from e
        yield from (_as_pair(doc) for doc in func(seed))
    for domain, patterns in cfg.files.items():
        for pattern in patterns:
            paths = sorted(glob.glob(pattern, recursive=True))
            if not paths:
                raise ValueError(f"tokenizer.files.{domain}: {pattern!r} matches no file")
            for path in paths:
                yield from ((domain, t) for t in _read_file(Path(path)))


def _read_file(path: Path) -> Iterator[str]:
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    record = json.loads(line)
                    if "text" not in record:
                        raise ValueError(f"{path}:{n}: a JSONL document needs a 'text' field")
                    yield record["text"]
    else:
        yield path.read_text(encoding="utf-8", errors="replace")


def collect_stage_texts(cfg: TokenizerConfig, documents: Iterable[tuple[str, str]]
                        ) -> list[list[str]]:
    """The training texts of each stage, within the memory caps, held-out documents excluded.

    Each (stage, domain) gets `share * stage chars` characters, taken from the documents of that
    domain in corpus order, so a smaller later budget re-uses the documents of an earlier stage.
    """
    rng = random.Random(cfg.seed)
    budgets = [{d: share * (s.max_chars or cfg.max_stage_chars) for d, share in s.shares().items()}
               for s in cfg.stages]
    texts: list[list[str]] = [[] for _ in cfg.stages]
    used = [dict.fromkeys(b, 0) for b in budgets]
    bar = tqdm(desc="tokenizer corpus", unit=" docs", disable=None)
    for doc in documents:
        domain, text = _as_pair(doc)
        bar.update(1)
        open_stages = [i for i, b in enumerate(budgets) if domain in b and used[i][domain] < b[domain]]
        if not open_stages or not text or is_heldout(text, cfg.holdout_every):
            if not any(used[i][d] < b[d] for i, b in enumerate(budgets) for d in b):
                break  # every budget is spent: stop reading (the corpus may be unbounded)
            continue
        if cfg.doc_sample_rate < 1.0 and rng.random() >= cfg.doc_sample_rate:
            continue
        text = text[:cfg.max_doc_chars]
        for i in open_stages:
            texts[i].append(text)
            used[i][domain] += len(text)
    bar.close()
    for stage, t, u in zip(cfg.stages, texts, used):
        logger.info("stage %s: %d documents, chars %s", stage.name, len(t),
                    ", ".join(f"{d} {n}" for d, n in u.items()))
        if not t:
            raise ValueError(f"tokenizer stage {stage.name!r} found no documents of domains "
                             f"{stage.domains}; check tokenizer.corpus / tokenizer.files")
    return texts


def train_tokenizer(cfg: TokenizerConfig, documents: Iterable[tuple[str, str]],
                    out_dir: str | Path) -> Tokenizer:
    """Train the multi-stage tokenizer of `cfg` on `documents` and save it to `out_dir`.

    Args:
        cfg: the `[tokenizer]` section.
        documents: (domain, text) pairs (or objects with `.domain` and `.text`).
        out_dir: folder for `tokenizer.json`, `tokenizer_config.json`, `train_stats.json`.
    """
    start = time.perf_counter()
    stage_texts = collect_stage_texts(cfg, documents)
    tok, boundaries = train_stages(stage_texts, [s.vocab_size for s in cfg.stages],
                                   cfg.vocab_size, cfg.min_frequency, show_progress=True)
    out = tok.save(out_dir)
    stats = {
        "fingerprint": tok.fingerprint,
        "vocab_size": tok.vocab_size,
        "seconds": round(time.perf_counter() - start, 2),
        "stages": [{"name": s.name, "domains": s.domains, "documents": len(t),
                    "chars": sum(map(len, t)), "vocab_after": b}
                   for s, t, b in zip(cfg.stages, stage_texts, boundaries)],
    }
    (out / "train_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    logger.info("tokenizer %s (%d ids, stages end at %s) -> %s in %.1fs", tok.fingerprint,
                tok.vocab_size, boundaries, out, stats["seconds"])
    return tok
