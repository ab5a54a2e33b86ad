"""GalleryIndex (exact neighbour mode) against k_reciprocal_exact, its updates, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from crossview_testing.rerank_data import identities

from models.errors import InvalidInputError
from models.rerank import GalleryIndex, k_reciprocal_exact, unit_distances


def exact_for_one(query: np.ndarray, gallery: np.ndarray, **params: object) -> np.ndarray:
    """What the textbook algorithm gives for this query alone: (G,)."""
    g_g = unit_distances(gallery, gallery)
    np.fill_diagonal(g_g, 0.0)
    q_g = unit_distances(query[None], gallery)
    return k_reciprocal_exact(q_g, np.zeros((1, 1), np.float32), g_g, **params)[0]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    x = identities(900, seed=1)
    return x[:800], x[800:]


@pytest.fixture(scope="module")
def index(data: tuple[np.ndarray, np.ndarray]) -> GalleryIndex:
    gallery, _ = data
    idx = GalleryIndex()
    idx.add(np.arange(len(gallery)) * 3 + 1, gallery)
    return idx


def test_top10_matches_exact_on_typical_data(data, index: GalleryIndex) -> None:
    gallery, queries = data
    g_g = unit_distances(gallery, gallery)
    np.fill_diagonal(g_g, 0.0)
    ids, dists = index.query(queries, top_k=10)
    identical, worst = 0, 0.0
    for q, top_ids, top_d in zip(queries, ids, dists, strict=True):
        expected = k_reciprocal_exact(unit_distances(q[None], gallery), np.zeros((1, 1), np.float32), g_g)[0]
        order = np.argsort(expected, kind="stable")[:10]
        identical += np.array_equal(index.ids[order], top_ids)
        worst = max(worst, float(np.abs(expected[order] - top_d).max()))
    assert identical / len(queries) >= 0.99
    assert worst <= 1e-5  # exact mode is exact whenever few items have the query as their farthest


def test_dense_distances_match_exact(data, index: GalleryIndex) -> None:
    gallery, queries = data
    dense = index.query(queries[:5])
    assert dense.shape == (5, len(gallery)) and dense.dtype == np.float32
    for q, row in zip(queries[:5], dense, strict=True):
        np.testing.assert_allclose(row, exact_for_one(q, gallery), atol=1e-5, rtol=0)


def test_top_k_is_sorted_and_consistent_with_dense(data, index: GalleryIndex) -> None:
    _, queries = data
    ids, dists = index.query(queries[:3], top_k=25)
    dense = index.query(queries[:3])
    assert ids.shape == (3, 25) and ids.dtype == np.int64
    assert np.all(np.diff(dists, axis=1) >= 0)
    for row_ids, row_d, row_dense in zip(ids, dists, dense, strict=True):
        np.testing.assert_array_equal(row_ids, index.ids[np.argsort(row_dense, kind="stable")[:25]])
        np.testing.assert_allclose(row_d, np.sort(row_dense)[:25])


@pytest.mark.parametrize(("n_gallery", "k1", "k2"), [(1, 20, 6), (3, 20, 6), (21, 20, 6), (30, 3, 10), (40, 5, 1)])
def test_small_galleries_and_k_at_least_gallery(n_gallery: int, k1: int, k2: int) -> None:
    x = identities(n_gallery + 4, dim=16, seed=n_gallery)
    gallery, queries = x[:n_gallery], x[n_gallery:]
    idx = GalleryIndex(k1=k1, k2=k2)
    idx.add(np.arange(n_gallery), gallery)
    for q in queries:
        np.testing.assert_allclose(idx.query(q)[0], exact_for_one(q, gallery, k1=k1, k2=k2), atol=1e-5, rtol=0)
    ids, _ = idx.query(queries, top_k=10)
    assert ids.shape == (4, min(10, n_gallery))  # top_k clipped to the gallery size


def test_the_documented_approximation_is_the_scale_only() -> None:
    # with rescale_limit=0 the query never raises a gallery item's distance scale: results differ
    # from exact only for queries that are some gallery item's farthest point
    rng = np.random.default_rng(3)
    gallery = rng.normal(size=(40, 8)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    idx = GalleryIndex(rescale_limit=0)
    idx.add(np.arange(40), gallery)
    g_g = unit_distances(gallery, gallery)
    seen_difference = False
    for q in rng.normal(size=(20, 8)).astype(np.float32):
        q /= np.linalg.norm(q)
        is_farthest = bool((unit_distances(q[None], gallery)[0] > g_g.max(axis=1)).any())
        diff = np.abs(idx.query(q)[0] - exact_for_one(q, gallery)).max()
        if not is_farthest:
            assert diff <= 1e-5
        seen_difference |= diff > 1e-5
    assert seen_difference


def _assert_same_index(a: GalleryIndex, b: GalleryIndex, queries: np.ndarray) -> None:
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a._st.lists, b._st.lists)
    np.testing.assert_array_equal(a._st.core, b._st.core)
    np.testing.assert_array_equal(a._st.half, b._st.half)
    for name in ("vec", "qe"):
        x, y = getattr(a._st, name), getattr(b._st, name)
        np.testing.assert_array_equal(x[0], y[0])
        np.testing.assert_array_equal(x[1], y[1])
        np.testing.assert_allclose(x[2], y[2], atol=1e-6)
    np.testing.assert_allclose(a.query(queries), b.query(queries), atol=1e-6)


def test_add_and_remove_equal_a_rebuild() -> None:
    x = identities(460, seed=4)
    queries, x = x[:10], x[10:]
    ids = np.arange(len(x)) * 10 + 7
    order = np.random.default_rng(0).permutation(len(x))
    live = list(order[:300])
    idx = GalleryIndex()
    idx.add(ids[order[:300]], x[order[:300]])
    for batch in (order[300:340], order[340:341]):
        idx.add(ids[batch], x[batch])
        live += list(batch)
    gone = [live[i] for i in (0, 5, 17, 100, 200, 201, 202, 339)]
    idx.remove(ids[gone])
    live = [i for i in live if i not in gone]
    idx.add(ids[order[341:]], x[order[341:]])
    live += list(order[341:])
    idx.remove(ids[live[:60]])
    live = live[60:]
    fresh = GalleryIndex()
    fresh.add(ids[live], x[live])
    _assert_same_index(idx, fresh, queries)


def test_duplicates_and_queries_equal_to_gallery_items() -> None:
    # exact ties everywhere: lists must follow the stable order (lower index first) in every path
    x = identities(200, seed=3)
    x = np.concatenate([x, x[:30], x[:5]])
    ids = np.arange(len(x))
    idx = GalleryIndex()
    idx.add(ids[:150], x[:150])
    idx.add(ids[150:], x[150:])
    idx.remove(ids[[3, 160, 201]])
    live = np.setdiff1d(ids, ids[[3, 160, 201]])
    fresh = GalleryIndex()
    fresh.add(live, x[live])
    _assert_same_index(idx, fresh, x[:5])
    for q in x[:10]:
        np.testing.assert_allclose(fresh.query(q)[0], exact_for_one(q, x[live]), atol=1e-5, rtol=0)


def test_remove_everything_then_add_again() -> None:
    x = identities(50, seed=5)
    idx = GalleryIndex()
    idx.add(np.arange(50), x)
    idx.remove(np.arange(50))
    assert idx.size == 0
    with pytest.raises(InvalidInputError, match="empty"):
        idx.query(x[0])
    idx.add([7, 8, 9], x[:3])
    ids, _ = idx.query(x[0], top_k=1)
    assert ids[0, 0] == 7


def test_memory_is_linear_in_gallery_size() -> None:
    per_item = []
    for n in (400, 1600):
        idx = GalleryIndex()
        idx.add(np.arange(n), identities(n, seed=n))
        per_item.append(idx.nbytes() / n)
    assert per_item[1] < 1.5 * per_item[0]  # an N×N structure would grow 4×


def _gallery() -> GalleryIndex:
    idx = GalleryIndex()
    idx.add(np.arange(30), identities(30, dim=16, seed=9))
    return idx


def _nan_vector() -> np.ndarray:
    v = np.ones((1, 16), np.float32)
    v[0, 3] = np.nan
    return v


BAD_INPUT = [
    # (case, action on a 30-item 16-d index, expected error message fragment)
    ("query with NaN", lambda i: i.query(_nan_vector()), "finite"),
    ("query of wrong dimension", lambda i: i.query(np.ones((1, 8), np.float32)), "dimension 16"),
    ("zero query vector", lambda i: i.query(np.zeros(16, np.float32)), "non-zero"),
    ("3-D query", lambda i: i.query(np.ones((1, 1, 16), np.float32)), "shape"),
    ("top_k zero", lambda i: i.query(np.ones(16, np.float32), top_k=0), "top_k"),
    ("add a known id", lambda i: i.add([3], np.ones((1, 16), np.float32)), "already"),
    ("add repeated ids", lambda i: i.add([100, 100], np.ones((2, 16), np.float32)), "repeated"),
    ("add ids of wrong length", lambda i: i.add([100, 101], np.ones((3, 16), np.float32)), "ids"),
    ("add wrong dimension", lambda i: i.add([100], np.ones((1, 15), np.float32)), "dimension 16"),
    ("remove unknown id", lambda i: i.remove([999]), "not in the gallery"),
]


@pytest.mark.parametrize(("case", "action", "message"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input(case: str, action, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        action(_gallery())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"k1": 0}, "k1"), ({"k2": -1}, "k2"), ({"lambda_value": 2.0}, "lambda_value"),
     ({"neighbours": "annoy"}, "neighbours"), ({"neighbours": "exact", "factory": "Flat"}, "no options")],
)
def test_bad_parameters(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        GalleryIndex(**kwargs)


def test_query_on_empty_index() -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        GalleryIndex().query(np.ones(4, np.float32))
