"""Training-time augmentation of preprocessed (N, 3, H, W) float tensors, driven by one torch.Generator.

Random horizontal flip, zero padding + random crop back to (H, W), and random erasing (Zhong et al.
2020). The tensors are already normalised, so the zero fill of padding and erasing is the channel
mean. Every random draw comes from the generator given, so a seed fixes the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from models.errors import InvalidInputError


@dataclass(frozen=True)
class AugmentSettings:
    flip: float = 0.5  # probability of a horizontal flip
    pad: int = 10  # pixels of zero padding on each side before the random crop
    erase: float = 0.5  # probability of erasing one rectangle
    erase_area: tuple[float, float] = (0.02, 0.4)  # fraction of the image
    erase_aspect: tuple[float, float] = (0.3, 3.3)  # height / width

    def __post_init__(self) -> None:
        for name in ("flip", "erase"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidInputError(f"{name}: expected a probability in [0, 1], got {value}")
        if self.pad < 0:
            raise InvalidInputError(f"pad: expected >= 0 pixels, got {self.pad}")
        low, high = self.erase_area
        if not 0.0 < low <= high < 1.0:
            raise InvalidInputError(f"erase_area: expected 0 < low <= high < 1, got {self.erase_area}")


def augment_batch(batch: Any, generator: Any, settings: AugmentSettings = AugmentSettings()) -> Any:
    """A new (N, 3, H, W) tensor: each image flipped, shifted and partly erased at random."""
    import torch

    n, _, height, width = batch.shape
    out = batch.clone()
    flips = torch.rand(n, generator=generator) < settings.flip
    out[flips] = out[flips].flip(-1)
    if settings.pad:
        padded = torch.nn.functional.pad(out, (settings.pad,) * 4)
        offsets = torch.randint(0, 2 * settings.pad + 1, (n, 2), generator=generator)
        out = torch.stack([padded[i, :, y:y + height, x:x + width]
                           for i, (y, x) in enumerate(offsets.tolist())])
    erase = torch.rand(n, generator=generator) < settings.erase
    draws = torch.rand(n, 4, generator=generator).tolist()
    for i in erase.nonzero().flatten().tolist():
        box = _erase_box(draws[i], height, width, settings)
        if box is not None:
            y, x, h, w = box
            out[i, :, y:y + h, x:x + w] = 0.0
    return out


def _erase_box(u: list[float], height: int, width: int,
               settings: AugmentSettings) -> tuple[int, int, int, int] | None:
    """(y, x, h, w) of the erased rectangle from four uniform draws; None when it does not fit."""
    area = height * width * (settings.erase_area[0] + u[0] * (settings.erase_area[1] - settings.erase_area[0]))
    log_low, log_high = (math.log(a) for a in settings.erase_aspect)
    aspect = math.exp(log_low + u[1] * (log_high - log_low))
    h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
    if not (0 < h < height and 0 < w < width):
        return None
    return int(u[2] * (height - h + 1)), int(u[3] * (width - w + 1)), h, w
