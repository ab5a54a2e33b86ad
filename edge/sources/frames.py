"""What every edge source yields: one decoded frame with where and when it came from."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.errors import InvalidInputError
from models.types import check_bgr_image


@dataclass(frozen=True, eq=False)  # eq would compare images element-wise
class Frame:
    """One BGR uint8 image (H, W, 3) from camera `camera_id`.

    `index` is the frame's position in its source (0-based, counting skipped frames too, so a
    stride of 2 gives 0, 2, 4, ...); `timestamp_s` is seconds since the source's start.
    """

    camera_id: str
    index: int
    timestamp_s: float
    image: np.ndarray

    def __post_init__(self) -> None:
        if not isinstance(self.camera_id, str) or not self.camera_id.strip():
            raise InvalidInputError(f"camera_id: expected a non-empty string, got {self.camera_id!r}")
        if isinstance(self.index, bool) or not isinstance(self.index, int | np.integer) or self.index < 0:
            raise InvalidInputError(f"index: expected an integer >= 0, got {self.index!r}")
        if not isinstance(self.timestamp_s, int | float) or not math.isfinite(self.timestamp_s) \
                or self.timestamp_s < 0:
            raise InvalidInputError(f"timestamp_s: expected a finite number >= 0, got {self.timestamp_s!r}")
        image = self.image
        check_bgr_image("image", image)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
