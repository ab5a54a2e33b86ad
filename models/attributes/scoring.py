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
constraints' probabilities), mixes in a text-image model's cosines when the deployment has one
(`combined_similarity`), and refines it with the cross-modal neighbour re-ranking of
`models.rerank.crossmodal` when Re-ID vectors are given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.attributes.types import ATTRIBUTE_NAMES, COLOUR_NAMES, AttributeProfile, Constraint, TextQuery
from models.errors import InvalidInputError
from models.rerank._common import stable_topk
from models.zoo.spec import (
    DEFAULT_COSINE_RANGE,
    DEFAULT_TEXT_IMAGE_WEIGHT,
    check_cosine_range,
    check_text_image_weight,
)

PROBABILITY_FLOOR = 1e-3
_ATTRIBUTE_INDEX = {name: i for i, name in enumerate(ATTRIBUTE_NAMES)}
_COLOUR_INDEX = {name: i for i, name in enumerate(COLOUR_NAMES)}
# default cap on the stage-one candidates whose image neighbourhoods are computed (rank_by_description):
# each costs a cosine row and a top-k over all N images
MAX_RERANK_CANDIDATES = 100
NEUTRAL_TEXT_IMAGE = 0.5  # the mapped text-image score of a tracklet without a vector


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


@dataclass(frozen=True)
class ProfileTable:
    """Many profiles as arrays, built once (e.g. by an edge store) and scored by many queries.

    probabilities (N, 8) float64 in ATTRIBUTE_NAMES order; colour (N, 2) int64 indices into
    COLOUR_NAMES for (upper, lower), -1 where no colour was read; confidence (N, 2) float64."""

    probabilities: np.ndarray
    colour: np.ndarray
    confidence: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.probabilities)
        for name, value, dtype, width in (("probabilities", self.probabilities, np.float64, len(ATTRIBUTE_NAMES)),
                                          ("colour", self.colour, np.int64, 2),
                                          ("confidence", self.confidence, np.float64, 2)):
            if not isinstance(value, np.ndarray) or value.dtype != dtype or value.shape != (n, width):
                got = f"{value.shape} {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
                raise InvalidInputError(f"{name}: expected ({n}, {width}) {np.dtype(dtype)}, got {got}")
        if n and (self.colour.min() < -1 or self.colour.max() >= len(COLOUR_NAMES)):
            raise InvalidInputError(f"colour: expected indices in [-1, {len(COLOUR_NAMES)}), got out-of-range values")

    def __len__(self) -> int:
        return len(self.probabilities)

    @classmethod
    def from_profiles(cls, profiles: Sequence[AttributeProfile]) -> ProfileTable:
        for i, profile in enumerate(profiles):
            if not isinstance(profile, AttributeProfile):
                raise InvalidInputError(f"profiles[{i}]: expected an AttributeProfile, got {type(profile).__name__}")
        n = len(profiles)
        probs = np.array([p.probabilities.as_tuple() for p in profiles], np.float64).reshape(n, len(ATTRIBUTE_NAMES))
        readings = [(p.upper, p.lower) for p in profiles]
        colour = np.array([[-1 if r is None else _COLOUR_INDEX[r.name] for r in pair] for pair in readings],
                          np.int64).reshape(n, 2)
        confidence = np.array([[0.0 if r is None else r.confidence for r in pair] for pair in readings],
                              np.float64).reshape(n, 2)
        return cls(probs, colour, confidence)


Profiles = Sequence[AttributeProfile] | ProfileTable


def _table(profiles: Profiles) -> ProfileTable:
    return profiles if isinstance(profiles, ProfileTable) else ProfileTable.from_profiles(profiles)


def description_scores(query: TextQuery, profiles: Profiles) -> np.ndarray:
    """(N,) float64 log-likelihood of the description under each profile (higher = better match).
    `profiles`: AttributeProfiles, or a ProfileTable built once for many queries."""
    _check_query(query)
    table = _table(profiles)
    probs, colour, confidence = table.probabilities, table.colour, table.confidence
    total = np.zeros(len(table), np.float64)
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


def combined_similarity(attribute_similarity: np.ndarray, cosine: np.ndarray, weight: float,
                        cosine_range: tuple[float, float] = DEFAULT_COSINE_RANGE) -> np.ndarray:
    """Stage one with a text-image model: ``(1 - weight) * attribute + weight * c`` per tracklet, `c` the
    text-image cosine mapped onto [0, 1] by the model's `cosine_range` (low → 0, high → 1, clipped).

    Why the mapping: a CLIP-style model's text-image cosines sit in a narrow band (about 0.15–0.35 for
    OpenAI's), so added raw to a [0, 1] attribute score `weight` would mean almost nothing. The range is
    the model's, fixed (its manifest's `cosine_range`), not the ranked tracklets' own lowest and highest:
    a tracklet's score then depends on it and the text alone, so scores from different edges and different
    filters compare (the hub merges edges' hits by score). A NaN cosine (a tracklet stored without a
    text-image vector) counts as `c` = 0.5, neutral, as an unread colour is: it neither matches nor
    contradicts, so such tracklets neither crowd the top nor sink below the ones that have a vector."""
    attribute_similarity = np.asarray(attribute_similarity, np.float64)
    cosine = np.asarray(cosine, np.float64)
    if cosine.shape != attribute_similarity.shape:
        raise InvalidInputError(f"text_image_cosine: expected shape {attribute_similarity.shape}, got {cosine.shape}")
    weight = check_text_image_weight(weight, "text_image_weight")
    low, high = check_cosine_range(cosine_range)
    if np.any(np.isinf(cosine)):
        raise InvalidInputError("text_image_cosine: expected finite numbers (NaN: no vector)")
    scaled = np.clip((cosine - low) / (high - low), 0.0, 1.0)
    scaled[np.isnan(cosine)] = NEUTRAL_TEXT_IMAGE
    return (1.0 - weight) * attribute_similarity + weight * scaled


