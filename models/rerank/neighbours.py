"""Where the incremental index gets its neighbour lists from, and the code both sources share.

``NeighbourSearch`` is what ``GalleryIndex`` (``incremental.py``) asks of a source of neighbours;
``ExactNeighbours`` answers it by numpy brute force, ``ann.FaissNeighbours`` with a faiss index.
``sort_lists`` turns candidate neighbours into the index's ordered, fixed-width lists for both.
This module imports neither of them: ``incremental`` picks the source, ``ann`` only needs
``sort_lists``, so neither imports the other.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from models.rerank._common import safe_max, stable_topk, unit_distances

_ROW_CELLS = 4_000_000


class NeighbourSearch(Protocol):
    """Where neighbour lists come from. Positions are rows of ``vectors`` (unit float32)."""

    exhaustive: bool  # probe() returns every gallery item (a dense distance row)
    vectors: np.ndarray

    def reset(self, vectors: np.ndarray) -> None: ...
    def add(self, vectors: np.ndarray) -> None: ...
    def remove(self, keep: np.ndarray) -> None: ...
    def lists(self, positions: np.ndarray, width: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...
    def probe(self, x: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, float]: ...
    def pairs(self, new_positions: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


def sort_lists(idx: np.ndarray, raw: np.ndarray, scale: np.ndarray, self_pos: np.ndarray, width: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Candidate neighbours (-1 = none) → lists of ``width`` ordered by (scaled distance, index).

    The item itself is a candidate at distance 0 (first, unless an identical item has a lower
    index, as in a stable argsort of its full row); repeated candidates are dropped.
    """
    idx = np.where(idx == self_pos[:, None], -1, idx)
    idx = np.concatenate([self_pos[:, None], idx], axis=1)
    raw = np.concatenate([np.zeros((len(idx), 1)), raw], axis=1).astype(np.float64)
    key = np.where(idx >= 0, raw / scale[:, None], np.inf)
    order = np.lexsort((np.where(idx >= 0, idx, np.iinfo(np.int64).max), key), axis=1)
    idx, raw = np.take_along_axis(idx, order, 1), np.take_along_axis(raw, order, 1)
    earlier = np.tril(np.ones((idx.shape[1], idx.shape[1]), bool), -1)
    repeat = ((idx[:, :, None] == idx[:, None, :]) & earlier).any(axis=2) & (idx >= 0)
    idx, raw = np.where(repeat, -1, idx), np.where(repeat, np.inf, raw)
    order = np.argsort(idx < 0, axis=1, kind="stable")
    idx, raw = np.take_along_axis(idx, order, 1)[:, :width], np.take_along_axis(raw, order, 1)[:, :width]
    pad = width - idx.shape[1]
    if pad > 0:
        idx = np.pad(idx, ((0, 0), (0, pad)), constant_values=-1)
        raw = np.pad(raw, ((0, 0), (0, pad)), constant_values=np.inf)
    return idx, np.where(idx >= 0, raw, np.inf)


class ExactNeighbours:
    """Brute-force neighbours in numpy: exact, O(G·d) per distance row, rows in chunks."""

    exhaustive = True

    def __init__(self) -> None:
        self.vectors = np.zeros((0, 0), np.float32)

    def reset(self, vectors: np.ndarray) -> None:
        self.vectors = vectors

    def add(self, vectors: np.ndarray) -> None:
        self.vectors = np.concatenate([self.vectors, vectors])

    def remove(self, keep: np.ndarray) -> None:
        self.vectors = self.vectors[keep]

    def lists(self, positions: np.ndarray, width: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Lists (P, width), raw distances (P, width), scale (P,) and farthest item (P,)."""
        n = len(self.vectors)
        idx = np.full((len(positions), width), -1, np.int64)
        raw = np.full((len(positions), width), np.inf)
        scale, far = np.empty(len(positions)), np.empty(len(positions), np.int64)
        step = max(1, _ROW_CELLS // max(n, 1))
        for start in range(0, len(positions), step):
            p = positions[start : start + step]
            d = unit_distances(self.vectors[p], self.vectors).astype(np.float64)
            d[np.arange(len(p)), p] = 0.0
            s = safe_max(d, axis=1)
            top = stable_topk(d / s[:, None], min(width, n))
            rows = slice(start, start + len(p))
            idx[rows, : top.shape[1]] = top
            raw[rows, : top.shape[1]] = np.take_along_axis(d, top, 1)
            scale[rows], far[rows] = s, d.argmax(axis=1)
        return idx, raw, scale, far

    def probe(self, x: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, float]:
        d = unit_distances(x[None], self.vectors)[0].astype(np.float64)
        return np.arange(len(d)), d, float(safe_max(d))

    def pairs(self, new_positions: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        old = int(new_positions[0])
        d = unit_distances(self.vectors[:old], self.vectors[new_positions]).astype(np.float64)
        rows, cols = np.divmod(np.arange(d.size), d.shape[1])
        return rows, new_positions[cols], d.ravel()
