"""Durable file writes: fsync before and after a rename, and one-line errors for failed writes.

    from youtu import fsutil
    fsutil.atomic_write(path, data)            # temp file, fsync, rename, fsync of the folder
    fsutil.fsync_tree(folder); fsutil.replace(folder, final)    # a whole folder, renamed into place
    raise fsutil.WriteFailed.of(folder, needed_bytes=..., error=e)   # disk full / permission / EIO

A rename is atomic but not durable by itself: after a power cut the new name can point at a file
whose data never reached the disk (ext4 `data=ordered` mostly saves you, XFS and many network
filesystems do not), and the rename itself lives in the parent folder's metadata, which needs its
own fsync. So: fsync the file(s), rename, fsync the parent folder (what SQLite and LevelDB do).

The bottom layer: imports nothing of ours, so data/, agentic/ and train/ all write through it.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

_MB = 1024 * 1024


def fsync_file(path: str | Path) -> None:
    """Flush one file's data and metadata to the disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (names created, renamed or removed in it) to the disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: str | Path) -> None:
    """fsync every file under `folder`, then every folder (deepest first), then `folder`."""
    folder = Path(folder)
    dirs = []
    for root, subdirs, files in os.walk(folder):
        for name in files:
            fsync_file(Path(root) / name)
        dirs += [Path(root) / d for d in subdirs]
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(d)
    fsync_dir(folder)


def replace(src: str | Path, dst: str | Path) -> None:
    """Rename `src` to `dst` (replacing a file `dst`) and fsync the folder(s) holding them; the
    caller has fsynced `src`'s contents already."""
    src, dst = Path(src), Path(dst)
    os.replace(src, dst)
    fsync_dir(dst.parent)
    if src.parent.resolve() != dst.parent.resolve():
        fsync_dir(src.parent)


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one, never a
    part: write `<path>.tmp`, fsync it, rename it over `path`, fsync the folder. A failed write
    removes the temp file and raises `WriteFailed`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    raw = data.encode() if isinstance(data, str) else data
    try:
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WriteFailed.of(path.parent, needed_bytes=len(raw), error=e) from e


def tree_bytes(folder: str | Path) -> int:
    """Bytes of all files under `folder` (0 when it does not exist)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def free_bytes(folder: str | Path) -> int:
    """Bytes free for this user on the filesystem holding `folder` (or its nearest parent)."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


_SHORT_WRITE = ("No space left", "StorageFull", "file write failed", "unexpected pos",
                "Disk quota")
"""How torch.save (RuntimeError) and safetensors (SafetensorError) word a failed write."""


def is_write_error(error: BaseException) -> bool:
    """True when `error` is a failed write (OSError, or a library's short-write error) rather
    than a bug."""
    return isinstance(error, OSError) or any(s in str(error) for s in _SHORT_WRITE)


def _mb(n: int) -> str:
    return f"{n / _MB:.1f} MB"


class WriteFailed(OSError):
    """A write into a folder failed (disk full, quota, permissions, I/O error). The message is one
    line naming the folder, what the write needed and the fix; the partial output is removed by
    the code that raises it."""

    @classmethod
    def of(cls, folder: str | Path, *, needed_bytes: int, error: BaseException,
           what: str = "write", removed: str | Path | None = None) -> WriteFailed:
        """The error for a failed write of about `needed_bytes` into `folder`.

        Args:
            folder: where the write went.
            needed_bytes: what the write needs (an estimate is fine).
            error: the exception the write raised.
            what: what was being written ("checkpoint step_00000120", "shard code/3").
            removed: the partial output that was removed, named in the message.
        """
        free = free_bytes(folder)
        code = getattr(error, "errno", None)
        full = code in (errno.ENOSPC, errno.EDQUOT) or free < needed_bytes or (
            not isinstance(error, OSError) and is_write_error(error))
        tail = f" (removed the partial {removed})" if removed else ""
        if full:
            msg = (f"no space left in {folder} for the {what}: it needs about "
                   f"{_mb(needed_bytes)} and {_mb(free)} are free; free space there or point "
                   f"the output at a larger disk{tail}")
            code = code or errno.ENOSPC
        else:
            reason = getattr(error, "strerror", None) or str(error).splitlines()[0]
            msg = (f"the {what} in {folder} failed: {reason}; check that the folder is "
                   f"writable and its disk healthy, or point the output elsewhere{tail}")
            code = code or errno.EIO
        return cls(code, msg)

    def __str__(self) -> str:
        return self.strerror or super().__str__()