def rank_by_description(
    query: TextQuery,
    profiles: Profiles,
    image_vectors: np.ndarray | None,
    *,
    top_k: int,
    k: int = 10,
    weight: float = 0.1,
    max_candidates: int = MAX_RERANK_CANDIDATES,
    text_image_cosine: np.ndarray | None = None,
    text_image_weight: float = DEFAULT_TEXT_IMAGE_WEIGHT,
    text_image_range: tuple[float, float] = DEFAULT_COSINE_RANGE,
) -> tuple[np.ndarray, np.ndarray]:
    """The `top_k` best profiles for `query`: (indices int64, final scores float64), best first.

    Stage one scores every profile by `description_similarity`, combined with `text_image_cosine` (N,)
    (the query text's cosine with each tracklet's text-image vector, NaN where it has none) by
    `combined_similarity` when given. With `image_vectors` (N, D) Re-ID
    vectors (cosine image-image), each candidate g gets ``+ weight * |A ∩ B_g| / |A ∪ B_g|``, A the
    text's k best images and B_g g's k nearest images (itself first) — exactly
    `crossmodal_rerank(sim[None], image_neighbours(cos, k), k, weight)` restricted to the
    candidates. The term is at most `weight`, so only profiles within `weight` of the stage-one
    top_k-th similarity can enter the top_k; those candidates (at most `max_candidates`, the best
    first: a shortlist, so that 10^4 tracklets stay fast) are re-ranked, the rest keep stage-one
    order. Ties break by index.
    """
    _check_query(query)
    table = _table(profiles)
    n = len(table)
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
        raise InvalidInputError(f"top_k: expected an integer >= 1, got {top_k!r}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InvalidInputError(f"k: expected an integer >= 1, got {k!r}")
    if not (isinstance(weight, int | float) and math.isfinite(weight) and weight >= 0):
        raise InvalidInputError(f"weight: expected a finite number >= 0, got {weight!r}")
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    if isinstance(max_candidates, bool) or not isinstance(max_candidates, int | np.integer) or max_candidates < 1:
        raise InvalidInputError(f"max_candidates: expected an integer >= 1, got {max_candidates!r}")
    sim = description_similarity(query, description_scores(query, table))
    if text_image_cosine is not None:
        sim = combined_similarity(sim, text_image_cosine, text_image_weight, text_image_range)
    final = sim.copy()
    top_k = min(int(top_k), n)
    if image_vectors is not None and weight > 0:
        vectors, inverse_norms = _check_vectors(image_vectors, n)
        k = min(int(k), n)
        order = np.argsort(-sim, kind="stable")
        kth = sim[order[top_k - 1]]
        candidates = order[: max(top_k, min(int(max_candidates), int(np.count_nonzero(sim >= kth - weight))))]
        text_set = order[:k]
        # (C, N) minus cosine, without a normalised copy of all N vectors
        rows = vectors[candidates] @ (-vectors.T)
        rows *= inverse_norms[candidates, None]
        rows *= inverse_norms[None, :]
        rows[np.arange(len(candidates)), candidates] = -np.inf  # g is its own first neighbour
        image_sets = stable_topk(rows, k)  # (C, k)
        common = np.isin(image_sets, text_set).sum(axis=1)
        final[candidates] += weight * common / (2 * k - common)
    best = np.argsort(-final, kind="stable")[:top_k]
    return best.astype(np.int64), final[best]


def _check_query(query: TextQuery) -> None:
    if not isinstance(query, TextQuery):
        raise InvalidInputError(f"query: expected a TextQuery, got {type(query).__name__}")


def _check_vectors(vectors: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 vectors and their inverse norms (0 for a zero vector)."""
    if not isinstance(vectors, np.ndarray) or vectors.ndim != 2 or vectors.shape[0] != n:
        shape = getattr(vectors, "shape", type(vectors).__name__)
        raise InvalidInputError(f"image_vectors: expected shape ({n}, D), got {shape}")
    if not np.issubdtype(vectors.dtype, np.number):
        raise InvalidInputError(f"image_vectors: expected numbers, got dtype {vectors.dtype}")
    vectors = vectors.astype(np.float32, copy=False)
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))
    if not np.all(np.isfinite(norms)):  # a NaN or inf anywhere in a row makes its norm NaN or inf
        raise InvalidInputError("image_vectors: expected finite numbers")
    return vectors, np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0).astype(np.float32)
