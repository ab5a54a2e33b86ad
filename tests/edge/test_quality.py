"""Crop quality: each term moves the score the right way, and the fast scorer matches a slow reference."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.quality import CropQuality, QualityTerms, crop_quality, laplacian_variance
from models.errors import InvalidInputError

FRAME_HW = (480, 640)


def _textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A crop with detail at every scale: blocky colour noise plus fine pixel noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(max(1, h // 8), max(1, w // 8), 3), dtype=np.uint8)
    image = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_NEAREST).astype(np.int16)
    image += rng.integers(-40, 41, size=image.shape, dtype=np.int16)
    return np.clip(image, 0, 255).astype(np.uint8)


def _blur(image: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma)


# --- slow reference, one term at a time ---------------------------------------------------------

def _ref_laplacian_variance(image: np.ndarray, hw: tuple[int, int]) -> float:
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    h, w = hw
    k = min(grey.shape[0] // h, grey.shape[1] // w)
    grey = grey.astype(np.float32)
    if k >= 2:  # box average over k×k blocks, by hand
        blocks = grey[: grey.shape[0] // k * k, : grey.shape[1] // k * k].astype(np.float64)
        grey = blocks.reshape(grey.shape[0] // k, k, grey.shape[1] // k, k).mean(axis=(1, 3)).astype(np.float32)
    small = cv2.resize(grey, (w, h), interpolation=cv2.INTER_LINEAR)  # bilinear: OpenCV's, as in the module
    padded = np.pad(small.astype(np.float64), 1, mode="reflect")  # reflect without the edge pixel
    values = []
    for y in range(1, h + 1):
        for x in range(1, w + 1):
            values.append(
                padded[y - 1, x] + padded[y + 1, x] + padded[y, x - 1] + padded[y, x + 1] - 4 * padded[y, x]
            )
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / len(values)


def _ref_terms(q: CropQuality, crop: np.ndarray, xyxy: tuple, frame_hw: tuple, conf: float) -> QualityTerms:
    x1, y1, x2, y2 = xyxy
    w, h = x2 - x1, y2 - y1
    if h <= q.min_height:
        size = 0.0
    elif h >= q.full_height:
        size = 1.0
    else:
        size = (h - q.min_height) / (q.full_height - q.min_height)
    v = _ref_laplacian_variance(crop, q.sharpness_hw)
    sharp = v / (v + q.sharpness_ref)
    ratio = w / h
    if q.min_aspect <= ratio <= q.max_aspect:
        aspect = 1.0
    else:
        bound = q.min_aspect if ratio < q.min_aspect else q.max_aspect
        aspect = max(0.0, 1 - abs(math.log(ratio) - math.log(bound)) / math.log(q.aspect_falloff))
    c = 0.0 if math.isnan(conf) else min(1.0, max(0.0, conf))
    border = (
        min(x1, y1) <= q.border_margin
        or x2 >= frame_hw[1] - q.border_margin
        or y2 >= frame_hw[0] - q.border_margin
    )
    weights = [q.size_weight, q.sharpness_weight, q.aspect_weight, q.confidence_weight]
    score = sum(wt * t for wt, t in zip(weights, [size, sharp, aspect, c], strict=True)) / sum(weights)
    if border:
        score *= 1 - q.border_penalty
    return QualityTerms(size, sharp, aspect, c, border, score)


# --- each term moves the score the right way ----------------------------------------------------

_SHARP = _textured(200, 80, seed=1)
# (name, better (crop, xyxy, conf), worse (crop, xyxy, conf)): everything else equal
_PAIRS = [
    ("sharp vs blurred", (_SHARP, (100, 100, 180, 300), 0.9), (_blur(_SHARP), (100, 100, 180, 300), 0.9)),
    ("big vs tiny", (_SHARP, (100, 100, 180, 300), 0.9),
     (cv2.resize(_SHARP, (12, 30), interpolation=cv2.INTER_AREA), (100, 100, 112, 130), 0.9)),
    ("inside vs touching the border", (_SHARP, (100, 100, 180, 300), 0.9), (_SHARP, (0, 100, 80, 300), 0.9)),
    ("inside vs touching the bottom", (_SHARP, (100, 100, 180, 300), 0.9), (_SHARP, (100, 280, 180, 480), 0.9)),
    ("upright vs square box", (_SHARP, (100, 100, 180, 300), 0.9),
     (cv2.resize(_SHARP, (200, 200)), (100, 100, 300, 300), 0.9)),
    ("upright vs sliver", (_SHARP, (100, 100, 180, 300), 0.9),
     (cv2.resize(_SHARP, (20, 200)), (100, 100, 120, 300), 0.9)),
    ("confident vs unsure", (_SHARP, (100, 100, 180, 300), 0.9), (_SHARP, (100, 100, 180, 300), 0.3)),
]


@pytest.mark.parametrize(("better", "worse"), [(b, w) for _, b, w in _PAIRS], ids=[n for n, _, _ in _PAIRS])
def test_each_cue_ranks_the_better_crop_higher(better: tuple, worse: tuple) -> None:
    q = CropQuality()
    good = q(better[0], better[1], FRAME_HW, better[2])
    bad = q(worse[0], worse[1], FRAME_HW, worse[2])
    assert 0.0 <= bad < good <= 1.0


@pytest.mark.parametrize(
    ("crop", "xyxy", "conf", "expected"),
    [
        (_SHARP, (100, 100, 180, 300), 0.9, {"size": 1.0, "aspect": 1.0, "confidence": 0.9, "touches_border": False}),
        (_SHARP, (100, 100, 140, 132), 0.5, {"size": 0.0, "touches_border": False}),  # 32 px tall: useless
        (_SHARP, (100, 100, 140, 180), 0.5, {"size": 0.5, "aspect": 1.0}),  # 80 px: half way, 1:2
        (_SHARP, (100, 100, 200, 200), 0.5, {"aspect": 0.0}),  # square: 2x wider than 1:2
        (_SHARP, (1, 100, 81, 300), 1.5, {"touches_border": True, "confidence": 1.0}),
        (_SHARP, (100, 100, 180, 300), float("nan"), {"confidence": 0.0}),
        (np.full((200, 80, 3), 128, np.uint8), (100, 100, 180, 300), 0.9, {"sharpness": 0.0}),
    ],
)
def test_terms_table(crop: np.ndarray, xyxy: tuple, conf: float, expected: dict) -> None:
    terms = CropQuality().terms(crop, xyxy, FRAME_HW, conf)
    for name, value in expected.items():
        assert getattr(terms, name) == pytest.approx(value), name


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"size_weight": 1, "sharpness_weight": 0, "aspect_weight": 0, "confidence_weight": 0},
        {"sharpness_ref": 400.0, "border_penalty": 1.0, "min_aspect": 0.25, "aspect_falloff": 3.0},
        {"sharpness_hw": (64, 32), "min_height": 10.0, "full_height": 50.0, "border_margin": 0.0},
    ],
)
def test_matches_slow_reference(options: dict) -> None:
    q = CropQuality(**options)
    rng = np.random.default_rng(7)
    # enlarged, shrunk bilinearly only, and box-averaged by 2, 3 and 5 first (default 128×64 target)
    sizes = [(20, 10), (100, 40), (200, 80), (64, 64), (300, 130), (520, 200), (700, 330), (130, 300)]
    for trial, (h, w) in enumerate(sizes):
        crop = _textured(h, w, seed=trial)
        if trial % 2:
            crop = _blur(crop, 1.0 + trial)
        x1, y1 = float(rng.uniform(0, 400)), float(rng.uniform(0, 200))
        xyxy = (x1, y1, x1 + w * rng.uniform(0.5, 2), y1 + h)
        conf = float(rng.uniform(-0.2, 1.2))
        got = q.terms(crop, xyxy, FRAME_HW, conf)
        want = _ref_terms(q, crop, xyxy, FRAME_HW, conf)
        for name in ("size", "sharpness", "aspect", "confidence", "score"):
            assert getattr(got, name) == pytest.approx(getattr(want, name), rel=1e-5, abs=1e-9), name
        assert got.touches_border == want.touches_border
        assert 0.0 <= got.score <= 1.0


def test_grey_crop_and_function_form_agree() -> None:
    grey = cv2.cvtColor(_SHARP, cv2.COLOR_BGR2GRAY)
    assert laplacian_variance(grey) == pytest.approx(laplacian_variance(_SHARP))
    assert crop_quality(_SHARP, (100, 100, 180, 300), FRAME_HW, 0.9) == CropQuality()(
        _SHARP, (100, 100, 180, 300), FRAME_HW, 0.9
    )
    assert crop_quality(_SHARP, (100, 100, 180, 300), FRAME_HW, 0.9, border_penalty=0.9) == pytest.approx(
        crop_quality(_SHARP, (100, 100, 180, 300), FRAME_HW, 0.9)
    )  # no border contact: the penalty does not apply


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: CropQuality()(np.zeros((10, 10, 3), np.float32), (0, 0, 10, 10), FRAME_HW, 1.0), "uint8"),
        (lambda: CropQuality()(np.zeros((0, 10, 3), np.uint8), (0, 0, 10, 10), FRAME_HW, 1.0), "non-empty"),
        (lambda: CropQuality()(np.zeros((10, 10, 4), np.uint8), (0, 0, 10, 10), FRAME_HW, 1.0), "shape"),
        (lambda: CropQuality()([[1]], (0, 0, 10, 10), FRAME_HW, 1.0), "numpy array"),
        (lambda: CropQuality()(_SHARP, (0, 0, 10), FRAME_HW, 1.0), "4 numbers"),
        (lambda: CropQuality(size_weight=-1), "non-negative"),
        (lambda: CropQuality(size_weight=0, sharpness_weight=0, aspect_weight=0, confidence_weight=0), "sum"),
        (lambda: CropQuality(border_penalty=1.5), "border_penalty"),
        (lambda: CropQuality(min_height=100, full_height=50), "min_height"),
        (lambda: CropQuality(sharpness_ref=0), "sharpness_ref"),
        (lambda: CropQuality(min_aspect=0.6, max_aspect=0.5), "min_aspect"),
        (lambda: CropQuality(aspect_falloff=1.0), "aspect_falloff"),
    ],
)
def test_errors(make, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        make()


def test_real_tracklet_sharp_frames_beat_blurred_copies(data_dir: Path) -> None:
    folder = data_dir / "mars_mini" / "bbox_test"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    tracklets: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(folder.glob("*/*.jpg")):
        tracklets[path.name[:11]].append(path)  # e.g. 0036C1T0001: person, camera, tracklet
    name, paths = max(sorted(tracklets.items()), key=lambda item: len(item[1]))
    q = CropQuality()
    wins = 0
    for path in paths[:20]:
        crop = cv2.imread(str(path))
        assert crop is not None, path
        h, w = crop.shape[:2]
        xyxy = (200.0, 100.0, 200.0 + w, 100.0 + h)  # as if cut from the middle of a 1080p frame
        sharp = q.terms(crop, xyxy, (1080, 1920), 0.8)
        blurred = q.terms(_blur(crop, 2.0), xyxy, (1080, 1920), 0.8)
        assert blurred.sharpness < sharp.sharpness, path.name
        wins += sharp.score > blurred.score
    assert wins == min(20, len(paths)), name


def test_bounds_hold_the_score_whatever_the_sharpness() -> None:
    quality = CropQuality()
    rng = np.random.default_rng(5)
    for box, frame_hw, conf in [((10, 10, 40, 100), (480, 640), 0.9), ((0, 5, 60, 70), (480, 640), 0.3),
                                ((100, 100, 101, 180), (200, 200), 1.0)]:
        x1, y1, x2, y2 = box
        low, high = quality.bounds(box, frame_hw, conf)
        assert 0.0 <= low <= high <= 1.0
        for blur in (False, True):
            crop = rng.integers(0, 256, size=(y2 - y1, x2 - x1, 3), dtype=np.uint8)
            if blur:
                crop[:] = crop.mean().astype(np.uint8)  # flat: no sharpness at all
            assert low <= quality(crop, box, frame_hw, conf) <= high
