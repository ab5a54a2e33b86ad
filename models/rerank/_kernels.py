"""Vectorised building blocks of k-reciprocal re-ranking, shared by the exact, incremental and ANN modes.

Neighbour lists are (N, W) int64 arrays of item indices in ascending distance, each row starting
with the item itself; -1 marks a missing neighbour (fewer items than W, or an ANN search that
returned fewer). Sparse vectors are CSR triples ``(indptr, indices, data)``. Tables are read
through ``take`` so that a few rows can be overridden (``Patched``) without copying the whole
array: that is how the incremental index evaluates "the gallery plus one query" in place.
Nothing here allocates an N×N array.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Csr = tuple[np.ndarray, np.ndarray, np.ndarray]

_CHUNK_CELLS = 2_000_000  # bound on the elements of temporary arrays per chunk


def _chunk_len(cells_per_row: int) -> int:
    return max(1, _CHUNK_CELLS // max(1, cells_per_row))


@dataclass(frozen=True)
class Patched:
    """Rows of ``base`` with some rows replaced (or added past its end) by ``rows``.

    ``items`` is sorted; an item not in ``items`` reads ``base[item]``.
    """

    base: np.ndarray
    items: np.ndarray
    rows: np.ndarray

    def take(self, which: np.ndarray) -> np.ndarray:
        which = np.asarray(which, dtype=np.int64)
        out = self.base[np.clip(which, 0, len(self.base) - 1)] if len(self.base) else \
            np.zeros((len(which), *self.rows.shape[1:]), self.rows.dtype)
        if len(self.items):
            pos = np.minimum(np.searchsorted(self.items, which), len(self.items) - 1)
            hit = self.items[pos] == which
            out[hit] = self.rows[pos[hit]]
        return out


def as_table(array: np.ndarray) -> Patched:
    """A table with no replaced rows."""
    return Patched(array, np.zeros(0, np.int64), array[:0])


@dataclass(frozen=True)
class PatchedCsr:
    """CSR rows of ``base`` with the rows ``items`` (sorted) read from ``rows`` instead."""

    base: Csr
    items: np.ndarray
    rows: Csr

    def gather(self, which: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Entries of the given rows, flat: (position in ``which``, column, value)."""
        which = np.asarray(which, dtype=np.int64)
        hit = np.zeros(len(which), dtype=bool)
        pos = np.zeros(len(which), dtype=np.int64)
        if len(self.items):
            pos = np.minimum(np.searchsorted(self.items, which), len(self.items) - 1)
            hit = self.items[pos] == which
        parts = []
        for mask, csr, rows in ((~hit, self.base, which), (hit, self.rows, pos)):
            sel = np.flatnonzero(mask)
            if len(sel):
                owner, cols, vals = gather_rows(csr, rows[sel])
                parts.append((sel[owner], cols, vals))
        if not parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        owner, cols, vals = (np.concatenate(p) for p in zip(*parts, strict=True))
        order = np.argsort(owner, kind="stable")
        return owner[order], cols[order], vals[order]


def as_csr_table(csr: Csr) -> PatchedCsr:
    empty = (np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0))
    return PatchedCsr(csr, np.zeros(0, np.int64), empty)


def reciprocal_mask(lists: Patched, rows: np.ndarray, k: int) -> np.ndarray:
    """(R, min(k+1, W)) bool: is member a of ``rows[r]``'s list a k-reciprocal neighbour of it?

    Member j of i's k+1 nearest is reciprocal when i is among j's k+1 nearest.
    """
    rows = np.asarray(rows, dtype=np.int64)
    width = min(k + 1, lists.base.shape[1])
    out = np.zeros((len(rows), width), dtype=bool)
    step = _chunk_len(width * width)
    for start in range(0, len(rows), step):
        r = rows[start : start + step]
        members = lists.take(r)[:, :width]
        valid = members >= 0
        back = lists.take(np.where(valid, members, 0).ravel())[:, :width].reshape(len(r), width, width)
        out[start : start + len(r)] = (back == r[:, None, None]).any(axis=2) & valid
    return out


