"""Large-gallery mode: neighbour lists from a faiss index (1e5–1e6 vectors).

Use it through ``GalleryIndex(neighbours="faiss", factory=..., ...)``; the re-ranking logic is the
one of ``incremental.py``, only the source of neighbours changes. faiss is an optional runtime:
``pip install 'crossview[ann]'``.

What changes against the exact (numpy) mode, on top of the approximation that the incremental
index already documents:

- neighbour lists are the ANN index's (approximate for HNSW / IVF, exact for ``"Flat"``);
- an item's distance scale (its largest distance) is found by an ANN search for the nearest
  neighbour of −x: for unit vectors the largest 2 − 2·x·g is at the smallest x·g, the largest
  (−x)·g. Exact for ``"Flat"``, an underestimate otherwise; it only softens the exp(−d) weights;
- a query is tested for insertion into the lists of its ``candidates`` ANN neighbours only, and
  a new item into those of its ``candidates`` neighbours (a farther item that would have it among
  its k1+1 nearest is missed); scales of gallery items are not raised by a query or a new item
  outside those candidates;
- ``query(..., top_k=k)`` ranks the union of the query's ANN candidates and the items whose
  Jaccard distance is below 1; every other item has Jaccard distance 1 and an original distance
  larger than the candidates', so it cannot rank higher. ``top_k=None`` computes a full row.

Removal never touches the faiss index (HNSW cannot delete): removed items are masked out of
search results and the index is rebuilt once half of its entries are removed.
"""

from __future__ import annotations

import numpy as np

from models.errors import InvalidInputError, require
from models.rerank._common import safe_max
from models.rerank.neighbours import sort_lists

_SEARCH_ROWS = 4096


class FaissNeighbours:
    """Neighbour search backed by a faiss inner-product index over unit vectors.

    Args:
        factory: faiss index factory string: ``"HNSW32"`` (default), ``"Flat"`` (exact),
            ``"IVF1024,Flat"`` (needs at least ~40 vectors per list to train) …
        ef_search: HNSW search depth.
        nprobe: IVF lists visited per search.
    """

    exhaustive = False

    def __init__(self, factory: str = "HNSW32", ef_search: int = 128, nprobe: int = 16) -> None:
        self._faiss = require("faiss")
        self.factory, self.ef_search, self.nprobe = factory, int(ef_search), int(nprobe)
        self.vectors = np.zeros((0, 0), np.float32)
        self._index = None
        self._pos_of_serial = np.zeros(0, np.int64)  # faiss id -> position, -1 once removed

    def _build(self, vectors: np.ndarray) -> None:
        faiss = self._faiss
        try:
            index = faiss.index_factory(vectors.shape[1], self.factory, faiss.METRIC_INNER_PRODUCT)
            if not index.is_trained:
                index.train(vectors)
        except RuntimeError as exc:
            raise InvalidInputError(f"faiss index {self.factory!r} cannot be built on "
                                    f"{len(vectors)} vectors: {str(exc).splitlines()[0]}") from exc
        if hasattr(index, "hnsw"):
            index.hnsw.efSearch = self.ef_search
        if hasattr(index, "nprobe"):
            index.nprobe = self.nprobe
        index.add(np.ascontiguousarray(vectors))
        self._index = index
        self._pos_of_serial = np.arange(len(vectors), dtype=np.int64)

    def reset(self, vectors: np.ndarray) -> None:
        self.vectors = vectors
        if len(vectors):
            self._build(vectors)
        else:
            self._index, self._pos_of_serial = None, np.zeros(0, np.int64)

    def add(self, vectors: np.ndarray) -> None:
        start = len(self.vectors)
        self.vectors = np.concatenate([self.vectors, vectors])
        self._index.add(np.ascontiguousarray(vectors))
        self._pos_of_serial = np.concatenate([self._pos_of_serial, np.arange(start, len(self.vectors))])

    def remove(self, keep: np.ndarray) -> None:
        self.vectors = self.vectors[keep]
        new_pos = np.cumsum(keep) - 1
        live = self._pos_of_serial >= 0
        mapped = np.full_like(self._pos_of_serial, -1)
        alive_now = live.copy()
        alive_now[live] = keep[self._pos_of_serial[live]]
        mapped[alive_now] = new_pos[self._pos_of_serial[alive_now]]
        self._pos_of_serial = mapped
        if len(self.vectors) and 2 * len(self.vectors) < len(mapped):
            self._build(self.vectors)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(B, k) positions (-1 padded) and inner products, skipping removed items."""
        n_dead = int((self._pos_of_serial < 0).sum())
        fetch = min(k + min(n_dead, 2 * k), self._index.ntotal)
        scores, serials = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), fetch)
        pos = np.where(serials >= 0, self._pos_of_serial[np.maximum(serials, 0)], -1)
        order = np.argsort(pos < 0, axis=1, kind="stable")[:, :k]
        pos, scores = np.take_along_axis(pos, order, 1), np.take_along_axis(scores, order, 1)
        if pos.shape[1] < k:
            pad = k - pos.shape[1]
            pos = np.pad(pos, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)))
        return pos, scores.astype(np.float64)

    def _scale(self, queries: np.ndarray, nearest_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Largest distance from each query: nearest neighbour of −x (never below the list's)."""
        pos, scores = self._search(-queries, 1)
        far = np.where(pos[:, 0] >= 0, 2.0 + 2.0 * scores[:, 0], 0.0)
        listed = np.where(np.isfinite(nearest_raw), nearest_raw, 0.0).max(axis=1)
        return safe_max(np.stack([far, listed], axis=1), axis=1), pos[:, 0]

    def lists(self, positions: np.ndarray, width: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Lists (P, width), raw distances, scale (P,) and farthest item (P,) of gallery items."""
        idx = np.empty((len(positions), width), np.int64)
        raw = np.empty((len(positions), width))
        scale, far = np.empty(len(positions)), np.empty(len(positions), np.int64)
        for start in range(0, len(positions), _SEARCH_ROWS):
            p = positions[start : start + _SEARCH_ROWS]
            x = self.vectors[p]
            pos, scores = self._search(x, width + 1)
            d = np.where(pos >= 0, np.maximum(2.0 - 2.0 * scores, 0.0), np.inf)
            s, f = self._scale(x, d)
            rows = slice(start, start + len(p))
            idx[rows], raw[rows] = sort_lists(pos, d, s, p, width)
            scale[rows], far[rows] = s, np.where(f >= 0, f, p)
        return idx, raw, scale, far

    def probe(self, x: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, float]:
        """The query's m nearest (positions, raw distances) and its distance scale."""
        pos, scores = self._search(x[None], min(m, len(self.vectors)))
        valid = pos[0] >= 0
        raw = np.maximum(2.0 - 2.0 * scores[0, valid], 0.0)
        scale, _ = self._scale(x[None], raw[None])
        return pos[0, valid], raw, float(scale[0])

    def pairs(self, new_positions: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(existing item, new item, raw distance) for each new item's m nearest existing items."""
        pos, scores = self._search(self.vectors[new_positions], min(m, len(self.vectors)))
        old = (pos >= 0) & (pos < new_positions[0])
        rows = pos[old]
        cols = np.broadcast_to(new_positions[:, None], pos.shape)[old]
        return rows, cols, np.maximum(2.0 - 2.0 * scores[old], 0.0)
