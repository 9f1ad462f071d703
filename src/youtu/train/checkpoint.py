"""Checkpoints: atomic, keep-last-K, each one a Hugging Face model folder plus trainer state.

    <out>/step_00000120/          periodic (the newest `keep_last` are kept)
    <out>/stage_commonsense/      end of a curriculum stage (always kept)
        config.json  model.safetensors      youtu.model.hf.load_pretrained loads it
        tokenizer.json  tokenizer_config.json ...   youtu.tokenizer.Tokenizer.load loads it
        run.toml                            the resolved run config
        trainer_state.pt                    step, optimizer (1 process), sampler, RNG, guard
        sharded/                            DCP model + optimizer shards (torchrun runs only)
        checkpoint.json                     written last: {"step", "stage", "world_size", ...}

A checkpoint is written under `<out>/.tmp-<name>/`, fsynced, renamed into place when complete and
the folder fsynced again (youtu.fsutil), so a crash or power cut mid-write leaves only a `.tmp-`
folder, which `latest_checkpoint` ignores (as it ignores any folder without `checkpoint.json`).
A failed write (disk full, quota, I/O error) removes the temp folder and raises one
`fsutil.WriteFailed` line naming the folder, the bytes needed and the fix; the previous
checkpoints are untouched. Weights are saved in their training dtype (fp32), so resuming
reproduces the uninterrupted run bit for bit. Which checkpoint a run resumes from (the newest
that loads, `check_loadable`) is runfolder.py's.

A checkpoint written by N processes resumes on M (`restore_checkpoint`):

- model + optimizer: a torchrun checkpoint's DCP shards are read by any number of processes
  (`load_sharded` reshards; one process reads them without a process group); a
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
import random
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist
from torch import nn

from youtu import fsutil
from youtu.model import YoutuForCausalLM
# The one checkpoint finder lives in youtu.model.checkpoints (eval and serve use it too);
# MARKER, latest_checkpoint and read_marker are re-exported here for training code.
from youtu.model.checkpoints import (MARKER, TMP_PREFIX, latest_checkpoint,  # noqa: F401
                                     read_marker)
from youtu.model.checkpoints import list_checkpoints as model_folders
from youtu.model.hf import copy_tokenizer_files, load_pretrained, save_pretrained
from youtu.train.parallel import Dist


logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
SHARDED_DIR = "sharded"
FORMAT_VERSION = 2
"""2: the one-process optimizer state is keyed by parameter name (1: by position)."""
_TMP_PREFIX = TMP_PREFIX
_STEP_RE = re.compile(r"^step_(\d+)$")


def step_dirname(step: int) -> str:
    """Folder name of the periodic checkpoint after `step` updates."""
    return f"step_{step:08d}"


def stage_dirname(stage: str) -> str:
    """Folder name of the checkpoint at the end of stage `stage`."""
    return f"stage_{stage}"


def list_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """Complete training checkpoints directly under `folder` as (step, path), oldest first
    (youtu.model.checkpoints' order: written last = newest; at equal times a stage-end
    checkpoint after a periodic one)."""
    return [(int(read_marker(p)["step"]), p) for p in model_folders(folder)
            if read_marker(p) is not None and (p / STATE_FILE).is_file()]


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


# ---- state I/O (moved from parallel.py: nothing else reads or writes training state) -------


def full_model_state(model: nn.Module, dist: Dist) -> dict[str, torch.Tensor]:
    """The full, unsharded fp32 state dict on CPU (collective under FSDP: every rank calls it;
    only rank 0 gets the tensors, the others an empty dict)."""
    if not dist.distributed:
        return {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                cpu_offload=True))


def save_sharded(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Write model and optimizer shards with DCP (collective): FQN-keyed, each tensor stored
    with its global shape and this rank's chunk, so any number of processes can read it back."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(folder))


def _dcp_load(state: dict[str, Any], folder: Path) -> None:
    """dcp.load in place; without a process group it reads every shard itself (no_dist), which
    is what a single process resuming a torchrun checkpoint means (DCP warns each time)."""
    import torch.distributed.checkpoint as dcp

    no_dist = not (tdist.is_available() and tdist.is_initialized())
    with warnings.catch_warnings():
        if no_dist:
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=str(folder), no_dist=no_dist)


def load_sharded(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """Read model (and optimizer) state written by `save_sharded` into the live modules,
    resharded to this run's layout: DCP plans reads from the saved chunks into whatever each
    rank holds now (its FSDP2 shard under torchrun, the full tensor in a single process, where
    `dcp.load` runs without a process group). The number of processes that wrote the shards
    does not matter.
    """
    from torch.distributed.checkpoint.state_dict import (get_state_dict, set_model_state_dict,
                                                         set_state_dict)

    if optimizer is None:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        model_sd = get_model_state_dict(model)
        state = {"model": model_sd}
        _dcp_load(state, folder)
        set_model_state_dict(model, state["model"])
        return
    # get_state_dict creates the optimizer's moments first (a zero-gradient step at lr 0) so
    # that DCP has tensors to read into.
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    _dcp_load(state, folder)
    set_state_dict(model, optimizer, model_state_dict=state["model"],
                   optim_state_dict=state["optim"])


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer state of a single-process run keyed by parameter FQN (not by position),
    so that a torchrun run can shard it onto its own parameters (`load_full_optimizer_state`)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer)


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer,
                              state: dict[str, Any], dist: Dist) -> None:
    """Load an FQN-keyed full optimizer state (`full_optimizer_state`) into this run's
    optimizer; under FSDP every rank passes the same full state and keeps its own shard of each
    moment (no communication)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state,
                             options=StateDictOptions(full_state_dict=dist.distributed))