def expanded_members(lists: Patched, core_mask: np.ndarray, half_mask: Patched, rows: np.ndarray) -> np.ndarray:
    """(R, M) int64 expanded k-reciprocal sets R*(i), sorted, unique, padded with -1.

    Args:
        lists: neighbour lists of every item.
        core_mask: (R, k1+1) reciprocal mask of the rows' own lists, see ``reciprocal_mask``.
        half_mask: (N, h+1) reciprocal masks at h = k1/2 of every item.
        rows: (R,) the items to expand.

    A core member c adds its k1/2-reciprocal set when at least 2/3 of that set is in the core.
    """
    rows = np.asarray(rows, dtype=np.int64)
    width = core_mask.shape[1]
    half_width = half_mask.base.shape[1]
    out = np.full((len(rows), width * (1 + half_width)), -1, dtype=np.int64)
    step = _chunk_len(width * half_width * 4)
    for start in range(0, len(rows), step):
        r = rows[start : start + step]
        n = len(r)
        core = np.where(core_mask[start : start + n], lists.take(r)[:, :width], -1)
        safe = np.where(core >= 0, core, 0).ravel()
        cand = lists.take(safe)[:, :half_width].reshape(n, width, half_width)
        ok = half_mask.take(safe).reshape(n, width, half_width) & (core >= 0)[:, :, None]
        cand = np.where(ok, cand, -1)
        in_core = _row_membership(cand.reshape(n, -1), core).reshape(n, width, half_width) & ok
        accept = (3 * in_core.sum(axis=2) >= 2 * ok.sum(axis=2)) & (core >= 0)
        out[start : start + n] = np.concatenate(
            [core, np.where(accept[:, :, None], cand, -1).reshape(n, -1)], axis=1)
    return unique_rows(out)


def _row_membership(values: np.ndarray, sets: np.ndarray) -> np.ndarray:
    """(R, A) bool: is values[r, a] (>= 0) in sets[r, :]? One searchsorted over row-offset keys."""
    span = int(max(values.max(initial=0), sets.max(initial=0))) + 2
    offset = (np.arange(len(sets), dtype=np.int64) * span)[:, None]
    keys = np.sort(np.where(sets >= 0, sets, span - 1) + offset, axis=1).ravel()
    probe = np.where(values >= 0, values, span - 1) + offset
    pos = np.minimum(np.searchsorted(keys, probe.ravel()), len(keys) - 1)
    return (keys[pos] == probe.ravel()).reshape(values.shape) & (values >= 0)


def unique_rows(members: np.ndarray) -> np.ndarray:
    """Sort each row, drop repeats, push -1 padding to the end, trim all-padding columns."""
    if members.size == 0:
        return members
    big = np.iinfo(np.int64).max
    s = np.sort(np.where(members >= 0, members, big), axis=1)
    repeat = np.zeros_like(s, dtype=bool)
    repeat[:, 1:] = s[:, 1:] == s[:, :-1]
    s[repeat] = big
    s = np.sort(s, axis=1)
    used = int((s != big).sum(axis=1).max())
    return np.where(s == big, -1, s)[:, : max(used, 1)]


