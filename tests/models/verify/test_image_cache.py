"""models.verify.image_cache: content keys and the LRU both judges keep per image."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

from models.verify import image_cache
from models.verify.base import JudgeConfigError
from models.verify.image_cache import ImageCache, image_key, pair_keys


def test_keys_follow_content_shape_and_dtype() -> None:
    a = np.zeros((4, 2, 3), np.uint8)
    assert image_key(a) == image_key(a.copy())
    assert image_key(a) != image_key(a.reshape(2, 4, 3)) != image_key(a.astype(np.int8))
    assert image_key(a) != image_key(np.ones_like(a))


def test_a_short_list_hashes_its_query_once() -> None:
    query = np.zeros((8, 4, 3), np.uint8)
    candidates = [np.full((8, 4, 3), v, np.uint8) for v in range(1, 6)]
    with mock.patch.object(image_cache, "image_key", wraps=image_key) as hashed:
        keys = pair_keys([(query, c) for c in candidates])
    assert hashed.call_count == 6  # 1 query + 5 candidates, not 10
    assert {q for q, _ in keys} == {image_key(query)} and [c for _, c in keys] == [image_key(c) for c in candidates]


def test_the_lru_keeps_the_most_recent_and_counts() -> None:
    cache = ImageCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the oldest
    cache.put("c", 3)
    assert "b" not in cache and len(cache) == 2 and cache.get("b") is None
    assert (cache.stats.hits, cache.stats.misses, cache.stats.evictions) == (1, 1, 1)
    off = ImageCache(0)
    off.put("a", 1)
    assert len(off) == 0
    with pytest.raises(JudgeConfigError, match="max_images"):
        ImageCache(-1)
