"""The short-list policy: which gallery identities a closed tracklet sends up for confirmation.

Input is one tracklet's re-ranked distance row to the gallery: an identity id per gallery entry and
a distance (lower is closer). An identity with several gallery vectors counts once, at its nearest
entry. The policy keeps

- the `top_k` nearest identities among those within their threshold, and
- every watchlist identity within its own threshold, even beyond `top_k` (an operator asked to be
  told about that person, so it is never crowded out by look-alikes).

An identity's threshold is its watchlist threshold if it has one (stricter or looser than the
global one), else `max_distance`. A distance equal to the threshold passes. Ties in distance are
broken by identity id, so the result never depends on the gallery's order.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.errors import InvalidInputError


@dataclass(frozen=True)
class Candidate:
    """One short-listed identity.

    `rank` is the identity's 0-based position among the distinct identities of the row sorted by
    distance (0 = nearest), whether or not the nearer ones were kept; as in the wire's `Candidate`.
    `watchlist` says the identity has a watchlist threshold and passed it.
    """

    identity_id: str
    distance: float
    rank: int
    watchlist: bool = False


class ShortListPolicy:
    """Top-K within a distance threshold, with per-identity watchlist thresholds.

    Args:
        top_k: how many identities to keep at most, watchlist hits aside (0: watchlist hits only).
        max_distance: the threshold for identities not on the watchlist. The default, infinity, keeps
            the plain top-K; the right value depends on the model and the re-ranking and should be
            calibrated on labelled data.
        watchlist_thresholds: identity id → its own distance threshold.
    """

    def __init__(
        self,
        top_k: int = 5,
        max_distance: float = math.inf,
        watchlist_thresholds: Mapping[str, float] | None = None,
    ) -> None:
        if not isinstance(top_k, numbers.Integral) or isinstance(top_k, bool) or top_k < 0:
            raise InvalidInputError(f"top_k: expected an integer >= 0, got {top_k!r}")
        if not isinstance(max_distance, numbers.Real) or math.isnan(max_distance):
            raise InvalidInputError(f"max_distance: expected a number, got {max_distance!r}")
        watchlist = dict(watchlist_thresholds or {})
        for identity, threshold in watchlist.items():
            if not isinstance(identity, str) or not identity:
                raise InvalidInputError(f"watchlist_thresholds: expected non-empty string ids, got {identity!r}")
            if not isinstance(threshold, numbers.Real) or math.isnan(threshold):
                raise InvalidInputError(
                    f"watchlist_thresholds[{identity!r}]: expected a number, got {threshold!r}"
                )
        self.top_k = int(top_k)
        self.max_distance = float(max_distance)
        self.watchlist_thresholds = {identity: float(t) for identity, t in watchlist.items()}
        self._max_watch = max(self.watchlist_thresholds.values(), default=-math.inf)
        self._reach = max(self.max_distance, self._max_watch)

    def threshold(self, identity_id: str) -> float:
        """The distance threshold that applies to one identity."""
        return self.watchlist_thresholds.get(identity_id, self.max_distance)

    def decide(self, ids: Sequence[str] | np.ndarray, distances: Sequence[float] | np.ndarray) -> list[Candidate]:
        """The short list for one distance row (N gallery entries), nearest first.

        `ids` may be a list of strings or a numpy string array (cheaper for a large gallery: keep one).
        Only the nearest entries are sorted, so the cost is O(N) plus a sort of a few times top_k
        entries and of the entries within the widest watchlist threshold.
        """
        id_array, d = _validate_row(ids, distances)
        eligible = np.flatnonzero(d <= self._reach)  # anything farther passes no threshold
        head_size = 16 * (self.top_k + 1)
        if len(eligible) > 4 * head_size:
            near = d[eligible]
            cutoff = max(float(np.partition(near, head_size)[head_size]), self._max_watch)
            head = eligible[near <= cutoff]  # every entry at or below the cutoff, ties included
            short, kept = self._walk(id_array, d, head)
            if kept >= self.top_k:  # farther entries could only matter to an unfilled top-K
                return short
        return self._walk(id_array, d, eligible)[0]

    def _walk(self, id_array: np.ndarray, d: np.ndarray, entries: np.ndarray) -> tuple[list[Candidate], int]:
        """Walk `entries` (every entry of the row up to some distance) nearest first; (short list, kept)."""
        order = entries[np.lexsort((id_array[entries], d[entries]))]
        short: list[Candidate] = []
        seen: set[str] = set()
        kept = 0
        for index in order:
            distance = float(d[index])
            if kept >= self.top_k and distance > self._max_watch:
                break  # top-K is full and no watchlist threshold reaches this far
            identity = str(id_array[index])
            if identity in seen:
                continue
            rank = len(seen)
            seen.add(identity)
            on_watchlist = identity in self.watchlist_thresholds
            if distance > self.threshold(identity):
                continue
            if kept < self.top_k:
                kept += 1
            elif not on_watchlist:
                continue
            short.append(Candidate(identity, distance, rank, on_watchlist))
        return short, kept


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
        bad = next((x for x in id_list if not isinstance(x, str)), None)
        if bad is not None:
            raise InvalidInputError(f"ids: expected identity ids as strings, got {type(bad).__name__} {bad!r}")
        id_array = np.array(id_list, dtype=str) if id_list else np.zeros(0, dtype="<U1")
    if id_array.shape != d.shape:
        raise InvalidInputError(f"ids: expected {len(d)} ids, one per distance, got shape {id_array.shape}")
    return id_array, d
