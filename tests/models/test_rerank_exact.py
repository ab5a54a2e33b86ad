"""k_reciprocal_exact against the textbook oracle, and bad input for both."""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import InvalidInputError
from models.rerank import k_reciprocal_exact, k_reciprocal_reference, unit_distances


def clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    """Unit vectors of identities seen in a few noisy views each."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, n // 5), dim))
    x = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def blocks(x: np.ndarray, n_query: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = unit_distances(x, x)
    np.fill_diagonal(d, 0.0)
    return d[:n_query, n_query:], d[:n_query, :n_query], d[n_query:, n_query:]


@pytest.mark.parametrize(
    ("n_query", "n_gallery", "k1", "k2", "lam"),
    [
        (5, 60, 20, 6, 0.3),  # paper defaults
        (10, 200, 20, 6, 0.3),
        (3, 40, 7, 3, 0.5),  # odd k1: k1/2 rounds half to even
        (4, 30, 5, 1, 0.0),  # no query expansion, Jaccard only
        (2, 25, 3, 10, 1.0),  # k2 > k1 + 1, original distance only
        (3, 10, 20, 6, 0.3),  # k1 >= Q + G: clipped to every item
        (1, 1, 20, 6, 0.3),  # a single gallery item
        (6, 15, 15, 15, 0.3),  # k1 = G
    ],
)
def test_exact_equals_oracle(n_query: int, n_gallery: int, k1: int, k2: int, lam: float) -> None:
    q_g, q_q, g_g = blocks(clustered(n_query + n_gallery, seed=n_gallery), n_query)
    expected = k_reciprocal_reference(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
    got = k_reciprocal_exact(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
    assert got.shape == (n_query, n_gallery) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_exact_equals_oracle_on_uniform_random_data() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(120, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q_g, q_q, g_g = blocks(x, 12)
    np.testing.assert_allclose(k_reciprocal_exact(q_g, q_q, g_g), k_reciprocal_reference(q_g, q_q, g_g),
                               atol=1e-5, rtol=0)


def test_ties_follow_the_stable_order() -> None:
    x = clustered(40, seed=3)
    x = np.concatenate([x, x[:10]])  # exact duplicates: many equal distances
    q_g, q_q, g_g = blocks(x, 5)
    np.testing.assert_allclose(k_reciprocal_exact(q_g, q_q, g_g), k_reciprocal_reference(q_g, q_q, g_g),
                               atol=1e-5, rtol=0)


def test_rerank_improves_ranking_of_same_identity() -> None:
    # same-identity pairs end up closer than the rest: the result is a sensible distance
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(30, 16))
    labels = np.tile(np.arange(30), 6)  # the first 30 rows (the queries) are one view of each identity
    x = centres[labels] + 0.9 * rng.normal(size=(180, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    q_g, q_q, g_g = blocks(x, 30)
    final = k_reciprocal_exact(q_g, q_q, g_g)
    same = labels[30:][None, :] == labels[:30][:, None]
    assert final[same].mean() < final[~same].mean()


def _valid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return blocks(clustered(12, seed=5), 2)


def _with(index: int, value: object) -> tuple[object, object, object]:
    parts: list[object] = list(_valid())
    parts[index] = value
    return tuple(parts)


def _nan_q_g() -> np.ndarray:
    q_g = _valid()[0].copy()
    q_g[0, 0] = np.nan
    return q_g


BAD_INPUT = [
    # (case, (q_g, q_q, g_g), kwargs, expected error message fragment)
    ("nan distance", _with(0, _nan_q_g()), {}, "finite"),
    ("negative distance", _with(2, -np.ones((10, 10), np.float32)), {}, "non-negative"),
    ("q_q wrong shape", _with(1, np.zeros((3, 3), np.float32)), {}, "q_q: expected shape"),
    ("g_g wrong shape", _with(2, np.zeros((9, 9), np.float32)), {}, "g_g: expected shape"),
    ("empty gallery", (np.zeros((2, 0), np.float32), np.zeros((2, 2), np.float32),
                       np.zeros((0, 0), np.float32)), {}, "at least one"),
    ("1-D q_g", _with(0, np.zeros(10, np.float32)), {}, "2-D"),
    ("integer dtype", _with(0, np.zeros((2, 10), np.int64)), {}, "floating"),
    ("k1 zero", _valid(), {"k1": 0}, "k1"),
    ("k2 float", _valid(), {"k2": 2.5}, "k2"),
    ("lambda above 1", _valid(), {"lambda_value": 1.5}, "lambda_value"),
]


@pytest.mark.parametrize("function", [k_reciprocal_exact, k_reciprocal_reference])
@pytest.mark.parametrize(("case", "arrays", "kwargs", "message"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input(function, case: str, arrays: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        function(*arrays, **kwargs)
