"""Mini-batch samplers for metric learning: random P×K and CLIP-DFGS hard mining. Pure numpy.

Both return one epoch as a list of int64 arrays of sample indices, each of length ``p * k``:
``p`` identities, each with ``k`` consecutive entries (identity-major order). Unlabelled samples
(label ``-1``) are never drawn.

- ``pk_batches``: identities in a random order, cut into groups of ``p``.
- ``dfgs_batches`` (Zhao et al., "CLIP-DFGS", TOMM 2024): identities in the order of a depth-first
  walk over their k-nearest-identity graph, so a batch's identities are each other's nearest
  (hard negatives).

In both, an identity's ``k`` instances are spread across its cameras (hard positives): its
cameras are visited round-robin in a random order, one unused image of each per turn; only an
identity with fewer than ``k`` images repeats images (drawn with replacement to fill up).

A graph walk of the same specification, written for clarity, is in ``reference.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.errors import InvalidInputError

DFGS_NEIGHBOURS = 8  # out-degree of the identity graph; ours, the paper's value is not reproduced here


@dataclass(frozen=True)
class _Identities:
    """Sample indices grouped by identity and, within an identity, by camera."""

    ids: np.ndarray  # sorted distinct labels >= 0
    by_camera: tuple[tuple[np.ndarray, ...], ...]  # per identity: index arrays, one per camera


def _check_batch_shape(p: int, k: int) -> None:
    if not isinstance(p, int | np.integer) or p < 2:
        raise InvalidInputError(f"p: expected an integer >= 2 identities per batch, got {p!r}")
    if not isinstance(k, int | np.integer) or k < 1:
        raise InvalidInputError(f"k: expected an integer >= 1 instances per identity, got {k!r}")


def _as_int_vector(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise InvalidInputError(f"{name}: expected a 1-D array, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise InvalidInputError(f"{name}: expected integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def _group(labels: np.ndarray, cameras: np.ndarray, p: int) -> _Identities:
    labels = _as_int_vector(labels, "labels")
    cameras = _as_int_vector(cameras, "cameras")
    if labels.shape != cameras.shape:
        raise InvalidInputError(f"cameras: expected {labels.shape[0]} entries like labels, got {cameras.shape[0]}")
    if labels.size and labels.min() < -1:
        raise InvalidInputError(f"labels: expected >= 0 (or -1 for unlabelled), got {labels.min()}")
    if cameras.size and cameras.min() < 0:
        raise InvalidInputError(f"cameras: expected 0-based camera ids >= 0, got {cameras.min()}")
    labelled = np.flatnonzero(labels >= 0)
    ids = np.unique(labels[labelled])
    if ids.size < p:
        raise InvalidInputError(f"labels: expected at least p={p} labelled identities, got {ids.size}")
    order = labelled[np.lexsort((labelled, cameras[labelled], labels[labelled]))]
    id_starts = np.searchsorted(labels[order], ids)
    id_ends = np.append(id_starts[1:], order.size)
    by_camera = []
    for start, end in zip(id_starts, id_ends, strict=True):
        members = order[start:end]
        cams = cameras[members]
        splits = np.flatnonzero(np.diff(cams)) + 1
        by_camera.append(tuple(np.split(members, splits)))
    return _Identities(ids, tuple(by_camera))


def spread_instances(per_camera: tuple[np.ndarray, ...], k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` sample indices of one identity, round-robin over its cameras in a random order.

    ``per_camera`` holds the identity's sample indices of each camera. Without replacement while
    images remain; an identity with fewer than ``k`` images has the rest drawn with replacement.
    """
    queues = [list(rng.permutation(indices)) for indices in per_camera if len(indices)]
    queues = [queues[i] for i in rng.permutation(len(queues))]
    chosen: list[int] = []
    while len(chosen) < k and any(queues):
        for queue in queues:
            if queue and len(chosen) < k:
                chosen.append(int(queue.pop()))
    if len(chosen) < k:
        pool = np.concatenate(per_camera)
        chosen += [int(i) for i in rng.choice(pool, size=k - len(chosen), replace=True)]
    return np.asarray(chosen, dtype=np.int64)


def _batches(groups: list[np.ndarray], identities: _Identities, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Each group of identity positions (indices into ``identities.ids``) → one P×K index batch."""
    return [np.concatenate([spread_instances(identities.by_camera[i], k, rng) for i in group]) for group in groups]


def pk_batches(labels: np.ndarray, cameras: np.ndarray, *, p: int = 16, k: int = 4,
               rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of random P×K batches.

    Args:
        labels: (N,) int identity label per sample, -1 for unlabelled (never drawn).
        cameras: (N,) int 0-based camera per sample.
        p: identities per batch (>= 2). k: instances per identity (>= 1).
        rng: the only source of randomness; the same state gives the same batches.

    Returns:
        ceil(n_ids / p) int64 arrays of length p*k. Every identity appears once in the epoch's
        order; the last incomplete group is padded with random other identities.
    """
    _check_batch_shape(p, k)
    identities = _group(labels, cameras, p)
    n_ids = identities.ids.size
    order = rng.permutation(n_ids)
    groups = [order[i:i + p] for i in range(0, n_ids, p)]
    if groups[-1].size < p:
        last = groups[-1]
        others = np.setdiff1d(np.arange(n_ids), last)
        groups[-1] = np.concatenate([last, rng.choice(others, size=p - last.size, replace=False)])
    return _batches(groups, identities, k, rng)


def neighbour_lists(features: np.ndarray, neighbours: int) -> np.ndarray:
    """(n, min(neighbours, n-1)) int64: each row's most cosine-similar other rows, nearest first.

    Ties go to the lower index. ``features`` rows are L2-normalised, so cosine = dot product.
    """
    n = features.shape[0]
    degree = min(neighbours, n - 1)
    similarity = features.astype(np.float64) @ features.astype(np.float64).T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :degree].astype(np.int64)