def load_full_model_state(model: nn.Module, state: dict[str, torch.Tensor], dist: Dist) -> None:
    """Load a full (unsharded) state dict into a possibly sharded model; every rank passes the
    same full dict (each keeps its shard)."""
    if not dist.distributed:
        model.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))


# ---- writing ------------------------------------------------------------------------------


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


def _needed_bytes(out: Path, model: nn.Module, dist: Dist) -> int:
    """What a checkpoint takes on disk: the newest one's size, else fp32 weights + two AdamW
    moments (x2 under torchrun: the DCP shards hold them again)."""
    found = list_checkpoints(out)
    if found:
        return fsutil.tree_bytes(found[-1][1])
    n = sum(p.numel() for p in model.parameters()) * 4 * 3
    return n * 2 if dist.distributed else n


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

    Raises:
        fsutil.WriteFailed: the write failed (disk full, ...); the temp folder is removed and
            every rank raises it.
    """
    out = Path(out)
    final = out / name
    tmp = out / f"{_TMP_PREFIX}{name}"
    if dist.is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    dist.barrier()

    full_state = full_model_state(model, dist)
    ranks = dist.all_gather_object(rank_state)
    failure: tuple[int, str] | None = None
    try:
        if dist.distributed:
            save_sharded(tmp / SHARDED_DIR, root, optimizer)
        if dist.is_main:
            _write_main(tmp, model, root, optimizer, dist, full_state, state, ranks, name,
                        run_cfg, tokenizer_dir)
    except Exception as e:  # noqa: BLE001 (torch.save and safetensors report a full disk as
        # RuntimeError / SafetensorError, not OSError: fsutil.is_write_error reads the message)
        if not fsutil.is_write_error(e):
            if dist.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.debug("checkpoint write failed", exc_info=e)
        err = fsutil.WriteFailed.of(out, needed_bytes=_needed_bytes(out, model, dist), error=e,
                                    what=f"checkpoint {name}", removed=tmp)
        failure = (err.errno, str(err))
    failures = [f for f in dist.all_gather_object(failure) if f is not None]
    if failures:  # every rank raises the same line (a lone rank raising would hang the rest)
        if dist.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise fsutil.WriteFailed(*failures[0])
    if dist.is_main:
        _replace_dir(tmp, final)
        if keep_last is not None:
            prune_checkpoints(out, keep_last)
    dist.barrier()
    return final


def _write_main(tmp: Path, model: YoutuForCausalLM, root: nn.Module,
                optimizer: torch.optim.Optimizer, dist: Dist, full_state: dict[str, torch.Tensor],
                state: dict[str, Any], ranks: list[dict[str, Any]], name: str,
                run_cfg: object | None, tokenizer_dir: str | Path | None) -> None:
    """Rank 0's files of a checkpoint, into the temp folder, fsynced; checkpoint.json last."""
    _save_hf(model, full_state, tmp, dist)
    if tokenizer_dir is not None:
        copy_tokenizer_files(tokenizer_dir, tmp)
    if run_cfg is not None:
        from youtu.configlib import save_config

        save_config(run_cfg, tmp / "run.toml")
    blob = {**state, "format": FORMAT_VERSION, "world_size": dist.world_size, "ranks": ranks}
    if not dist.distributed:
        blob["optimizer"] = full_optimizer_state(root, optimizer)
    torch.save(blob, tmp / STATE_FILE)
    marker = {"step": int(state["step"]), "stage": state["stage"], "name": name,
              "world_size": dist.world_size, "format": FORMAT_VERSION,
              "written_at": time.time()}  # the finder's "newest" (youtu.model.checkpoints)
    (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    fsutil.fsync_tree(tmp)


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename `src` to `dst` and fsync their folder; an existing `dst` is moved aside first and
    then deleted (between the two renames `latest_checkpoint` falls back to the previous
    checkpoint)."""
    old = dst.with_name(f"{_TMP_PREFIX}old-{dst.name}")
    if dst.exists():
        if old.exists():
            shutil.rmtree(old)
        dst.rename(old)
    fsutil.replace(src, dst)
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


def check_loadable(path: str | Path) -> str | None:
    """Why the training checkpoint `path` cannot be resumed from, or None when it can: its
    checkpoint.json reads, config.json parses, every safetensors file covers its header (a
    truncated one does not), trainer_state.pt opens (its zip directory is at the end, so a
    truncated one does not; tensors are memory-mapped, not read), and a torchrun checkpoint
    has its DCP metadata. Cheap next to the restore itself, which reads everything again."""
    from safetensors import SafetensorError, safe_open

    from youtu.model.hf import read_config

    path = Path(path)
    if read_marker(path) is None:
        return f"{MARKER} is missing or unreadable (an interrupted or foreign folder)"
    if not (path / STATE_FILE).is_file():
        return f"{STATE_FILE} is missing (weights only: start from them with --train.init)"
    try:
        read_config(path)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"config.json is unreadable ({str(e).splitlines()[0][:200]})"
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        return "no *.safetensors weights"
    for file in weights:
        try:
            with safe_open(file, framework="pt") as f:
                f.keys()
        except (SafetensorError, OSError) as e:
            return f"{file.name} is truncated or corrupt ({e})"
    try:
        blob = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False, mmap=True)
    except Exception as e:  # noqa: BLE001 (torch raises RuntimeError, pickle its own kinds)
        return f"{STATE_FILE} is truncated or corrupt ({str(e).splitlines()[0][:200]})"
    if not isinstance(blob, dict) or not {"step", "ranks"} <= blob.keys():
        return f"{STATE_FILE} holds no trainer state"
    if int(blob.get("world_size", 1)) > 1 and not (path / SHARDED_DIR / ".metadata").is_file():
        return f"its DCP shards ({SHARDED_DIR}/) are missing or incomplete"
    return None


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
        load_sharded(shards, root, optimizer)
    else:
        optim = blob["optimizer"]
        if blob.get("format", 1) < 2:
            optim = _keyed_by_name(optim, root, optimizer)
        # Before the weights: filling in the moments takes an lr-0 step, an exact no-op.
        load_full_optimizer_state(root, optimizer, optim, dist)
        load_full_model_state(model, load_weights(path), dist)
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
