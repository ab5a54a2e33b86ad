"""Face blur: the blur methods, the head-band fallback, the Haar detector on a drawn face and real images.

The detector tests need OpenCV's CascadeClassifier and its frontal-face file, which OpenCV 4 wheels
bundle and OpenCV 5 wheels do not; they skip with that reason where either is missing.
"""

from __future__ import annotations

import glob
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.privacy import FaceBlurrer, FaceDetectorUnavailableError, blur_region, find_face_cascade
from models.errors import InvalidInputError
from models.types import Crop
from protos.codec import crop_to_jpeg, jpeg_to_image


def _haar_available() -> str | None:
    try:
        FaceBlurrer()
    except FaceDetectorUnavailableError as exc:
        return str(exc)
    return None


_NO_HAAR = _haar_available()
needs_haar = pytest.mark.skipif(_NO_HAAR is not None, reason=f"no Haar face detector here: {_NO_HAAR}")


def textured(h: int = 256, w: int = 128, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def drawn_face(size: int = 160) -> np.ndarray:
    """A cartoon face on a grey person-sized canvas; the frontal-face cascade finds it (checked)."""
    img = np.full((size * 2, size, 3), 200, np.uint8)
    c, s = size // 2, size / 200
    cv2.ellipse(img, (c, c), (int(70 * s), int(90 * s)), 0, 0, 360, (150, 170, 210), -1)
    cv2.ellipse(img, (c, c - int(70 * s)), (int(75 * s), int(35 * s)), 0, 180, 360, (30, 30, 40), -1)
    for dx in (-30, 30):
        cv2.ellipse(img, (c + int(dx * s), c - int(15 * s)), (int(16 * s), int(8 * s)), 0, 0, 360, (40, 40, 40), -1)
        cv2.line(img, (c + int((dx - 18) * s), c - int(32 * s)), (c + int((dx + 18) * s), c - int(32 * s)),
                 (40, 40, 50), max(1, int(5 * s)))
    cv2.line(img, (c, c - int(5 * s)), (c, c + int(25 * s)), (110, 120, 160), max(1, int(6 * s)))
    cv2.ellipse(img, (c, c + int(45 * s)), (int(25 * s), int(8 * s)), 0, 0, 360, (60, 60, 120), -1)
    return cv2.GaussianBlur(img, (5, 5), 0)


def region_mask(img: np.ndarray, regions: list[tuple[int, int, int, int]]) -> np.ndarray:
    mask = np.zeros(img.shape[:2], bool)
    for x, y, w, h in regions:
        mask[y:y + h, x:x + w] = True
    return mask


def changed_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.any(a != b, axis=(1, 2)))


@pytest.mark.parametrize("method", ["pixelate", "gaussian", "fill"])
def test_blur_region_changes_only_the_box(method: str) -> None:
    img = textured()
    out = img.copy()
    blur_region(out, (10, 20, 60, 40), method)
    inside, outside = np.zeros(img.shape[:2], bool), np.ones(img.shape[:2], bool)
    inside[20:60, 10:70] = True
    outside[20:60, 10:70] = False
    assert np.array_equal(out[outside], img[outside])
    assert np.abs(out[inside].astype(int) - img[inside]).mean() > 30  # noise is gone, not just nudged
    assert out[inside].std() < img[inside].std() / 2


def test_head_band_fallback_without_detector() -> None:
    img = textured(250, 100)
    out = FaceBlurrer(detector=None).blur(img)
    assert changed_rows(img, out).max() < 50 and changed_rows(img, out).min() == 0  # top fifth: rows 0..49
    assert np.array_equal(out[50:], img[50:])
    assert np.array_equal(img, textured(250, 100))  # the input is not modified
    assert FaceBlurrer(detector=None, head_fraction=0.5).regions(img) == [(0, 0, 100, 125)]


