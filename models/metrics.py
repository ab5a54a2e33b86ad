"""Retrieval metrics under the Market-1501 protocol: CMC, mAP and mINP.

For each query the gallery is ranked by ascending distance (stable: ties keep gallery order).
Gallery entries with the query's identity *and* camera are junk (the same view) and are removed
before scoring; entries with the query's identity from another camera are the true matches.
Queries left with no true match are skipped and counted. Images a dataset marks as junk by
identity (Market-1501's pid -1) are the caller's to drop beforehand.

- CMC(r): fraction of valid queries with a true match within the first r ranks.
- AP: mean over the true matches of the precision at the rank of each match.
- INP (Ye et al., TPAMI 2021): number of true matches / rank of the hardest (last) match.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.errors import InvalidInputError


@dataclass(frozen=True)
class RankMetrics:
    """CMC curve (ranks 1..max_rank, float64), its ranks 1/5/10, mAP, mINP (fractions), and the
    queries scored (``n_valid_query``) and skipped for want of a true match (``n_skipped_query``).

    The one ranking result of the project: ``evaluate_rank`` returns it, and
    ``models.evaluation`` reports it for each stage of a run.
    """

    cmc: np.ndarray = field(repr=False)
    rank1: float
    rank5: float
    rank10: float
    mAP: float
    mINP: float
    n_valid_query: int
    n_skipped_query: int = 0


def _check_ids(name: str, value: np.ndarray, n: int) -> np.ndarray:
    value = np.asarray(value)
    if value.shape != (n,):
        raise InvalidInputError(f"{name}: expected shape ({n},), got {value.shape}")
    return value


def evaluate_rank(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
) -> RankMetrics:
    """CMC, mAP and mINP of a (Q, G) distance matrix.

    Args:
        distmat: (Q, G) query-to-gallery distances (lower = more similar).
        q_pids, g_pids: (Q,), (G,) identities.
        q_camids, g_camids: (Q,), (G,) camera ids.
        max_rank: length of the CMC curve; ranks past the gallery size repeat its last value.

    Returns:
        ``RankMetrics``; ``rank5``/``rank10`` are CMC at min(5, max_rank)/min(10, max_rank).

    Raises:
        InvalidInputError: bad shapes, NaN distances, or no query with a true match.
    """
    if not isinstance(distmat, np.ndarray) or distmat.ndim != 2:
        raise InvalidInputError(f"distmat: expected a 2-D numpy array, got {getattr(distmat, 'shape', None)}")
    n_query, n_gallery = distmat.shape
    if n_query == 0 or n_gallery == 0:
        raise InvalidInputError(f"distmat: expected at least one query and one gallery item, got {distmat.shape}")
    if np.isnan(distmat).any():
        raise InvalidInputError("distmat: expected no NaN distances")
    if isinstance(max_rank, bool) or not isinstance(max_rank, int | np.integer) or max_rank < 1:
        raise InvalidInputError(f"max_rank: expected an integer >= 1, got {max_rank!r}")
    q_pids, q_camids = _check_ids("q_pids", q_pids, n_query), _check_ids("q_camids", q_camids, n_query)
    g_pids, g_camids = _check_ids("g_pids", g_pids, n_gallery), _check_ids("g_camids", g_camids, n_gallery)

    order = np.argsort(distmat, axis=1, kind="stable")
    cmc_sum = np.zeros(max_rank)
    ap_sum = inp_sum = 0.0
    n_valid = 0
    for qi in range(n_query):
        ranked = order[qi]
        junk = (g_pids[ranked] == q_pids[qi]) & (g_camids[ranked] == q_camids[qi])
        matches = (g_pids[ranked] == q_pids[qi])[~junk]
        n_match = int(matches.sum())
        if n_match == 0:
            continue
        n_valid += 1
        hit_ranks = np.flatnonzero(matches)  # 0-based ranks of the true matches
        first = hit_ranks[0]
        if first < max_rank:
            cmc_sum[first:] += 1
        precision_at_hits = np.arange(1, n_match + 1) / (hit_ranks + 1)
        ap_sum += precision_at_hits.mean()
        inp_sum += n_match / (hit_ranks[-1] + 1)
    if n_valid == 0:
        raise InvalidInputError("no query has a true match in the gallery (same identity, other camera)")
    cmc = cmc_sum / n_valid

    def at(rank: int) -> float:
        return float(cmc[min(rank, max_rank) - 1])

    return RankMetrics(cmc=cmc, rank1=at(1), rank5=at(5), rank10=at(10), mAP=float(ap_sum / n_valid),
                       mINP=float(inp_sum / n_valid), n_valid_query=n_valid, n_skipped_query=n_query - n_valid)
