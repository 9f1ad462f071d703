"""Shared fixtures for youtu.data tests: one tiny tokenizer, one prepared shard folder and one
with a held-out split per session (synthetic shard helpers are in data_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from youtu.data.config import DataConfig, DedupConfig, EmbeddedConfig
from youtu.data.sources import embedded_corpus

SMALL_EMBEDDED = EmbeddedConfig(code_chars=80_000, prose_chars=80_000, stem_chars=40_000)


@pytest.fixture(scope="session")
def tokenizer():
    from youtu.tokenizer.train import train_from_texts

    texts = [d.text for d in embedded_corpus(0, code_chars=60_000, prose_chars=60_000,
                                             stem_chars=30_000)]
    return train_from_texts(texts, vocab_size=1024)


@pytest.fixture(scope="session")
def small_cfg() -> DataConfig:
    return DataConfig(embedded=SMALL_EMBEDDED, workers=0, shard_chars=30_000,
                      dedup=DedupConfig(near=True))


@pytest.fixture(scope="session")
def prepared(tokenizer, small_cfg, tmp_path_factory) -> tuple[Path, dict]:
    """The small embedded corpus prepared once: (folder, manifest)."""
    from youtu.data.prepare import prepare

    out = tmp_path_factory.mktemp("prepared")
    return out, prepare(small_cfg, tokenizer, out)


HELDOUT_FRACTION = 0.2
"""Held-out share of the `heldout_prepared` folder (large, so 400 documents give ~80)."""


def heldout_documents() -> list:
    """400 distinct documents in three domains: 300 prose (a JSONL source), 80 agent texts and
    20 chat conversations (the `extra` documents of prepare)."""
    from .data_helpers import prose
    from youtu.data.document import TRUSTED_SPECIAL, Document

    agent = [Document(f"<analysis>Task {i}: add {i} and {7 * i + 3}.</analysis><tool_call>"
                      f'{{"name": "calc", "arguments": {{"expr": "{i}+{7 * i + 3}"}}}}'
                      f"</tool_call> The result is {8 * i + 3}.", "agent", "synth",
                      {TRUSTED_SPECIAL: True})
             for i in range(80)]
    chat = [Document("", "chat", "sft", {"messages": [
        {"role": "user", "content": f"What is {i} times {i + 2}?"},
        {"role": "assistant", "content": f"{i} times {i + 2} is {i * (i + 2)}."}]})
        for i in range(20)]
    return [Document(prose(i), "commonsense", "town") for i in range(300)] + agent + chat


def heldout_cfg(source: Path, **kw) -> DataConfig:
    from youtu.data.config import QualityConfig, SourceConfig

    base = dict(embedded=EmbeddedConfig(enabled=False), workers=0, shard_chars=8000,
                quality=QualityConfig(enabled=False), dedup=DedupConfig(near=False),
                heldout_fraction=HELDOUT_FRACTION,
                sources=[SourceConfig(path=str(source), domain="commonsense", name="town")])
    return DataConfig(**{**base, **kw})


@pytest.fixture(scope="session")
def heldout_prepared(tokenizer, tmp_path_factory) -> tuple[Path, dict]:
    """`heldout_documents()` prepared with a held-out split: (folder, training manifest)."""
    import json

    from youtu.data.prepare import prepare

    root = tmp_path_factory.mktemp("heldout")
    docs = heldout_documents()
    source = root / "town.jsonl"
    source.write_text("".join(json.dumps({"text": d.text}) + "\n" for d in docs
                              if d.source == "town"))
    extra = [d for d in docs if d.source != "town"]
    return root / "out", prepare(heldout_cfg(source), tokenizer, root / "out", extra=extra)
