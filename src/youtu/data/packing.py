"""Packing documents into fixed-length rows with document boundaries: `PackedBatch`, the rows
the curriculum sampler serves, and `pack_examples` for SFT.

    batch = pack_examples([(ids, mask), ...], seq_len=512, pad_id=tok.pad_id)
    logits = model(batch.input_ids, positions=batch.positions, doc_ids=batch.doc_ids)
    loss = F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), ignore_index=-100)

Conventions (decided here, relied on by the trainer):
- A row holds pieces of documents back to back. `doc_ids` numbers the pieces of a row 0, 1, ...;
  the model lets a token attend only to earlier tokens with the same doc id. `positions`
  restart at 0 for every piece.
- `targets[t]` is the token that follows `input_ids[t]` in the same document, else -100. The
  last token of a document (EOS) therefore never predicts the first token of the next one.
- A document longer than the room left in a row is split: the piece that ends a row keeps its
  true next token as the target of its last position (that token opens the next row), and the
  continuation starts a new piece at position 0. Nothing is padded in pretraining rows.
- SFT (`pack_examples`): a loss mask of 0 on token j means token j is never a target, i.e.
  `targets[j - 1] = -100`; padding has targets -100 and a doc id of its own.
- `token_domains[b, t]` indexes `domain_names` with the domain of the document token (b, t)
  belongs to (-1 on padding), so a trainer can split the per-token loss of a mixed batch by
  domain without another forward.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass
class PackedBatch:
    """One batch of packed rows; every tensor is LongTensor [B, T]."""

    input_ids: torch.Tensor
    targets: torch.Tensor
    """Next token within the same document, -100 where there is none (no loss)."""
    positions: torch.Tensor
    """Position within the document piece (restarts at 0 per piece)."""
    doc_ids: torch.Tensor
    """Piece number within the row; attention stays within equal ids."""
    domain_tokens: dict[str, int] = field(default_factory=dict)
    """Input tokens per domain in this batch."""
    token_domains: torch.Tensor | None = None
    """[B, T] int16: each token's domain as an index into `domain_names`, -1 on padding; None =
    not tracked."""
    domain_names: list[str] = field(default_factory=list)
    """The domains `token_domains` indexes."""

    def to(self, device: str | torch.device) -> PackedBatch:
        return PackedBatch(self.input_ids.to(device), self.targets.to(device),
                           self.positions.to(device), self.doc_ids.to(device),
                           dict(self.domain_tokens),
                           None if self.token_domains is None else self.token_domains.to(device),
                           list(self.domain_names))

    @property
    def num_loss_tokens(self) -> int:
        return int((self.targets != IGNORE_INDEX).sum())


@dataclass
class Piece:
    """A contiguous run of one document placed in a row."""

    tokens: np.ndarray
    next_token: int
    """The document's token after this piece, or -100 when the piece ends the document."""
    targets: np.ndarray | None = None
    """Explicit targets (SFT, after masking); None = tokens[1:] + [next_token]."""
    domain: str = ""
    """The document's domain (for `PackedBatch.token_domains`)."""


