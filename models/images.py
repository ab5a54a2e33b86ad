"""Image files as the models read them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from models.errors import InvalidInputError


def read_bgr(path: Path | str, error: type[Exception] = InvalidInputError) -> np.ndarray:
    """The image file at `path` as BGR uint8 (H, W, 3); `error` (the caller's own kind, e.g. a dataset
    error) naming the file when it cannot be read as an image."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise error(f"{path}: cannot be read as an image")
    return image
