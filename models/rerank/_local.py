"""Gallery-side state of the incremental index and its local recomputation after a change.

A change of the item set (an added item, a removed item, or a query looked at as if it were added)
changes the neighbour lists of a few rows. Everything else follows from the dependency chain of
the algorithm, and only the rows reached through it are recomputed:

1. rows whose list changed, and the items that entered or left one of those lists within the
   first k1+1 (resp. k1/2+1) places, may change their k-reciprocal (resp. k1/2-reciprocal) set;
2. a row's expanded set changes only if its own reciprocal set changed, or if the k1/2-set of one
   of its reciprocal neighbours c changed; reciprocity is symmetric, so those rows are exactly
   c's new reciprocal set (no reverse lookup needed); rows whose distance scale changed are added;
3. a row's query-expanded vector changes if its first k2 neighbours changed or one of them has a
   new weight vector: the stored reverse k2-lists give those rows.

Step 1 needs no search: an item leaves a list only by being pushed off its end or removed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from models.rerank._common import half_k
from models.rerank._kernels import (
    Csr,
    Patched,
    PatchedCsr,
    as_csr_table,
    as_table,
    concat_csr,
    expanded_members,
    gather_rows,
    query_expand,
    reciprocal_mask,
    take_csr,
    transpose_csr,
    weighted_csr,
)

PairDistance = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (rows, members) -> scaled distances
_BUILD_ROWS = 2048
_VALUE = np.float32


@dataclass
class Structures:
    """Everything that depends on the gallery alone; G rows, memory O(G·k1·k2)."""

    lists: np.ndarray  # (G, W) int64 neighbour lists (self first), -1 padded
    raw: np.ndarray  # (G, W) float64 unscaled distances of the list members, inf padded
    scale: np.ndarray  # (G,) float64 row scale: largest distance from the item
    far: np.ndarray  # (G,) int64 the item at that distance
    core: np.ndarray  # (G, k1+1) bool k1-reciprocal mask over lists[:, :k1+1]
    half: np.ndarray  # (G, k1/2+1) bool k1/2-reciprocal mask over lists[:, :k1/2+1]
    vec: Csr  # weight vectors V (rows = items, columns = items)
    qe: Csr  # query-expanded vectors
    postings: Csr  # inverted lists of qe: for each column, the rows that use it
    rev_qe: Csr  # for each item j, the rows whose first k2 neighbours include j

    @property
    def size(self) -> int:
        return len(self.lists)

    def nbytes(self) -> int:
        arrays = [self.lists, self.raw, self.scale, self.far, self.core, self.half]
        arrays += [*self.vec, *self.qe, *self.postings, *self.rev_qe]
        return int(sum(a.nbytes for a in arrays))


@dataclass(frozen=True)
class Local:
    """Recomputed rows, each block as (items, rows); items past the gallery are new or virtual."""

    lists: Patched
    core: Patched
    half: Patched
    vec: PatchedCsr
    qe: PatchedCsr


def reverse_lists(lists: np.ndarray, n_items: int) -> Csr:
    """For each item j, the rows whose ``lists`` contain j."""
    valid = lists >= 0
    indptr = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(valid.sum(axis=1), out=indptr[1:])
    return transpose_csr((indptr, lists[valid], np.zeros(int(valid.sum()), _VALUE)), n_items)


def build(lists: np.ndarray, raw: np.ndarray, scale: np.ndarray, far: np.ndarray, k1: int, k2: int,
          scaled_distance: PairDistance) -> Structures:
    """All gallery structures from the neighbour lists, rows processed in chunks."""
    n = len(lists)
    table = as_table(lists)
    items = np.arange(n)
    core = reciprocal_mask(table, items, k1)
    half = reciprocal_mask(table, items, half_k(k1))
    half_table = as_table(half)
    parts = []
    for start in range(0, n, _BUILD_ROWS):
        rows = items[start : start + _BUILD_ROWS]
        members = expanded_members(table, core[rows], half_table, rows)
        parts.append(weighted_csr(members, scaled_distance, rows, _VALUE))
    vec = concat_csr(parts)
    qe = query_expand(as_csr_table(vec), lists[:, :k2], n, _VALUE)
    return Structures(lists, raw, scale, far, core, half, vec, qe, transpose_csr(qe, n),
                      reverse_lists(lists[:, :k2], n))


def _old_rows(base: np.ndarray, items: np.ndarray, fill: float) -> np.ndarray:
    out = np.full((len(items), base.shape[1]), fill, dtype=base.dtype)
    known = items < len(base)
    out[known] = base[items[known]]
    return out


def _moved(old: np.ndarray, new: np.ndarray, items: np.ndarray, width: int) -> np.ndarray:
    """Rows whose first ``width`` list places changed, and the items that entered or left them."""
    o, n = old[:, :width], new[:, :width]
    changed = items[(o != n).any(axis=1)]
    left = o[~(o[:, :, None] == n[:, None, :]).any(axis=2)]
    entered = n[~(n[:, :, None] == o[:, None, :]).any(axis=2)]
    out = np.unique(np.concatenate([changed, left, entered]))
    return out[out >= 0]


def _member_sets_changed(lists: Patched, base_lists: np.ndarray, base_mask: np.ndarray,
                         rows: np.ndarray, new_mask: np.ndarray) -> np.ndarray:
    """Which rows' reciprocal sets (list entries under the mask) differ from the stored ones."""
    width = new_mask.shape[1]
    new = np.sort(np.where(new_mask, lists.take(rows)[:, :width], -1), axis=1)
    old = np.full_like(new, -1)
    known = rows < len(base_lists)
    old[known] = np.where(base_mask[rows[known]], base_lists[rows[known], :width], -1)
    return (np.sort(old, axis=1) != new).any(axis=1)


