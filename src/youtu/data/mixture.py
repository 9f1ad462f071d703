"""The curriculum: which stage and domain mix apply at a step (pure functions), and the sampler
that serves packed batches from token shards, deterministically and resumably.

    stage, step_in_stage = stage_at(stages, step=120)
    mix = mixture_at(stages, step=120)                       # {'commonsense': 0.75, 'code': 0.25}
    sampler = CurriculumSampler(ShardSet.open(dir, tok.fingerprint), stages, seed=0)
    batch = sampler.next_batch(stage, batch_size=8, seq_len=256)
    state = sampler.state_dict()                             # small; saved in every checkpoint

How the sampler chooses (decided here):
- Domain: before each piece of a row, the domain furthest behind its share of the stage's
  served tokens, i.e. the lowest `stage_tokens[d] / weight[d]` (ties by name). This is deficit
  round-robin over tokens, not per-document coin flips: a piece is at most one row, so realised
  token shares stay within `seq_len` tokens of the configured weights at every point of a stage,
  whatever the document lengths of each domain.
- Document: each domain has its own document in progress. A piece takes tokens from it up to
  the end of the document or of the row; the rest waits for the domain's next turn (a long
  document is thus split, and its pieces can sit in different rows). Domains are walked in a
  per-epoch random permutation (`numpy.random.default_rng([seed, epoch, crc32(domain)])`); rank
  r of w takes permutation positions r, r + w, r + 2w, ... so ranks never share a document
  within an epoch. Running past a domain's last document starts the next epoch (a fresh
  permutation) and logs a warning: the curriculum asks for more of that domain than the shards
  hold (upsampling).
- Everything a batch depends on is (seed, rank, world_size) plus the state dict: per-domain
  draw counts and documents in progress, and the stage's served tokens. So
  `load_state_dict(state_dict())` resumes with exactly the batches an uninterrupted run serves.
- A new `stage_index` restarts the stage's token shares; per-domain cursors and documents in
  progress carry on, so a domain is not replayed from the start in every stage.
Packing conventions (targets, positions, doc ids) are in `youtu.data.packing`.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Sequence

import numpy as np

from youtu.data.config import StageConfig
from youtu.data.packing import IGNORE_INDEX, PackedBatch, Piece, build_rows, to_batch
from youtu.data.shards import ShardSet

logger = logging.getLogger(__name__)

STATE_VERSION = 1


def stage_steps(stage: StageConfig) -> int:
    """Optimizer steps of a stage: its token budget over its batch size, rounded up."""
    return math.ceil(stage.tokens / stage.batch_tokens)


def stage_at(stages: Sequence[StageConfig], step: int | None = None, *,
             tokens: int | None = None) -> tuple[int, int]:
    """(stage index, steps or tokens into that stage) at a global step, or at a count of
    tokens trained on. Past the end of the curriculum, the last stage continues."""
    if not stages:
        raise ValueError("the curriculum has no stages; add [[train.stages]] entries")
    if (step is None) == (tokens is None):
        raise ValueError("give exactly one of step= or tokens=")
    at = step if step is not None else tokens
    if at < 0:
        raise ValueError(f"step/tokens must be >= 0, got {at}")
    for i, stage in enumerate(stages):
        length = stage_steps(stage) if step is not None else stage.tokens
        if at < length or i == len(stages) - 1:
            return i, at
        at -= length
    raise AssertionError("unreachable")


def normalized_mix(stage: StageConfig) -> dict[str, float]:
    """The stage's domain weights scaled to sum to 1 (zero weights dropped)."""
    total = sum(stage.mix.values())
    return {d: w / total for d, w in sorted(stage.mix.items()) if w > 0}


def mixture_at(stages: Sequence[StageConfig], step: int | None = None, *,
               tokens: int | None = None) -> dict[str, float]:
    """The normalised domain mix in force at a global step (or token count). Pure."""
    index, _ = stage_at(stages, step, tokens=tokens)
    return normalized_mix(stages[index])


