"""Turn BGR uint8 person crops into the NCHW float32 tensor a Re-ID model expects.

Every runtime uses this one function, driven only by the model's `ModelSpec`, so the ONNX Runtime,
OpenVINO, torch and TensorRT embedders feed a model exactly the same numbers:

    x[n, c, y, x] = (resize(crop_n)[y, x, order[c]] * scale - mean[c]) / std[c]

`order` is (0, 1, 2) for a BGR model and (2, 1, 0) for an RGB one; `mean` and `std` are given in
the model's channel order. Resizing is OpenCV's bilinear (`INTER_LINEAR`, half-pixel centres) on
the uint8 crop, as the Intel Open Model Zoo demos and most deployed Re-ID pipelines do.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from models.errors import InvalidInputError
from models.types import check_bgr_image
from models.zoo import ModelSpec

_CHANNEL_ORDERS = ("BGR", "RGB")


def validate_crop(index: int, image: object) -> np.ndarray:
    """Check one crop is a non-empty BGR uint8 (H, W, 3) array; the error names the crop's index."""
    return check_bgr_image(f"crop {index}", image, noun="crop")


def validate_crops(images: Sequence[np.ndarray]) -> None:
    """Check every crop before any work is done, so one bad crop fails the call up front."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise InvalidInputError(
            f"images: expected a sequence of (H, W, 3) crops, got one array of shape {images.shape}; "
            "wrap a single crop in a list"
        )
    for index, image in enumerate(images):
        validate_crop(index, image)


def preprocess_crops(
    images: Sequence[np.ndarray],
    *,
    input_hw: tuple[int, int],
    channel_order: str = "BGR",
    scale: float = 1.0,
    mean: Sequence[float] = (0.0, 0.0, 0.0),
    std: Sequence[float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """BGR uint8 crops of any size (N of them) → float32 array (N, 3, H, W) with H, W = `input_hw`.

    Crop `i` that is not a non-empty uint8 (H, W, 3) array raises InvalidInputError naming `i`.
    """
    if channel_order not in _CHANNEL_ORDERS:
        raise InvalidInputError(f"channel_order: expected one of {_CHANNEL_ORDERS}, got {channel_order!r}")
    height, width = (int(v) for v in input_hw)
    if height <= 0 or width <= 0:
        raise InvalidInputError(f"input_hw: expected positive (H, W), got {input_hw}")
    mean_arr = np.asarray(mean, dtype=np.float32).reshape(1, 1, 3)
    std_arr = np.asarray(std, dtype=np.float32).reshape(1, 1, 3)
    if np.any(std_arr == 0):
        raise InvalidInputError(f"std: expected non-zero values, got {tuple(std)}")
    validate_crops(images)

    out = np.empty((len(images), 3, height, width), dtype=np.float32)
    for index, image in enumerate(images):
        if image.shape[:2] != (height, width):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        if channel_order == "RGB":
            image = image[:, :, ::-1]
        pixels = image.astype(np.float32)
        if scale != 1.0:
            pixels *= np.float32(scale)
        pixels -= mean_arr
        pixels /= std_arr
        out[index] = pixels.transpose(2, 0, 1)
    return out


def preprocess(images: Sequence[np.ndarray], spec: ModelSpec) -> np.ndarray:
    """Preprocess crops exactly as the zoo's `spec` says (size, channel order, scale, mean, std)."""
    return preprocess_crops(
        images,
        input_hw=spec.input_hw,
        channel_order=spec.channel_order,
        scale=spec.scale,
        mean=spec.mean,
        std=spec.std,
    )