def weighted_csr(members: np.ndarray, scaled_distance: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 rows: np.ndarray, dtype: type = np.float64) -> Csr:
    """CSR of exp(-d) weights over each row's members, normalised to sum 1.

    ``scaled_distance(row_items (M,), member_items (M,))`` returns the scaled distances of M pairs.
    """
    valid = members >= 0
    counts = valid.sum(axis=1)
    indptr = np.zeros(len(members) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    row_of = np.repeat(np.arange(len(members)), counts)
    indices = members[valid]
    weights = np.exp(-np.asarray(scaled_distance(np.asarray(rows)[row_of], indices), dtype=np.float64))
    totals = np.bincount(row_of, weights=weights, minlength=len(members))
    return indptr, indices, (weights / totals[row_of]).astype(dtype)


def gather_rows(csr: Csr, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entries of the given CSR rows: (position of the row in ``rows``, column, value), flat."""
    indptr, indices, data = csr
    starts, ends = indptr[rows], indptr[np.asarray(rows) + 1]
    counts = ends - starts
    owner = np.repeat(np.arange(len(rows)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    flat = np.repeat(starts, counts) + offsets
    return owner, indices[flat], data[flat]


def sum_by_key(owner: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_rows: int, n_cols: int,
               dtype: type = np.float64) -> Csr:
    """CSR (n_rows, n_cols) summing the values that share (owner, col); columns sorted per row."""
    keys = owner.astype(np.int64) * np.int64(n_cols) + cols
    order = np.argsort(keys, kind="stable")
    keys, vals = keys[order], vals[order].astype(np.float64)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    if len(keys) == 0:
        return indptr, np.zeros(0, np.int64), np.zeros(0, dtype)
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    starts = np.flatnonzero(first)
    ukeys = keys[starts]
    np.cumsum(np.bincount(ukeys // n_cols, minlength=n_rows), out=indptr[1:])
    return indptr, ukeys % n_cols, np.add.reduceat(vals, starts).astype(dtype)


def query_expand(vectors: PatchedCsr, neighbours: np.ndarray, n_cols: int, dtype: type = np.float64) -> Csr:
    """CSR whose row r is the mean of ``vectors`` over the items ``neighbours[r]`` (-1 = missing)."""
    parts: list[Csr] = []
    step = _chunk_len(neighbours.shape[1] * 64)
    for start in range(0, len(neighbours), step):
        nb = neighbours[start : start + step]
        valid = nb >= 0
        counts = valid.sum(axis=1)
        owner_of_nb = np.repeat(np.arange(len(nb)), counts)
        pos, cols, vals = vectors.gather(nb[valid])
        owner = owner_of_nb[pos]
        parts.append(sum_by_key(owner, cols, vals / np.maximum(counts, 1)[owner], len(nb), n_cols, dtype))
    return concat_csr(parts)


def concat_csr(parts: list[Csr]) -> Csr:
    """Stack CSR blocks vertically."""
    if not parts:
        return np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0)
    indptrs, offset = [np.zeros(1, np.int64)], 0
    for indptr, _, _ in parts:
        indptrs.append(indptr[1:] + offset)
        offset += indptr[-1]
    return (np.concatenate(indptrs), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]))


def take_csr(csr: PatchedCsr, rows: np.ndarray) -> Csr:
    """The given rows (patched ones included) as a new CSR."""
    owner, cols, vals = csr.gather(rows)
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=len(rows)), out=indptr[1:])
    return indptr, cols, vals


def transpose_csr(csr: Csr, n_cols: int) -> Csr:
    """CSC of a CSR matrix, i.e. the inverted lists: for each column, the rows that use it."""
    indptr, indices, data = csr
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    order = np.argsort(indices, kind="stable")
    t_indptr = np.zeros(n_cols + 1, dtype=np.int64)
    np.cumsum(np.bincount(indices, minlength=n_cols), out=t_indptr[1:])
    return t_indptr, rows[order], data[order]


def sum_min(query: tuple[np.ndarray, np.ndarray], postings: Csr) -> tuple[np.ndarray, np.ndarray]:
    """Σ_c min(q[c], v_r[c]) for every row r that shares a column with the sparse vector q.

    Args:
        query: (columns, values) of one sparse vector; columns past the postings are ignored.
        postings: inverted lists (CSC) of the vectors it is compared with.

    Returns:
        (rows, sums): the rows that share at least one column with q, and their Σmin.
    """
    cols, vals = query
    keep = cols < len(postings[0]) - 1
    owner, rows, other = gather_rows(postings, cols[keep])
    mins = np.minimum(vals[keep][owner], other)
    uniq, inverse = np.unique(rows, return_inverse=True)
    return uniq, np.bincount(inverse, weights=mins, minlength=len(uniq))


def sum_min_rows(query: tuple[np.ndarray, np.ndarray], rows: Csr) -> np.ndarray:
    """Σ_c min(q[c], v_r[c]) for every row of a small CSR (direct, by sorted-column lookup)."""
    cols, vals = query
    indptr, r_cols, r_vals = rows
    owner = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    out = np.zeros(len(indptr) - 1)
    if len(cols) == 0 or len(r_cols) == 0:
        return out
    pos = np.minimum(np.searchsorted(cols, r_cols), len(cols) - 1)
    hit = cols[pos] == r_cols
    np.add.at(out, owner[hit], np.minimum(vals[pos[hit]], r_vals[hit]))
    return out
