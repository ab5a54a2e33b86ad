"""μ-distance fusion, re-ranking after fusion, and the per-short-list decision, on hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.errors import InvalidInputError
from models.rerank import k_reciprocal_exact
from models.verify.fusion import (
    CONFIRMED,
    NEW_IDENTITY,
    REJECTED,
    decide,
    fuse_and_rerank,
    fuse_mu,
    shortlist_indices,
)

ROW = np.array([[0.2, 0.5, 0.3, 0.9]])


def test_fuse_mu_changes_only_the_judged_entries() -> None:
    fused = fuse_mu(ROW, np.array([[1.0, 0.0]]), np.array([[0, 2]]), alpha=0.2)
    np.testing.assert_allclose(fused, [[0.8 * 0.2 + 0.4 * 1.0, 0.5, 0.8 * 0.3, 0.9]])
    assert fused.dtype == np.float64
    assert ROW[0, 0] == 0.2  # the input is not modified


def test_fuse_mu_defaults_to_the_nearest_k_and_skips_nan() -> None:
    fused = fuse_mu(ROW, np.array([[0.5, np.nan]]))  # K=2: columns 0 then 2
    np.testing.assert_allclose(fused, [[0.8 * 0.2 + 0.4 * 0.5, 0.5, 0.3, 0.9]])


@pytest.mark.parametrize(("alpha", "expected"), [(0.0, ROW[0]), (1.0, [2.0, 0.5, 0.0, 0.9])])
def test_fuse_mu_alpha_extremes(alpha: float, expected: list[float]) -> None:
    fused = fuse_mu(ROW, np.array([[1.0, 0.0]]), np.array([[0, 2]]), alpha=alpha)
    np.testing.assert_allclose(fused[0], expected)


def test_shortlist_indices_are_ascending_with_ties_by_index() -> None:
    d = np.array([[0.4, 0.1, 0.4, 0.1, 0.0]])
    assert shortlist_indices(d, 4).tolist() == [[4, 1, 3, 0]]
    assert shortlist_indices(d, 99).shape == (1, 5)


@pytest.mark.parametrize(
    ("distances", "mu", "indices", "alpha", "message"),
    [
        (ROW, np.array([0.5]), None, 0.2, "mu: expected shape"),
        (ROW, np.array([[0.5, 1.5]]), np.array([[0, 1]]), 0.2, r"values in \[0, 1\]"),
        (ROW, np.array([[0.5]]), np.array([[4]]), 0.2, "indices: expected integers"),
        (ROW, np.array([[0.5]]), np.array([[0.0]]), 0.2, "indices: expected integers"),
        (ROW, np.array([[0.5, 0.5]]), np.array([[1, 1]]), 0.2, "same gallery item twice"),
        (ROW, np.array([[0.5]]), np.array([[0, 1]]), 0.2, "like mu"),
        (ROW, np.array([[0.5]]), None, 1.5, "alpha"),
        (ROW.astype(np.int64), np.array([[0.5]]), None, 0.2, "floating-point"),
        (np.array([0.1, 0.2]), np.array([[0.5]]), None, 0.2, "2-D"),
        (ROW, np.zeros((1, 5)), None, 0.2, "at most 4 columns"),
    ],
)
def test_fuse_mu_rejects_bad_input(distances, mu, indices, alpha, message) -> None:
    with pytest.raises(InvalidInputError, match=message):
        fuse_mu(distances, mu, indices, alpha)


def _points_to_distances(query: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, ...]:
    def dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.linalg.norm(a[:, None] - b[None], axis=2)
    return dist(query, gallery), dist(query, query), dist(gallery, gallery)


def test_fuse_and_rerank_is_rerank_of_the_fused_matrix_and_the_judge_can_flip_rank_one() -> None:
    # A is slightly nearer than B in the edge's space; the judge says A is someone else and B is the person
    query = np.array([[0.0, 0.0]])
    gallery = np.array([[0.30, 0.0], [0.0, 0.32], [1.0, 1.0], [1.1, 0.9], [-1.0, 1.2], [0.9, -1.1]])
    q_g, q_q, g_g = _points_to_distances(query, gallery)
    assert int(np.argmin(q_g)) == 0
    idx = shortlist_indices(q_g, 2)
    mu = np.array([[1.0, 0.0]])
    out = fuse_and_rerank(q_g, q_q, g_g, mu, idx, alpha=0.5, k1=3, k2=1)
    np.testing.assert_allclose(out, k_reciprocal_exact(fuse_mu(q_g, mu, idx, 0.5), q_q, g_g, k1=3, k2=1))
    assert out.shape == (1, 6) and out.dtype == np.float32
    assert np.all((out >= 0) & (out <= 1))
    assert int(np.argmin(out)) == 1
    # without the judge's opinion rank one stays A
    plain = fuse_and_rerank(q_g, q_q, g_g, np.full((1, 2), np.nan), idx, alpha=0.5, k1=3, k2=1)
    assert int(np.argmin(plain)) == 0


IDS = ["alice", "bob", "carol"]


@pytest.mark.parametrize(
    ("row", "ids", "mu", "kwargs", "outcome", "identity"),
    [
        ([0.30, 0.70, 0.80], IDS, None, {}, CONFIRMED, "alice"),
        ([0.70, 0.30, 0.80], IDS, None, {}, CONFIRMED, "bob"),
        ([0.30, 0.70, 0.80], IDS, [0.9, np.nan, np.nan], {}, REJECTED, "alice"),  # the judge said No
        ([0.30, 0.70, 0.80], IDS, [0.1, 0.9, np.nan], {}, CONFIRMED, "alice"),
        ([0.70, 0.80, 0.90], IDS, None, {}, NEW_IDENTITY, None),
        ([0.70, 0.80, 0.90], IDS, [0.9, 0.8, np.nan], {}, NEW_IDENTITY, None),
        ([0.70, 0.80, 0.90], IDS, [0.2, 0.8, np.nan], {}, REJECTED, "alice"),  # the judge said Yes to one
        ([0.50, 0.90, 0.95], IDS, None, {}, REJECTED, "alice"),  # between the thresholds
        ([0.30, 0.32, 0.80], IDS, None, {"margin": 0.05}, REJECTED, "alice"),  # too close to bob
        ([0.30, 0.32, 0.80], ["alice", "alice", "bob"], None, {"margin": 0.05}, CONFIRMED, "alice"),
        ([0.50, 0.90, 0.95], IDS, None, {"confirm_below": 0.5}, CONFIRMED, "alice"),
        ([0.30, 0.70, 0.80], None, None, {}, CONFIRMED, "0"),
    ],
)
def test_decide(row, ids, mu, kwargs, outcome, identity) -> None:
    mu_row = None if mu is None else np.array(mu)
    decision = decide(np.array(row), ids, mu_row, **kwargs)
    assert decision.outcome is outcome
    assert decision.identity == identity
    assert decision.score == pytest.approx(min(row))
    assert decision.index == int(np.argmin(row))
    if mu is not None:
        assert decision.mu == pytest.approx(mu[decision.index], nan_ok=True)


def test_decide_on_an_empty_row_rejects() -> None:
    decision = decide(np.zeros(0), [])
    assert decision.outcome is REJECTED and decision.identity is None and math.isinf(decision.score)


@pytest.mark.parametrize(
    ("row", "ids", "mu", "kwargs", "message"),
    [
        (np.zeros((2, 2)), None, None, {}, "1-D"),
        (np.array([0.1, np.nan]), None, None, {}, "finite"),
        (np.array([0.1, 0.2]), ["a"], None, {}, "identities: expected 2"),
        (np.array([0.1, 0.2]), None, np.array([0.1]), {}, "mu_row: expected shape"),
        (np.array([0.1, 0.2]), None, None, {"confirm_below": math.nan}, "confirm_below"),
    ],
)
def test_decide_rejects_bad_input(row, ids, mu, kwargs, message) -> None:
    with pytest.raises(InvalidInputError, match=message):
        decide(row, ids, mu, **kwargs)
