"""Checkpoints: atomic, keep-last-K, each one a Hugging Face model folder plus trainer state.

    <out>/step_00000120/          periodic (the newest `keep_last` are kept)
    <out>/stage_commonsense/      end of a curriculum stage (always kept)
        config.json  model.safetensors      youtu.model.hf.load_pretrained loads it
        tokenizer.json  tokenizer_config.json ...   youtu.tokenizer.Tokenizer.load loads it
        run.toml                            the resolved run config
        trainer_state.pt                    step, optimizer (1 process), sampler, RNG, guard
        sharded/                            DCP model + optimizer shards (torchrun runs only)
        checkpoint.json                     written last: {"step", "stage", ...}

A checkpoint is written under `<out>/.tmp-<name>/` and renamed into place when complete, so a
crash mid-write leaves only a `.tmp-` folder, which `latest_checkpoint` ignores (as it ignores
any folder without `checkpoint.json`). Weights are saved in their training dtype (fp32), so
resuming reproduces the uninterrupted run bit for bit.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from youtu.model import YoutuForCausalLM
from youtu.model.hf import copy_tokenizer_files, load_pretrained, save_pretrained
from youtu.train import parallel
from youtu.train.parallel import Dist

if TYPE_CHECKING:
    from youtu.config import RunConfig

logger = logging.getLogger(__name__)

MARKER = "checkpoint.json"
STATE_FILE = "trainer_state.pt"
SHARDED_DIR = "sharded"
FORMAT_VERSION = 1
_TMP_PREFIX = ".tmp-"
_STEP_RE = re.compile(r"^step_(\d+)$")


def step_dirname(step: int) -> str:
    """Folder name of the periodic checkpoint after `step` updates."""
    return f"step_{step:08d}"


def stage_dirname(stage: str) -> str:
    """Folder name of the checkpoint at the end of stage `stage`."""
    return f"stage_{stage}"


def read_marker(path: str | Path) -> dict[str, Any] | None:
    """The checkpoint.json of a complete checkpoint, or None (missing, unreadable, partial)."""
    marker = Path(path) / MARKER
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and "step" in info else None


def list_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints directly under `folder` as (step, path), oldest first; at equal
    steps a stage-end checkpoint sorts after a periodic one."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        if not path.is_dir() or path.name.startswith("."):
            continue
        info = read_marker(path)
        if info is None or not (path / STATE_FILE).is_file():
            continue
        found.append((int(info["step"]), path.name.startswith("stage_"), path))
    found.sort(key=lambda t: (t[0], t[1], t[2].name))
    return [(step, path) for step, _, path in found]


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The most advanced complete checkpoint under `folder`, or None. Half-written ones (temp
    folders, folders without checkpoint.json) are ignored."""
    found = list_checkpoints(folder)
    return found[-1][1] if found else None


