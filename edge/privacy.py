"""Face blur for every crop that leaves the edge (docs/architecture.md: blur before data leaves the site).

Detector: OpenCV's Haar cascade ``haarcascade_frontalface_default.xml`` (frontal faces), looked up in
this order: the `cascade_path` argument, the ``CROSSVIEW_FACE_CASCADE`` environment variable,
``cv2.data.haarcascades``, anywhere inside the installed ``cv2`` package, and the system's OpenCV
data folders (Debian's ``opencv-data``: ``/usr/share/opencv4/haarcascades``). OpenCV 4 wheels bundle
the file and the ``CascadeClassifier`` class; OpenCV 5 moved both out of the main wheels (the contrib
wheel has the class but not the file), so there the detector needs a cascade file supplied by path,
or an OpenCV 4 wheel. When no detector can be loaded, `FaceBlurrer` raises
`FaceDetectorUnavailableError` saying so and what to install; it never silently skips faces.

Fallback (the choice made here): a person crop in which no face is found gets its top
`head_fraction` (default 1/5, where the head is in an upright person box) blurred across its whole
width. Haar frontal-face detection misses most faces at surveillance resolution (a head in a
256x128 crop is ~25 px wide, often turned away or looking down), and a missed face is a privacy
leak, while blurring a head band without a face costs the hub little: its judge compares body
shape, clothing and carried objects, never faces. ``fallback="none"`` turns this off (e.g. for full
frames, where a band across the top would be meaningless). ``detector=None`` skips detection and
always blurs the head band: the option for machines without a cascade file.

Methods: ``"pixelate"`` (default: blocks of about 1/6 of the region's longer side), ``"gaussian"``
(kernel about half the region) or ``"fill"`` (the region's mean colour).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from models.errors import CrossviewError, InvalidInputError
from models.types import Crop
from protos.codec import DEFAULT_MAX_CROP_BYTES, crop_to_jpeg, jpeg_to_image

CASCADE_NAME = "haarcascade_frontalface_default.xml"
CASCADE_ENV = "CROSSVIEW_FACE_CASCADE"
_SYSTEM_DIRS = (Path("/usr/share/opencv4/haarcascades"), Path("/usr/share/opencv/haarcascades"),
                Path("/usr/local/share/opencv4/haarcascades"))
METHODS = ("pixelate", "gaussian", "fill")
Box = tuple[int, int, int, int]  # x, y, w, h in pixels


class FaceDetectorUnavailableError(CrossviewError):
    """OpenCV's Haar face detector (class or cascade file) cannot be loaded here."""


def _cascade_candidates(explicit: str | Path | None) -> Iterator[Path]:
    if explicit is not None:
        yield Path(explicit)
        return
    if os.environ.get(CASCADE_ENV):
        yield Path(os.environ[CASCADE_ENV])
        return
    data_dir = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if data_dir:
        yield Path(data_dir) / CASCADE_NAME
    package_dir = Path(cv2.__file__).resolve().parent
    yield from sorted(package_dir.rglob(CASCADE_NAME))
    for folder in _SYSTEM_DIRS:
        yield folder / CASCADE_NAME


def find_face_cascade(cascade_path: str | Path | None = None) -> Path:
    """The frontal-face cascade file to use (see the module docstring for the search order)."""
    tried = []
    for path in _cascade_candidates(cascade_path):
        if path.is_file():
            return path
        tried.append(str(path))
    raise FaceDetectorUnavailableError(
        f"face blur: OpenCV's {CASCADE_NAME} was not found (looked at {', '.join(tried) or 'nothing'}); "
        f"OpenCV {cv2.__version__} does not bundle it. Install 'opencv-python-headless<5' (which does), "
        f"apt-get install opencv-data, or pass its path as cascade_path / {CASCADE_ENV}")


def _cascade_class() -> type:
    factory = getattr(cv2, "CascadeClassifier", None)
    if factory is None:
        raise FaceDetectorUnavailableError(
            f"face blur: OpenCV {cv2.__version__} has no CascadeClassifier (OpenCV 5 moved Haar cascades to "
            f"the contrib build, without the cascade files); install 'opencv-python-headless<5', or "
            f"'opencv-contrib-python-headless' plus a cascade file, or use FaceBlurrer(detector=None) to blur "
            f"the head band only")
    return factory


def _load_cascade(path: Path) -> object:
    cascade = _cascade_class()(str(path))
    if cascade.empty():
        raise FaceDetectorUnavailableError(f"face blur: {path} is not a loadable Haar cascade")
    return cascade


