"""Fast exact k-reciprocal re-ranking over query ∪ gallery (vectorised numpy, sparse vectors).

Same result as ``reference.k_reciprocal_reference`` (within float rounding, ≤ 1e-5) and the same
conventions (see that module). Costs one (Q+G, Q+G) float64 distance matrix, which the caller has
to hold anyway; neighbour lists, weight vectors and inverted lists are sparse, O((Q+G)·k1·k2).
Use it for offline evaluation; the edge uses ``incremental.GalleryIndex``.
"""

from __future__ import annotations

import numpy as np

from models.rerank._common import check_distances, check_params, half_k, safe_max, stable_topk
from models.rerank._kernels import (
    as_csr_table,
    as_table,
    expanded_members,
    query_expand,
    reciprocal_mask,
    sum_min,
    transpose_csr,
    weighted_csr,
)

_TOPK_ROWS = 1024


def neighbour_lists(scaled: np.ndarray, width: int) -> np.ndarray:
    """(N, width) int64 stable top-``width`` of every row of an (N, N) distance matrix."""
    width = min(width, scaled.shape[1])
    out = np.empty((scaled.shape[0], width), dtype=np.int64)
    for start in range(0, scaled.shape[0], _TOPK_ROWS):
        out[start : start + _TOPK_ROWS] = stable_topk(scaled[start : start + _TOPK_ROWS], width)
    return out


def k_reciprocal_exact(
    q_g: np.ndarray,
    q_q: np.ndarray,
    g_g: np.ndarray,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> np.ndarray:
    """Re-ranked distances, exactly as the textbook algorithm but vectorised.

    Args:
        q_g: (Q, G) query-to-gallery distances.
        q_q: (Q, Q) query-to-query distances.
        g_g: (G, G) gallery-to-gallery distances.
        k1: size of the k-reciprocal neighbourhood (clipped to Q+G-1).
        k2: neighbours averaged in the local query expansion (clipped to Q+G).
        lambda_value: weight of the original distance in the final distance.

    Returns:
        (Q, G) float32 final distances ``(1 - λ)·Jaccard + λ·scaled original``.
    """
    check_params(k1, k2, lambda_value)
    n_query, n_gallery = check_distances(q_g, q_q, g_g)
    n = n_query + n_gallery

    # row i of `scaled` is column i of the distance matrix divided by its max (paper convention)
    scaled = np.block([[q_q.T, q_g], [q_g.T, g_g.T]]).astype(np.float64)
    scaled /= safe_max(scaled, axis=1)[:, None]

    lists = neighbour_lists(scaled, max(k1 + 1, k2))
    items = np.arange(n)
    table = as_table(lists)
    core_mask = reciprocal_mask(table, items, k1)
    half_mask = reciprocal_mask(table, items, half_k(k1))
    members = expanded_members(table, core_mask, as_table(half_mask), items)
    vectors = weighted_csr(members, lambda r, c: scaled[r, c], items)
    expanded = query_expand(as_csr_table(vectors), lists[:, : min(k2, n)], n)

    indptr, indices, data = expanded
    gallery_rows = (indptr[n_query:] - indptr[n_query], indices[indptr[n_query]:], data[indptr[n_query]:])
    postings = transpose_csr(gallery_rows, n)

    jaccard = np.ones((n_query, n_gallery), dtype=np.float64)
    for qi in range(n_query):
        row = slice(indptr[qi], indptr[qi + 1])
        rows, sums = sum_min((indices[row], data[row]), postings)
        jaccard[qi, rows] = 1.0 - sums / (2.0 - sums)

    final = (1.0 - lambda_value) * jaccard + lambda_value * scaled[:n_query, n_query:]
    return final.astype(np.float32)