def rng_state() -> dict[str, Any]:
    """This process's RNG states (torch CPU and CUDA, Python, NumPy)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                os.fsync(f.fileno())


def _save_hf(model: YoutuForCausalLM, full_state: dict[str, torch.Tensor], folder: Path,
             dist: Dist) -> None:
    if not dist.distributed:
        save_pretrained(model, folder)
        return
    # Sharded parameters: rebuild a plain CPU model around the gathered tensors to write it.
    with torch.device("meta"):
        shadow = YoutuForCausalLM(model.config)
    shadow.load_state_dict(full_state, assign=True)
    if model.config.tie_word_embeddings:
        shadow.lm_head.weight = shadow.model.embed_tokens.weight
    save_pretrained(shadow, folder)


def save_checkpoint(out: str | Path, name: str, *, model: YoutuForCausalLM, root: nn.Module,
                    optimizer: torch.optim.Optimizer, dist: Dist, state: dict[str, Any],
                    rank_state: dict[str, Any], run_cfg: RunConfig | None,
                    tokenizer_dir: str | Path | None, keep_last: int | None = None) -> Path:
    """Write checkpoint `<out>/<name>` atomically (collective under torchrun: every rank calls).

    Args:
        out: checkpoint root folder.
        name: folder name (`step_dirname(...)` or `stage_dirname(...)`).
        model: the unwrapped model (its config goes to config.json).
        root: the module the optimizer trains (FSDP root under torchrun); DCP state comes
            from it.
        optimizer: the optimizer.
        dist: process placement.
        state: trainer state shared by all ranks; must hold "step" (int) and "stage" (str).
        rank_state: this rank's own state (sampler cursor, RNG); stored per rank.
        run_cfg: the resolved run config, written as run.toml.
        tokenizer_dir: folder whose tokenizer files are copied in (None = none).
        keep_last: afterwards delete all but the newest `keep_last` periodic checkpoints.

    Returns:
        The final checkpoint folder.
    """
    out = Path(out)
    final = out / name
    tmp = out / f"{_TMP_PREFIX}{name}"
    if dist.is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    dist.barrier()

    full_state = parallel.full_model_state(model, dist)
    ranks = dist.all_gather_object(rank_state)
    if dist.distributed:
        parallel.save_sharded(tmp / SHARDED_DIR, root, optimizer)

    if dist.is_main:
        _save_hf(model, full_state, tmp, dist)
        if tokenizer_dir is not None:
            copy_tokenizer_files(tokenizer_dir, tmp)
        if run_cfg is not None:
            from youtu.config import save_config

            save_config(run_cfg, tmp / "run.toml")
        blob = {**state, "format": FORMAT_VERSION, "world_size": dist.world_size, "ranks": ranks}
        if not dist.distributed:
            blob["optimizer"] = optimizer.state_dict()
        torch.save(blob, tmp / STATE_FILE)
        marker = {"step": int(state["step"]), "stage": state["stage"], "name": name,
                  "world_size": dist.world_size, "format": FORMAT_VERSION}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        _fsync_tree(tmp)
        _replace_dir(tmp, final)
        if keep_last is not None:
            prune_checkpoints(out, keep_last)
    dist.barrier()
    return final


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename `src` to `dst`; an existing `dst` is moved aside first and then deleted (between
    the two renames `latest_checkpoint` falls back to the previous checkpoint)."""
    old = dst.with_name(f"{_TMP_PREFIX}old-{dst.name}")
    if dst.exists():
        if old.exists():
            shutil.rmtree(old)
        dst.rename(old)
    src.rename(dst)
    if old.exists():
        shutil.rmtree(old)


def prune_checkpoints(out: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` periodic (step_*) checkpoints; stage-end
    checkpoints are never deleted. Returns the deleted folders."""
    periodic = [p for _, p in list_checkpoints(out) if _STEP_RE.match(p.name)]
    doomed = periodic[:-keep_last] if keep_last > 0 else periodic
    for path in doomed:
        shutil.rmtree(path)
    return doomed


def clean_temp(out: str | Path) -> None:
    """Remove leftovers of interrupted writes (`.tmp-*` folders) under `out`."""
    out = Path(out)
    if out.is_dir():
        for path in out.iterdir():
            if path.is_dir() and path.name.startswith(_TMP_PREFIX):
                logger.warning("removing the incomplete checkpoint %s (an interrupted write)", path)
                shutil.rmtree(path)


def load_trainer_state(path: str | Path) -> dict[str, Any]:
    """trainer_state.pt of a checkpoint (plain Python/tensor objects, trusted: our own files)."""
    return torch.load(Path(path) / STATE_FILE, map_location="cpu", weights_only=False)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The fp32 state dict of an HF model folder (ours or any Youtu folder)."""
    return load_pretrained(path, dtype=torch.float32).state_dict()


def restore_checkpoint(path: str | Path, *, model: YoutuForCausalLM, root: nn.Module,
                       optimizer: torch.optim.Optimizer, dist: Dist) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load model weights, optimizer state and RNG from a checkpoint for an exact resume.

    Returns:
        (shared trainer state, this rank's state).

    Raises:
        ValueError: the checkpoint was written by a different number of processes (its data
            cursor and optimizer shards are per rank).
    """
    path = Path(path)
    blob = load_trainer_state(path)
    if blob.get("world_size", 1) != dist.world_size:
        raise ValueError(f"checkpoint {path} was written by {blob.get('world_size', 1)} "
                         f"process(es) but this run has {dist.world_size}; resume with the same "
                         "--nproc-per-node, or start from its weights only "
                         "(--train.init=<folder> --train.init_weights_only=true)")
    if dist.distributed:
        parallel.load_sharded(path / SHARDED_DIR, root, optimizer)
    else:
        model.load_state_dict(load_weights(path))
        optimizer.load_state_dict(blob["optimizer"])
    rank_state = blob["ranks"][dist.rank]
    if "rng" in rank_state:
        set_rng_state(rank_state["rng"])
    shared = {k: v for k, v in blob.items() if k not in ("ranks", "optimizer")}
    return shared, rank_state
