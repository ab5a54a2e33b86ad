"""The pure ranking helpers: short lists, recall@K, the two-stage fusion, tracklet pooling."""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import InvalidInputError
from models.evaluation.ranking import (
    cosine_distance,
    fuse_shortlist,
    junk_mask,
    match_mask,
    mean_distance,
    pool_units,
    recall_at_k,
    shortlist_mask,
)


def test_cosine_distance_ranks_like_squared_euclidean() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 8)).astype(np.float32)
    b = rng.normal(size=(7, 8)).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    sq = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(cosine_distance(a, b), sq / 2, atol=1e-5)
    with pytest.raises(InvalidInputError, match="expected"):
        cosine_distance(a, b[:, :4])


def test_shortlist_skips_excluded_items_and_breaks_ties_by_index() -> None:
    dist = np.array([[0.5, 0.1, 0.3, 0.1, 0.9],
                     [0.2, 0.2, 0.2, 0.2, 0.2]])
    exclude = np.zeros_like(dist, bool)
    exclude[0, 1] = True
    mask = shortlist_mask(dist, 2, exclude)
    assert mask[0].tolist() == [False, False, True, True, False]  # 1 excluded: 3 then 2
    assert mask[1].tolist() == [True, True, False, False, False]  # ties: lower indices
    assert shortlist_mask(dist, 10).all()                          # K larger than the gallery
    with pytest.raises(InvalidInputError, match="k: expected an integer >= 1"):
        shortlist_mask(dist, 0)


def test_recall_at_k_by_hand() -> None:
    short = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1]], bool)
    matches = np.array([[0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]], bool)
    # query 2 has no true match: not counted; query 0 misses, query 1 hits
    assert recall_at_k(short, matches) == 0.5
    with pytest.raises(InvalidInputError, match="no query has a true match"):
        recall_at_k(short, np.zeros_like(matches))


def test_fusion_reorders_only_inside_the_shortlist() -> None:
    rng = np.random.default_rng(3)
    stage1 = rng.random((6, 30))
    stage2 = rng.random((6, 30)) * 2
    k = 7
    short = shortlist_mask(stage1, k)
    fused = fuse_shortlist(stage1, stage2, short)
    for q in range(6):
        ranking = np.argsort(fused[q], kind="stable")
        top, rest = ranking[:k], ranking[k:]
        assert set(top) == set(np.flatnonzero(short[q]))
        assert np.all(np.diff(stage2[q, top]) >= 0)                      # stage-2 order inside
        np.testing.assert_array_equal(rest, [j for j in np.argsort(stage1[q], kind="stable")
                                             if not short[q, j]])     # stage-1 order outside
    # stage 2 values outside the short list are never looked at
    noisy = np.where(short, stage2, -5.0)
    np.testing.assert_array_equal(fuse_shortlist(stage1, noisy, short), fused)


def test_masks_and_mean() -> None:
    q_pids, q_cams = np.array([1, 2]), np.array([0, 0])
    g_pids, g_cams = np.array([1, 1, 2, 3]), np.array([0, 1, 0, 1])
    assert junk_mask(q_pids, g_pids, q_cams, g_cams).tolist() == [
        [True, False, False, False], [False, False, True, False]]
    assert match_mask(q_pids, g_pids, q_cams, g_cams).tolist() == [
        [False, True, False, False], [False, False, False, False]]
    np.testing.assert_allclose(mean_distance([np.ones((2, 2)), np.zeros((2, 2))]), 0.5)
    with pytest.raises(InvalidInputError, match="one shape"):
        mean_distance([np.ones((2, 2)), np.ones((2, 3))])


def test_pool_units_is_normalised_mean() -> None:
    frames = np.array([[1, 0], [0, 1], [1, 0]], np.float32)
    pooled = pool_units(frames, [[0, 1], [2]])
    np.testing.assert_allclose(pooled, [[2 ** -0.5, 2 ** -0.5], [1, 0]], atol=1e-6)
    with pytest.raises(InvalidInputError, match="unit 0: expected at least one frame"):
        pool_units(frames, [[]])
