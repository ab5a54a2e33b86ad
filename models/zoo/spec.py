"""What a model in the zoo is: its files, how to feed it, where it comes from."""

from __future__ import annotations

from dataclasses import dataclass

from models.errors import InvalidInputError

TEXT_IMAGE_TASK = "text-image"  # a CLIP-style model's image tower (models.zoo.text_image)
# A text-image model's cosine range (low, high): a cosine at `low` or under gives a text-image score of 0,
# one at `high` or over a score of 1, linear between. The default is OpenAI CLIP ViT-B/32's usual band on
# photos (~0.15 unrelated, ~0.35 a close match), not measured on person crops here; a registered model may
# say otherwise (`--cosine-range`; `crossview eval --text-image-model` prints where its cosines fall).
DEFAULT_COSINE_RANGE = (0.15, 0.35)
DEFAULT_TEXT_MAX_LENGTH = 77  # CLIP's text tower: 77 tokens
# how much a text-image model's mapped cosine counts at stage one against the attribute score (0-1)
DEFAULT_TEXT_IMAGE_WEIGHT = 0.5


@dataclass(frozen=True)
class RemoteFile:
    """One file of a model (or a data sample): its path under the models/data folder, checksum, URL."""

    relpath: str
    sha256: str
    size: int
    url: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A named model: files plus everything a runtime needs to preprocess its input.

    Preprocessing is `x = (image[..., channels] * scale - mean) / std`, NCHW, at `input_hw`.
    """

    name: str
    task: str  # "reid" | "detect" | "attributes" | "text-image"
    format: str  # "openvino" | "onnx" | "ultralytics-openvino"
    files: tuple[RemoteFile, ...]
    primary: str  # relpath of the file a runtime opens (xml, onnx, or folder for ultralytics)
    input_hw: tuple[int, int]
    channel_order: str  # "BGR" | "RGB"
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    output_dim: int
    licence: str
    precision: str = "FP32"
    input_name: str | None = None
    output_name: str | None = None
    notes: str = ""
    # the name the fingerprint carries when `name` is not one (a model opened by path: `name` is the path)
    alias: str = ""

    @property
    def weights(self) -> RemoteFile:
        """The file whose checksum identifies the model (the .bin of an IR, the .onnx, ...)."""
        for suffix in (".bin", ".onnx", ".engine"):
            for f in self.files:
                if f.relpath.endswith(suffix):
                    return f
        return self.files[0]

    @property
    def fingerprint(self) -> str:
        """Names the exact weights: `<name>@<first 12 hex of the weights' SHA-256>`."""
        return f"{self.alias or self.name}@{self.weights.sha256[:12]}"

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)


def check_text_image_weight(value: object, what: str = "text_image.weight") -> float:
    """A text-image model's stage-one weight: a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise InvalidInputError(f"{what}: expected a number in [0, 1], got {value!r}")
    return float(value)


def check_cosine_range(value: object) -> tuple[float, float]:
    """A text-image model's (low, high) cosine range: two finite numbers in [-1, 1], low < high."""
    try:
        low, high = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise InvalidInputError(f"cosine_range: expected two numbers (low, high), got {value!r}") from None
    if not (-1.0 <= low < high <= 1.0):
        raise InvalidInputError(f"cosine_range: expected -1 <= low < high <= 1, got {value!r}")
    return low, high