def test_blur_jpeg_and_crop_round_trip() -> None:
    blurrer = FaceBlurrer(detector=None, method="fill")
    img = textured(200, 80)
    out = jpeg_to_image(blurrer.blur_jpeg(crop_to_jpeg(img)))
    assert out.shape == img.shape and out[:40].std() < 10  # a flat band, up to JPEG noise
    crop = Crop(img, "cam-1", 12.5)
    blurred = blurrer.blur_crop(crop)
    assert blurred.camera_id == "cam-1" and blurred.timestamp_s == 12.5
    assert (blurred.image[:40] == blurred.image[0, 0]).all()


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"method": "swirl"}, InvalidInputError, "method"),
    ({"fallback": "body"}, InvalidInputError, "fallback"),
    ({"detector": "dnn"}, InvalidInputError, "detector"),
    ({"detector": None, "fallback": "none"}, InvalidInputError, "blur nothing"),
    ({"head_fraction": 0}, InvalidInputError, "head_fraction"),
    ({"cascade_path": "/nonexistent/cascade.xml"}, FaceDetectorUnavailableError, "not found|no CascadeClassifier"),
])
def test_constructor_errors(kwargs: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        FaceBlurrer(**kwargs)


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((0, 5, 3), np.uint8),
                                 np.zeros((4, 4, 3), np.float32)])
def test_bad_images_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(InvalidInputError, match="face blur"):
        FaceBlurrer(detector=None).blur(bad)


def test_cascade_search_honours_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "faces.xml"
    fake.write_text("<opencv_storage></opencv_storage>")
    monkeypatch.setenv("CROSSVIEW_FACE_CASCADE", str(fake))
    assert find_face_cascade() == fake
    assert find_face_cascade(tmp_path / "faces.xml") == fake
    monkeypatch.setenv("CROSSVIEW_FACE_CASCADE", str(tmp_path / "missing.xml"))
    with pytest.raises(FaceDetectorUnavailableError, match=r"missing\.xml"):
        find_face_cascade()


def test_missing_detector_names_the_fix() -> None:
    if _NO_HAAR is None:
        pytest.skip("this OpenCV has a Haar face detector")
    assert "opencv-python-headless<5" in _NO_HAAR


@needs_haar
def test_drawn_face_is_found_and_blurred() -> None:
    img = drawn_face()
    blurrer = FaceBlurrer()
    faces = blurrer.detect(img)
    assert len(faces) == 1
    x, y, w, h = faces[0]
    assert 0 <= x < 40 and 0 <= y < 40 and 100 < w < 160  # the drawn head, top of the canvas
    out = blurrer.blur(img)
    (region,) = blurrer.regions(img)
    assert np.array_equal(out[~region_mask(img, [region])], img[~region_mask(img, [region])])
    assert np.abs(out[y:y + h, x:x + w].astype(int) - img[y:y + h, x:x + w]).mean() > 5
    assert FaceBlurrer().detect(textured(320, 160)) == []  # noise has no face
    small = cv2.resize(img, (64, 128), interpolation=cv2.INTER_AREA)  # upscaled for detection
    assert len(FaceBlurrer().detect(small)) == 1


@needs_haar
def test_real_frame_face_blurred_and_nothing_else(data_dir: Path) -> None:
    path = data_dir / "mot17_mini/train/MOT17-11-FRCNN/img1/000001.jpg"
    if not path.is_file():
        pytest.skip("MOT17-11 frame 1 is not in CROSSVIEW_DATA")
    img = cv2.imread(str(path))
    blurrer = FaceBlurrer(fallback="none")
    faces = blurrer.detect(img)
    # the man walking towards the camera at the top left: his face is at about (8, 18, 123, 123)
    assert any(iou(face, (8, 18, 123, 123)) > 0.5 for face in faces), faces
    regions = blurrer.regions(img)
    out = blurrer.blur(img, regions)
    outside = ~region_mask(img, regions)
    assert np.array_equal(out[outside], img[outside])
    face = (slice(18, 141), slice(8, 131))
    assert np.abs(out[face].astype(int) - img[face]).mean() > 5


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_real_person_crops_always_get_a_blurred_head(data_dir: Path) -> None:
    paths = sorted(glob.glob(str(data_dir / "market1501_mini/query/*.jpg")))[:8]
    if not paths:
        pytest.skip("Market-1501 crops are not in CROSSVIEW_DATA")
    blurrer = FaceBlurrer(detector=None) if _NO_HAAR else FaceBlurrer()
    for path in paths:
        img = cv2.imread(path)
        regions = blurrer.regions(img)
        assert regions, path
        out = blurrer.blur(img, regions)
        rows = changed_rows(img, out)
        assert len(rows) > 0 and rows.min() < img.shape[0] // 3, path  # the head end of the crop changed
        outside = ~region_mask(img, regions)
        assert np.array_equal(out[outside], img[outside]), path
