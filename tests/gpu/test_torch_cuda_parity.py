"""On a CUDA GPU, the torch embedder in FP16 agrees with ONNX Runtime on the CPU (FP32), per crop,
with its crops preprocessed on the GPU (the default there) or on the host.

Skipped without CUDA, and without the real models and crops of ../shared (CROSSVIEW_MODELS,
CROSSVIEW_DATA). This is the GPU path measured on the device machine; TensorRT cannot be
installed there, so the TensorRT backend has no such test.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'crossview[torch]')")

from models.embed import create_embedder  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch"),
]

OSNET = "reid/osnet-x0.25-msmt17"
MIN_COSINE = 0.999


def _env_dir(var: str) -> Path:
    value = os.environ.get(var)
    if not value or not Path(value).is_dir():
        pytest.skip(f"{var} is not set to a folder from ../shared: real models or crops absent")
    return Path(value)


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    root = _env_dir("CROSSVIEW_DATA")
    files = (sorted((root / "cuhk03_labeled" / "val").glob("*.jpg"))[::7][:96]
             + sorted((root / "market1501_mini" / "query").glob("*.jpg")))
    images = [image for image in (cv2.imread(str(f)) for f in files) if image is not None]
    if len(images) < 32:
        pytest.skip(f"need at least 32 real crops under {root}, found {len(images)}")
    return images


@pytest.fixture(scope="module")
def reference(crops) -> np.ndarray:
    if not (_env_dir("CROSSVIEW_MODELS") / "onnx" / "osnet_x0_25_msmt17.onnx").is_file():
        pytest.skip("the OSNet ONNX model is missing from CROSSVIEW_MODELS")
    return create_embedder(OSNET, "onnxruntime", batch_size=32).embed(crops).vectors


@pytest.mark.parametrize("preprocess", ["device", "host"])
@pytest.mark.parametrize("fp16", [True, False], ids=["fp16", "fp32"])
def test_torch_cuda_matches_onnxruntime_cpu(crops, reference, fp16, preprocess):
    """"device": the crops uploaded as uint8 (pinned) and resized/normalised on the GPU (the default)."""
    embedder = create_embedder(OSNET, "torch", device="cuda", fp16=fp16, batch_size=32, preprocess=preprocess)
    assert embedder.precision == ("fp16" if fp16 else "fp32")
    assert embedder.preprocess == preprocess
    result = embedder.embed(crops)
    assert result.model_fingerprint == create_embedder(OSNET, "onnxruntime").fingerprint
    cosine = np.sum(result.vectors * reference, axis=1)
    worst = int(np.argmin(cosine))
    assert cosine[worst] > MIN_COSINE, f"crop {worst}: cosine {cosine[worst]:.6f} (fp16={fp16}, {preprocess})"


def test_the_default_on_cuda_is_device_preprocessing(reference):
    assert create_embedder(OSNET, "torch", device="cuda").preprocess == "device"
