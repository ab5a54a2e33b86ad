"""Stage one of a text search: how likely a description is under each tracklet's attributes.

Each constraint is treated as an independent event whose probability the profile gives:
- an attribute: p (positive) or 1 - p (negative), p the model's probability;
- a colour on a part: the reader says name r with confidence c, read as P(colour = r) = c and the
  other colours sharing 1 - c equally; a positive constraint on colour x takes P(x), a negative one
  1 - P(x). A profile with no reading for that part gets the prior P(x) = 1/11 — neutral: it neither
  matches nor contradicts, so it ranks below a confirmed match and above a contradiction.
The description's log-likelihood is the sum of the logs, each probability clipped to
[PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR] so one confident mistake of the model costs a bounded
amount instead of -inf.

`rank_by_description` turns the log-likelihood into a [0, 1] similarity (the geometric mean of the
constraints' probabilities) and refines it with the cross-modal neighbour re-ranking of
`models.rerank.crossmodal` when Re-ID vectors are given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from models.attributes.types import ATTRIBUTE_NAMES, COLOUR_NAMES, AttributeProfile, Constraint, TextQuery
from models.errors import InvalidInputError
from models.rerank._common import stable_topk

PROBABILITY_FLOOR = 1e-3
_ATTRIBUTE_INDEX = {name: i for i, name in enumerate(ATTRIBUTE_NAMES)}
_COLOUR_INDEX = {name: i for i, name in enumerate(COLOUR_NAMES)}
# at most this many stage-one candidates get their image neighbourhoods computed (see rank_by_description)
MAX_RERANK_CANDIDATES = 256


def constraint_probability(constraint: Constraint, profile: AttributeProfile) -> float:
    """The probability, under `profile`, that `constraint` holds (before clipping)."""
    if constraint.kind == "attribute":
        p = profile.probabilities[constraint.name]
    else:
        reading = profile.colour(constraint.part)
        if reading is None:
            p = 1.0 / len(COLOUR_NAMES)
        elif reading.name == constraint.name:
            p = reading.confidence
        else:
            p = (1.0 - reading.confidence) / (len(COLOUR_NAMES) - 1)
    return p if constraint.positive else 1.0 - p


def matched_constraints(query: TextQuery, profile: AttributeProfile) -> list[tuple[Constraint, float]]:
    """Each constraint of `query` with its probability under `profile` (for "what matched" in the UI)."""
    _check_query(query)
    if not isinstance(profile, AttributeProfile):
        raise InvalidInputError(f"profile: expected an AttributeProfile, got {type(profile).__name__}")
    return [(c, constraint_probability(c, profile)) for c in query.constraints]


def _profile_arrays(profiles: Sequence[AttributeProfile]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 8) probabilities, (N, 2) colour index per part (-1 when absent), (N, 2) confidences."""
    n = len(profiles)
    probs = np.empty((n, len(ATTRIBUTE_NAMES)), np.float64)
    colour = np.full((n, 2), -1, np.int64)
    confidence = np.zeros((n, 2), np.float64)
    for i, profile in enumerate(profiles):
        if not isinstance(profile, AttributeProfile):
            raise InvalidInputError(f"profiles[{i}]: expected an AttributeProfile, got {type(profile).__name__}")
        probs[i] = profile.probabilities.as_tuple()
        for j, reading in enumerate((profile.upper, profile.lower)):
            if reading is not None:
                colour[i, j] = _COLOUR_INDEX[reading.name]
                confidence[i, j] = reading.confidence
    return probs, colour, confidence


