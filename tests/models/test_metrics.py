"""evaluate_rank on tiny cases computed by hand (Market-1501 protocol)."""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import InvalidInputError
from models.metrics import evaluate_rank


def test_junk_is_removed_and_ap_inp_by_hand() -> None:
    # query: id 1, camera 0. Gallery by ascending distance:
    #   g0 id 2 cam 1 (wrong) | g1 id 1 cam 1 (match) | g2 id 1 cam 0 (junk: same id AND camera)
    #   g3 id 3 cam 1 (wrong) | g4 id 1 cam 1 (match)
    # after removing g2 the ranked matches are [0, 1, 0, 1]: hits at ranks 2 and 4 (1-based)
    # AP  = (1/2 + 2/4) / 2 = 0.5 ; INP = matches / rank of last hit = 2/4 = 0.5 ; CMC = [0, 1, 1, ...]
    distmat = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    r = evaluate_rank(distmat, np.array([1]), np.array([2, 1, 1, 3, 1]), np.array([0]),
                      np.array([1, 1, 0, 1, 1]), max_rank=4)
    np.testing.assert_allclose(r.cmc, [0.0, 1.0, 1.0, 1.0])
    assert (r.rank1, r.rank5, r.rank10) == (0.0, 1.0, 1.0)  # rank5/10 clipped to max_rank=4
    assert r.mAP == pytest.approx(0.5)
    assert r.mINP == pytest.approx(0.5)
    assert (r.n_valid_query, r.n_skipped_query) == (1, 0)


def test_two_queries_are_averaged_and_one_without_match_is_skipped() -> None:
    # q0: id 1 cam 0, gallery order g0 (id 1 cam 1), g2 (id 1 cam 2), g1 (id 2): matches [1, 1, 0]
    #     AP = (1/1 + 2/2)/2 = 1, INP = 2/2 = 1, first hit at rank 1
    # q1: id 2 cam 0, gallery order g0, g2, g1: matches [0, 0, 1]
    #     AP = (1/3)/1 = 1/3, INP = 1/3, first hit at rank 3
    # q2: id 9, nowhere in the gallery -> skipped
    # mAP = mINP = (1 + 1/3)/2 = 2/3 ; CMC = [1/2, 1/2, 1]
    distmat = np.array([[0.1, 0.5, 0.2], [0.1, 0.5, 0.2], [0.3, 0.2, 0.1]])
    r = evaluate_rank(distmat, np.array([1, 2, 9]), np.array([1, 2, 1]), np.array([0, 0, 0]),
                      np.array([1, 1, 2]), max_rank=3)
    np.testing.assert_allclose(r.cmc, [0.5, 0.5, 1.0])
    assert r.mAP == pytest.approx(2 / 3)
    assert r.mINP == pytest.approx(2 / 3)
    assert (r.n_valid_query, r.n_skipped_query) == (2, 1)


def test_query_whose_only_match_is_junk_is_skipped() -> None:
    # q1 (id 5, cam 2) matches only g1, which is on its own camera: junk, so q1 is skipped
    distmat = np.array([[0.2, 0.1], [0.2, 0.1]])
    r = evaluate_rank(distmat, np.array([4, 5]), np.array([4, 5]), np.array([0, 2]), np.array([1, 2]))
    assert (r.n_valid_query, r.n_skipped_query) == (1, 1)
    assert r.rank1 == 0.0  # q0's match g0 is second behind g1
    assert r.mAP == pytest.approx(0.5)  # one hit at rank 2: AP = 1/2, INP = 1/2
    assert r.cmc.shape == (50,) and r.cmc[1:].min() == 1.0  # past the gallery the curve stays flat


def test_ties_keep_gallery_order() -> None:
    # equal distances: stable order puts g0 (wrong id) before g1 (match): rank-1 miss, AP = 1/2
    r = evaluate_rank(np.zeros((1, 2)), np.array([1]), np.array([2, 1]), np.array([0]), np.array([1, 1]))
    assert r.rank1 == 0.0 and r.mAP == pytest.approx(0.5)


def test_perfect_ranking() -> None:
    distmat = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 2.0]])
    r = evaluate_rank(distmat, np.array([1, 2]), np.array([1, 2, 3]), np.array([0, 0]), np.array([1, 1, 1]))
    assert (r.rank1, r.mAP, r.mINP) == (1.0, 1.0, 1.0)


BAD_INPUT = [
    # (case, arguments, expected error message fragment)
    ("nan distance", (np.array([[np.nan, 1.0]]), [1], [1, 2], [0], [1, 1]), "NaN"),
    ("1-D distmat", (np.array([1.0, 2.0]), [1], [1, 2], [0], [1, 1]), "2-D"),
    ("empty gallery", (np.zeros((1, 0)), [1], [], [0], []), "at least one"),
    ("q_pids length", (np.zeros((1, 2)), [1, 2], [1, 2], [0], [1, 1]), "q_pids"),
    ("g_camids length", (np.zeros((1, 2)), [1], [1, 2], [0], [1]), "g_camids"),
    ("no valid query", (np.zeros((1, 2)), [1], [1, 2], [0], [0, 0]), "no query has a true match"),
]


@pytest.mark.parametrize(("case", "args", "message"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input(case: str, args: tuple, message: str) -> None:
    distmat, *ids = args
    with pytest.raises(InvalidInputError, match=message):
        evaluate_rank(distmat, *(np.asarray(i) for i in ids))


def test_bad_max_rank() -> None:
    with pytest.raises(InvalidInputError, match="max_rank"):
        evaluate_rank(np.zeros((1, 1)), np.array([1]), np.array([1]), np.array([0]), np.array([1]), max_rank=0)
