"""Checkpoints: atomic, keep-last-K, each one a Hugging Face model folder plus trainer state.

    <out>/step_00000120/          periodic (the newest `keep_last` are kept)
    <out>/stage_commonsense/      end of a curriculum stage (always kept)
        config.json  model.safetensors      youtu.model.hf.load_pretrained loads it
        tokenizer.json  tokenizer_config.json ...   youtu.tokenizer.Tokenizer.load loads it
        run.toml                            the resolved run config
        trainer_state.pt                    step, optimizer (1 process), sampler, RNG, guard
        sharded/                            DCP model + optimizer shards (torchrun runs only)
        checkpoint.json                     written last: {"step", "stage", "world_size", ...}

A checkpoint is written under `<out>/.tmp-<name>/` and renamed into place when complete, so a
crash mid-write leaves only a `.tmp-` folder, which `latest_checkpoint` ignores (as it ignores
any folder without `checkpoint.json`). Weights are saved in their training dtype (fp32), so
resuming reproduces the uninterrupted run bit for bit.

A checkpoint written by N processes resumes on M (`restore_checkpoint`):

- model + optimizer: a torchrun checkpoint's DCP shards are read by any number of processes
  (`parallel.load_sharded` reshards; one process reads them without a process group); a
  one-process checkpoint holds the full state (HF weights, optimizer keyed by parameter name),
  which each torchrun rank slices to its own FSDP2 shard.
- data cursor: one global stream on every rank (trainer.BatchSource), so rank 0's cursor is
  every rank's.
- RNG: with N == M each rank restores its own states. With N != M every rank restores rank 0's
  states: data-parallel ranks share one RNG stream here (the model is seeded alike on every rank
  and training draws nothing per rank), as Megatron-LM keeps the RNG replicated over
  data-parallel ranks. Streams a caller made rank-specific are not carried over (a warning says
  so when the saved ranks' states differ).

The losses after a resharded resume match the uninterrupted run up to fp32 summation order
(the gradient reduction and the micro-batch split change with M; < 1e-7 relative on the tiny
CPU config, tests/train/test_reshard.py), not bit for bit; N == M resumes stay bit-identical.
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
FORMAT_VERSION = 2
"""2: the one-process optimizer state is keyed by parameter name (1: by position)."""
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
    """This process's RNG states (torch CPU, Python, NumPy, and its current CUDA device's)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        # The current device only (torchrun ranks each use one): a checkpoint then restores on
        # a machine with another number of GPUs.
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured (onto the current CUDA device)."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, list):  # format 1 kept every visible device's state
            here = torch.cuda.current_device()
            cuda = cuda[here] if here < len(cuda) else cuda[0]
        torch.cuda.set_rng_state(cuda)


def _same_rng(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (torch.equal(a["torch"], b["torch"]) and a["python"] == b["python"]
            and all(np.array_equal(x, y) for x, y in zip(a["numpy"], b["numpy"])))


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
                    rank_state: dict[str, Any], run_cfg: object | None,
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
            from youtu.configlib import save_config

            save_config(run_cfg, tmp / "run.toml")
        blob = {**state, "format": FORMAT_VERSION, "world_size": dist.world_size, "ranks": ranks}
        if not dist.distributed:
            blob["optimizer"] = parallel.full_optimizer_state(root, optimizer)
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
    """trainer_state.pt of a checkpoint (plain Python/tensor objects, trusted: our own files).

    Read into memory, not memory-mapped: the optimizer would keep the file's pages as its
    moments (load_state_dict does not copy CPU tensors), and a file rewritten in place under a
    running job would then kill it (SIGBUS). A torchrun resume of a one-process checkpoint so
    holds the full optimizer state on every rank for the duration of the load (8 bytes per
    parameter: 16 GB for the 2B)."""
    return torch.load(Path(path) / STATE_FILE, map_location="cpu", weights_only=False)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The fp32 state dict of an HF model folder (ours or any Youtu folder)."""
    return load_pretrained(path, dtype=torch.float32).state_dict()


def _keyed_by_name(optim: dict[str, Any], root: nn.Module,
                   optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """A format-1 optimizer state (`Optimizer.state_dict()`, keyed by parameter position) keyed
    by parameter name instead; positions follow `optimizer`'s groups, built the same way."""
    names = {id(p): n for n, p in root.named_parameters()}
    order = [names[id(p)] for g in optimizer.param_groups for p in g["params"]]
    return {"state": {order[i]: v for i, v in optim["state"].items()},
            "param_groups": [{**g, "params": [order[i] for i in g["params"]]}
                             for g in optim["param_groups"]]}


def restore_checkpoint(path: str | Path, *, model: YoutuForCausalLM, root: nn.Module,
                       optimizer: torch.optim.Optimizer, dist: Dist) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load model weights, optimizer state and RNG from a checkpoint to resume training, on any
    number of processes (see the module docstring for what carries over when it changes).

    Args:
        path: a checkpoint folder.
        model: the unwrapped model.
        root: the module the optimizer trains (FSDP root under torchrun).
        optimizer: the optimizer (built by the caller; its moments are filled in here).
        dist: this run's process placement.

    Returns:
        (shared trainer state, this rank's state: its own when the number of processes is
        unchanged, else rank 0's).

    Raises:
        ValueError: a multi-process checkpoint without its DCP shards.
    """
    path = Path(path)
    blob = load_trainer_state(path)
    saved = int(blob.get("world_size", 1))
    if saved > 1:
        shards = path / SHARDED_DIR
        if not (shards / ".metadata").is_file():
            raise ValueError(f"checkpoint {path} was written by {saved} processes but its DCP "
                             f"shards ({shards}) are missing or incomplete; copy the whole "
                             "folder, or start from its weights only (--train.init=<folder> "
                             "--train.init_weights_only=true)")
        parallel.load_sharded(shards, root, optimizer)
    else:
        optim = blob["optimizer"]
        if blob.get("format", 1) < 2:
            optim = _keyed_by_name(optim, root, optimizer)
        # Before the weights: filling in the moments takes an lr-0 step, an exact no-op.
        parallel.load_full_optimizer_state(root, optimizer, optim, dist)
        parallel.load_full_model_state(model, load_weights(path), dist)
    ranks = blob["ranks"]
    if saved == dist.world_size:
        rank_state = ranks[dist.rank]
    else:
        rank_state = ranks[0]
        if dist.is_main:
            logger.info("resharding checkpoint %s from %d to %d process(es); every rank takes "
                        "rank 0's data cursor and RNG state", path, saved, dist.world_size)
            rngs = [r["rng"] for r in ranks if "rng" in r]
            if any(not _same_rng(rngs[0], r) for r in rngs[1:]):
                logger.warning("the saved ranks' RNG states differ; with another number of "
                               "processes every rank continues rank 0's stream")
    if "rng" in rank_state:
        set_rng_state(rank_state["rng"])
    shared = {k: v for k, v in blob.items() if k not in ("ranks", "optimizer")}
    return shared, rank_state
