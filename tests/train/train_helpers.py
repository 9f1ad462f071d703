"""`train()` and `sft()` on the sections of a run config, as `youtu train` / `youtu sft` call
them."""

from __future__ import annotations

from pathlib import Path

from youtu.train.loop import train
from youtu.train.sft import sft


def run_train(cfg, data_dir: Path, tokenizer_dir: Path, out_dir: Path, **kw) -> Path:
    return train(cfg.train, cfg.model, data_dir, tokenizer_dir, out_dir, seed=cfg.seed,
                 device=cfg.device, record=cfg, verify_checksums=cfg.data.verify_checksums, **kw)


def run_sft(cfg, **kw) -> Path:
    return sft(cfg.sft, seed=cfg.seed, device=cfg.device, record=cfg,
               verify_checksums=cfg.data.verify_checksums, **kw)
