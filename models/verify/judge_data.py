"""Fine-tuning data for the MLLM judge, mined from the stage-one ranking (MUSE).

    >>> pairs = mine_pairs(distances, labels, cameras, top_k=10)     # doctest: +SKIP
    >>> records = judge_records(pairs, paths, swap=True)               # doctest: +SKIP

Every image is a query once. Its candidates are the images of *other* cameras, ranked by the
stage-one distance (ties by index). The judge only ever sees a query's short list, so:

- negatives are the highest-ranked wrong identities of the short list (the first `top_k`
  candidates), one image per identity, in rank order — stage one's hard negatives;
- positives are the query's identity on other cameras, in rank order (nearest first: the ones that
  reach the short list at run time);
- each query gives as many positives as negatives (the smaller count, capped by `per_query`); a
  query with no positive or no negative gives none.

A record is one conversation in the messages + images layout that common VLM trainers read: the
user turn is exactly the judge's prompt (`models.verify.prompt.chat_content`, images as
``{"type": "image"}``), the assistant answers "Yes" or "No", and ``images`` lists the query then the
candidate path, in the order of the image entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import InvalidInputError
from models.verify.prompt import NO, YES, chat_content


@dataclass(frozen=True)
class MinedPairs:
    """(query, candidate) index pairs with their answer and the candidate's stage-one rank.

    All arrays have shape (M,): `query` and `candidate` index the distance matrix, `same` is True for
    a positive, `rank` is the candidate's 0-based place in the query's cross-camera ranking.
    """

    query: np.ndarray
    candidate: np.ndarray
    same: np.ndarray
    rank: np.ndarray

    def __post_init__(self) -> None:
        shapes = {name: getattr(getattr(self, name), "shape", None)
                  for name in ("query", "candidate", "same", "rank")}
        if len({s for s in shapes.values()}) != 1 or len(shapes["query"] or ()) != 1:
            raise InvalidInputError(f"MinedPairs: expected four arrays of one shape (M,), got {shapes}")
        if self.same.dtype != np.bool_:
            raise InvalidInputError(f"same: expected a bool array, got {self.same.dtype}")

    def __len__(self) -> int:
        return len(self.query)

    @property
    def n_positive(self) -> int:
        return int(self.same.sum())

    @property
    def n_negative(self) -> int:
        return len(self) - self.n_positive

    @property
    def n_queries(self) -> int:
        """Queries that gave at least one pair."""
        return len(np.unique(self.query))


def _check_inputs(distances: np.ndarray, labels: np.ndarray, cameras: np.ndarray, top_k: int,
                  per_query: int | None) -> None:
    if not isinstance(distances, np.ndarray) or distances.ndim != 2 or distances.shape[0] != distances.shape[1]:
        shape = getattr(distances, "shape", type(distances).__name__)
        raise InvalidInputError(f"distances: expected a square (N, N) array, got {shape}")
    n = distances.shape[0]
    for name, array in (("labels", labels), ("cameras", cameras)):
        if not isinstance(array, np.ndarray) or array.shape != (n,):
            shape = getattr(array, "shape", type(array).__name__)
            raise InvalidInputError(f"{name}: expected shape ({n},), got {shape}")
    if not np.all(np.isfinite(distances)):
        raise InvalidInputError("distances: expected finite values, got NaN or infinity")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InvalidInputError(f"top_k: expected a positive int, got {top_k!r}")
    if per_query is not None and (isinstance(per_query, bool) or not isinstance(per_query, int) or per_query < 1):
        raise InvalidInputError(f"per_query: expected a positive int or None, got {per_query!r}")


def mine_pairs(distances: np.ndarray, labels: np.ndarray, cameras: np.ndarray, top_k: int = 10,
               per_query: int | None = None) -> MinedPairs:
    """Balanced positive and hard-negative pairs for every query (see the module docstring).

    Args:
        distances: (N, N) stage-one distances between all images (smaller = more alike).
        labels: (N,) identity of each image.
        cameras: (N,) camera of each image; candidates come from other cameras only.
        top_k: the short list's length, where negatives are taken from.
        per_query: at most this many positives (and as many negatives) per query; None = no cap.
    """
    _check_inputs(distances, labels, cameras, top_k, per_query)
    query, candidate, same, rank = [], [], [], []
    for q in range(distances.shape[0]):
        others = np.flatnonzero(cameras != cameras[q])
        order = others[np.argsort(distances[q, others], kind="stable")]
        matches = labels[order] == labels[q]
        positives = np.flatnonzero(matches)
        shortlist = order[:top_k]
        wrong = np.flatnonzero(~matches[:top_k])
        _, first = np.unique(labels[shortlist[wrong]], return_index=True)
        negatives = wrong[np.sort(first)]  # the first image of each wrong identity, in rank order
        n = min(len(positives), len(negatives), per_query or len(positives))
        for places, is_same in ((positives[:n], True), (negatives[:n], False)):
            query.extend([q] * n)
            candidate.extend(order[places].tolist())
            same.extend([is_same] * n)
            rank.extend(places.tolist())
    return MinedPairs(np.asarray(query, np.int64), np.asarray(candidate, np.int64),
                      np.asarray(same, np.bool_), np.asarray(rank, np.int64))


def judge_record(query_path: str | Path, candidate_path: str | Path, same: bool) -> dict[str, Any]:
    """One conversation: the judge's prompt over (query, candidate) and the answer "Yes" or "No"."""
    return {
        "messages": [
            {"role": "user", "content": chat_content(lambda slot: {"type": "image"})},
            {"role": "assistant", "content": [{"type": "text", "text": YES if same else NO}]},
        ],
        "images": [str(query_path), str(candidate_path)],
    }


def judge_records(pairs: MinedPairs, paths: Sequence[str | Path], swap: bool = True) -> list[dict[str, Any]]:
    """The records of `pairs` (image `i` is ``paths[i]``), each followed by its swapped copy with `swap`."""
    if len(paths) <= (int(max(pairs.query.max(), pairs.candidate.max())) if len(pairs) else -1):
        raise InvalidInputError(f"paths: expected a path for every mined index, got {len(paths)} paths")
    records = []
    for q, c, is_same in zip(pairs.query.tolist(), pairs.candidate.tolist(), pairs.same.tolist(), strict=True):
        records.append(judge_record(paths[q], paths[c], is_same))
        if swap:
            records.append(judge_record(paths[c], paths[q], is_same))
    return records
