"""Validation and small array helpers shared by the re-ranking modules (not public API)."""

from __future__ import annotations

import numpy as np

from models.errors import InvalidInputError


def half_k(k1: int) -> int:
    """The paper's k1/2 for the expansion step, rounded half to even like ``numpy.around``."""
    return round(k1 / 2)


def check_params(k1: int, k2: int, lambda_value: float) -> None:
    """Reject non-integer or non-positive k and a weight outside [0, 1]."""
    for name, value in (("k1", k1), ("k2", k2)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise InvalidInputError(f"{name}: expected an integer >= 1, got {value!r}")
    if not (0.0 <= float(lambda_value) <= 1.0):
        raise InvalidInputError(f"lambda_value: expected a number in [0, 1], got {lambda_value!r}")


def check_distances(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray) -> tuple[int, int]:
    """Check the three distance blocks and return (Q, G)."""
    arrays = {"q_g": q_g, "q_q": q_q, "g_g": g_g}
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray) or value.ndim != 2:
            shape = getattr(value, "shape", type(value).__name__)
            raise InvalidInputError(f"{name}: expected a 2-D numpy array, got {shape}")
        if not np.issubdtype(value.dtype, np.floating):
            raise InvalidInputError(f"{name}: expected a floating dtype, got {value.dtype}")
    n_query, n_gallery = q_g.shape
    if n_query == 0 or n_gallery == 0:
        raise InvalidInputError(f"q_g: expected at least one query and one gallery item, got shape {q_g.shape}")
    if q_q.shape != (n_query, n_query):
        raise InvalidInputError(f"q_q: expected shape {(n_query, n_query)}, got {q_q.shape}")
    if g_g.shape != (n_gallery, n_gallery):
        raise InvalidInputError(f"g_g: expected shape {(n_gallery, n_gallery)}, got {g_g.shape}")
    for name, value in arrays.items():
        if not np.all(np.isfinite(value)):
            raise InvalidInputError(f"{name}: expected finite distances, got NaN or inf")
        if np.any(value < 0):
            raise InvalidInputError(f"{name}: expected non-negative distances, got min {value.min()}")
    return n_query, n_gallery


def all_distances(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray) -> np.ndarray:
    """(Q+G, Q+G) float64 distances over query ∪ gallery, queries first."""
    return np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float64)


def safe_max(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Maximum used as a scale; a maximum of 0 (all items identical) scales by 1 instead."""
    top = np.max(values, axis=axis)
    return np.where(top > 0, top, 1.0)


def stable_topk(rows: np.ndarray, k: int) -> np.ndarray:
    """(R, k) indices of each row's k smallest values, ties broken by index.

    Identical to ``np.argsort(rows, kind="stable")[:, :k]`` but O(R·N) instead of O(R·N log N).
    """
    n = rows.shape[1]
    k = min(k, n)
    if k == n:
        return np.argsort(rows, axis=1, kind="stable")
    part = np.argpartition(rows, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(rows, part, axis=1)
    order = _lexsort_rows(vals, part)
    top = np.take_along_axis(part, order, axis=1)
    # a tie at the k-th value may have left out a lower index: redo those rows the slow way
    kth = vals.max(axis=1)
    tied = np.count_nonzero(rows <= kth[:, None], axis=1) > k
    for r in np.flatnonzero(tied):
        top[r] = np.argsort(rows[r], kind="stable")[:k]
    return top


def _lexsort_rows(vals: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Per-row order by (value, index)."""
    order = np.argsort(idx, axis=1, kind="stable")
    vals_by_idx = np.take_along_axis(vals, order, axis=1)
    second = np.argsort(vals_by_idx, axis=1, kind="stable")
    return np.take_along_axis(order, second, axis=1)


def check_vectors(vectors: np.ndarray, dim: int | None, name: str = "vectors") -> np.ndarray:
    """(N, d) finite non-zero vectors → L2-normalised float32 copy; a single (d,) vector is (1, d)."""
    if not isinstance(vectors, np.ndarray):
        raise InvalidInputError(f"{name}: expected a numpy array, got {type(vectors).__name__}")
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    if vectors.ndim != 2:
        raise InvalidInputError(f"{name}: expected shape (N, d), got {vectors.shape}")
    if not (np.issubdtype(vectors.dtype, np.floating) or np.issubdtype(vectors.dtype, np.integer)):
        raise InvalidInputError(f"{name}: expected a numeric dtype, got {vectors.dtype}")
    if dim is not None and vectors.shape[1] != dim:
        raise InvalidInputError(f"{name}: expected dimension {dim}, got shape {vectors.shape}")
    if vectors.shape[1] == 0:
        raise InvalidInputError(f"{name}: expected a dimension of at least 1, got shape {vectors.shape}")
    out = vectors.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise InvalidInputError(f"{name}: expected finite values, got NaN or inf")
    norms = np.linalg.norm(out, axis=1)
    if np.any(norms == 0):
        raise InvalidInputError(f"{name}: expected non-zero vectors, got {int((norms == 0).sum())} zero rows")
    return out / norms[:, None]


def unit_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) float32 squared Euclidean distances of L2-normalised rows: 2 − 2·a·b, at least 0.

    The products run in float64 and are rounded to float32 once: a float32 BLAS product differs by an
    ulp with the row's place in its block (AVX-512 kernels do), which broke ties between identical
    gallery items differently in an incrementally built index and a fresh one. Rounded from float64,
    equal items get equal distances on every machine."""
    product = np.asarray(a, np.float64) @ np.asarray(b, np.float64).T
    return np.maximum(2.0 - 2.0 * product, 0.0).astype(np.float32)


def unit_pair_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M,) float32 squared Euclidean distances of the row pairs (a[i], b[i])."""
    return np.maximum(2.0 - 2.0 * np.einsum("ij,ij->i", a, b), 0.0, dtype=np.float32)
