"""Pure ranking helpers of the evaluation: distances, tracklet pooling, the two-stage short list.

numpy in, numpy out. Shapes: Q queries, G gallery items, D embedding dimension.

Two-stage ranking, as the edge and the hub do it (docs/architecture.md §2): stage 1 ranks the whole gallery
and keeps each query's K nearest *valid* gallery items (the short list; gallery items that the
protocol ignores for that query — same identity on the same camera — are skipped, so recall@K equals
stage 1's CMC at rank K); stage 2 re-scores only the short list. The fused ranking keeps stage 2's
order inside the short list, then everything else in stage 1's order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.errors import InvalidInputError

# fused distances outside the short list start here: above any cosine distance (at most 2)
_OUTSIDE_OFFSET = 4.0


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, D) and (B, D) unit vectors → (A, B) float32 ``1 - a·b`` in [0, 2].

    Half the squared Euclidean distance of unit vectors, so both rank identically.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise InvalidInputError(f"expected (A, D) and (B, D) vectors, got shapes {a.shape} and {b.shape}")
    dist = 1.0 - a.astype(np.float32) @ b.astype(np.float32).T
    return np.clip(dist, 0.0, 2.0).astype(np.float32, copy=False)


def pool_units(frame_vectors: np.ndarray, units: Sequence[Sequence[int]]) -> np.ndarray:
    """Mean of each unit's frame vectors, L2-normalised: (F, D) → (U, D) float32.

    `units[u]` lists the rows of `frame_vectors` that make unit u (one row for an image).
    """
    out = np.empty((len(units), frame_vectors.shape[1]), np.float32)
    for u, rows in enumerate(units):
        if len(rows) == 0:
            raise InvalidInputError(f"unit {u}: expected at least one frame, got none")
        out[u] = frame_vectors[list(rows)].mean(axis=0)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


def junk_mask(q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray, g_camids: np.ndarray) -> np.ndarray:
    """(Q, G) True where the protocol ignores a gallery item: same identity, same camera."""
    return (q_pids[:, None] == g_pids[None, :]) & (q_camids[:, None] == g_camids[None, :])


def match_mask(q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray, g_camids: np.ndarray) -> np.ndarray:
    """(Q, G) True where a gallery item is a true cross-camera match."""
    return (q_pids[:, None] == g_pids[None, :]) & (q_camids[:, None] != g_camids[None, :])


def shortlist_mask(distmat: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """(Q, G) True for each query's `k` nearest gallery items, skipping `exclude`d ones.

    Ties go to the lower gallery index. A query with fewer than `k` eligible items keeps them all.
    """
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise InvalidInputError(f"k: expected an integer >= 1, got {k!r}")
    if exclude is not None and exclude.shape != distmat.shape:
        raise InvalidInputError(f"exclude: expected shape {distmat.shape}, got {exclude.shape}")
    ranked = np.where(exclude, np.inf, distmat) if exclude is not None else distmat
    order = np.argsort(ranked, axis=1, kind="stable")[:, : int(k)]
    mask = np.zeros(distmat.shape, bool)
    np.put_along_axis(mask, order, True, axis=1)
    if exclude is not None:
        mask &= ~exclude
    return mask


def recall_at_k(shortlist: np.ndarray, matches: np.ndarray) -> float:
    """Fraction of queries with at least one true match that have one in their short list."""
    if shortlist.shape != matches.shape:
        raise InvalidInputError(f"matches: expected shape {shortlist.shape}, got {matches.shape}")
    valid = matches.any(axis=1)
    if not valid.any():
        raise InvalidInputError("no query has a true match in the gallery")
    return float((shortlist & matches)[valid].any(axis=1).mean())


def fuse_shortlist(stage1: np.ndarray, stage2: np.ndarray, shortlist: np.ndarray) -> np.ndarray:
    """(Q, G) distances whose ranking is: the short list in stage-2 order, then the rest in stage-1 order.

    `stage2` needs meaningful values (cosine distances, at most 2) only where `shortlist` is True.
    """
    if not (stage1.shape == stage2.shape == shortlist.shape):
        raise InvalidInputError(
            f"expected equal shapes, got stage1 {stage1.shape}, stage2 {stage2.shape}, shortlist {shortlist.shape}"
        )
    n_gallery = stage1.shape[1]
    position = np.empty(stage1.shape, np.float64)
    order = np.argsort(stage1, axis=1, kind="stable")
    np.put_along_axis(position, order, np.arange(n_gallery, dtype=np.float64)[None, :], axis=1)
    outside = _OUTSIDE_OFFSET + position / max(n_gallery, 1)
    return np.where(shortlist, stage2.astype(np.float64), outside)


def mean_distance(distances: Sequence[np.ndarray]) -> np.ndarray:
    """Ensemble: the average of several models' (Q, G) distances."""
    if not distances:
        raise InvalidInputError("expected at least one distance matrix")
    shapes = {d.shape for d in distances}
    if len(shapes) != 1:
        raise InvalidInputError(f"expected distance matrices of one shape, got {sorted(shapes)}")
    return np.mean(np.stack(distances), axis=0)
