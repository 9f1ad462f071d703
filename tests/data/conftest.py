"""Shared fixtures for youtu.data tests: one tiny tokenizer and one prepared shard folder per
session (synthetic shard helpers are in data_helpers.py)."""

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
