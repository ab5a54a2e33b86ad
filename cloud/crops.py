"""Crop files on the hub: reference photos of identities and the best crop of each sighting.

Layout ``<root>/<kind>/<shard>/<name>.jpg`` (shard: two hex digits of the name's SHA-256); the
store keeps paths relative to `root`. A write goes to a fsynced temporary file renamed into place
(`persist.durable`), so a crash leaves at worst an unreferenced file, never a row naming a half-written
one. A name is
chosen by the caller: a sighting's is derived from its short list's idempotency key, so processing
the same short list twice writes the same file.

People's crops are private: folders 0700 and files 0600 (issue 12); folders an older version left
0755 are narrowed when the hub opens them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import uuid
from pathlib import Path

from models.errors import InvalidInputError
from persist.durable import write_durably

log = logging.getLogger(__name__)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class CropFiles:
    """JPEG files under `root` (created if missing)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            for folder in (self.root, *self.root.glob("*/"), *self.root.glob("*/*/")):
                folder.chmod(0o700)
        except OSError as exc:  # not ours to change (a read-only copy, another owner): say so, still serve
            log.warning("crops folder %s: cannot make it private (0700): %s", self.root, exc.strerror or exc)

    @staticmethod
    def new_name() -> str:
        return uuid.uuid4().hex

    def save(self, kind: str, name: str, jpeg: bytes) -> str:
        """Write `jpeg` as `<kind>/<shard>/<name>.jpg`; the path relative to `root`."""
        for label, value in (("kind", kind), ("name", name)):
            if not _NAME.fullmatch(value):
                raise InvalidInputError(f"crop file {label}: expected [A-Za-z0-9._-]+, got {value!r}")
        if not bytes(jpeg[:2]) == b"\xff\xd8":
            raise InvalidInputError(f"crop file: expected JPEG bytes, got bytes starting {bytes(jpeg[:4]).hex(' ')}")
        shard = hashlib.sha256(name.encode()).hexdigest()[:2]
        relpath = f"{kind}/{shard}/{name}.jpg"
        path = self.root / relpath
        for folder in (self.root / kind, path.parent):
            folder.mkdir(mode=0o700, exist_ok=True)
        write_durably(path, bytes(jpeg))
        os.chmod(path, 0o600)  # written with the umask's mode, but already inside a 0700 folder
        return relpath

    def path(self, relpath: str) -> Path:
        """Absolute path of a stored crop; refuses paths that leave `root`."""
        path = (self.root / relpath).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise InvalidInputError(f"crop path: expected a path inside the crops folder, got {relpath!r}")
        return path

    def read(self, relpath: str) -> bytes:
        return self.path(relpath).read_bytes()

    def delete(self, relpath: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(relpath).unlink()
