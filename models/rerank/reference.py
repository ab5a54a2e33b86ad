"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), written for clarity: the slow oracle.

Every step is a plain loop that reads like docs/architecture.md §2; the fast implementations in
``exact.py`` and ``incremental.py`` are tested against this one. Do not use it on more than a
few thousand items: it holds several dense (Q+G, Q+G) float64 matrices.

Conventions shared with ``exact.py`` (they pin down what the paper leaves open):

- distances are taken as given (squared Euclidean or cosine distances of L2-normalised vectors);
  they are not squared again;
- "scale each column by its max" is done as in the paper's code: column j is divided by its
  maximum and the matrix transposed, so row i holds i's distances divided by the largest distance
  from i (a maximum of 0 scales by 1);
- "the k nearest" of i are the first k of a stable argsort of row i (ties go to the lower index,
  queries before gallery) and always count i itself;
- k1/2 is ``round(k1 / 2)`` (half to even, as ``numpy.around``);
- "at least 2/3" is ``3·|common| >= 2·|set|`` in integers;
- k larger than the number of items is clipped to it (slicing semantics).
"""

from __future__ import annotations

import numpy as np

from models.rerank._common import all_distances, check_distances, check_params, half_k, safe_max


def k_reciprocal_reference(
    q_g: np.ndarray,
    q_q: np.ndarray,
    g_g: np.ndarray,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> np.ndarray:
    """Re-ranked distances by the textbook algorithm.

    Args:
        q_g: (Q, G) query-to-gallery distances.
        q_q: (Q, Q) query-to-query distances.
        g_g: (G, G) gallery-to-gallery distances.
        k1: size of the k-reciprocal neighbourhood.
        k2: number of neighbours averaged in the local query expansion.
        lambda_value: weight of the original distance in the final distance.

    Returns:
        (Q, G) float32 final distances ``(1 - λ)·Jaccard + λ·scaled original``.
    """
    check_params(k1, k2, lambda_value)
    n_query, n_gallery = check_distances(q_g, q_q, g_g)
    n = n_query + n_gallery

    dist = all_distances(q_g, q_q, g_g)
    scaled = (dist / safe_max(dist, axis=0)[None, :]).T
    ranking = np.argsort(scaled, axis=1, kind="stable")

    def nearest(i: int, k: int) -> list[int]:
        return [int(j) for j in ranking[i, : k + 1]]

    def reciprocal(i: int, k: int) -> list[int]:
        return [j for j in nearest(i, k) if i in nearest(j, k)]

    vectors = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        core = reciprocal(i, k1)
        expanded = set(core)
        for candidate in core:
            candidate_set = reciprocal(candidate, half_k(k1))
            common = set(candidate_set) & set(core)
            if 3 * len(common) >= 2 * len(candidate_set):
                expanded |= set(candidate_set)
        members = sorted(expanded)
        weights = np.exp(-scaled[i, members])
        vectors[i, members] = weights / weights.sum()

    expanded_vectors = np.zeros_like(vectors)
    for i in range(n):
        neighbours = ranking[i, :k2]
        expanded_vectors[i] = vectors[neighbours].mean(axis=0)

    jaccard = np.zeros((n_query, n_gallery), dtype=np.float64)
    for qi in range(n_query):
        for gi in range(n_gallery):
            sum_min = np.minimum(expanded_vectors[qi], expanded_vectors[n_query + gi]).sum()
            jaccard[qi, gi] = 1.0 - sum_min / (2.0 - sum_min)

    original = scaled[:n_query, n_query:]
    final = (1.0 - lambda_value) * jaccard + lambda_value * original
    return final.astype(np.float32)
