"""Finding model folders: the one rule for "the newest checkpoint", used by train, eval and serve.

    from youtu.model.checkpoints import latest_checkpoint
    latest_checkpoint("runs/tiny/train")                   # direct children: a run's checkpoints
    latest_checkpoint("runs/tiny", recursive=True)          # any model folder under a run

A model folder is complete when it holds `config.json` and weights (`*.safetensors`), is not
inside a hidden folder (`.tmp-*` is a checkpoint being written, or one a crash left behind), and,
when it is a training checkpoint, its `checkpoint.json` (written last) reads back. "Newest" is
the one written last: `written_at` in checkpoint.json (training checkpoints), else the folder's
modification time (an exported or downloaded HF folder); equal times go to the higher step,
then to the stage-end checkpoint (`stage_*`, kept forever) over a periodic one at the same step.
In one run folder checkpoints are written in step order, so this is also the most advanced one.

Whether a training checkpoint also *loads* (trainer state, shards) is train/checkpoint.py's
check, which walks this list newest first. Lives in `model/` because everyone may import it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MARKER = "checkpoint.json"
"""Written last into a training checkpoint: {"step", "stage", "name", "world_size", ...}."""
TMP_PREFIX = ".tmp-"


def read_marker(path: str | Path) -> dict[str, Any] | None:
    """The checkpoint.json of a complete training checkpoint, or None (missing, unreadable,
    partial)."""
    try:
        info = json.loads((Path(path) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and "step" in info else None


def is_model_folder(path: str | Path) -> bool:
    """True when `path` holds config.json and weights, and a checkpoint.json (if any) reads."""
    path = Path(path)
    if not (path / "config.json").is_file() or not any(path.glob("*.safetensors")):
        return False
    return not (path / MARKER).exists() or read_marker(path) is not None


def written_at(path: str | Path) -> float:
    """When the model folder was completed (seconds since the epoch)."""
    info = read_marker(path)
    if info is not None and isinstance(info.get("written_at"), (int, float)):
        return float(info["written_at"])
    return Path(path).stat().st_mtime


def order_key(path: str | Path) -> tuple[float, int, bool, str]:
    """Sort key of "newest last": (written at, step, stage-end, name)."""
    path = Path(path)
    info = read_marker(path) or {}
    return written_at(path), int(info.get("step", -1)), path.name.startswith("stage_"), path.name


def candidate_folders(folder: str | Path, *, recursive: bool = False) -> list[Path]:
    """Folders directly under `folder` (or anywhere below it) that are not hidden and not
    inside a hidden folder: where a checkpoint may be, complete or not."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    found = []
    for root, dirs, _ in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # prune .tmp-* and the like
        found += [Path(root) / d for d in dirs]
    return found


def list_checkpoints(folder: str | Path, *, recursive: bool = False) -> list[Path]:
    """Complete model folders under `folder`, oldest first (see the module docstring)."""
    return sorted((p for p in candidate_folders(folder, recursive=recursive)
                   if is_model_folder(p)), key=order_key)


def latest_checkpoint(folder: str | Path, *, recursive: bool = False) -> Path | None:
    """The newest complete model folder under `folder`, or None."""
    found = list_checkpoints(folder, recursive=recursive)
    return found[-1] if found else None
