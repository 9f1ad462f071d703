"""`youtu tokenizer train` and `youtu tokenizer eval`: the tokenizer fed from the run's sources.

    youtu tokenizer train configs/tiny.toml     # -> runs/tiny/tokenizer/
    youtu tokenizer eval configs/tiny.toml      # -> runs/tiny/tokenizer_eval.md (+ .json)

The training and evaluation live in youtu.tokenizer, which imports nothing above it; these
commands sit here because `tokenizer.corpus = "data"` reads the `[data]` sources (embedded
corpus included), which only this package knows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from youtu.data.sources import iter_documents as data_documents
from youtu.tokenizer import Tokenizer
from youtu.tokenizer.evaluate import evaluate_tokenizer
from youtu.tokenizer.train import iter_documents, train_tokenizer

if TYPE_CHECKING:
    from youtu.config import RunConfig

logger = logging.getLogger(__name__)


def tokenizer_documents(cfg: RunConfig) -> Iterator[tuple[str, str]]:
    """The tokenizer's (domain, text) corpus: `tokenizer.corpus` (the `[data]` sources when it
    is "data"), then `tokenizer.files`."""
    data = data_documents(cfg.data) if cfg.tokenizer.corpus == "data" else None
    return iter_documents(cfg.tokenizer, cfg.seed, data)


def _folder(cfg: RunConfig) -> Path:
    return Path(cfg.tokenizer.path) if cfg.tokenizer.path else cfg.run_dir / "tokenizer"


def train_main(cfg: RunConfig) -> int:
    """`youtu tokenizer train`: train into `tokenizer.path` or `<run_dir>/tokenizer`."""
    out_dir = _folder(cfg)
    train_tokenizer(cfg.tokenizer, tokenizer_documents(cfg), out_dir)
    print(out_dir)
    return 0


def eval_main(cfg: RunConfig) -> int:
    """`youtu tokenizer eval`: evaluate the tokenizer at `tokenizer.path` or `<run_dir>/tokenizer`."""
    tok = Tokenizer.load(_folder(cfg))
    out = cfg.run_dir / "tokenizer_eval.md"
    payload = evaluate_tokenizer(tok, cfg.tokenizer, tokenizer_documents(cfg), out)
    print(out.read_text(), end="")
    logger.info("wrote %s (%d domains)", out, len(payload["bytes_per_token"]))
    return 0
