"""The OpenVINO attribute recognizer on real Market-1501 crops (skipped without models or data)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.attributes.recognizer import AttributeRecognizer, aggregate_profiles
from models.attributes.types import ATTRIBUTE_NAMES, AttributeProfile, ColourReading
from models.errors import InvalidInputError

pytest.importorskip("openvino", reason="the openvino extra is not installed")


@pytest.fixture(scope="module")
def recognizer(models_dir: Path) -> AttributeRecognizer:
    return AttributeRecognizer(batch_size=4)


@pytest.fixture(scope="module")
def crops(data_dir: Path) -> list[np.ndarray]:
    folder = data_dir / "market1501_mini" / "query"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent from CROSSVIEW_DATA")
    return [cv2.imread(str(p)) for p in sorted(folder.glob("*.jpg"))[:16]]


def test_profiles_on_real_crops(recognizer: AttributeRecognizer, crops: list[np.ndarray]) -> None:
    profiles = recognizer.recognize(crops)
    assert len(profiles) == len(crops)
    for profile in profiles:
        assert list(profile.probabilities) == list(ATTRIBUTE_NAMES)
        assert profile.upper is not None and profile.lower is not None
    # batching (4 per request) changes nothing
    one_by_one = [recognizer.recognize([c])[0] for c in crops[:5]]
    for a, b in zip(profiles[:5], one_by_one, strict=True):
        np.testing.assert_allclose(a.probabilities.as_tuple(), b.probabilities.as_tuple(), atol=1e-5)
        assert (a.upper, a.lower) == (b.upper, b.lower)
    # 0004 and 0005 (first crops) are men in the labels; the model agrees on most crops
    assert np.mean([p.probabilities["male"] > 0.5 for p in profiles[:4]]) >= 0.75


def test_sample_points_are_normalised_upper_above_lower(recognizer: AttributeRecognizer,
                                                        crops: list[np.ndarray]) -> None:
    from models.embed.preprocess import preprocess

    _, upper, lower = recognizer._infer(preprocess(crops, recognizer.spec))
    assert np.all((upper >= 0) & (upper <= 1)) and np.all((lower >= 0) & (lower <= 1))
    assert np.all(upper[:, 1] < lower[:, 1])


def test_eight_threads_give_what_one_thread_gives(recognizer: AttributeRecognizer,
                                                  crops: list[np.ndarray]) -> None:
    expected = recognizer.recognize(crops)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: recognizer.recognize(crops), range(8)))
    for result in results:
        assert len(result) == len(expected)
        for got, want in zip(result, expected, strict=True):
            np.testing.assert_allclose(got.probabilities.as_tuple(), want.probabilities.as_tuple(), atol=1e-6)
            assert (got.upper, got.lower) == (want.upper, want.lower)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (np.zeros((0, 10, 3), np.uint8), "crop 1: expected a non-empty crop"),
        (np.zeros((10, 10, 3), np.float32), "crop 1: expected dtype uint8"),
        ("crop.jpg", "crop 1: expected a BGR uint8 numpy array, got str"),
    ],
)
def test_bad_crops(recognizer: AttributeRecognizer, crops: list[np.ndarray], bad: object, error: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        recognizer.recognize([crops[0], bad])  # type: ignore[list-item]
    assert error in str(info.value)


def test_unknown_or_wrong_models_are_refused() -> None:
    from models.errors import CrossviewError

    with pytest.raises(CrossviewError, match="unknown model 'attributes/nope'"):
        AttributeRecognizer("attributes/nope")
    with pytest.raises(InvalidInputError, match="expected an attributes model"):
        AttributeRecognizer("reid/intel-0288")


def _profile(male: float, upper: ColourReading | None, crops: int = 1) -> AttributeProfile:
    probs = dict.fromkeys(ATTRIBUTE_NAMES, 0.5) | {"male": male}
    return AttributeProfile(probs, upper, None, crops)


def test_aggregate_profiles_by_hand() -> None:
    profiles = [_profile(1.0, ColourReading("red", 0.9)), _profile(0.0, ColourReading("blue", 0.6), crops=2),
                _profile(0.5, ColourReading("red", 0.3))]
    merged = aggregate_profiles(profiles)
    assert merged.crops == 4
    assert merged.probabilities["male"] == pytest.approx((1.0 + 0.0 * 2 + 0.5) / 4)
    # votes: red 0.9 + 0.3, blue 2 * 0.6: equal but for rounding; red wins (a tie goes to the earlier colour)
    assert merged.upper is not None and merged.upper.name == "red"
    assert merged.upper.confidence == pytest.approx(1.2 / 4)
    assert merged.lower is None
    with pytest.raises(InvalidInputError, match="expected a non-empty sequence"):
        aggregate_profiles([])
    with pytest.raises(InvalidInputError, match=r"profiles\[0\]: expected an AttributeProfile"):
        aggregate_profiles([{"male": 1.0}])  # type: ignore[list-item]
