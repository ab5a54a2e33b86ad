"""Preprocessing against a slow per-pixel reference, and the bad-input table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.embed.preprocess import preprocess, preprocess_crops
from models.errors import InvalidInputError
from models.zoo import get_spec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _reference_normalise(image: np.ndarray, channel_order: str, scale: float,
                         mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """One pixel, one channel at a time: CHW float32 straight from the formula in the spec."""
    height, width, _ = image.shape
    out = np.zeros((3, height, width), np.float32)
    for c in range(3):
        source = c if channel_order == "BGR" else 2 - c
        for y in range(height):
            for x in range(width):
                out[c, y, x] = (float(image[y, x, source]) * scale - mean[c]) / std[c]
    return out


def _reference_bilinear(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres and edge clamping, in float64, pixel by pixel."""
    in_h, in_w, channels = image.shape
    out = np.zeros((out_h, out_w, channels), np.float64)
    for y in range(out_h):
        sy = max((y + 0.5) * in_h / out_h - 0.5, 0.0)
        y0 = min(math.floor(sy), in_h - 1)
        y1, fy = min(y0 + 1, in_h - 1), sy - y0
        for x in range(out_w):
            sx = max((x + 0.5) * in_w / out_w - 0.5, 0.0)
            x0 = min(math.floor(sx), in_w - 1)
            x1, fx = min(x0 + 1, in_w - 1), sx - x0
            for c in range(channels):
                top = image[y0, x0, c] * (1 - fx) + image[y0, x1, c] * fx
                bottom = image[y1, x0, c] * (1 - fx) + image[y1, x1, c] * fx
                out[y, x, c] = top * (1 - fy) + bottom * fy
    return out


NORMALISATION_TABLE = [
    # channel_order, scale, mean, std
    pytest.param("BGR", 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), id="intel-bgr-0-255"),
    pytest.param("RGB", 1.0 / 255.0, IMAGENET_MEAN, IMAGENET_STD, id="torchreid-rgb-imagenet"),
    pytest.param("BGR", 1.0 / 255.0, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), id="bgr-scaled-mean-std"),
    pytest.param("RGB", 1.0, (100.0, 110.0, 120.0), (50.0, 60.0, 70.0), id="rgb-unscaled-mean-std"),
    pytest.param("RGB", 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), id="rgb-identity"),
]


@pytest.mark.parametrize(("channel_order", "scale", "mean", "std"), NORMALISATION_TABLE)
def test_normalisation_matches_per_pixel_reference(channel_order, scale, mean, std):
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (6, 4, 3), dtype=np.uint8) for _ in range(3)]
    batch = preprocess_crops(crops, input_hw=(6, 4), channel_order=channel_order, scale=scale,
                             mean=mean, std=std)
    assert batch.shape == (3, 3, 6, 4)
    assert batch.dtype == np.float32
    for crop, got in zip(crops, batch, strict=True):
        expected = _reference_normalise(crop, channel_order, scale, mean, std)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize(("in_hw", "out_hw"), [
    pytest.param((5, 3), (12, 6), id="upscale"),
    pytest.param((23, 17), (8, 4), id="downscale"),
    pytest.param((7, 9), (8, 4), id="mixed"),
])
@pytest.mark.parametrize("channel_order", ["BGR", "RGB"])
def test_resize_matches_bilinear_reference(in_hw, out_hw, channel_order):
    rng = np.random.default_rng(1)
    crop = rng.integers(0, 256, (*in_hw, 3), dtype=np.uint8)
    scale, mean, std = 1.0 / 255.0, IMAGENET_MEAN, IMAGENET_STD
    got = preprocess_crops([crop], input_hw=out_hw, channel_order=channel_order, scale=scale,
                           mean=mean, std=std)[0]
    resized = _reference_bilinear(crop.astype(np.float64), *out_hw)
    expected = _reference_normalise(resized, channel_order, scale, mean, std)
    # OpenCV resizes uint8 in fixed point and rounds: allow one grey level.
    one_level = scale / min(std)
    np.testing.assert_allclose(got, expected, rtol=0, atol=one_level + 1e-5)


@pytest.mark.parametrize("name", ["reid/intel-0288", "reid/osnet-x0.25-msmt17"])
def test_preprocess_follows_the_zoo_spec(name):
    spec = get_spec(name)
    crop = np.random.default_rng(2).integers(0, 256, (90, 40, 3), dtype=np.uint8)
    got = preprocess([crop], spec)
    expected = preprocess_crops([crop], input_hw=spec.input_hw, channel_order=spec.channel_order,
                                scale=spec.scale, mean=spec.mean, std=spec.std)
    assert got.shape == (1, 3, *spec.input_hw)
    np.testing.assert_array_equal(got, expected)


def test_empty_list_gives_empty_batch():
    batch = preprocess_crops([], input_hw=(8, 4))
    assert batch.shape == (0, 3, 8, 4)
    assert batch.dtype == np.float32


GOOD = np.zeros((8, 4, 3), np.uint8)

BAD_INPUT_TABLE = [
    # crops, expected error, message fragment
    pytest.param([GOOD, np.zeros((0, 5, 3), np.uint8)], InvalidInputError, "crop 1: expected a non-empty",
                 id="empty-crop"),
    pytest.param([GOOD, GOOD, np.zeros((4, 0, 3), np.uint8)], InvalidInputError, "crop 2: expected a non-empty",
                 id="zero-width-crop"),
    pytest.param([np.zeros((8, 4, 3), np.float32)], InvalidInputError, "crop 0: expected dtype uint8, got float32",
                 id="float-image"),
    pytest.param([GOOD, np.zeros((8, 4), np.uint8)], InvalidInputError, r"crop 1: expected shape \(H, W, 3\)",
                 id="2d-image"),
    pytest.param([np.zeros((8, 4, 4), np.uint8)], InvalidInputError, r"crop 0: expected shape \(H, W, 3\)",
                 id="four-channels"),
    pytest.param([GOOD, [[0, 0, 0]]], InvalidInputError, "crop 1: expected a BGR uint8 numpy array, got list",
                 id="not-an-array"),
    pytest.param(GOOD, InvalidInputError, "wrap a single crop in a list", id="bare-array"),
]


@pytest.mark.parametrize(("crops", "error", "match"), BAD_INPUT_TABLE)
def test_bad_input_is_refused_naming_the_crop(crops, error, match):
    with pytest.raises(error, match=match):
        preprocess_crops(crops, input_hw=(8, 4))


@pytest.mark.parametrize(("kwargs", "match"), [
    pytest.param({"channel_order": "YUV"}, "channel_order", id="bad-channel-order"),
    pytest.param({"std": (1.0, 0.0, 1.0)}, "std", id="zero-std"),
    pytest.param({"input_hw": (0, 4)}, "input_hw", id="zero-size"),
])
def test_bad_parameters_are_refused(kwargs, match):
    params = {"input_hw": (8, 4), **kwargs}
    with pytest.raises(InvalidInputError, match=match):
        preprocess_crops([GOOD], **params)