class FaceBlurrer:
    """Blurs faces in BGR uint8 images; see the module docstring for detector, fallback and methods.

    Args:
        method: "pixelate", "gaussian" or "fill".
        fallback: "head" (blur the top `head_fraction` when no face is found) or "none".
        detector: "haar", or None for no detection (only the fallback band is blurred).
        cascade_path: a Haar cascade XML to use instead of searching for OpenCV's.
        margin: each face box is grown by this fraction of its size on every side (hair, chin).
        min_detect_height: smaller images are upscaled to this height for detection only (the
            default cascade finds nothing under 24 px).
        scale_factor, min_neighbors: passed to ``detectMultiScale``.
    """

    def __init__(self, *, method: str = "pixelate", fallback: str = "head", detector: str | None = "haar",
                 cascade_path: str | Path | None = None, head_fraction: float = 0.2, margin: float = 0.2,
                 min_detect_height: int = 256, scale_factor: float = 1.1, min_neighbors: int = 5) -> None:
        if method not in METHODS:
            raise InvalidInputError(f"method: expected one of {list(METHODS)}, got {method!r}")
        if fallback not in ("head", "none"):
            raise InvalidInputError(f"fallback: expected 'head' or 'none', got {fallback!r}")
        if detector not in ("haar", None):
            raise InvalidInputError(f"detector: expected 'haar' or None, got {detector!r}")
        if detector is None and fallback == "none":
            raise InvalidInputError("detector=None with fallback='none' would blur nothing")
        if not 0.0 < head_fraction <= 1.0:
            raise InvalidInputError(f"head_fraction: expected a number in (0, 1], got {head_fraction!r}")
        if not 0.0 <= margin <= 1.0:
            raise InvalidInputError(f"margin: expected a number in [0, 1], got {margin!r}")
        self.method, self.fallback, self.detector = method, fallback, detector
        self.head_fraction, self.margin = float(head_fraction), float(margin)
        self.min_detect_height = int(min_detect_height)
        self.scale_factor, self.min_neighbors = float(scale_factor), int(min_neighbors)
        if detector == "haar":
            _cascade_class()
        self.cascade_path = find_face_cascade(cascade_path) if detector == "haar" else None
        self._local = threading.local()  # a CascadeClassifier per thread: detectMultiScale is not re-entrant
        if self.cascade_path is not None:
            self._local.cascade = _load_cascade(self.cascade_path)

    def detect(self, image: np.ndarray) -> list[Box]:
        """Face boxes (x, y, w, h) in `image`'s pixels, before the margin; [] without a detector."""
        _check_image(image)
        if self.cascade_path is None:
            return []
        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            cascade = self._local.cascade = _load_cascade(self.cascade_path)
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        scale = max(1.0, self.min_detect_height / image.shape[0])
        if scale > 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        found = cascade.detectMultiScale(gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                         minSize=(24, 24))
        return [tuple(round(float(v) / scale) for v in box) for box in np.asarray(found).reshape(-1, 4)]

    def regions(self, image: np.ndarray) -> list[Box]:
        """The boxes `blur` will blur: detected faces grown by the margin, else the fallback band."""
        h, w = image.shape[:2]
        boxes = []
        for x, y, bw, bh in self.detect(image):
            mx, my = round(bw * self.margin), round(bh * self.margin)
            x1, y1 = max(0, x - mx), max(0, y - my)
            x2, y2 = min(w, x + bw + mx), min(h, y + bh + my)
            if x2 > x1 and y2 > y1:
                boxes.append((x1, y1, x2 - x1, y2 - y1))
        if not boxes and self.fallback == "head":
            boxes.append((0, 0, w, max(1, round(h * self.head_fraction))))
        return boxes

    def blur(self, image: np.ndarray, regions: list[Box] | None = None) -> np.ndarray:
        """A copy of `image` with `regions` (default: `regions(image)`) blurred; `image` is not changed."""
        out = image.copy()
        for box in self.regions(image) if regions is None else regions:
            blur_region(out, box, self.method)
        return out

    __call__ = blur

    def blur_crop(self, crop: Crop) -> Crop:
        return dataclasses.replace(crop, image=self.blur(crop.image))

    def blur_jpeg(self, data: bytes, *, quality: int = 90, max_bytes: int = DEFAULT_MAX_CROP_BYTES) -> bytes:
        """Decode, blur and re-encode a JPEG crop (refusing corrupt data like the wire decoder)."""
        return crop_to_jpeg(self.blur(jpeg_to_image(data, max_bytes)), quality, max_bytes)


def blur_region(image: np.ndarray, box: Box, method: str = "pixelate") -> None:
    """Blur `box` (x, y, w, h) of `image` in place."""
    x, y, w, h = box
    roi = image[y:y + h, x:x + w]
    if roi.size == 0:
        return
    rh, rw = roi.shape[:2]
    if method == "pixelate":
        block = max(2, round(max(rh, rw) / 6))
        small = cv2.resize(roi, (max(1, rw // block), max(1, rh // block)), interpolation=cv2.INTER_AREA)
        roi[:] = cv2.resize(small, (rw, rh), interpolation=cv2.INTER_NEAREST)
    elif method == "gaussian":
        k = max(3, (max(rh, rw) // 2) | 1)
        roi[:] = cv2.GaussianBlur(roi, (k, k), 0, borderType=cv2.BORDER_REPLICATE)
    elif method == "fill":
        roi[:] = roi.reshape(-1, roi.shape[2]).mean(axis=0).astype(np.uint8)
    else:
        raise InvalidInputError(f"method: expected one of {list(METHODS)}, got {method!r}")


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise InvalidInputError(f"face blur: expected a BGR uint8 (H, W, 3) image, got {got}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidInputError(f"face blur: expected a non-empty image, got shape {image.shape}")
