"""What judges keep per image: a content key and a bounded, thread-safe LRU keyed by it.

Used by the `reid` judge (its models' vectors of each crop) and the fast `transformers` judge (vision
features of each candidate crop): a gallery's reference crops come back in short list after short list.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.verify.base import JudgeConfigError


def image_key(image: np.ndarray) -> str:
    """Content hash of a crop: its bytes, shape and dtype (two equal crops share an entry)."""
    digest = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16)
    digest.update(f"{image.shape}{image.dtype}".encode())
    return digest.hexdigest()


def pair_keys(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[tuple[str, str]]:
    """(query key, candidate key) per pair, hashing each image object once: a short list passes its one
    query array with every candidate."""
    by_object: dict[int, str] = {}

    def key(image: np.ndarray) -> str:
        found = by_object.get(id(image))
        if found is None:
            found = by_object[id(image)] = image_key(image)
        return found

    return [(key(query), key(candidate)) for query, candidate in pairs]


@dataclass
class CacheStats:
    """Counters of an `ImageCache` (and, for the fast judge, the images it encoded)."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    images_encoded: int = 0


class ImageCache:
    """A bounded, thread-safe LRU of per-image values (vectors, vision features), oldest evicted first;
    `max_images` 0 keeps nothing."""

    def __init__(self, max_images: int) -> None:
        if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 0:
            raise JudgeConfigError(f"max_images: expected an int >= 0 (0 disables the cache), got {max_images!r}")
        self.max_images = max_images
        self.stats = CacheStats()
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.stats.misses += 1
                return None
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return value

    def put(self, key: Hashable, value: Any) -> None:
        if self.max_images == 0:
            return
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_images:
                self._entries.popitem(last=False)
                self.stats.evictions += 1

    def count_encoded(self, images: int) -> None:
        """Count images encoded because they were not cached (under the lock: judges may share a cache)."""
        with self._lock:
            self.stats.images_encoded += images

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
