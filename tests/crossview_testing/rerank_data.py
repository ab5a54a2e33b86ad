"""Synthetic re-ID vectors shared by the re-ranking tests."""

from __future__ import annotations

import numpy as np


def identities(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    """Typical re-ID data: identities around a few looks, each seen in several noisy views."""
    rng = np.random.default_rng(seed)
    looks = rng.normal(size=(max(1, n // 40), dim))
    looks /= np.linalg.norm(looks, axis=1, keepdims=True)
    centres = looks[rng.integers(0, len(looks), n // 5 + 1)] + 0.8 * rng.normal(size=(n // 5 + 1, dim)) / dim**0.5
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, len(centres), n)] + 0.7 * rng.normal(size=(n, dim)) / dim**0.5
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
