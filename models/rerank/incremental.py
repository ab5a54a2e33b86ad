"""Incremental k-reciprocal re-ranking for the edge: gallery work once, per query a distance row.

``GalleryIndex`` keeps everything of the algorithm that depends on the gallery alone, computed
when the gallery changes: the neighbour lists (k1+1 nearest, with their distances), the distance
scale of every item (its largest distance), the k1- and k1/2-reciprocal masks, the expanded and
exp(-d)-weighted vectors V, the query-expanded vectors (mean of V over the k2 nearest), their
inverted lists (for the Jaccard) and the reverse k2-lists. All are sparse: memory is
O(G·k1·k2), never G×G.

A query is evaluated as if it were added to the gallery: it is inserted into the neighbour lists
of the gallery items that would have it among their nearest, and only the rows that this change
reaches through the algorithm's dependency chain are recomputed, in a throw-away overlay (see
``_local.py``). The cost is one distance row (exact mode) or one ANN search (faiss mode), a
vectorised O(G) comparison of that row with the stored list radii, and work proportional to the
rows reached, typically tens to a hundred rows of k1·k1/2 entries each.

Approximation versus ``exact.k_reciprocal_exact`` called with this query alone (Q = 1) — the
result is equal up to float rounding (tested ≤ 1e-5) except:

- distance scale: where the query is farther from a gallery item than all of the gallery, exact
  divides that item's row by its distance to the query. The index does so too for up to
  ``rescale_limit`` such items; past that (and always in faiss mode) the gallery's own scales are
  kept. Such items are far from the query, so their vectors rarely meet the query's;
- several queries are re-ranked independently, each as the only query; ``exact`` re-ranks a
  batch of queries jointly, so queries there become each other's neighbours;
- in faiss mode, additionally, neighbour lists and distance scales come from the ANN index and
  only the query's ANN candidates are tested for insertion into gallery lists (see ``ann.py``).

Everything else is exact: the query entering the gallery items' neighbour lists, reciprocal
sets, expanded sets and query expansion, and the items it pushes off their lists. Ties between
equal distances go to the query, as in ``exact`` where queries come first.

``add`` and ``remove`` use the same local recomputation, but permanently and with the scale
change included: in exact mode the index after ``add``/``remove`` equals one built from scratch
on the new gallery (tested). They recompute: neighbour lists of the new items (one distance row
each) and of the items that had a removed item in their list (one distance row each); the
distance scale of items whose farthest item was removed or that found a farther new item; the
rows the dependency chain reaches from those changes. Then the sparse arrays are re-packed and
the inverted lists rebuilt, O(nnz) — call them with batches rather than single items.
"""

from __future__ import annotations

from typing import overload

import numpy as np

from models.errors import InvalidInputError
from models.rerank._common import check_params, check_vectors, stable_topk, unit_pair_distances
from models.rerank._kernels import Patched, sum_min, sum_min_rows, take_csr
from models.rerank._local import Structures, build, commit, propagate
from models.rerank.neighbours import ExactNeighbours, NeighbourSearch, sort_lists


def _backend(name: str, options: dict) -> NeighbourSearch:
    if name == "exact":
        if options:
            raise InvalidInputError(f"neighbours='exact' takes no options, got {sorted(options)}")
        return ExactNeighbours()
    if name == "faiss":
        from models.rerank.ann import FaissNeighbours

        return FaissNeighbours(**options)
    raise InvalidInputError(f"neighbours: expected 'exact' or 'faiss', got {name!r}")