def depth_first_order(lists: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Visiting order of a depth-first walk over a directed graph given as neighbour lists.

    From the current node go to its first (nearest) unvisited neighbour; when it has none,
    backtrack along the walk's path; when the path is empty, restart at the first unvisited node
    of ``starts`` (a permutation of the nodes: the random restarts). O(n · degree).
    """
    n = lists.shape[0]
    visited = np.zeros(n, dtype=bool)
    cursor = np.zeros(n, dtype=np.int64)  # next position to look at in each node's list
    order: list[int] = []
    for start in starts:
        if visited[start]:
            continue
        visited[start] = True
        order.append(int(start))
        path = [int(start)]
        while path:
            node = path[-1]
            row = lists[node]
            while cursor[node] < row.size and visited[row[cursor[node]]]:
                cursor[node] += 1
            if cursor[node] == row.size:
                path.pop()
                continue
            child = int(row[cursor[node]])
            visited[child] = True
            order.append(child)
            path.append(child)
    return np.asarray(order, dtype=np.int64)


def _check_features(identity_features: np.ndarray, identity_ids: np.ndarray, known: np.ndarray) -> np.ndarray:
    features = np.asarray(identity_features)
    if features.ndim != 2 or features.shape[0] != identity_ids.size:
        raise InvalidInputError(
            f"identity_features: expected shape ({identity_ids.size}, d), one row per identity, got {features.shape}")
    if not np.issubdtype(features.dtype, np.floating) or not np.isfinite(features).all():
        raise InvalidInputError(f"identity_features: expected finite floats, got dtype {features.dtype}")
    norms = np.linalg.norm(features.astype(np.float64), axis=1)
    if not np.allclose(norms, 1.0, atol=1e-3):
        worst = float(norms[np.argmax(np.abs(norms - 1.0))])
        raise InvalidInputError(f"identity_features: expected L2-normalised rows, got a row of norm {worst:.4g}")
    if np.unique(identity_ids).size != identity_ids.size:
        raise InvalidInputError("identities: expected distinct labels, got duplicates")
    if not np.array_equal(np.sort(identity_ids), known):
        missing = np.setdiff1d(known, identity_ids)
        extra = np.setdiff1d(identity_ids, known)
        raise InvalidInputError(
            f"identities: expected exactly the {known.size} labelled identities of labels, got "
            f"{missing.size} missing (e.g. {missing[:3].tolist()}) and "
            f"{extra.size} unknown (e.g. {extra[:3].tolist()})")
    return features


def dfgs_walk(identity_features: np.ndarray, *, neighbours: int = DFGS_NEIGHBOURS,
              rng: np.random.Generator) -> np.ndarray:
    """Row indices of ``identity_features`` in DFGS walk order (a permutation of 0..n-1)."""
    if not isinstance(neighbours, int | np.integer) or neighbours < 1:
        raise InvalidInputError(f"neighbours: expected an integer >= 1, got {neighbours!r}")
    starts = rng.permutation(identity_features.shape[0])
    return depth_first_order(neighbour_lists(identity_features, int(neighbours)), starts)


def dfgs_batches(identity_features: np.ndarray, identities: np.ndarray, labels: np.ndarray, cameras: np.ndarray, *,
                 p: int = 16, k: int = 4, neighbours: int = DFGS_NEIGHBOURS,
                 rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of CLIP-DFGS P×K batches.

    Args:
        identity_features: (n_ids, d) L2-normalised, one embedding per identity; row i is
            identity ``identities[i]``.
        identities: (n_ids,) the distinct labelled identities of ``labels``, in row order.
        labels: (N,) int identity per sample, -1 for unlabelled. cameras: (N,) 0-based camera.
        p, k: batch shape (p >= 2 identities, k >= 1 instances each).
        neighbours: out-degree of the k-nearest-identity graph (cosine), clipped to n_ids - 1.
        rng: the only source of randomness.

    Returns:
        ceil(n_ids / p) int64 arrays of length p*k: the walk order cut into consecutive groups of
        p identities. Every identity is visited exactly once; the last incomplete group is
        filled up with the identities just before it in the walk (its nearest, so still hard).
    """
    _check_batch_shape(p, k)
    grouped = _group(labels, cameras, p)
    identity_ids = _as_int_vector(identities, "identities")
    features = _check_features(identity_features, identity_ids, grouped.ids)
    walk = dfgs_walk(features, neighbours=neighbours, rng=rng)
    positions = np.searchsorted(grouped.ids, identity_ids[walk])  # walk order as positions in grouped.ids
    n_ids = positions.size
    groups = [positions[i:i + p] for i in range(0, n_ids, p)]
    if groups[-1].size < p:
        groups[-1] = positions[n_ids - p:]
    return _batches(groups, grouped, k, rng)


def one_per_identity(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(identities, sample indices): one random image of every labelled identity, to embed for DFGS."""
    labels = _as_int_vector(labels, "labels")
    identities = np.unique(labels[labels >= 0])
    chosen = np.empty(identities.size, dtype=np.int64)
    for row, identity in enumerate(identities):
        chosen[row] = rng.choice(np.flatnonzero(labels == identity))
    return identities, chosen
