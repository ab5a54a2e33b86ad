"""Labelled (tracklet, gallery identity) pairs as a running system meets them, for calibration and alerts.

An edge compares a *tracklet* (the mean vector of a few crops of one person on one camera) with the
gallery's *reference vectors* (one per enrolled crop); an identity counts once, at its nearest reference
(`edge.shortlist.ShortListPolicy`), and only its short list's candidates go on. So:

- `episodes`: per dataset split, queries are tracklets — every (identity, camera) group of query
  images — and the gallery is single images of other cameras. CUHK03 is used in both directions
  (camera A tracklets against camera B images, and B against A).
- `identity_distances`: each query's cosine distance to each gallery identity (its nearest item,
  same-camera items of the query's own identity ignored, as the cross-camera protocol does).
- `shortlist_pairs`: each query's `top_k` nearest identities plus its true identity — the pairs a
  threshold is asked about.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.errors import InvalidInputError
from models.evaluation.datasets import ReIdSplit, Sample
from models.evaluation.ranking import cosine_distance, pool_units


@dataclass(frozen=True)
class Episode:
    """Tracklet queries and single-image gallery items of one split, with identities and cameras."""

    queries: tuple[tuple[Path, ...], ...]
    query_pids: np.ndarray  # (Q,) int
    query_camids: np.ndarray  # (Q,) int
    gallery: tuple[Path, ...]
    gallery_pids: np.ndarray  # (G,) int
    gallery_camids: np.ndarray  # (G,) int

    def __post_init__(self) -> None:
        if len(self.queries) != len(self.query_pids) or len(self.queries) != len(self.query_camids):
            raise InvalidInputError("episode: expected one pid and camid per query")
        if len(self.gallery) != len(self.gallery_pids) or len(self.gallery) != len(self.gallery_camids):
            raise InvalidInputError("episode: expected one pid and camid per gallery item")


def _episode(query: Sequence[Sample], gallery: Sequence[Sample]) -> Episode:
    groups: dict[tuple[int, int], list[Path]] = defaultdict(list)
    for s in query:
        groups[(s.pid, s.camid)].append(s.path)
    keys = sorted(groups)
    return Episode(tuple(tuple(groups[k]) for k in keys), np.array([k[0] for k in keys]),
                   np.array([k[1] for k in keys]), tuple(s.path for s in gallery),
                   np.array([s.pid for s in gallery]), np.array([s.camid for s in gallery]))


def episodes(split: ReIdSplit, both_directions: bool | None = None) -> list[Episode]:
    """The split's query→gallery episode, and gallery→query too (default: for CUHK03)."""
    if both_directions is None:
        both_directions = split.fmt == "cuhk03"
    out = [_episode(split.query, split.gallery)]
    if both_directions:
        out.append(_episode(split.gallery, split.query))
    return out


def embed_episode(episode: Episode, embed: Callable[[Sequence[Path]], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(Q, D) tracklet vectors (normalised mean of their crops) and (G, D) gallery vectors, from
    `embed(paths) -> (N, D)` unit vectors."""
    paths = [p for q in episode.queries for p in q]
    frames = embed(paths)
    units, start = [], 0
    for q in episode.queries:
        units.append(list(range(start, start + len(q))))
        start += len(q)
    return pool_units(frames, units), embed(list(episode.gallery))


def identity_distances(episode: Episode, query_vectors: np.ndarray, gallery_vectors: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Gallery identities (I,) and each query's cosine distance to each of them (Q, I): the nearest of
    the identity's items, ignoring items of the query's own identity on the query's camera."""
    d = cosine_distance(query_vectors, gallery_vectors).astype(np.float64)
    junk = (episode.query_pids[:, None] == episode.gallery_pids[None, :]) & \
           (episode.query_camids[:, None] == episode.gallery_camids[None, :])
    d[junk] = np.inf
    identities = np.unique(episode.gallery_pids)
    out = np.full((len(d), len(identities)), np.inf)
    for col, pid in enumerate(identities):
        out[:, col] = d[:, episode.gallery_pids == pid].min(axis=1)
    return identities, out


def shortlist_pairs(distances: np.ndarray, query_pids: np.ndarray, identities: np.ndarray, top_k: int = 10
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each query's `top_k` nearest identities plus its true one (when in the gallery): (rows, cols, same),
    rows into the queries, cols into `identities`; pairs at an infinite distance are left out."""
    if top_k < 1:
        raise InvalidInputError(f"top_k: expected an integer >= 1, got {top_k!r}")
    rows, cols = [], []
    order = np.argsort(distances, axis=1, kind="stable")[:, :top_k]
    for q in range(len(distances)):
        chosen = set(order[q].tolist()) | set(np.flatnonzero(identities == query_pids[q]).tolist())
        for c in sorted(chosen):
            if np.isfinite(distances[q, c]):
                rows.append(q)
                cols.append(c)
    r, c = np.array(rows, np.int64), np.array(cols, np.int64)
    return r, c, query_pids[r] == identities[c]
