"""Description scores and two-stage ranking, each checked against a plain-loop reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.attributes.query import parse_description
from models.attributes.scoring import (
    ProfileTable,
    combined_similarity,
    description_scores,
    matched_constraints,
    rank_by_description,
)
from models.attributes.types import ATTRIBUTE_NAMES, COLOUR_NAMES, AttributeProfile, ColourReading, TextQuery
from models.errors import InvalidInputError
from models.rerank import crossmodal_rerank, image_neighbours


def _random_profiles(n: int, seed: int = 0) -> list[AttributeProfile]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        probs = dict(zip(ATTRIBUTE_NAMES, rng.random(len(ATTRIBUTE_NAMES)).tolist(), strict=True))
        parts = [None if rng.random() < 0.2 else ColourReading(COLOUR_NAMES[rng.integers(11)], float(rng.random()))
                 for _ in range(2)]
        out.append(AttributeProfile(probs, parts[0], parts[1]))
    return out


def _reference_score(query: TextQuery, profile: AttributeProfile) -> float:
    total = 0.0
    for c in query.constraints:
        if c.kind == "attribute":
            p = profile.probabilities[c.name]
        else:
            reading = profile.upper if c.part == "upper" else profile.lower
            if reading is None:
                p = 1 / 11
            else:
                p = reading.confidence if reading.name == c.name else (1 - reading.confidence) / 10
        p = p if c.positive else 1 - p
        total += math.log(min(max(p, 1e-3), 1 - 1e-3))
    return total


QUERIES = ["woman, red top, black trousers, no backpack", "man with a hat and a blue jacket",
           "no bag, long hair, white shorts", "green dress"]


@pytest.mark.parametrize("text", QUERIES)
def test_scores_match_the_reference(text: str) -> None:
    query = parse_description(text)
    profiles = _random_profiles(50)
    np.testing.assert_allclose(description_scores(query, profiles),
                               [_reference_score(query, p) for p in profiles], rtol=1e-12)
    matched = matched_constraints(query, profiles[0])
    assert [c for c, _ in matched] == list(query.constraints)
    clipped = sum(math.log(min(max(p, 1e-3), 1 - 1e-3)) for _, p in matched)
    assert clipped == pytest.approx(_reference_score(query, profiles[0]))


def test_a_missing_colour_is_neutral_between_a_match_and_a_contradiction() -> None:
    query = parse_description("red top")
    probs = dict.fromkeys(ATTRIBUTE_NAMES, 0.5)
    match, missing, other = (AttributeProfile(probs, upper, None) for upper in
                             (ColourReading("red", 0.6), None, ColourReading("blue", 0.9)))
    scores = description_scores(query, [match, missing, other])
    assert scores[0] > scores[1] > scores[2]
    assert scores[1] == pytest.approx(math.log(1 / 11))


def _reference_ranking(query: TextQuery, profiles: list[AttributeProfile], vectors: np.ndarray | None,
                       top_k: int, k: int, weight: float) -> tuple[np.ndarray, np.ndarray]:
    sim = np.exp(np.array([_reference_score(query, p) for p in profiles]) / len(query.constraints))
    final = sim.astype(np.float64)
    if vectors is not None:
        unit = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
        cos = unit @ unit.T
        final = crossmodal_rerank(sim[None].astype(np.float64), image_neighbours(cos, k), k, weight)[0]
    order = np.argsort(-final, kind="stable")[:top_k]
    return order, final[order]


@pytest.mark.parametrize(("n", "top_k", "k", "weight"), [(60, 5, 10, 0.1), (60, 10, 5, 0.5), (8, 20, 10, 0.1),
                                                         (200, 3, 10, 1.0)])
def test_two_stage_ranking_matches_crossmodal_rerank_on_the_full_matrix(n: int, top_k: int, k: int,
                                                                        weight: float) -> None:
    query = parse_description("woman, red top, black trousers, backpack")
    profiles = _random_profiles(n, seed=n)
    vectors = np.random.default_rng(1).normal(size=(n, 16)).astype(np.float32)
    idx, score = rank_by_description(query, profiles, vectors, top_k=top_k, k=k, weight=weight)
    ref_idx, ref_score = _reference_ranking(query, profiles, vectors, min(top_k, n), k, weight)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(score, ref_score, rtol=1e-5)
    assert idx.dtype == np.int64 and score.dtype == np.float64


def test_without_vectors_the_ranking_is_stage_one() -> None:
    query = parse_description("man, blue jeans")
    profiles = _random_profiles(30)
    idx, score = rank_by_description(query, profiles, None, top_k=30)
    ref_idx, ref_score = _reference_ranking(query, profiles, None, 30, 10, 0.1)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(score, ref_score)
    assert np.all((score > 0) & (score <= 1))
    empty = rank_by_description(query, [], None, top_k=3)
    assert empty[0].shape == (0,) and empty[1].shape == (0,)


def test_the_candidate_cap_keeps_a_large_gallery_to_a_shortlist() -> None:
    # all equal stage-one scores: every profile is a candidate; the cap re-ranks the first ones only
    query = parse_description("hat")
    probs = dict.fromkeys(ATTRIBUTE_NAMES, 0.5)
    profiles = [AttributeProfile(probs, None, None)] * 40
    vectors = np.random.default_rng(2).normal(size=(40, 8)).astype(np.float32)
    idx, _ = rank_by_description(query, profiles, vectors, top_k=5, k=4, weight=0.1, max_candidates=12)
    assert set(idx.tolist()) <= set(range(12))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"top_k": 0}, "top_k: expected an integer >= 1, got 0"),
        ({"top_k": 3, "k": 0}, "k: expected an integer >= 1, got 0"),
        ({"top_k": 3, "max_candidates": 0}, "max_candidates: expected an integer >= 1, got 0"),
        ({"top_k": 3, "weight": -1.0}, "weight: expected a finite number >= 0"),
        ({"top_k": 3, "vectors": np.zeros((2, 4))}, "image_vectors: expected shape (5, D), got (2, 4)"),
        ({"top_k": 3, "vectors": np.full((5, 4), np.nan)}, "image_vectors: expected finite numbers"),
    ],
)
def test_bad_arguments(kwargs: dict, error: str) -> None:
    query = parse_description("hat")
    vectors = kwargs.pop("vectors", None)
    with pytest.raises(InvalidInputError) as info:
        rank_by_description(query, _random_profiles(5), vectors, **kwargs)
    assert error in str(info.value)
    with pytest.raises(InvalidInputError, match="query: expected a TextQuery, got str"):
        description_scores("hat", _random_profiles(2))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"profiles\[1\]: expected an AttributeProfile"):
        description_scores(query, [_random_profiles(1)[0], {"male": 1.0}])  # type: ignore[list-item]


def test_a_profile_table_scores_like_the_profiles() -> None:
    query = parse_description(QUERIES[0])
    profiles = _random_profiles(40, seed=3)
    table = ProfileTable.from_profiles(profiles)
    assert len(table) == 40
    np.testing.assert_array_equal(description_scores(query, table), description_scores(query, profiles))
    vectors = np.random.default_rng(4).normal(size=(40, 8)).astype(np.float32)
    for a, b in zip(rank_by_description(query, table, vectors, top_k=7),
                    rank_by_description(query, profiles, vectors, top_k=7), strict=True):
        np.testing.assert_array_equal(a, b)
    empty = ProfileTable.from_profiles([])
    assert len(empty) == 0 and empty.colour.shape == (0, 2)
    with pytest.raises(InvalidInputError, match=r"colour: expected \(2, 2\) int64, got \(2, 2\) float64"):
        ProfileTable(np.zeros((2, 8)), np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(InvalidInputError, match="colour: expected indices in"):
        ProfileTable(np.zeros((1, 8)), np.array([[11, -1]]), np.zeros((1, 2)))


def _reference_combined(sim: np.ndarray, cosine: np.ndarray, weight: float, low: float, high: float) -> np.ndarray:
    """Plain loop: each known cosine scaled onto [0, 1] by the model's range, clipped, mixed in; NaN as 0.5."""
    out = []
    for s, c in zip(sim, cosine, strict=True):
        mapped = 0.5 if math.isnan(c) else min(1.0, max(0.0, (c - low) / (high - low)))
        out.append((1 - weight) * s + weight * mapped)
    return np.array(out)


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.5, 1.0])
def test_text_image_cosine_is_mixed_into_stage_one_as_the_reference_says(weight: float) -> None:
    query = parse_description("woman, red top, backpack")
    profiles = _random_profiles(80, seed=3)
    vectors = np.random.default_rng(2).normal(size=(80, 16)).astype(np.float32)
    cosine = np.random.default_rng(4).uniform(0.1, 0.4, 80)  # some outside the range: clipped
    cosine[[3, 17, 40]] = np.nan  # stored before the text-image model was on
    sim = np.exp(np.array([_reference_score(query, p) for p in profiles]) / len(query.constraints))
    mixed = _reference_combined(sim, cosine, weight, 0.12, 0.33)
    np.testing.assert_allclose(combined_similarity(sim, cosine, weight, (0.12, 0.33)), mixed, rtol=1e-12)
    k, rerank_weight = 10, 0.1
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    final = crossmodal_rerank(mixed[None], image_neighbours((unit @ unit.T).astype(np.float32), k), k,
                              rerank_weight)[0]
    ref_idx = np.argsort(-final, kind="stable")[:10]
    idx, score = rank_by_description(query, profiles, vectors, top_k=10, k=k, weight=rerank_weight,
                                     text_image_cosine=cosine, text_image_weight=weight, text_image_range=(0.12, 0.33))
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(score, final[ref_idx], rtol=1e-5)


