"""Tokenizer configuration (owned by youtu.tokenizer): the `[tokenizer]` section of a run config.

    [tokenizer]
    vocab_size = 4096
    stages = [
      {name = "general", vocab_size = 3000, domains = ["commonsense", "code", "stem"],
       weights = [0.7, 0.15, 0.15]},
      {name = "stem", vocab_size = 840, domains = ["stem", "code"], max_chars = 1_000_000},
    ]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from youtu.tokenizer.special import NUM_SPECIAL


@dataclass(kw_only=True)
class TokenizerStage:
    """One BPE training stage: adds `vocab_size` tokens learned on documents of `domains`."""

    name: str = "stage"
    """Stage name (logs and reports)."""
    vocab_size: int = 0
    """Tokens this stage adds; the first stage's count includes the 256 byte tokens."""
    domains: list[str] = field(default_factory=list)
    """Document domains this stage trains on (commonsense, stem, code, agent, chat, ...)."""
    weights: list[float] = field(default_factory=list)
    """Share of the stage's characters per domain (same order as `domains`); empty = equal."""
    max_chars: int = 0
    """Characters of training text for this stage; 0 = `tokenizer.max_stage_chars`."""

    def __post_init__(self) -> None:
        if self.vocab_size <= 0:
            raise ValueError(f"stage {self.name!r}: vocab_size must be > 0, got {self.vocab_size}")
        if not self.domains:
            raise ValueError(f"stage {self.name!r}: domains must name at least one domain")
        if self.weights and (len(self.weights) != len(self.domains)
                             or any(w < 0 for w in self.weights) or sum(self.weights) <= 0):
            raise ValueError(f"stage {self.name!r}: weights must be {len(self.domains)} "
                             f"non-negative numbers (one per domain), got {self.weights}")
        if self.max_chars < 0:
            raise ValueError(f"stage {self.name!r}: max_chars must be >= 0, got {self.max_chars}")

    def shares(self) -> dict[str, float]:
        """Fraction of the stage's characters per domain."""
        weights = self.weights or [1.0] * len(self.domains)
        return {d: w / sum(weights) for d, w in zip(self.domains, weights)}


def _tiny_stages() -> list[TokenizerStage]:
    # Stage 2 re-samples the STEM/code documents stage 1 already saw (smaller budgets, same
    # order), so the union of all stages is the general mix: the single-stage baseline of eval.
    return [TokenizerStage(name="general", vocab_size=3000, domains=["commonsense", "code", "stem"],
                           weights=[0.7, 0.15, 0.15]),
            TokenizerStage(name="stem", vocab_size=840, domains=["stem", "code"],
                           max_chars=1_000_000)]


@dataclass(kw_only=True)
class TokenizerConfig:
    """Multi-stage byte-level BPE training and evaluation."""

    path: str = ""
    """Existing tokenizer folder to use; empty = train one into `<run_dir>/tokenizer`."""
    vocab_size: int = 4096
    """Total vocabulary: sum of the stages' sizes + 256 special tokens (must match the model)."""
    stages: list[TokenizerStage] = field(default_factory=_tiny_stages)
    """Training stages in order; stage k > 1 appends merges without changing earlier ids."""
    corpus: str = "data"
    """Where documents come from: 'data' (the run's `[data]` sources, embedded corpus included),
    'files' (only `files`), or 'package.module:function', called as `f(seed)` and returning an
    iterable of (domain, text) pairs or Documents."""
    files: dict[str, list[str]] = field(default_factory=dict)
    """Extra documents per domain: glob patterns of .txt (one document per file) or .jsonl (one
    per line, field 'text') files, e.g. {chinese = ["corpora/zh/*.txt"]}."""
    min_frequency: int = 2
    """A pair must occur at least this many times to be merged."""
    max_doc_chars: int = 20_000
    """Characters kept from the start of each document (bounds trainer memory)."""
    max_stage_chars: int = 4_000_000
    """Characters of training text per stage; later documents are skipped (bounds memory)."""
    doc_sample_rate: float = 1.0
    """Probability a document is used for training (spreads the budget over a large corpus)."""
    holdout_every: int = 20
    """Documents whose content hash is 0 mod this are held out of training for `eval` (5%)."""
    eval_max_chars: int = 400_000
    """Held-out characters per domain measured by `youtu tokenizer eval`."""
    seed: int = 0
    """Seed of document sampling."""

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("stages must hold at least one stage")
        total = sum(s.vocab_size for s in self.stages) + NUM_SPECIAL
        if total != self.vocab_size:
            raise ValueError(
                f"vocab_size={self.vocab_size} but the stages add up to {total} (sum of "
                f"stages[].vocab_size + {NUM_SPECIAL} special tokens); make them agree")
        if self.stages[0].vocab_size <= 256:
            raise ValueError(f"stages[0].vocab_size={self.stages[0].vocab_size} must exceed the "
                             "256 byte tokens it includes")
        for key in ("min_frequency", "max_doc_chars", "max_stage_chars", "holdout_every",
                    "eval_max_chars"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not 0.0 < self.doc_sample_rate <= 1.0:
            raise ValueError(f"doc_sample_rate must be in (0, 1], got {self.doc_sample_rate}")
        if self.corpus not in ("data", "files") and ":" not in self.corpus:
            raise ValueError(f"corpus={self.corpus!r}: use 'data', 'files' or "
                             "'package.module:function'")