def description_scores(query: TextQuery, profiles: Sequence[AttributeProfile]) -> np.ndarray:
    """(N,) float64 log-likelihood of the description under each profile (higher = better match)."""
    _check_query(query)
    probs, colour, confidence = _profile_arrays(profiles)
    total = np.zeros(len(profiles), np.float64)
    n_colours = len(COLOUR_NAMES)
    for constraint in query.constraints:
        if constraint.kind == "attribute":
            p = probs[:, _ATTRIBUTE_INDEX[constraint.name]]
        else:
            part = 0 if constraint.part == "upper" else 1
            same = colour[:, part] == _COLOUR_INDEX[constraint.name]
            p = np.where(same, confidence[:, part], (1.0 - confidence[:, part]) / (n_colours - 1))
            p = np.where(colour[:, part] < 0, 1.0 / n_colours, p)
        if not constraint.positive:
            p = 1.0 - p
        total += np.log(np.clip(p, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR))
    return total


def description_similarity(query: TextQuery, scores: np.ndarray) -> np.ndarray:
    """Log-likelihoods → [0, 1]: the geometric mean of the constraints' probabilities."""
    return np.exp(np.asarray(scores, np.float64) / len(query.constraints))


def rank_by_description(
    query: TextQuery,
    profiles: Sequence[AttributeProfile],
    image_vectors: np.ndarray | None,
    *,
    top_k: int,
    k: int = 10,
    weight: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """The `top_k` best profiles for `query`: (indices int64, final scores float64), best first.

    Stage one scores every profile by `description_similarity`. With `image_vectors` (N, D) Re-ID
    vectors (cosine image-image), each candidate g gets ``+ weight * |A ∩ B_g| / |A ∪ B_g|``, A the
    text's k best images and B_g g's k nearest images (itself first) — exactly
    `crossmodal_rerank(sim[None], image_neighbours(cos, k), k, weight)` restricted to the
    candidates. The term is at most `weight`, so only profiles within `weight` of the stage-one
    top_k-th similarity can enter the top_k; those candidates (at most MAX_RERANK_CANDIDATES, the best
    first: a shortlist, so that 10^4 tracklets stay fast) are re-ranked, the rest keep stage-one
    order. Ties break by index.
    """
    _check_query(query)
    n = len(profiles)
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
        raise InvalidInputError(f"top_k: expected an integer >= 1, got {top_k!r}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InvalidInputError(f"k: expected an integer >= 1, got {k!r}")
    if not (isinstance(weight, int | float) and math.isfinite(weight) and weight >= 0):
        raise InvalidInputError(f"weight: expected a finite number >= 0, got {weight!r}")
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    sim = description_similarity(query, description_scores(query, profiles))
    final = sim.copy()
    top_k = min(int(top_k), n)
    if image_vectors is not None and weight > 0:
        vectors = _check_vectors(image_vectors, n)
        k = min(int(k), n)
        order = np.argsort(-sim, kind="stable")
        kth = sim[order[top_k - 1]]
        candidates = order[: max(top_k, min(MAX_RERANK_CANDIDATES, int(np.count_nonzero(sim >= kth - weight))))]
        text_set = order[:k]
        rows = vectors[candidates] @ vectors.T  # (C, N) cosine
        rows[np.arange(len(candidates)), candidates] = np.inf  # g is its own first neighbour
        image_sets = stable_topk(-rows.astype(np.float64), k)  # (C, k)
        common = np.isin(image_sets, text_set).sum(axis=1)
        final[candidates] += weight * common / (2 * k - common)
    best = np.argsort(-final, kind="stable")[:top_k]
    return best.astype(np.int64), final[best]


def _check_query(query: TextQuery) -> None:
    if not isinstance(query, TextQuery):
        raise InvalidInputError(f"query: expected a TextQuery, got {type(query).__name__}")


def _check_vectors(vectors: np.ndarray, n: int) -> np.ndarray:
    if not isinstance(vectors, np.ndarray) or vectors.ndim != 2 or vectors.shape[0] != n:
        shape = getattr(vectors, "shape", type(vectors).__name__)
        raise InvalidInputError(f"image_vectors: expected shape ({n}, D), got {shape}")
    if not np.issubdtype(vectors.dtype, np.number) or not np.all(np.isfinite(vectors)):
        raise InvalidInputError("image_vectors: expected finite numbers")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)