def propagate(st: Structures, items: np.ndarray, new_lists: np.ndarray, k1: int, k2: int,
              scaled_distance: PairDistance, n_cols: int, rescaled: np.ndarray | None = None,
              dead: np.ndarray | None = None) -> Local:
    """Recompute the rows that a change of the neighbour lists of ``items`` (sorted) reaches.

    Args:
        st: the stored structures (read only).
        items: (P,) sorted items whose lists changed; items >= st.size are new (or the query).
        new_lists: (P, W) their new lists.
        scaled_distance: scaled distance of (row, member) pairs under the new item set.
        n_cols: number of items in the new item set (columns of the sparse vectors).
        rescaled: items whose distance scale changed (their weight vectors are recomputed).
        dead: bool mask over stored rows that no longer exist (skipped).
    """
    def alive(rows: np.ndarray) -> np.ndarray:
        rows = np.unique(rows)
        rows = rows[rows >= 0]
        if dead is not None:
            rows = rows[(rows >= len(dead)) | ~dead[np.minimum(rows, len(dead) - 1)]]
        return rows

    lists = Patched(st.lists, items, new_lists)
    old = _old_rows(st.lists, items, -1)
    h = half_k(k1)

    core_rows = alive(_moved(old, new_lists, items, k1 + 1))
    core_new = reciprocal_mask(lists, core_rows, k1)
    half_rows = alive(_moved(old, new_lists, items, h + 1))
    half_new = reciprocal_mask(lists, half_rows, h)
    core = Patched(st.core, core_rows, core_new)
    half = Patched(st.half, half_rows, half_new)

    core_changed = core_rows[_member_sets_changed(lists, st.lists, st.core, core_rows, core_new)]
    half_changed = half_rows[_member_sets_changed(lists, st.lists, st.half, half_rows, half_new)]
    partners = np.where(core.take(half_changed), lists.take(half_changed)[:, : k1 + 1], -1)
    extra = rescaled if rescaled is not None else np.zeros(0, np.int64)
    vec_rows = alive(np.concatenate([core_changed, partners.ravel(), extra]))

    members = expanded_members(lists, core.take(vec_rows), half, vec_rows)
    vec = PatchedCsr(st.vec, vec_rows, weighted_csr(members, scaled_distance, vec_rows, _VALUE))

    prefix_changed = items[(old[:, :k2] != new_lists[:, :k2]).any(axis=1)]
    stored = vec_rows[vec_rows < st.size]
    users = gather_rows(st.rev_qe, stored)[1]
    qe_rows = alive(np.concatenate([prefix_changed, users]))
    qe = query_expand(vec, lists.take(qe_rows)[:, :k2], n_cols, _VALUE)
    return Local(lists, core, half, vec, PatchedCsr(st.qe, qe_rows, qe))


def commit(st: Structures, local: Local, raw: Patched, scale: np.ndarray, far: np.ndarray,
           keep: np.ndarray | None, n_items: int, k2: int) -> Structures:
    """Write the recomputed rows into new stored structures over ``n_items`` rows.

    ``keep`` (bool over the rows before compaction) drops removed items and renumbers the rest.
    """
    rows = np.arange(n_items)
    lists, raw_rows = local.lists.take(rows), raw.take(rows)
    core, half = local.core.take(rows), local.half.take(rows)
    vec, qe = take_csr(local.vec, rows), take_csr(local.qe, rows)
    if keep is not None:
        new_index = np.cumsum(keep) - 1
        new_index[~keep] = -1
        lists = np.where(lists >= 0, new_index[np.maximum(lists, 0)], -1)[keep]
        raw_rows, core, half, scale = raw_rows[keep], core[keep], half[keep], scale[keep]
        far = new_index[far][keep]
        vec = _renumber_csr(vec, keep, new_index)
        qe = _renumber_csr(qe, keep, new_index)
        n_items = int(keep.sum())
    return Structures(lists, raw_rows, scale, far, core, half, vec, qe, transpose_csr(qe, n_items),
                      reverse_lists(lists[:, :k2], n_items))


def _renumber_csr(csr: Csr, keep: np.ndarray, new_index: np.ndarray) -> Csr:
    kept = take_csr(as_csr_table(csr), np.flatnonzero(keep))
    indices = new_index[kept[1]]
    if np.any(indices < 0):  # a stored vector still points at a removed item: propagate() missed it
        raise AssertionError("internal error: a removed item is still referenced")
    return kept[0], indices, kept[2]
