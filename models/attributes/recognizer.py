"""Person attributes from crops with Intel's person-attributes-recognition-crossroad-0230 (OpenVINO).

The model takes a (N, 3, 160, 80) BGR 0–255 batch and gives three outputs: (N, 8, 1, 1) attribute
probabilities in ATTRIBUTE_NAMES order, then a (N, 2, 1, 1) sample point on the upper clothing and
one on the lower clothing, each (x, y) normalised to [0, 1] of the input (checked on real Market
crops: the upper point's y is about 0.3, the lower's about 0.65). The colours are read around
those points on the original crop, so no detail is lost to the 160×80 resize.

Thread safety: the compiled model is shared; an OpenVINO infer request serves one inference at a
time, so each batch borrows an idle request from a pool (a new one when none is idle) and gives
it back. `recognize` may therefore be called from several threads at once.
"""

from __future__ import annotations

import queue
from collections.abc import Sequence
from typing import Any

import numpy as np

from models.attributes.colours import name_colour
from models.attributes.types import ATTRIBUTE_NAMES, COLOUR_NAMES, AttributeProfile, ColourReading
from models.embed.preprocess import preprocess, validate_crops
from models.errors import InvalidInputError, require
from models.zoo import get_spec, resolve_model


class AttributeRecognizer:
    """`recognize(crops)` → one AttributeProfile per crop (attributes + upper/lower colours)."""

    def __init__(self, model: str = "attributes/intel-0230", *, device: str = "CPU", batch_size: int = 16) -> None:
        self.spec = get_spec(model)
        if self.spec.task != "attributes":
            raise InvalidInputError(f"model: expected an attributes model, got {model!r} ({self.spec.task})")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
        self.batch_size = batch_size
        self.device = device
        ov = require("openvino")
        core = ov.Core()
        network = core.read_model(str(resolve_model(model).path))
        height, width = self.spec.input_hw
        network.reshape({network.inputs[0]: ov.PartialShape([-1, 3, height, width])})
        self._compiled = core.compile_model(network, device, {"INFERENCE_PRECISION_HINT": "f32"})
        outputs = list(self._compiled.outputs)
        sizes = [int(np.prod([d.get_length() for d in port.get_partial_shape()[1:]])) for port in outputs]
        if sorted(sizes) != [2, 2, len(ATTRIBUTE_NAMES)]:
            raise InvalidInputError(f"{model}: expected outputs of 8, 2 and 2 values, got {sizes}")
        self._attributes = outputs[sizes.index(len(ATTRIBUTE_NAMES))]
        self._upper, self._lower = (port for port, size in zip(outputs, sizes, strict=True) if size == 2)
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        try:
            request = self._idle.get_nowait()
        except queue.Empty:
            request = self._compiled.create_infer_request()
        try:
            result = request.infer({0: batch})
            n = len(batch)
            return (np.array(result[self._attributes], np.float64).reshape(n, -1),
                    np.array(result[self._upper], np.float64).reshape(n, 2),
                    np.array(result[self._lower], np.float64).reshape(n, 2))
        finally:
            self._idle.put(request)

    def recognize(self, crops_bgr: Sequence[np.ndarray]) -> list[AttributeProfile]:
        """One profile per crop, in order; any empty or non-BGR-uint8 crop raises InvalidInputError."""
        validate_crops(crops_bgr)
        profiles: list[AttributeProfile] = []
        for start in range(0, len(crops_bgr), self.batch_size):
            chunk = list(crops_bgr[start:start + self.batch_size])
            probs, upper, lower = self._infer(preprocess(chunk, self.spec))
            probs = np.clip(probs, 0.0, 1.0)
            for crop, p, up, low in zip(chunk, probs, upper, lower, strict=True):
                profiles.append(AttributeProfile(
                    probabilities=dict(zip(ATTRIBUTE_NAMES, p.tolist(), strict=True)),
                    upper=name_colour(crop, (up[0], up[1])),
                    lower=name_colour(crop, (low[0], low[1])),
                ))
        return profiles


def aggregate_profiles(profiles: Sequence[AttributeProfile]) -> AttributeProfile:
    """Several crops' profiles → one: probabilities averaged (weighted by each profile's `crops`),
    each part's colour by a confidence-weighted vote; the winner's confidence is its share of the
    total weight, so crops that disagree lower it. Ties go to the earlier colour in COLOUR_NAMES."""
    if isinstance(profiles, AttributeProfile) or not isinstance(profiles, Sequence) or not profiles:
        raise InvalidInputError(f"profiles: expected a non-empty sequence of AttributeProfile, got {profiles!r:.80}")
    for i, profile in enumerate(profiles):
        if not isinstance(profile, AttributeProfile):
            raise InvalidInputError(f"profiles[{i}]: expected an AttributeProfile, got {type(profile).__name__}")
    weights = np.array([p.crops for p in profiles], np.float64)
    probs = np.array([p.probabilities.as_tuple() for p in profiles]) * weights[:, None]
    mean = np.clip(probs.sum(axis=0) / weights.sum(), 0.0, 1.0)
    colours: list[ColourReading | None] = []
    for part in ("upper", "lower"):
        votes = np.zeros(len(COLOUR_NAMES))
        for profile, weight in zip(profiles, weights, strict=True):
            reading = profile.colour(part)
            if reading is not None:
                votes[COLOUR_NAMES.index(reading.name)] += weight * reading.confidence
        if votes.sum() <= 0:
            colours.append(None)
            continue
        best = int(np.argmax(votes))
        colours.append(ColourReading(COLOUR_NAMES[best], float(min(1.0, votes[best] / weights.sum()))))
    return AttributeProfile(probabilities=dict(zip(ATTRIBUTE_NAMES, mean.tolist(), strict=True)),
                            upper=colours[0], lower=colours[1], crops=int(weights.sum()))