class CurriculumSampler:
    """Serves `PackedBatch`es following the curriculum (see the module docstring)."""

    def __init__(self, shards: ShardSet, stages: Sequence[StageConfig], seed: int, rank: int = 0,
                 world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..world_size-1, got rank {rank} of {world_size}")
        self.shards, self.stages, self.seed = shards, list(stages), seed
        self.rank, self.world_size = rank, world_size
        for stage in self.stages:
            missing = [d for d in normalized_mix(stage) if d not in shards]
            if missing:
                raise ValueError(
                    f"stage {stage.name!r} mixes domain(s) {missing} but {shards.folder} holds "
                    f"only {shards.domains}: add a source for them and re-run `youtu data "
                    f"prepare`, or change the stage's mix")
        self._perms: dict[str, tuple[int, np.ndarray]] = {}
        self._stage = -1
        self._stage_tokens: dict[str, int] = {}
        self._drawn: dict[str, int] = {}
        self._epochs: dict[str, int] = {}
        self._current: dict[str, tuple[int, int]] = {}  # domain -> (document, tokens served)
        self._served: dict[str, int] = {}
        self._batches = 0

    # -- state ------------------------------------------------------------------------------

    @property
    def tokens_served(self) -> dict[str, int]:
        """Input tokens served per domain since the start (across stages)."""
        return dict(self._served)

    @property
    def stage_tokens(self) -> dict[str, int]:
        """Input tokens served per domain in the current stage."""
        return dict(self._stage_tokens)

    def realised_mix(self) -> dict[str, float]:
        """Share of the current stage's served tokens per domain (compare with the stage mix)."""
        total = sum(self._stage_tokens.values())
        return {d: n / total for d, n in sorted(self._stage_tokens.items())} if total else {}

    def state_dict(self) -> dict:
        """A small, JSON-serialisable dict; `load_state_dict` of it resumes exactly."""
        return {"version": STATE_VERSION, "seed": self.seed, "rank": self.rank,
                "world_size": self.world_size, "stage": self._stage,
                "stage_tokens": dict(self._stage_tokens), "drawn": dict(self._drawn),
                "epochs": dict(self._epochs),
                "current": {d: list(v) for d, v in self._current.items()},
                "tokens_served": dict(self._served), "batches": self._batches}

    def load_state_dict(self, state: dict) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"sampler state version {state.get('version')} is not "
                             f"{STATE_VERSION}; it was saved by another youtu version")
        mine = (self.seed, self.rank, self.world_size)
        theirs = (state["seed"], state["rank"], state["world_size"])
        if mine != theirs:
            raise ValueError(f"sampler state was saved with (seed, rank, world_size) = {theirs} "
                             f"but this sampler has {mine}; the data order would differ. Resume "
                             f"with the same seed and number of ranks")
        self._stage = int(state["stage"])
        self._stage_tokens = dict(state["stage_tokens"])
        self._drawn = dict(state["drawn"])
        self._epochs = dict(state["epochs"])
        self._current = {d: (int(v[0]), int(v[1])) for d, v in state["current"].items()}
        self._served = dict(state["tokens_served"])
        self._batches = int(state["batches"])

    # -- sampling ---------------------------------------------------------------------------

    def _permutation(self, domain: str, epoch: int) -> np.ndarray:
        cached = self._perms.get(domain)
        if cached is None or cached[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch, zlib.crc32(domain.encode())])
            cached = (epoch, rng.permutation(self.shards.num_docs(domain)))
            self._perms[domain] = cached
        return cached[1]

    def _draw(self, domain: str) -> int:
        """The next document of `domain` for this rank."""
        n_docs = self.shards.num_docs(domain)
        k = self._drawn.get(domain, 0)
        self._drawn[domain] = k + 1
        position = k * self.world_size + self.rank
        epoch = position // n_docs
        if epoch > self._epochs.get(domain, 0):
            self._epochs[domain] = epoch
            logger.warning("domain %r starts epoch %d: the curriculum asks for more than its %d "
                           "tokens (%d documents), so they are repeated (upsampled)", domain,
                           epoch + 1, self.shards.num_tokens(domain), n_docs)
        return int(self._permutation(domain, epoch)[position % n_docs])

    def _next_domain(self, mix: dict[str, float]) -> str:
        return min(mix, key=lambda d: (self._stage_tokens.get(d, 0) / mix[d], d))

    def next_batch(self, stage_index: int, batch_size: int, seq_len: int) -> PackedBatch:
        """The next `batch_size` rows of `seq_len` tokens of stage `stage_index` for this rank."""
        if not 0 <= stage_index < len(self.stages):
            raise ValueError(f"stage_index {stage_index} out of range 0..{len(self.stages) - 1}")
        if batch_size < 1 or seq_len < 2:
            raise ValueError(f"need batch_size >= 1 and seq_len >= 2, got {batch_size}, {seq_len}")
        if stage_index != self._stage:
            self._stage, self._stage_tokens = stage_index, {}
        mix = normalized_mix(self.stages[stage_index])
        rows: list[list[Piece]] = []
        batch_domains: dict[str, int] = {}
        for _ in range(batch_size):
            pieces: list[Piece] = []
            room = seq_len
            while room:
                domain = self._next_domain(mix)
                doc_index, offset = self._current.get(domain) or (self._draw(domain), 0)
                doc = self.shards.document(domain, doc_index)
                take = min(len(doc) - offset, room)
                end = offset + take
                next_token = int(doc[end]) if end < len(doc) else IGNORE_INDEX
                pieces.append(Piece(np.asarray(doc[offset:end], dtype=np.int64), next_token,
                                    domain=domain))
                if end < len(doc):
                    self._current[domain] = (doc_index, end)
                else:
                    self._current.pop(domain, None)
                room -= take
                batch_domains[domain] = batch_domains.get(domain, 0) + take
                self._stage_tokens[domain] = self._stage_tokens.get(domain, 0) + take
                self._served[domain] = self._served.get(domain, 0) + take
            rows.append(pieces)
        self._batches += 1
        return to_batch(build_rows(rows, seq_len, pad_id=0), batch_domains, rows)
