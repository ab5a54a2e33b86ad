"""The edge's settings objects, defined once: the library takes them, `crossview edge` configs hold them.

Light on purpose (no OpenCV, no models): a configuration can be read and refused before anything
heavy loads. `TrackletSettings` (tracklet building), `UplinkSettings` (what of a tracklet goes up),
`RetentionPolicy` (how long the store keeps it); the hub link's are `edge.uplink.settings.HubLinkSettings`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from models.errors import InvalidInputError
from models.zoo.spec import DEFAULT_TEXT_IMAGE_WEIGHT, check_text_image_weight


@dataclass(frozen=True)
class TrackletSettings:
    """`TrackletBuilder` settings, shared by every camera of a pipeline: the `best_k` crops kept per track
    (by quality, none below `min_quality`), closed after `close_after_s` unseen, kept with `min_frames`."""

    best_k: int = 4
    close_after_s: float = 2.0
    min_frames: int = 3
    min_quality: float = 0.2

    def __post_init__(self) -> None:
        if not isinstance(self.best_k, numbers.Integral) or self.best_k < 1:
            raise InvalidInputError(f"best_k: expected an integer >= 1, got {self.best_k!r}")
        close = self.close_after_s
        if not (isinstance(close, numbers.Real) and close > 0 and math.isfinite(close)):
            raise InvalidInputError(f"close_after_s: expected a finite number > 0, got {close!r}")
        if not isinstance(self.min_frames, numbers.Integral) or self.min_frames < 1:
            raise InvalidInputError(f"min_frames: expected an integer >= 1, got {self.min_frames!r}")
        if not (isinstance(self.min_quality, numbers.Real) and 0.0 <= self.min_quality <= 1.0):
            raise InvalidInputError(f"min_quality: expected a value in [0, 1], got {self.min_quality!r}")


@dataclass(frozen=True)
class UplinkSettings:
    """What of a tracklet goes up in a short list besides its vector: its best `crops` crops, scaled
    down to at most `max_height` pixels, as JPEG at `jpeg_quality`.

    One crop at 192 px, JPEG q75, is ~4 KB (at 256 px, the Re-ID input height, ~6 KB): small enough to
    keep the uplink under 1 % of even a low-bitrate camera's stream (docs/benchmarks.md) while the hub's
    judge (280x140) and Re-ID re-scorer (256x128) still get a usable crop. The vector already pools
    all of the tracklet's best crops, and the hub can ask the edge for more crops later.
    """

    crops: int = 1
    max_height: int = 192
    jpeg_quality: int = 75

    def __post_init__(self) -> None:
        if self.crops < 1:
            raise InvalidInputError(f"uplink crops: expected >= 1, got {self.crops}")
        if self.max_height < 16:
            raise InvalidInputError(f"uplink max_height: expected >= 16, got {self.max_height}")
        if not 1 <= self.jpeg_quality <= 100:
            raise InvalidInputError(f"uplink jpeg_quality: expected 1..100, got {self.jpeg_quality}")


@dataclass(frozen=True)
class RetentionPolicy:
    """How long the edge keeps tracklets: by age since they were written (`max_age_s`) and/or by the total
    bytes of crops + vectors (`max_total_bytes`, oldest closed tracklets go first), checked every `every_s`."""

    max_age_s: float | None = None
    max_total_bytes: int | None = None
    every_s: float = 300.0

    def __post_init__(self) -> None:
        for name in ("max_age_s", "max_total_bytes"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InvalidInputError(f"retention.{name}: expected >= 0 or null, got {value}")
        if self.every_s <= 0:
            raise InvalidInputError(f"retention.every_s: expected > 0, got {self.every_s}")

    @property
    def active(self) -> bool:
        return self.max_age_s is not None or self.max_total_bytes is not None


@dataclass(frozen=True)
class TextImageSettings:
    """A text-image (CLIP-style) model for search by description (issue 15, item 4): the name it was
    registered under with `crossview models add-text-image` ("" : none, the default), how much its
    cosine counts against the attribute score at stage one (`weight`, 0–1), and how many of a tracklet's
    best crops its image tower embeds (`crops`: a ViT-B/32 tower costs about 25 Re-ID models). Unlike
    attributes, a model named here that cannot be opened stops the edge at start: it was asked for."""

    model: str = ""
    weight: float = DEFAULT_TEXT_IMAGE_WEIGHT
    crops: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.model, str):
            raise InvalidInputError(f"text_image.model: expected a registered model name, got {self.model!r}")
        check_text_image_weight(self.weight)
        if isinstance(self.crops, bool) or not isinstance(self.crops, int) or self.crops < 1:
            raise InvalidInputError(f"text_image.crops: expected an integer >= 1, got {self.crops!r}")


@dataclass(frozen=True)
class AttributeSettings:
    """Whether the edge reads person attributes (issue 15: search by description) from each tracklet's
    best crops, with which zoo model, `batch_size` crops per inference call. On by default; an edge whose
    model cannot be found runs without (and says so once in its log)."""

    enabled: bool = True
    model: str = "attributes/intel-0230"
    batch_size: int = 16

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise InvalidInputError(f"attributes.enabled: expected true or false, got {self.enabled!r}")
        if not isinstance(self.model, str) or not self.model.strip():
            raise InvalidInputError(f"attributes.model: expected a zoo model name, got {self.model!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InvalidInputError(f"attributes.batch_size: expected an integer >= 1, got {self.batch_size!r}")
