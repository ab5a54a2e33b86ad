"""Validated, frozen dataclasses that cross module and process boundaries.

Every constructor checks shape and dtype and says "expected ..., got ..." when they are wrong,
so bad data is stopped where it enters instead of deep inside an algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.errors import InvalidInputError


def _check_array(name: str, value: np.ndarray, ndim: int, dtype: type | None = None,
                 last_dim: int | None = None) -> None:
    if not isinstance(value, np.ndarray):
        raise InvalidInputError(f"{name}: expected a numpy array, got {type(value).__name__}")
    if value.ndim != ndim:
        raise InvalidInputError(f"{name}: expected {ndim} dimensions, got shape {value.shape}")
    if dtype is not None and value.dtype != dtype:
        raise InvalidInputError(f"{name}: expected dtype {np.dtype(dtype)}, got {value.dtype}")
    if last_dim is not None and value.shape[-1] != last_dim:
        raise InvalidInputError(f"{name}: expected last dimension {last_dim}, got shape {value.shape}")


def check_bgr_image(name: str, image: object, noun: str = "image") -> np.ndarray:
    """Check that `image` is a non-empty BGR uint8 (H, W, 3) array; `name` starts the error message."""
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(f"{name}: expected a BGR uint8 numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidInputError(f"{name}: expected shape (H, W, 3) BGR, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise InvalidInputError(f"{name}: expected dtype uint8, got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidInputError(f"{name}: expected a non-empty {noun}, got shape {image.shape}")
    return image


def _check_fingerprint(fingerprint: str) -> None:
    if not isinstance(fingerprint, str) or not fingerprint.strip():
        raise InvalidInputError(f"model_fingerprint: expected a non-empty string, got {fingerprint!r}")


@dataclass(frozen=True)
class Detections:
    """Person boxes in one frame: xyxy pixels (N, 4) float32, confidence (N,), optional track ids."""

    xyxy: np.ndarray
    confidence: np.ndarray
    track_id: np.ndarray | None = None
    class_id: np.ndarray | None = None

    def __post_init__(self) -> None:
        _check_array("xyxy", self.xyxy, 2, np.float32, 4)
        n = len(self.xyxy)
        _check_array("confidence", self.confidence, 1, np.float32)
        if len(self.confidence) != n:
            raise InvalidInputError(f"confidence: expected {n} values, got {len(self.confidence)}")
        for name in ("track_id", "class_id"):
            value = getattr(self, name)
            if value is not None:
                _check_array(name, value, 1, np.int64)
                if len(value) != n:
                    raise InvalidInputError(f"{name}: expected {n} values, got {len(value)}")
        if n and not np.all(self.xyxy[:, 2:] >= self.xyxy[:, :2]):
            raise InvalidInputError("xyxy: expected x2 >= x1 and y2 >= y1 for every box")

    def __len__(self) -> int:
        return len(self.xyxy)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))


@dataclass(frozen=True)
class Crop:
    """One person image cut from a frame: BGR uint8 (H, W, 3), with where and when it came from."""

    image: np.ndarray
    camera_id: str
    timestamp_s: float
    xyxy: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    confidence: float = 1.0
    quality: float = 0.0

    def __post_init__(self) -> None:
        _check_array("image", self.image, 3, np.uint8, 3)
        if self.image.shape[0] == 0 or self.image.shape[1] == 0:
            raise InvalidInputError(f"image: expected a non-empty crop, got shape {self.image.shape}")
        if not self.camera_id:
            raise InvalidInputError("camera_id: expected a non-empty string")


@dataclass(frozen=True)
class Embeddings:
    """L2-normalised float32 vectors (N, D), each made by the model named by `model_fingerprint`."""

    vectors: np.ndarray
    model_fingerprint: str

    def __post_init__(self) -> None:
        _check_array("vectors", self.vectors, 2, np.float32)
        _check_fingerprint(self.model_fingerprint)
        if self.vectors.shape[1] == 0:
            raise InvalidInputError(f"vectors: expected a non-zero dimension, got shape {self.vectors.shape}")
        if not np.all(np.isfinite(self.vectors)):
            raise InvalidInputError("vectors: expected finite values, got NaN or inf")

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.vectors)

    def require_same_model(self, other: Embeddings) -> None:
        if other.model_fingerprint != self.model_fingerprint:
            raise InvalidInputError(
                f"model fingerprint mismatch: expected {self.model_fingerprint}, got {other.model_fingerprint}"
            )


@dataclass(frozen=True)
class Tracklet:
    """One track on one camera: its time span, best crops and aggregated embedding."""

    tracklet_id: str
    camera_id: str
    track_id: int
    start_s: float
    end_s: float
    crops: tuple[Crop, ...] = field(default_factory=tuple)
    embedding: Embeddings | None = None

    def __post_init__(self) -> None:
        if not self.tracklet_id:
            raise InvalidInputError("tracklet_id: expected a non-empty string")
        if self.end_s < self.start_s:
            raise InvalidInputError(f"end_s: expected >= start_s ({self.start_s}), got {self.end_s}")
        if self.embedding is not None and len(self.embedding) != 1:
            raise InvalidInputError(
                f"embedding: expected one aggregated vector, got {len(self.embedding)}"
            )
