"""The run folder: one run at a time in it (a lock), and the checkpoint a run resumes from.

    runfolder.lock(out_dir, dist)           # rank 0 takes <out_dir>/.lock; ConfigError if held
    path = runfolder.resume_from(out_dir, resume=cfg.resume, dist=dist)   # None = fresh start
    runfolder.unlock(out_dir, dist)

The lock is an advisory `fcntl.flock` on `<out_dir>/.lock`, held while the command runs, with
the holder's host, pid, command and start time written inside. The kernel drops it when the
holder exits, however it exits (kill -9 included): a lock file that still names a holder but
is not locked was left by a process that died, and is taken over with a log line. A live
holder (on this host or another one sharing the folder over NFS, where flock is a lock on the
server) makes the second run stop with an error naming it, before it writes anything. Under
torchrun rank 0 holds the one lock of the run and tells the other ranks the outcome.

Resume: the newest checkpoint (youtu.model.checkpoints' order) that is complete *and* loads
(`checkpoint.check_loadable`); each one skipped is logged with the reason. Checkpoints that
exist but none of which loads are an error naming the fix, never a silent restart from step 0.
`resume=false` in a folder that already holds checkpoints is refused: a second run there would
interleave its checkpoints and metrics with the first's, and keep-last pruning (which ranks by
step) would delete the newer run's checkpoints.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from youtu.errors import ConfigError
from youtu.model.checkpoints import MARKER, candidate_folders, order_key
from youtu.train import checkpoint as ckpt
from youtu.train.parallel import Dist

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"

_held: dict[Path, list[int]] = {}
"""Locked folder -> [fd, depth]: a process that locks a folder it holds already (`youtu run`
calling train twice, tests) nests instead of locking itself out (flock locks are per open file,
so a second open + flock in the same process would conflict with the first)."""


def _holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "command": " ".join(sys.orig_argv),
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}


def _describe(info: dict) -> str:
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')} (`{info.get('command', '?')}`, "
            f"started {info.get('started', '?')})")


def _read_info(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 65536):
        raw += chunk
    try:
        info = json.loads(raw)
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def _acquire(folder: Path) -> None:
    key = folder.resolve()
    if key in _held:
        _held[key][1] += 1
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    # O_CLOEXEC: a subprocess the run starts (a sandbox, a tokenizer worker) must not keep the
    # lock alive after the run itself died.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        info = _read_info(fd) or {}
        os.close(fd)
        raise ConfigError(
            f"{folder} is in use by another run: {_describe(info)}; wait for it to finish or "
            f"stop it, or give this run its own folder (--name or --out_dir)") from None
    stale = _read_info(fd)
    if stale:
        elsewhere = stale.get("host") != socket.gethostname()
        logger.warning("taking over the lock of %s: %s is not running any more (it held %s)%s",
                       folder, _describe(stale), path,
                       "; if it still runs on that host, this filesystem does not share flock "
                       "locks between hosts" if elsewhere else "")
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(_holder()) + "\n").encode(), 0)
    _held[key] = [fd, 1]


def lock(folder: str | Path, dist: Dist) -> None:
    """Take the run folder's lock for this process (rank 0 under torchrun; collective).

    Raises:
        ConfigError: on every rank, when another live process holds it (the message names it).
    """
    folder = Path(folder)
    error = None
    if dist.is_main:
        try:
            _acquire(folder)
        except ConfigError as e:
            error = str(e)
    error = dist.broadcast_object(error)
    if error is not None:
        raise ConfigError(error)


def unlock(folder: str | Path, dist: Dist) -> None:
    """Release what `lock` took (a no-op where it took nothing). The file stays, emptied: a
    file that still names a holder means that holder died."""
    key = Path(folder).resolve()
    if not dist.is_main or key not in _held:
        return
    entry = _held[key]
    entry[1] -= 1
    if entry[1] == 0:
        del _held[key]
        os.ftruncate(entry[0], 0)
        os.close(entry[0])  # releases the flock


# ---- resume ------------------------------------------------------------------------------------


def _checkpoint_like(folder: Path) -> list[Path]:
    """Folders under `folder` a run wrote as checkpoints, complete or damaged, newest first."""
    found = [p for p in candidate_folders(folder) if any(
        (p / name).exists() for name in (MARKER, ckpt.STATE_FILE, "config.json"))]
    return sorted(found, key=order_key, reverse=True)


def _choose(folder: Path, resume: bool, setting: str) -> Path | None:
    found = _checkpoint_like(folder)
    if not found:
        return None
    names = ", ".join(p.name for p in found[:4]) + (" ..." if len(found) > 4 else "")
    if not resume:
        raise ConfigError(
            f"{setting}=false, but {folder} holds checkpoints of an earlier run ({names}): a "
            "fresh run there would mix its checkpoints and metrics with them, and pruning would "
            f"delete some; give the fresh run its own folder (--name or --out_dir), move the old "
            f"checkpoints away, or drop {setting}=false to continue them")
    skipped = []
    for path in found:
        reason = ckpt.check_loadable(path)
        if reason is None:
            if skipped:
                logger.warning("resuming from %s, the newest checkpoint that loads", path)
            return path
        logger.warning("resume: skipping checkpoint %s: %s", path, reason)
        skipped.append(f"{path.name} ({reason})")
    section = setting.split(".")[0]
    weights = (f"--{section}.init=<folder>" + (" --train.init_weights_only=true"
                                                if section == "train" else ""))
    raise ConfigError(
        f"{folder} holds checkpoints but none can be resumed from: {'; '.join(skipped)}. "
        f"Restore or remove the damaged folder(s), start from one's weights with {weights}, "
        "or start fresh in another folder (--name or --out_dir)")


def resume_from(folder: str | Path, *, resume: bool, dist: Dist,
                setting: str = "train.resume") -> Path | None:
    """The checkpoint under `folder` to resume from (rank 0 decides, every rank gets it).

    Args:
        folder: the run's checkpoint folder.
        resume: the `resume` setting; False refuses a folder that holds checkpoints.
        dist: process placement.
        setting: the config key named in errors (`train.resume`, `sft.resume`).

    Returns:
        The newest complete, loadable checkpoint, or None when the folder holds none at all.

    Raises:
        ConfigError: checkpoints exist but none loads, or `resume` is False and some exist.
    """
    choice: Path | str | None = None
    if dist.is_main:
        try:
            choice = _choose(Path(folder), resume, setting)
        except ConfigError as e:
            choice = f"error:{e}"
    choice = dist.broadcast_object(choice)
    if isinstance(choice, str):
        raise ConfigError(choice.removeprefix("error:"))
    return choice
