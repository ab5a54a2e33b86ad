"""The store's crop files: durable JPEG writes, the startup scan, the folder lock and store-id pairing.

Layout: ``<crops_dir>/<shard>/<name>.jpg``, where the shard is two hex digits of the tracklet id's
SHA-256; paths relative to ``crops_dir`` are what the store's ``crops`` table holds.

Durability: a crop goes to a temporary ``.<name>.<random>.part`` file (`persist.durable`), is fsynced,
renamed into place and its folder fsynced *before* the row naming it commits (the store's side); files
are unlinked only *after* their rows are gone. A crash thus never leaves a row pointing at a missing
file, only unreferenced files and ``.part`` leftovers, which `scan_crops_dir` (run by the store's sweep
on every open) finds.
Database and crops folder carry the same store id (``meta`` table, ``.store-id`` file), so a wrong
pairing is refused instead of swept, and an exclusive ``flock`` on ``<crops_dir>/.lock`` (released by
the kernel if the process dies) makes one open store the only owner of the folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from models.errors import CrossviewError, InvalidInputError
from models.types import Crop
from persist.durable import TEMP_SUFFIX, fsync_dir, write_durably
from persist.sqlite import write_transaction

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)


class StoreLockedError(CrossviewError):
    """The crops folder is already owned by another open store."""


class CropsFolderMismatchError(CrossviewError):
    """A database opened with a crops folder that is not its own (the sweep would wreck both)."""


CropLike = bytes | bytearray | memoryview | np.ndarray | Crop

SHARD = re.compile(r"[0-9a-f]{2}")


def to_jpeg(item: CropLike, quality: int) -> bytes:
    """JPEG bytes of `item`: JPEG bytes are checked and kept, BGR images (or `Crop`s) are encoded."""
    if isinstance(item, bytes | bytearray | memoryview):
        blob = bytes(item)
        if not blob.startswith(b"\xff\xd8\xff"):
            raise InvalidInputError(f"crop: expected JPEG bytes (starting FF D8 FF), got {blob[:4]!r}…")
        return blob
    if isinstance(item, Crop):
        item = item.image
    if not isinstance(item, np.ndarray):
        raise InvalidInputError(f"crop: expected JPEG bytes, a BGR image or a Crop, got {type(item).__name__}")
    if item.dtype != np.uint8 or item.ndim not in (2, 3) or (item.ndim == 3 and item.shape[2] not in (1, 3)):
        raise InvalidInputError(f"crop: expected a uint8 (H, W, 3) image, got {item.dtype} {item.shape}")
    if item.shape[0] == 0 or item.shape[1] == 0:
        raise InvalidInputError(f"crop: expected a non-empty image, got shape {item.shape}")
    import cv2

    ok, buf = cv2.imencode(".jpg", item, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    if not ok:
        raise InvalidInputError(f"crop: could not encode image of shape {item.shape} as JPEG")
    return buf.tobytes()


def write_crop_files(crops_dir: Path, tracklet_id: str, blobs: list[bytes]) -> list[tuple[str, int]]:
    """Write each blob durably under a fresh name; returns (path relative to `crops_dir`, size) per blob."""
    digest = hashlib.sha256(tracklet_id.encode()).hexdigest()
    shard = crops_dir / digest[:2]
    if not shard.is_dir():
        shard.mkdir(exist_ok=True)
        fsync_dir(crops_dir)
    token = uuid.uuid4().hex[:12]
    written: list[tuple[str, int]] = []
    try:
        for rank, blob in enumerate(blobs):
            name = f"{digest[:16]}-{token}-{rank}.jpg"
            write_durably(shard / name, blob, sync_dir=False)
            written.append((f"{shard.name}/{name}", len(blob)))
        fsync_dir(shard)
    except BaseException:
        unlink_crops(crops_dir, (rel for rel, _ in written))
        raise
    return written


def unlink_crops(crops_dir: Path, relative_paths: Iterable[str]) -> None:
    """Delete crop files (paths relative to `crops_dir`); a failure is logged and left for the next sweep."""
    for rel in relative_paths:
        try:
            (crops_dir / rel).unlink(missing_ok=True)
        except OSError as exc:  # left for the next sweep
            log.warning("could not delete crop %s: %s", rel, exc)


def scan_crops_dir(crops_dir: Path) -> tuple[set[str], int]:
    """Delete leftover `.part` files; returns the relative paths of the crop files and how many temps went."""
    on_disk: set[str] = set()
    temps = 0
    for shard in sorted(crops_dir.iterdir()):
        if not (shard.is_dir() and SHARD.fullmatch(shard.name)):
            continue
        for entry in shard.iterdir():
            if entry.name.endswith(TEMP_SUFFIX):
                entry.unlink(missing_ok=True)
                temps += 1
            elif entry.name.endswith(".jpg"):
                on_disk.add(f"{shard.name}/{entry.name}")
    return on_disk, temps


def bind_store_id(conn: sqlite3.Connection, crops_dir: Path, db_path: Path) -> None:
    """Tie database and crops folder by an id in both, so a wrong pairing is refused, not swept.

    Needs the store's ``meta`` and ``crops`` tables; call with the store's lock held.
    """
    marker = crops_dir / ".store-id"
    folder_id = marker.read_text().strip() if marker.exists() else None
    row = conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
    if row is None and folder_id is None:  # a new store: the row first, so a crash leaves no foreign marker
        with write_transaction(conn):
            conn.execute("INSERT INTO meta (key, value) VALUES ('store_id', ?)", (uuid.uuid4().hex,))
        row = conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
    has_crops = conn.execute("SELECT 1 FROM crops LIMIT 1").fetchone() is not None
    if row is not None and folder_id is None and not has_crops:
        write_durably(marker, row[0].encode())
    elif row is None or row[0] != folder_id:
        raise CropsFolderMismatchError(
            f"{crops_dir} is not the crops folder of {db_path} (store ids: folder {folder_id}, "
            f"database {row[0] if row else None}); pass the crops_dir this database was created with, "
            f"or delete that folder if its crops are no longer wanted")


def lock_folder(folder: Path) -> int | None:
    """Take an exclusive, non-blocking flock on `<folder>/.lock`; returns the fd to pass to `unlock_folder`."""
    if fcntl is None:  # pragma: no cover - not POSIX: no guard against a second store
        return None
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreLockedError(f"{folder} is in use by another open TrackletStore; close that one first") from None
    return fd


def unlock_folder(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)