class GalleryIndex:
    """A gallery ready for k-reciprocal re-ranking of new queries; see the module docstring.

    Args:
        k1, k2, lambda_value: the paper's parameters (k clipped to the gallery size).
        neighbours: ``"exact"`` (numpy brute force) or ``"faiss"`` (ANN, large galleries).
        candidates: faiss mode: how many ANN neighbours of a query are examined.
        **options: passed to the faiss backend (e.g. ``factory="HNSW32"``, ``ef_search=128``).
    """

    def __init__(self, k1: int = 20, k2: int = 6, lambda_value: float = 0.3, neighbours: str = "exact",
                 candidates: int = 128, rescale_limit: int = 256, **options: object) -> None:
        check_params(k1, k2, lambda_value)
        self.k1, self.k2, self.lambda_value = int(k1), int(k2), float(lambda_value)
        self.width = max(self.k1 + 1, self.k2)
        self.candidates = max(int(candidates), self.width)
        self.rescale_limit = int(rescale_limit)
        self.neighbours = neighbours
        self._search = _backend(neighbours, options)
        self._ids = np.zeros(0, np.int64)
        self._slot: dict[int, int] = {}
        self._dim: int | None = None
        self._st: Structures | None = None

    @property
    def size(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> np.ndarray:
        """(G,) int64 gallery ids, in the column order of ``query(..., top_k=None)``."""
        return self._ids.copy()

    def nbytes(self) -> int:
        """Bytes held by the gallery structures and vectors (not the faiss index)."""
        return (self._st.nbytes() if self._st else 0) + self._search.vectors.nbytes

    def _vectors(self) -> np.ndarray:
        return self._search.vectors

    def cosine_distances(self, vector: np.ndarray) -> np.ndarray:
        """(G,) float32 plain cosine distances ``1 - cos`` of one query to the gallery, columns in the
        order of ``ids``: what a P(same) calibration reads (re-ranked distances are relative)."""
        if self._st is None:
            raise InvalidInputError("gallery is empty: add items before querying")
        x = check_vectors(vector, self._dim)
        return np.clip(1.0 - self._vectors() @ x[0], 0.0, 2.0).astype(np.float32)

    def _check_ids(self, ids: np.ndarray | list[int], n: int) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 1 or len(ids) != n or not np.issubdtype(ids.dtype, np.integer):
            raise InvalidInputError(f"ids: expected {n} integers, got shape {ids.shape} dtype {ids.dtype}")
        return ids.astype(np.int64)

    def add(self, ids: np.ndarray | list[int], vectors: np.ndarray) -> None:
        """Add gallery items: ids (B,) int, vectors (B, d) (L2-normalised here)."""
        x = check_vectors(vectors, self._dim)
        ids = self._check_ids(ids, len(x))
        if len(np.unique(ids)) != len(ids) or any(int(i) in self._slot for i in ids):
            raise InvalidInputError("ids: expected ids not already in the gallery and not repeated")
        if len(x) == 0:
            return
        self._dim = x.shape[1]
        if self._st is None:
            self._search.reset(x)
            self._set_ids(ids)
            self.rebuild()
            return
        st, g0, n = self._st, self.size, self.size + len(x)
        self._search.add(x)
        new = np.arange(g0, n)
        idx, raw, scale_new, far_new = self._search.lists(new, self.width)
        rows, cols, d = self._search.pairs(new, self.candidates)
        scale, far = np.concatenate([st.scale, scale_new]), np.concatenate([st.far, far_new])
        order = np.argsort(d, kind="stable")  # ascending: the last write per row is its maximum
        farther = order[d[order] > st.scale[rows[order]]]
        scale[rows[farther]], far[rows[farther]] = d[farther], cols[farther]
        rescaled = np.unique(rows[farther])
        within = d <= st.raw[rows, -1]
        merged, merged_raw, changed = self._merge(st, rows[within], cols[within], d[within], scale)
        items = np.concatenate([changed, new])
        lists, raws = np.concatenate([merged, idx]), np.concatenate([merged_raw, raw])
        local = propagate(st, items, lists, self.k1, self.k2, self._pair_fn(scale), n, rescaled)
        self._st = commit(st, local, Patched(st.raw, items, raws), scale, far, None, n, self.k2)
        self._set_ids(np.concatenate([self._ids, ids]))

    def _merge(self, st: Structures, rows: np.ndarray, cols: np.ndarray, d: np.ndarray, scale: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """New lists of the rows that gain (some of) the new items ``cols`` at distances ``d``."""
        changed, slot = np.unique(rows, return_inverse=True)
        if len(changed) == 0:
            return np.zeros((0, self.width), np.int64), np.zeros((0, self.width)), changed
        order = np.argsort(slot, kind="stable")
        rank = np.empty(len(rows), np.int64)
        rank[order] = np.arange(len(rows)) - np.searchsorted(slot[order], slot[order])
        extra = int(rank.max()) + 1
        cand = np.full((len(changed), extra), -1, np.int64)
        cand_raw = np.full((len(changed), extra), np.inf)
        cand[slot, rank], cand_raw[slot, rank] = cols, d
        idx = np.concatenate([st.lists[changed], cand], axis=1)
        raw = np.concatenate([st.raw[changed], cand_raw], axis=1)
        merged, merged_raw = sort_lists(idx, raw, scale[changed], changed, self.width)
        return merged, merged_raw, changed

    def remove(self, ids: np.ndarray | list[int]) -> None:
        """Remove gallery items by id; unknown ids are an error."""
        ids = self._check_ids(np.atleast_1d(np.asarray(ids)), len(np.atleast_1d(ids)))
        missing = [int(i) for i in ids if int(i) not in self._slot]
        if missing:
            raise InvalidInputError(f"ids: not in the gallery: {missing[:5]}")
        st, g = self._st, self.size
        keep = np.ones(g, bool)
        keep[[self._slot[int(i)] for i in ids]] = False
        if not keep.any():
            self._search.reset(np.zeros((0, self._dim or 0), np.float32))
            self._set_ids(np.zeros(0, np.int64))
            self._st = None
            return
        dead = ~keep
        old_vectors = self._vectors()
        relist = keep & (np.where(st.lists >= 0, dead[np.maximum(st.lists, 0)], False)).any(axis=1)
        redo = np.flatnonzero(relist | (keep & dead[st.far]))
        self._search.remove(keep)
        old_of_new = np.flatnonzero(keep)
        idx, raw, scale_r, far_r = self._search.lists(np.cumsum(keep)[redo] - 1, self.width)
        idx = np.where(idx >= 0, old_of_new[np.maximum(idx, 0)], -1)
        scale, far = st.scale.copy(), st.far.copy()
        scale[redo], far[redo] = scale_r, old_of_new[far_r]
        rescaled = redo[scale_r != st.scale[redo]]
        patch = relist[redo]
        items, lists, raws = redo[patch], idx[patch], raw[patch]
        pair = self._pair_fn(scale, old_vectors)
        local = propagate(st, items, lists, self.k1, self.k2, pair, g, rescaled, dead)
        self._st = commit(st, local, Patched(st.raw, items, raws), scale, far, keep, g, self.k2)
        self._set_ids(self._ids[keep])

    def rebuild(self) -> None:
        """Recompute every gallery structure from the vectors."""
        n = self.size
        idx, raw, scale, far = self._search.lists(np.arange(n), self.width)
        self._st = build(idx, raw, scale, far, self.k1, self.k2, self._pair_fn(scale))

    def _set_ids(self, ids: np.ndarray) -> None:
        self._ids = ids
        self._slot = {int(i): s for s, i in enumerate(ids)}

    def _pair_fn(self, scale: np.ndarray, vectors: np.ndarray | None = None,
                 query: np.ndarray | None = None):
        """Scaled distance of (row, member) pairs; item number G is ``query`` when given."""
        table = vectors if vectors is not None else self._vectors()
        last = len(table) - 1

        def take(items: np.ndarray) -> np.ndarray:
            out = table[np.minimum(items, last)]
            if query is not None:
                out[items > last] = query
            return out

        def scaled_distance(rows: np.ndarray, members: np.ndarray) -> np.ndarray:
            return unit_pair_distances(take(rows), take(members)) / scale[rows]

        return scaled_distance

    @overload
    def query(self, vectors: np.ndarray, top_k: None = None) -> np.ndarray: ...
    @overload
    def query(self, vectors: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def query(self, vectors: np.ndarray, top_k: int | None = None):
        """Re-ranked distances of queries to the gallery.

        Args:
            vectors: (Q, d) or (d,) query embeddings (L2-normalised here).
            top_k: None for all distances, else the number of best matches (clipped to G).

        Returns:
            top_k None: (Q, G) float32 distances, columns in the order of ``ids``.
            Otherwise: ids (Q, k) int64 and distances (Q, k) float32, best first.
        """
        if self._st is None:
            raise InvalidInputError("gallery is empty: add items before querying")
        x = check_vectors(vectors, self._dim)
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int | np.integer)
                                  or top_k < 1):
            raise InvalidInputError(f"top_k: expected None or an integer >= 1, got {top_k!r}")
        g = self.size
        k = None if top_k is None else min(int(top_k), g)
        dense = np.empty((len(x), g), np.float32) if k is None else None
        top_ids, top_dist = np.empty((len(x), k or 0), np.int64), np.empty((len(x), k or 0), np.float32)
        for i, q in enumerate(x):
            rows, dist = self._query_one(q, dense=k is None)
            if dense is not None:
                dense[i] = dist
            else:
                best = stable_topk(dist[None], k)[0]
                top_ids[i], top_dist[i] = self._ids[rows[best]], dist[best]
        return dense if dense is not None else (top_ids, top_dist)

    def _query_one(self, x: np.ndarray, dense: bool) -> tuple[np.ndarray, np.ndarray]:
        """(sorted gallery rows, their re-ranked distances); every row when ``dense``."""
        st, g, w = self._st, self.size, self.width
        virtual = g
        cand, raw, scale_q = self._search.probe(x, self.candidates)
        top = stable_topk((raw / scale_q)[None], min(w - 1, len(cand)))[0]
        q_list = np.full((1, w), -1, np.int64)
        q_list[0, 0] = virtual
        q_list[0, 1 : 1 + len(top)] = cand[top]

        inside = raw <= st.raw[cand, -1]
        rows, d = cand[inside], raw[inside]
        order = np.argsort(rows)
        rows, d = rows[order], d[order]
        pos = (st.raw[rows] / st.scale[rows, None] < (d / st.scale[rows])[:, None]).sum(axis=1)
        grown = np.concatenate([st.lists[rows], np.full((len(rows), 1), -1)], axis=1)
        cols = np.arange(w + 1)[None, :]
        shifted = np.concatenate([np.full((len(rows), 1), -1), st.lists[rows]], axis=1)
        new_rows = np.where(cols < pos[:, None], grown, np.where(cols == pos[:, None], virtual, shifted))[:, :w]

        items = np.concatenate([rows, [virtual]])
        lists = np.concatenate([new_rows, q_list])
        scale = np.append(st.scale, scale_q)
        rescaled = np.zeros(0, np.int64)
        if self._search.exhaustive:  # items whose farthest point the query would be
            rescaled = np.flatnonzero(raw > st.scale)
            if len(rescaled) > self.rescale_limit:
                rescaled = rescaled[:0]
            scale[rescaled] = raw[rescaled]
        pair = self._pair_fn(scale, query=x)
        local = propagate(st, items, lists, self.k1, self.k2, pair, g + 1, rescaled)

        changed = local.qe.items[local.qe.items < g]
        mine = take_csr(local.qe, np.array([virtual]))
        query_vec = (mine[1], mine[2].astype(np.float64))
        hit_rows, sums = sum_min(query_vec, st.postings)
        direct = sum_min_rows(query_vec, take_csr(local.qe, changed))

        if self._search.exhaustive:  # cand is every row, in order
            out_rows, original = cand, raw / scale_q
        else:
            out_rows = np.union1d(np.union1d(hit_rows, changed), cand)
            if dense:
                out_rows = np.arange(g)
            original = unit_pair_distances(self._vectors()[out_rows], np.broadcast_to(x, (len(out_rows), len(x))))
            original = original.astype(np.float64) / scale_q
            original[np.searchsorted(out_rows, cand)] = raw / scale_q
        jaccard = np.ones(len(out_rows))
        for r, s in ((hit_rows, sums), (changed, direct)):
            jaccard[np.searchsorted(out_rows, r)] = 1.0 - s / (2.0 - s)
        final = (1.0 - self.lambda_value) * jaccard + self.lambda_value * original
        return out_rows, final.astype(np.float32)
