"""A colour "Re-ID model" for hub tests (no weights needed): a crop's vector is its mean BGR colour in
four horizontal bands, so crops of one colour are the same "person". The `reid` judge
(`models.verify.ReidJudge`) runs on it unchanged.

Uncalibrated, the `reid` judge on this model reads two different colours as P(same) = 1 - μ ≈ 0.51
(μ is half a cosine distance, ≈ 0.49 for orthogonal colours): `JUDGE_CALIBRATION` is a fitted-looking
calibration for it (one colour: P ≈ 1; two of RED, GREEN, BLUE: P ≈ 0), as a real judge's would be."""

from __future__ import annotations

import cv2
import numpy as np

from models.calibration import Calibration
from models.types import Embeddings

FP = "test/colour@0123456789ab"
OTHER_FP = "test/other@ba9876543210"
DIM = 12
#: the `reid` judge's fingerprint on this model (`ReidJudge(embedders=[ColourEmbedder()]).fingerprint`)
JUDGE_FP = "reid:" + FP
#: μ 0 → P(same) 0.998, μ 0.14 (yellow vs red) → 0.86, μ 0.49 (red vs blue) → 0.0002
JUDGE_CALIBRATION = Calibration(JUDGE_FP, "judge_mu", "logistic", 6.0, -30.0, "test: the colour model")
COLOURS = {"red": (0, 0, 230), "green": (0, 200, 0), "blue": (220, 0, 0), "yellow": (0, 210, 210)}


class ColourEmbedder:
    """Mean colour of four horizontal bands, L2-normalised (DIM = 12); counts its calls."""

    dim = DIM

    def __init__(self, fingerprint: str = FP) -> None:
        self.fingerprint = fingerprint
        self.calls = 0

    def embed(self, images: list[np.ndarray]) -> Embeddings:
        self.calls += 1
        rows = []
        for image in images:
            bands = np.array_split(image.astype(np.float32), 4, axis=0)
            v = np.concatenate([b.reshape(-1, 3).mean(axis=0) for b in bands]) + 1e-3
            rows.append(v / np.linalg.norm(v))
        return Embeddings(np.asarray(rows, np.float32).reshape(len(images), DIM), self.fingerprint)


def colour_factory(fingerprint: str) -> ColourEmbedder:
    """The hub's `embedder_factory`: the colour model under either test fingerprint."""
    if fingerprint not in (FP, OTHER_FP):
        raise LookupError(f"no model {fingerprint}")
    return ColourEmbedder(fingerprint)


def crop(colour: str, *, seed: int = 0, hw: tuple[int, int] = (64, 32)) -> np.ndarray:
    """A "person" of one of COLOURS, with noise from `seed`."""
    rng = np.random.default_rng(seed)
    image = np.empty((*hw, 3), np.uint8)
    image[:] = COLOURS[colour]
    noise = rng.integers(-12, 13, size=image.shape)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def jpeg(colour: str, *, seed: int = 0, hw: tuple[int, int] = (64, 32)) -> bytes:
    ok, buf = cv2.imencode(".jpg", crop(colour, seed=seed, hw=hw))
    assert ok
    return buf.tobytes()