def build_rows(rows: Sequence[Sequence[Piece]], seq_len: int, pad_id: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(input_ids, targets, positions, doc_ids) int64 arrays [B, seq_len] from pieces; rows
    shorter than seq_len are padded (targets -100, a doc id of their own)."""
    b = len(rows)
    ids = np.full((b, seq_len), pad_id, dtype=np.int64)
    targets = np.full((b, seq_len), IGNORE_INDEX, dtype=np.int64)
    positions = np.zeros((b, seq_len), dtype=np.int64)
    doc_ids = np.zeros((b, seq_len), dtype=np.int64)
    for r, pieces in enumerate(rows):
        t = 0
        for k, piece in enumerate(pieces):
            n = len(piece.tokens)
            assert t + n <= seq_len, "pieces overflow the row"
            ids[r, t:t + n] = piece.tokens
            if piece.targets is not None:
                targets[r, t:t + n] = piece.targets
            else:
                targets[r, t:t + n - 1] = piece.tokens[1:]
                targets[r, t + n - 1] = piece.next_token
            positions[r, t:t + n] = np.arange(n)
            doc_ids[r, t:t + n] = k
            t += n
        if t < seq_len:
            positions[r, t:] = np.arange(seq_len - t)
            doc_ids[r, t:] = len(pieces)
    return ids, targets, positions, doc_ids


def build_token_domains(rows: Sequence[Sequence[Piece]], seq_len: int
                        ) -> tuple[list[str], np.ndarray]:
    """(domain names in order of first appearance, [B, seq_len] int16 index into them of each
    token's piece domain, -1 after the last piece of a row)."""
    names: dict[str, int] = {}
    index = np.full((len(rows), seq_len), -1, dtype=np.int16)
    for r, pieces in enumerate(rows):
        t = 0
        for piece in pieces:
            n = len(piece.tokens)
            index[r, t:t + n] = names.setdefault(piece.domain, len(names))
            t += n
    return list(names), index


def to_batch(arrays: tuple[np.ndarray, ...], domain_tokens: dict[str, int],
             rows: Sequence[Sequence[Piece]] | None = None) -> PackedBatch:
    """A PackedBatch of `build_rows`' arrays; with `rows` (the pieces they were built from) it
    also carries each token's domain."""
    ids, targets, positions, doc_ids = (torch.from_numpy(a) for a in arrays)
    if rows is None:
        return PackedBatch(ids, targets, positions, doc_ids, domain_tokens)
    names, index = build_token_domains(rows, ids.shape[1])
    return PackedBatch(ids, targets, positions, doc_ids, domain_tokens,
                       torch.from_numpy(index), names)


def example_targets(ids: Sequence[int], mask: Sequence[int]) -> np.ndarray:
    """Targets of one SFT example: ids[j + 1] where mask[j + 1] is 1, else -100."""
    ids_a = np.asarray(ids, dtype=np.int64)
    mask_a = np.asarray(mask, dtype=bool)
    targets = np.full(len(ids_a), IGNORE_INDEX, dtype=np.int64)
    keep = mask_a[1:]
    targets[:-1][keep] = ids_a[1:][keep]
    return targets


def pack_examples(examples: list[tuple[list[int], list[int]]], seq_len: int, pad_id: int,
                  domain: str = "chat", domains: Sequence[str] | None = None) -> PackedBatch:
    """Pack SFT examples (ids, loss mask) into as few rows as first-fit finds, in input order.

    An example longer than `seq_len` is truncated to its first `seq_len` tokens (logged): SFT
    conversations are not split, since a continuation would lose its prompt.

    Args:
        examples: (ids, loss mask) pairs.
        seq_len: row length.
        pad_id: id of the padding after the last example of a row.
        domain: the domain of every example.
        domains: per-example domains instead (as long as `examples`).

    Returns:
        A PackedBatch with one row per bin; `domain_tokens` counts non-pad tokens per domain,
        `token_domains` marks each token's.
    """
    if seq_len <= 1:
        raise ValueError(f"seq_len must be > 1, got {seq_len}")
    if domains is not None and len(domains) != len(examples):
        raise ValueError(f"domains has {len(domains)} entries for {len(examples)} examples")
    domains = [domain] * len(examples) if domains is None else domains
    domain_tokens: dict[str, int] = {}
    rows: list[list[Piece]] = []
    room: list[int] = []
    truncated = 0
    for (ids, mask), dom in zip(examples, domains):
        if len(ids) != len(mask):
            raise ValueError(f"an SFT example has {len(ids)} ids but {len(mask)} mask values")
        if not ids:
            continue
        if len(ids) > seq_len:
            truncated += 1
            ids, mask = ids[:seq_len], mask[:seq_len]
        piece = Piece(np.asarray(ids, dtype=np.int64), IGNORE_INDEX, example_targets(ids, mask),
                      dom)
        domain_tokens[dom] = domain_tokens.get(dom, 0) + len(ids)
        for r, free in enumerate(room):
            if free >= len(ids):
                rows[r].append(piece)
                room[r] -= len(ids)
                break
        else:
            rows.append([piece])
            room.append(seq_len - len(ids))
    if truncated:
        logger.warning("pack_examples: %d example(s) longer than seq_len %d were truncated",
                       truncated, seq_len)
    return to_batch(build_rows(rows, seq_len, pad_id), domain_tokens, rows)
