"""Every runtime gives the same vectors for the same model on real crops (CPU, FP32).

Needs ../shared: CROSSVIEW_MODELS and CROSSVIEW_DATA; skipped with a reason where they are absent.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from models.embed import Embedder, create_embedder
from models.zoo import get_spec

OSNET = "reid/osnet-x0.25-msmt17"
INTEL_0288 = "reid/intel-0288"

CPU_RUNTIMES = ("onnxruntime", "openvino", "torch")
MIN_COSINE = 0.999


@pytest.fixture(scope="module")
def osnet_vectors(models_root, real_crops) -> dict[str, np.ndarray]:
    """OSNet vectors from each CPU runtime, batch 16 so the 40 crops run as 16 + 16 + 8."""
    vectors = {}
    for runtime in CPU_RUNTIMES:
        embedder = create_embedder(OSNET, runtime, batch_size=16)
        result = embedder.embed(real_crops)
        assert result.model_fingerprint == get_spec(OSNET).fingerprint
        vectors[runtime] = result.vectors
    return vectors


@pytest.mark.parametrize("runtime", CPU_RUNTIMES)
def test_osnet_vectors_are_unit_norm_512d(osnet_vectors, real_crops, runtime):
    vectors = osnet_vectors[runtime]
    assert vectors.shape == (len(real_crops), 512)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(CPU_RUNTIMES, 2)))
def test_osnet_runtimes_agree_per_crop(osnet_vectors, first, second):
    cosine = np.sum(osnet_vectors[first] * osnet_vectors[second], axis=1)
    worst = int(np.argmin(cosine))
    assert cosine[worst] > MIN_COSINE, f"crop {worst}: cosine {cosine[worst]:.6f} between {first} and {second}"


def test_osnet_vectors_tell_crops_apart(osnet_vectors):
    """Guards against a runtime that agrees because everything collapsed to one vector."""
    vectors = osnet_vectors["onnxruntime"]
    off_diagonal = (vectors @ vectors.T)[~np.eye(len(vectors), dtype=bool)]
    assert off_diagonal.min() < 0.9


@pytest.fixture(scope="module")
def intel_0288(models_root) -> Embedder:
    return create_embedder(INTEL_0288, "openvino", batch_size=7)


def test_intel_ir_gives_unit_norm_256d(intel_0288, real_crops):
    result = intel_0288.embed(real_crops)
    assert result.vectors.shape == (len(real_crops), 256)
    assert result.model_fingerprint == get_spec(INTEL_0288).fingerprint
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)


def test_intel_ir_batch_size_invariance(intel_0288, real_crops):
    batched = intel_0288.embed(real_crops).vectors  # batches of 7: 7 x 5 + 5
    one_by_one = create_embedder(INTEL_0288, "openvino", batch_size=1).embed(real_crops).vectors
    np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=1e-4)


def test_intel_ir_crop_order_does_not_matter(intel_0288, real_crops):
    forward = intel_0288.embed(real_crops).vectors
    backward = intel_0288.embed(real_crops[::-1]).vectors[::-1]
    np.testing.assert_allclose(forward, backward, rtol=0, atol=1e-4)


@pytest.mark.parametrize("runtime", CPU_RUNTIMES)
def test_empty_list_through_a_real_runtime(models_root, runtime):
    result = create_embedder(OSNET, runtime).embed([])
    assert result.vectors.shape == (0, 512)
    assert result.model_fingerprint == get_spec(OSNET).fingerprint
