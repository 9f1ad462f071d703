"""Tokenize kept documents into token shards: the last datatrove step of `youtu data prepare`.

    ids, masks = tokenize_documents(tokenizer, [{"text": "hi", "allow_special": False}])
    ShardWriter(work_dir, tokenizer_dir, shard_chars=50_000_000, heldout_fraction=0.02)

Each task writes its own shards under `<work>/shards/<rank>/<split>/<domain>/shard_NNNNN.*`
(today's format, `youtu.data.shards.write_shard`), cutting each domain's documents every
`shard_chars` characters; `youtu.data.prepare` then links them into the shard folder with
global numbers and writes the manifest. `BOS text EOS` for text, the chat template (with its
loss mask) for documents carrying `messages`. Strings like "<tool_call>" in the text stay plain
text unless the document's producer set `meta["trusted_special"] = True`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from youtu.data.document import TRUSTED_SPECIAL
from youtu.data.shards import write_shard

if TYPE_CHECKING:
    from youtu.tokenizer import Tokenizer

TRAIN, HELDOUT = "train", "heldout"
"""The two splits a prepared folder holds (the manifests' `split`)."""
ENCODE_CHUNK = 512
"""Documents per `encode_batch` call (bounds a task's peak memory)."""
_HELDOUT_KEY = b"youtu-heldout/1"  # keys is_heldout's hash; changing it reshuffles every split


def is_heldout(text: str, fraction: float) -> bool:
    """Whether a document belongs to the held-out split: a keyed 64-bit hash of its text, read as
    a number in [0, 1), falls below `fraction`.

    The decision depends on the text alone, not on the corpus around it, the shard size, the
    order of sources or the task that reads it: a document is on the same side in every run, a
    trajectory given both as `agent` text and as a `chat` conversation (each the `render_chat`
    text of its messages) goes the same way in both, and the held-out set at one fraction
    contains the held-out set at every smaller one.
    """
    if fraction <= 0.0:
        return False
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8,
                             key=_HELDOUT_KEY).digest()
    return int.from_bytes(digest, "big") < fraction * 2.0 ** 64


def tokenize_documents(tok: Tokenizer, docs: list[dict]) -> tuple[list[list[int]],
                                                                  list[list[int]] | None]:
    """Token ids of each document (`BOS text EOS`, or the chat template for documents carrying
    `messages`), and loss masks when any document is a conversation."""
    from youtu.tokenizer.chat import encode_chat, encode_chats

    ids: list[list[int]] = [[] for _ in docs]
    masks: list[list[int]] | None = None
    plain = [i for i, d in enumerate(docs) if "messages" not in d]
    for allow_special in (False, True):
        group = [i for i in plain if docs[i]["allow_special"] == allow_special]
        for start in range(0, len(group), ENCODE_CHUNK):
            chunk = group[start:start + ENCODE_CHUNK]
            encoded = tok.encode_batch([docs[i]["text"] for i in chunk], allow_special)
            for i, e in zip(chunk, encoded):
                # Text rendered in the chat format (agent trajectories) already carries its own
                # BOS/EOS once special strings are allowed: frame each document exactly once.
                head = [] if e[:1] == [tok.bos_id] else [tok.bos_id]
                tail = [] if e[-1:] == [tok.eos_id] else [tok.eos_id]
                ids[i] = [*head, *e, *tail]
    if len(plain) < len(docs):
        masks = [[1] * len(x) for x in ids]
        chats = [i for i, d in enumerate(docs) if "messages" in d]
        try:
            encoded = encode_chats(tok, [(docs[i]["messages"], docs[i].get("tools"))
                                         for i in chats])
        except (ValueError, KeyError, TypeError):
            encoded = None  # name the document that fails below
        for k, i in enumerate(chats):
            try:
                ids[i], masks[i] = encoded[k] if encoded else encode_chat(
                    tok, docs[i]["messages"], docs[i].get("tools"))
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"chat document from source {docs[i].get('source')!r} cannot "
                                 f"be rendered: {e}; fix its messages") from e
    return ids, masks


def payload(text: str, source: str, meta: dict) -> dict:
    """What tokenization needs of a document (special strings never inferred from the domain:
    the classifier labels any text with "<tool_call>" `agent`)."""
    out = {"text": text, "source": source, "allow_special": meta.get(TRUSTED_SPECIAL) is True}
    if meta.get("messages"):
        out["messages"] = meta["messages"]
        if meta.get("tools"):
            out["tools"] = meta["tools"]
    return out


class ShardWriter(PipelineStep):
    """Splits documents into train/held out, cuts shards per domain, tokenizes and writes them
    (the task's folder is emptied first: a re-run of a killed task starts clean)."""

    type = "🔢 - TOKENIZE"
    name = "youtu shards"

    def __init__(self, work_dir: str, tokenizer_dir: str, shard_chars: int,
                 heldout_fraction: float):
        super().__init__()
        self.work_dir, self.tokenizer_dir = work_dir, tokenizer_dir
        self.shard_chars, self.heldout_fraction = shard_chars, heldout_fraction

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1
            ) -> DocumentsPipeline:
        from youtu.tokenizer import Tokenizer

        # One task per core already: Rust-side threads would only oversubscribe the cores.
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        tok = Tokenizer.load(self.tokenizer_dir)
        folder = Path(self.work_dir) / "shards" / f"{rank:05d}"
        shutil.rmtree(folder, ignore_errors=True)
        pending: dict[tuple[str, str], list[dict]] = {}
        chars: Counter = Counter()
        index: Counter = Counter()

        def flush(split: str, domain: str) -> None:
            docs = pending.pop((split, domain))
            digest = hashlib.sha256()
            for d in docs:
                digest.update(json.dumps(d, sort_keys=True).encode())
            with self.track_time(unit="shard"):
                ids, masks = tokenize_documents(tok, docs)
                write_shard(folder / split, domain, index[split, domain], ids, masks,
                            {"input_sha256": digest.hexdigest(), "tokenizer": tok.fingerprint,
                             "chars": chars.pop((split, domain)),
                             "sources": dict(Counter(d["source"] for d in docs))})
            self.stat_update(f"shards/{split}")
            self.stat_update(f"tokens/{split}/{domain}", value=sum(map(len, ids)))
            index[split, domain] += 1

        for doc in data:
            md = doc.metadata
            split = HELDOUT if is_heldout(doc.text, self.heldout_fraction) else TRAIN
            domain = md["domain"]
            self.stat_update(f"kept/{split}/{md['source']}/{domain}", "total")
            pending.setdefault((split, domain), []).append(
                payload(doc.text, md["source"], md.get("meta") or {}))
            chars[split, domain] += len(doc.text)
            if chars[split, domain] >= self.shard_chars:
                flush(split, domain)
            yield doc
        for split, domain in sorted(pending):
            flush(split, domain)
