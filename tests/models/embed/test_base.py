"""The base class's batching, padding, normalisation and errors, with a numpy fake runtime.

These need no model files: the fake runtime projects each preprocessed crop with a fixed matrix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.embed import Embedder, EmbedderConfigError, l2_normalise
from models.errors import CrossviewError, InvalidInputError
from models.zoo import get_spec

MODEL = "reid/intel-0288"  # only its spec is used: 256-d output, 256x128 BGR input


class FakeEmbedder(Embedder):
    name = "fake"
    formats = ("openvino", "onnx")

    def _resolve_path(self) -> Path:
        return Path("unused")

    def _load(self, path: Path, *, fixed_batch: int | None = None, out_dim: int | None = None) -> None:
        dim = out_dim or self.spec.output_dim
        self._projection = np.random.default_rng(0).standard_normal((3 * 8 * 4, dim)).astype(np.float32)
        self.fixed_batch = fixed_batch
        self.batches_seen: list[int] = []

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        self.batches_seen.append(len(batch))
        pooled = batch.reshape(len(batch), 3, 8, 32, 4, 32).mean(axis=(3, 5))  # 256x128 -> 8x4
        return pooled.reshape(len(batch), -1) @ self._projection


def _crops(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(20, 300)), int(rng.integers(10, 150)), 3), dtype=np.uint8)
            for _ in range(count)]


def test_embed_returns_unit_vectors_with_the_fingerprint():
    embedder = FakeEmbedder(MODEL)
    result = embedder.embed(_crops(5))
    assert result.vectors.shape == (5, 256)
    assert result.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-6)
    assert result.model_fingerprint == get_spec(MODEL).fingerprint == embedder.fingerprint


def test_empty_list_gives_zero_by_dim_without_running_the_model():
    embedder = FakeEmbedder(MODEL)
    result = embedder.embed([])
    assert result.vectors.shape == (0, 256)
    assert result.vectors.dtype == np.float32
    assert result.model_fingerprint == embedder.fingerprint
    assert embedder.batches_seen == []


@pytest.mark.parametrize("batch_size", [1, 3, 7, 32])
def test_batch_size_does_not_change_vectors(batch_size):
    crops = _crops(7)
    reference = FakeEmbedder(MODEL, batch_size=32).embed(crops).vectors
    embedder = FakeEmbedder(MODEL, batch_size=batch_size)
    np.testing.assert_allclose(embedder.embed(crops).vectors, reference, atol=1e-6)
    expected = [min(batch_size, 7 - start) for start in range(0, 7, batch_size)]
    assert embedder.batches_seen == expected


def test_fixed_batch_runtime_gets_padded_batches_and_padding_is_dropped():
    crops = _crops(7)
    reference = FakeEmbedder(MODEL).embed(crops).vectors
    embedder = FakeEmbedder(MODEL, batch_size=32, fixed_batch=4)
    result = embedder.embed(crops)
    assert embedder.batches_seen == [4, 4]  # 4 + 3 real crops, the last batch padded to 4
    np.testing.assert_allclose(result.vectors, reference, atol=1e-6)


def test_bad_crop_is_named_and_nothing_runs():
    embedder = FakeEmbedder(MODEL, batch_size=2)
    crops = [*_crops(4), np.zeros((0, 10, 3), np.uint8)]
    with pytest.raises(InvalidInputError, match="crop 4"):
        embedder.embed(crops)
    assert embedder.batches_seen == []


def test_wrong_output_dim_is_an_error():
    embedder = FakeEmbedder(MODEL, out_dim=100)
    with pytest.raises(CrossviewError, match=r"expected \(2, 256\)"):
        embedder.embed(_crops(2))


@pytest.mark.parametrize("batch_size", [0, -1, 2.5])
def test_bad_batch_size_is_refused(batch_size: Any):
    with pytest.raises(EmbedderConfigError, match="batch_size"):
        FakeEmbedder(MODEL, batch_size=batch_size)


def test_non_reid_model_is_refused():
    with pytest.raises(EmbedderConfigError, match="not a Re-ID model"):
        FakeEmbedder("attributes/intel-0230")


def test_l2_normalise_keeps_zero_rows_finite():
    out = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]], np.float32))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]], atol=1e-7)
    assert out.dtype == np.float32
