"""The short-list policy: which gallery identities a closed tracklet sends up for confirmation.

Input is one tracklet's recall against the gallery: per gallery entry an identity id, an *ordering*
distance (k-reciprocal re-ranked when the gallery is large enough for that to help, else the cosine
distance) and the entry's P(same) (`models.scores`: the cosine distance through the edge model's
calibration). An identity with several gallery vectors counts once: at its nearest entry for the
order, at its most likely entry for P(same). The policy keeps

- the `top_k` nearest identities among those whose P(same) reaches `min_p_same`, and
- every watchlist identity that reaches `min_p_same`, even beyond `top_k` (an operator asked to be
  told about that person, so it is never crowded out by look-alikes; the hub decides the alert).

The threshold reads P(same) only: re-ranked distances are relative to the gallery (with one identity
enrolled they are constant), so they order candidates and never decide whether one passes. Ties in
order are broken by identity id, so the result never depends on the gallery's order.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from models.calibration import Calibration
from models.errors import InvalidInputError
from models.scores import DEFAULT_RECALL_P_SAME, check_p_same


@dataclass(frozen=True)
class Candidate:
    """One short-listed identity.

    `rank` is the identity's 0-based position among the identities that reached `min_p_same`, by
    ordering distance (0 = nearest); as in the wire's `Candidate`. `watchlist` says the identity is
    on the watchlist. `cosine_distance` (to its nearest reference vector) is what `p_same` was read
    from.
    """

    identity_id: str
    distance: float
    rank: int
    watchlist: bool = False
    p_same: float | None = None
    cosine_distance: float | None = None


class ShortListPolicy:
    """Top-K above a P(same) floor, watchlist identities never crowded out.

    Args:
        top_k: how many identities to keep at most, watchlist hits aside (0: watchlist hits only).
        min_p_same: the stage-1 P(same) a candidate needs (stage one is for recall: keep it low).
        watchlist: identity ids on the watchlist.
        calibration: the edge model's P(same) calibration (None: the zoo's, see `EmbedWorker`).
    """

    def __init__(self, top_k: int = 5, min_p_same: float = DEFAULT_RECALL_P_SAME,
                 watchlist: Collection[str] = (), calibration: Calibration | None = None) -> None:
        if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 0:
            raise InvalidInputError(f"top_k: expected an integer >= 0, got {top_k!r}")
        bad = [i for i in watchlist if not isinstance(i, str) or not i]
        if bad:  # a list, so that a None id is caught too
            raise InvalidInputError(f"watchlist: expected non-empty string ids, got {bad[0]!r}")
        self.top_k = int(top_k)
        self.min_p_same = check_p_same("min_p_same", min_p_same)
        self.watchlist = frozenset(watchlist)
        self.calibration = calibration

    def with_watchlist(self, watchlist: Collection[str]) -> ShortListPolicy:
        return ShortListPolicy(self.top_k, self.min_p_same, watchlist, self.calibration)

    def decide(self, ids: Sequence[str] | np.ndarray, distances: Sequence[float] | np.ndarray,
               p_same: Sequence[float] | np.ndarray, cosine: Sequence[float] | np.ndarray | None = None
               ) -> list[Candidate]:
        """The short list for one recall row (N gallery entries), nearest first.

        `ids` may be a list of strings or a numpy string array (cheaper for a large gallery: keep one);
        `cosine` (N,), when given, is carried on the candidates. Only entries that reach `min_p_same`
        are grouped and sorted, so the cost is O(N) plus a sort of those.
        """
        id_array, d = _validate_row(ids, distances)
        p = np.asarray(p_same, dtype=np.float64)
        if p.shape != d.shape or np.any(np.isnan(p)):
            raise InvalidInputError(f"p_same: expected {len(d)} numbers, one per distance, got shape {p.shape}")
        c = None if cosine is None else np.asarray(cosine, dtype=np.float64)
        if c is not None and c.shape != d.shape:
            raise InvalidInputError(f"cosine: expected {len(d)} numbers, one per distance, got shape {c.shape}")
        eligible = np.flatnonzero(p >= self.min_p_same)
        best: dict[str, list[float]] = {}  # identity -> [order distance, p_same, cosine]
        for index in eligible[np.argsort(d[eligible], kind="stable")]:
            identity = str(id_array[index])
            entry = best.get(identity)
            cos = math.nan if c is None else float(c[index])
            if entry is None:
                best[identity] = [float(d[index]), float(p[index]), cos]
            elif p[index] > entry[1]:
                entry[1], entry[2] = float(p[index]), cos
        order = sorted(best, key=lambda i: (best[i][0], i))
        short: list[Candidate] = []
        for rank, identity in enumerate(order):
            on_watchlist = identity in self.watchlist
            if rank >= self.top_k and not on_watchlist:
                continue
            distance, prob, cos = best[identity]
            short.append(Candidate(identity, distance, rank, on_watchlist, prob, None if math.isnan(cos) else cos))
        return short


def _validate_row(ids: Sequence[str] | np.ndarray, distances: Sequence[float] | np.ndarray) -> tuple[
    np.ndarray, np.ndarray
]:
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 1:
        raise InvalidInputError(f"distances: expected one row of shape (N,), got shape {d.shape}")
    if np.any(np.isnan(d)):
        raise InvalidInputError(f"distances: expected numbers, got NaN at {np.flatnonzero(np.isnan(d)).tolist()}")
    if isinstance(ids, np.ndarray) and ids.dtype.kind == "U":
        id_array = ids
    else:
        id_list = list(ids)
        bad = [x for x in id_list if not isinstance(x, str)]
        if bad:  # a list, so that a None id is caught too (np.array would make it "None")
            raise InvalidInputError(f"ids: expected identity ids as strings, got {type(bad[0]).__name__} {bad[0]!r}")
        id_array = np.array(id_list, dtype=str) if id_list else np.zeros(0, dtype="<U1")
    if id_array.shape != d.shape:
        raise InvalidInputError(f"ids: expected {len(d)} ids, one per distance, got shape {id_array.shape}")
    return id_array, d
