"""Colour naming: synthetic patches of known colours, a per-pixel reference, confidence, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.attributes import colours
from models.attributes.colours import classify_lab, lab_pixels, name_colour
from models.errors import InvalidInputError


def _reference_name(lightness: float, a: float, b: float) -> str:
    """The module's rules, one pixel at a time, written as plain if/else."""
    chroma = math.hypot(a, b)
    hue = math.degrees(math.atan2(b, a)) % 360.0
    if chroma < colours.ACHROMATIC_CHROMA:
        low, high = colours.GREY_LIGHTNESS
        return "black" if lightness < low else "white" if lightness > high else "grey"
    if hue >= 345.0 or hue < 20.0:
        return "pink" if lightness > 55.0 else "red"
    if hue < 50.0:
        if lightness > 72.0:
            return "pink"
        return "brown" if chroma < 30.0 and lightness < 55.0 else "red"
    if hue < 78.0:
        return "brown" if chroma < 30.0 or lightness < 45.0 else "orange"
    if hue < 110.0:
        if lightness < 50.0:
            return "brown" if hue < 95.0 else "green"
        return "brown" if chroma < 25.0 else "yellow"
    if hue < 190.0:
        return "green"
    return "blue" if hue < 315.0 else "purple"


def _patch(rgb: tuple[int, int, int], size: tuple[int, int] = (40, 20)) -> np.ndarray:
    return np.full((*size, 3), rgb[::-1], np.uint8)


@pytest.mark.parametrize(
    ("rgb", "name"),
    [
        ((0, 0, 0), "black"), ((25, 25, 30), "black"), ((255, 255, 255), "white"), ((230, 230, 225), "white"),
        ((128, 128, 128), "grey"), ((200, 0, 0), "red"), ((128, 0, 0), "red"), ((220, 20, 60), "red"),
        ((255, 165, 0), "orange"), ((255, 255, 0), "yellow"), ((255, 215, 0), "yellow"), ((0, 128, 0), "green"),
        ((50, 205, 50), "green"), ((0, 0, 255), "blue"), ((0, 0, 128), "blue"), ((70, 130, 180), "blue"),
        ((128, 0, 128), "purple"), ((238, 130, 238), "purple"), ((255, 192, 203), "pink"),
        ((255, 105, 180), "pink"), ((139, 69, 19), "brown"), ((210, 180, 140), "brown"),
    ],
)
def test_uniform_patches_of_known_colours(rgb: tuple[int, int, int], name: str) -> None:
    reading = name_colour(_patch(rgb), (0.5, 0.5))
    assert (reading.name, reading.confidence) == (name, 1.0)


def test_vectorised_rules_match_the_per_pixel_reference() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    lab = lab_pixels(pixels).reshape(-1, 3)
    fast = classify_lab(lab)
    slow = [_reference_name(*map(float, px)) for px in lab]
    assert [colours.COLOUR_NAMES[i] for i in fast] == slow
    assert len(set(slow)) == len(colours.COLOUR_NAMES)  # the random pixels reach every colour


def test_confidence_is_the_share_of_agreeing_pixels_and_the_patch_follows_the_point() -> None:
    crop = _patch((200, 0, 0), (100, 50))
    crop[:, 25:] = (0, 0, 200)[::-1]  # right half blue (BGR)
    # a patch centred on the boundary: half red, half blue (the right half has one more column)
    reading = name_colour(crop, (0.5, 0.5), radius=0.2)
    assert reading.name == "blue" and 0.5 < reading.confidence < 0.6
    assert name_colour(crop, (0.1, 0.5), radius=0.1).name == "red"
    assert name_colour(crop, (0.9, 0.5), radius=0.1).name == "blue"
    # a point outside the crop is clipped to its edge, not an error
    assert name_colour(crop, (1.5, -0.2), radius=0.1).name == "blue"


@pytest.mark.parametrize(
    ("crop", "point", "radius", "error"),
    [
        (np.zeros((0, 10, 3), np.uint8), (0.5, 0.5), 0.1, "expected a non-empty crop"),
        (np.zeros((10, 10), np.uint8), (0.5, 0.5), 0.1, "expected shape (H, W, 3)"),
        (np.zeros((10, 10, 3), np.float32), (0.5, 0.5), 0.1, "expected dtype uint8"),
        (np.zeros((10, 10, 3), np.uint8), (0.5,), 0.1, "point_xy: expected two numbers"),
        (np.zeros((10, 10, 3), np.uint8), (float("nan"), 0.5), 0.1, "point_xy: expected finite numbers"),
        (np.zeros((10, 10, 3), np.uint8), (0.5, 0.5), 0.0, "radius: expected a number > 0"),
    ],
)
def test_bad_input(crop: np.ndarray, point: tuple, radius: float, error: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        name_colour(crop, point, radius=radius)
    assert error in str(info.value)
