"""The torch embedder's device preprocessing against the host path (OpenCV + numpy), on the CPU.

The pixel tests need only torch; the vector tests need the real OSNet model and crops of ../shared
(CROSSVIEW_MODELS, CROSSVIEW_DATA) and are skipped with a reason where they are absent.
`tests/gpu/test_torch_cuda_parity.py` runs the same parity on CUDA.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'crossview[torch]')")

from models.embed import EmbedderConfigError, create_embedder  # noqa: E402
from models.embed.device_preprocess import pack_crops, resize_normalise  # noqa: E402
from models.embed.preprocess import preprocess  # noqa: E402
from models.errors import InvalidInputError  # noqa: E402
from models.zoo import get_spec  # noqa: E402

OSNET = "reid/osnet-x0.25-msmt17"
INTEL_0288 = "reid/intel-0288"
MIN_COSINE = 0.999


def _on_device(crops: list[np.ndarray], spec) -> np.ndarray:
    packed = pack_crops(torch, crops, pin_memory=False)
    return resize_normalise(torch, packed, len(crops), spec, dtype=torch.float32).numpy()


@pytest.mark.parametrize("name", [OSNET, INTEL_0288], ids=["rgb-imagenet", "bgr-0-255"])
@pytest.mark.parametrize(("in_hw", "out_hw"), [
    pytest.param((256, 128), (256, 128), id="same-size"),
    pytest.param((37, 19), (64, 32), id="upscale"),
    pytest.param((301, 97), (64, 32), id="downscale"),
    pytest.param((40, 90), (64, 32), id="mixed"),
    pytest.param((1, 1), (8, 4), id="one-pixel"),
])
def test_pixels_match_the_host_path(name, in_hw, out_hw):
    """Same numbers as OpenCV + numpy, but for rare fixed-point rounding: at most one grey level."""
    spec = dataclasses.replace(get_spec(name), input_hw=out_hw)
    rng = np.random.default_rng(3)
    crops = [rng.integers(0, 256, (*in_hw, 3), dtype=np.uint8) for _ in range(3)]
    host, device = preprocess(crops, spec), _on_device(crops, spec)
    assert device.shape == host.shape == (3, 3, *out_hw)
    assert device.dtype == np.float32
    one_level = spec.scale / min(spec.std)
    difference = np.abs(device - host)
    assert difference.max() <= one_level * 1.001
    assert np.mean(difference > 1e-5) < 0.01
    if in_hw == out_hw:
        np.testing.assert_allclose(device, host, rtol=0, atol=1e-5)


def test_a_batch_of_mixed_sizes_gives_each_crop_its_own_pixels():
    spec = get_spec(OSNET)
    rng = np.random.default_rng(4)
    crops = [rng.integers(0, 256, (int(rng.integers(20, 400)), int(rng.integers(10, 200)), 3), np.uint8)
             for _ in range(9)]
    together = _on_device(crops, spec)
    for index, crop in enumerate(crops):
        np.testing.assert_array_equal(together[index], _on_device([crop], spec)[0])


def test_the_option_is_checked_and_defaults_to_host_on_the_cpu(models_root):
    assert create_embedder(OSNET, "torch").preprocess == "host"
    assert create_embedder(OSNET, "torch", preprocess="device").preprocess == "device"
    with pytest.raises(EmbedderConfigError, match="preprocess: expected one of"):
        create_embedder(OSNET, "torch", preprocess="gpu")


def test_bad_and_empty_input_through_the_device_path(models_root):
    embedder = create_embedder(OSNET, "torch", preprocess="device")
    assert embedder.embed([]).vectors.shape == (0, 512)
    good = np.zeros((30, 20, 3), np.uint8)
    with pytest.raises(InvalidInputError, match="crop 1: expected dtype uint8"):
        embedder.embed([good, np.zeros((30, 20, 3), np.float32)])


@pytest.fixture(scope="module")
def reference_vectors(models_root, real_crops) -> np.ndarray:
    return create_embedder(OSNET, "onnxruntime", batch_size=16).embed(real_crops).vectors


@pytest.mark.parametrize("batch_size", [16, 40])
def test_device_path_matches_onnxruntime_and_the_host_path(real_crops, reference_vectors, batch_size):
    device = create_embedder(OSNET, "torch", preprocess="device", batch_size=batch_size)
    host = create_embedder(OSNET, "torch", preprocess="host", batch_size=batch_size)
    vectors = device.embed(real_crops)
    assert vectors.model_fingerprint == get_spec(OSNET).fingerprint
    for label, other in (("onnxruntime", reference_vectors), ("torch host", host.embed(real_crops).vectors)):
        cosine = np.sum(vectors.vectors * other, axis=1)
        worst = int(np.argmin(cosine))
        assert cosine[worst] > MIN_COSINE, f"crop {worst}: cosine {cosine[worst]:.6f} against {label}"
