"""Embeddings of evaluation images, kept so each image is embedded once per model.

In memory always; on disk too when a folder is given (one ``.npz`` per model and runtime, keyed by
each image's absolute path, size and modification time, so an edited image is embedded again).
The file name carries the model's fingerprint: new weights never reuse old vectors.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.errors import InvalidInputError


def file_key(path: Path) -> str:
    """Identity of an image file's content as far as the cache is concerned."""
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


class EmbeddingCache:
    """(model, image file) → unit vector. ``directory=None`` keeps everything in memory only."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else None
        self._vectors: dict[str, dict[str, np.ndarray]] = {}
        self._dirty: set[str] = set()

    def _file(self, slot: str) -> Path:
        assert self.directory is not None
        return self.directory / (re.sub(r"[^A-Za-z0-9._@-]+", "_", slot) + ".npz")

    def _table(self, slot: str) -> dict[str, np.ndarray]:
        if slot not in self._vectors:
            table: dict[str, np.ndarray] = {}
            if self.directory is not None and self._file(slot).is_file():
                with np.load(self._file(slot), allow_pickle=False) as data:
                    table = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))
            self._vectors[slot] = table
        return self._vectors[slot]

    def missing(self, slot: str, keys: Sequence[str]) -> list[int]:
        """Indices of `keys` that have no vector yet."""
        table = self._table(slot)
        return [i for i, key in enumerate(keys) if key not in table]

    def put(self, slot: str, keys: Sequence[str], vectors: np.ndarray) -> None:
        if vectors.ndim != 2 or len(vectors) != len(keys):
            raise InvalidInputError(f"vectors: expected shape ({len(keys)}, D), got {vectors.shape}")
        table = self._table(slot)
        if table:
            dim = len(next(iter(table.values())))
            if vectors.shape[1] != dim:
                raise InvalidInputError(f"vectors: expected dimension {dim} for {slot}, got {vectors.shape[1]}")
        for key, vector in zip(keys, vectors, strict=True):
            table[key] = np.asarray(vector, np.float32)
        self._dirty.add(slot)

    def get(self, slot: str, keys: Sequence[str]) -> np.ndarray:
        """(N, D) float32 vectors for `keys`, all of which must be present."""
        table = self._table(slot)
        return np.stack([table[key] for key in keys]).astype(np.float32, copy=False)

    def save(self) -> None:
        """Write changed tables to the folder (atomically); a no-op for a memory-only cache."""
        if self.directory is None:
            self._dirty.clear()
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        for slot in sorted(self._dirty):
            table = self._vectors[slot]
            keys = np.array(list(table), dtype=str)
            vectors = np.stack(list(table.values())).astype(np.float32)
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".npz.tmp")
            os.close(fd)
            with open(tmp, "wb") as fh:
                np.savez(fh, keys=keys, vectors=vectors)
            os.replace(tmp, self._file(slot))
        self._dirty.clear()
