"""Durable file writes: a temporary file, fsynced, renamed into place, its folder fsynced.

After `write_durably` returns, the file holds `data` and survives a power cut; a crash before then
leaves the old file (or none) and at worst a ``.<name>.<random>.part`` temporary, never a half-written
file under the final name. A failed write removes its temporary.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

TEMP_SUFFIX = ".part"


def fsync_dir(folder: str | Path) -> None:
    """fsync a folder, so the names created or renamed in it are durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: str | Path, data: bytes, *, sync_dir: bool = True) -> None:
    """Write `data` to `path` via a fsynced temporary renamed over it.

    sync_dir: fsync the folder afterwards; a caller writing several files to one folder may pass
        False and call `fsync_dir` once after the last.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    if sync_dir:
        fsync_dir(path.parent)