def test_text_image_edge_cases() -> None:
    sim = np.array([0.2, 0.5, 0.9])
    np.testing.assert_allclose(combined_similarity(sim, np.full(3, np.nan), 0.5), 0.5 * sim + 0.25)  # no vectors
    # a tracklet without a vector sits between the same attributes with the worst and with the best cosine
    assert list(combined_similarity(np.full(3, 0.8), np.array([0.15, np.nan, 0.35]), 0.5)) == [0.4, 0.65, 0.9]
    np.testing.assert_allclose(combined_similarity(sim, np.array([0.25, 0.0, 0.9]), 1.0), [0.5, 0.0, 1.0])
    # with weight 1 the cosine alone orders: the attribute score's order is overturned
    assert list(np.argsort(-combined_similarity(sim, np.array([0.3, 0.2, 0.1]), 1.0))) == [0, 1, 2]
    # a tracklet's score depends on it and the text alone, not on the others ranked beside it
    assert combined_similarity(sim[:1], np.array([0.3]), 0.5)[0] == combined_similarity(sim, np.array([0.3, 0.0, 0.9]),
                                                                                       0.5)[0]
    for cosine, weight, error in ((np.zeros(2), 0.5, "shape"), (np.array([0.1, np.inf, 0.2]), 0.5, "finite"),
                                  (np.zeros(3), 1.5, "weight"), (np.zeros(3), True, "weight")):
        with pytest.raises(InvalidInputError, match=error):
            combined_similarity(sim, cosine, weight)
    for bad in ((0.3, 0.3), (0.4, 0.2), (-2.0, 0.5), ("a", 1), (0.1,)):
        with pytest.raises(InvalidInputError, match="cosine_range"):
            combined_similarity(sim, np.zeros(3), 0.5, bad)  # type: ignore[arg-type]
