"""models.rerank.adaptive.rerank_k1: off for a small gallery, else k1 a few times the images per identity."""

from __future__ import annotations

import pytest

from models.rerank.adaptive import rerank_k1


@pytest.mark.parametrize(("identities", "items", "kwargs", "expected"), [
    (0, 0, {}, None),
    (1, 1, {}, None),  # one identity: every re-ranked distance would be the same
    (19, 400, {}, None),  # below the default minimum of 20, however many images
    (25, 0, {}, None),  # nothing to re-rank
    (20, 20, {}, 2),  # one image each: 2 x 1
    (21, 22, {}, 3),  # ceil(2 x 22 / 21)
    (20, 40, {}, 4),
    (30, 45, {}, 3),
    (20, 100, {}, 10),
    (20, 200, {}, 20),  # the paper's k1 ...
    (20, 1000, {}, 20),  # ... is the most
    (20, 1000, {"k1_max": 10}, 10),
    (20, 100, {"per_identity": 1.0}, 5),
    (20, 10, {}, 2),  # fewer images than identities (none for some): at least 2
    (5, 15, {"min_identities": 5}, 6),
    (4, 15, {"min_identities": 5}, None),
    (1, 5, {"min_identities": 0}, 10),  # a minimum below 1 means 1
    (0, 0, {"min_identities": 0}, None),
])
def test_table(identities: int, items: int, kwargs: dict, expected: int | None) -> None:
    assert rerank_k1(identities, items, **kwargs) == expected


def test_never_decreases_with_more_images_and_stays_in_range() -> None:
    for identities in (20, 37, 500):
        previous = 0
        for items in range(identities, 30 * identities, max(1, identities // 7)):
            k1 = rerank_k1(identities, items)
            assert k1 is not None and 2 <= k1 <= 20 and k1 >= previous
            previous = k1
