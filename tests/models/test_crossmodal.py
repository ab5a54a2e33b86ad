"""Cross-modal neighbour re-ranking on small cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import InvalidInputError
from models.rerank import crossmodal_rerank, image_neighbours


def test_jaccard_of_text_and_image_neighbourhoods_by_hand() -> None:
    # k=2. The text's top-2 images are A = {0, 1}.
    # image neighbour sets B: img0 {0, 1} -> J = 2/2 = 1 ; img1 {1, 2} -> J = 1/3
    #                         img2 {2, 3} -> J = 0       ; img3 {3, 0} -> J = 1/3
    text_image = np.array([[0.9, 0.8, 0.1, 0.2]], np.float32)
    neighbours = np.array([[0, 1], [1, 2], [2, 3], [3, 0]])
    out = crossmodal_rerank(text_image, neighbours, k=2, weight=0.3)
    np.testing.assert_allclose(out, [[0.9 + 0.3, 0.8 + 0.1, 0.1, 0.2 + 0.1]], atol=1e-6)
    assert out.dtype == np.float32


def test_zero_weight_changes_nothing_and_k_is_clipped() -> None:
    rng = np.random.default_rng(0)
    sims = rng.random((3, 5)).astype(np.float32)
    neighbours = image_neighbours(rng.random((5, 5)), k=50)
    assert neighbours.shape == (5, 5)
    np.testing.assert_array_equal(crossmodal_rerank(sims, neighbours, k=50, weight=0.0), sims)
    # k clipped to G=5: every set is the whole gallery, Jaccard 1 everywhere
    np.testing.assert_allclose(crossmodal_rerank(sims, neighbours, k=50, weight=0.5), sims + 0.5, atol=1e-6)


def test_image_neighbours_put_the_image_itself_first() -> None:
    # img1 is more similar to img0 than img0 to itself (unnormalised scores): img0 still comes first
    sims = np.array([[0.5, 0.9, 0.1], [0.9, 1.0, 0.3], [0.1, 0.3, 1.0]])
    np.testing.assert_array_equal(image_neighbours(sims, k=2), [[0, 1], [1, 0], [2, 1]])


def test_shared_neighbourhood_lifts_a_true_match() -> None:
    # the text scores the wrong image 1 highest; its top-3 is A = {1, 0, 2}.
    # img0 (true) B = {0, 2, 3}: |A∩B| = 2, J = 2/4 -> 0.50 + 0.1·0.5 = 0.55
    # img1 (wrong) B = {1, 4, 3}: |A∩B| = 1, J = 1/5 -> 0.52 + 0.1·0.2 = 0.54  => img0 now first
    sims = np.array([[0.50, 0.52, 0.49, 0.48, 0.10]], np.float32)
    neighbours = np.array([[0, 2, 3], [1, 4, 3], [2, 0, 3], [3, 0, 2], [4, 1, 3]])
    out = crossmodal_rerank(sims, neighbours, k=3, weight=0.1)
    np.testing.assert_allclose(out[0, :2], [0.55, 0.54], atol=1e-6)
    assert int(np.argmax(out)) == 0


BAD_INPUT = [
    # (case, (text_image, neighbours), kwargs, expected error message fragment)
    ("nan similarity", (np.array([[np.nan, 1.0]]), np.array([[0, 1], [1, 0]])), {}, "finite"),
    ("empty gallery", (np.zeros((1, 0)), np.zeros((0, 1), np.int64)), {}, "non-empty"),
    ("neighbours wrong rows", (np.ones((1, 2)), np.array([[0, 1]])), {}, "neighbours"),
    ("neighbours too short", (np.ones((1, 3)), np.array([[0], [1], [2]])), {"k": 2}, "neighbours"),
    ("neighbour index out of range", (np.ones((1, 2)), np.array([[0, 5], [1, 0]])), {"k": 2}, "indices"),
    ("float neighbours", (np.ones((1, 2)), np.array([[0.0, 1.0], [1.0, 0.0]])), {"k": 2}, "integers"),
    ("k zero", (np.ones((1, 2)), np.array([[0, 1], [1, 0]])), {"k": 0}, "k:"),
    ("negative weight", (np.ones((1, 2)), np.array([[0, 1], [1, 0]])), {"weight": -1.0}, "weight"),
]


@pytest.mark.parametrize(("case", "arrays", "kwargs", "message"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input(case: str, arrays: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        crossmodal_rerank(*arrays, **kwargs)


def test_image_neighbours_rejects_non_square() -> None:
    with pytest.raises(InvalidInputError, match="square"):
        image_neighbours(np.ones((2, 3)))
