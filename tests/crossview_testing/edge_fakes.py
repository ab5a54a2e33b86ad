"""Fakes for edge tests that need no models: a blob "detector + tracker", a colour "embedder", and
synthetic videos of coloured blobs walking by (shared by tests/edge/test_node.py and test_replay.py).

Neither model is calibrated: the edge reads P(same) = 1 - cosine distance (0.975 is the old 0.05 of
2 - 2·cos), and a hub's `reid` judge on `ColourEmbedder` gets `JUDGE_CALIBRATION` (uncalibrated, it
would read two of the video colours, μ ≈ 0.32, as P(same) 0.68)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.sources.frames import Frame
from models.calibration import Calibration
from models.types import Detections, Embeddings

FP = "fake-colour@1"
#: the stage-1 P(same) an edge test asks of a candidate: one colour passes, two do not
MIN_P_SAME = 0.975
#: the `reid` judge on `ColourEmbedder`: μ 0 → P(same) 0.998, μ 0.32 (two video colours) → 0.001
JUDGE_FP = "reid:" + FP
JUDGE_CALIBRATION = Calibration(JUDGE_FP, "judge_mu", "logistic", 6.0, -40.0, "test: the fake colour model")
FPS = 12.0


class BlobTracker:
    """Boxes the bright blob of a frame; a new track id whenever the blob reappears (per camera)."""

    def __init__(self) -> None:
        self.state: dict[str, tuple[int, bool]] = {}  # camera -> (last id, blob in the previous frame)

    def update(self, frame: Frame) -> Detections:
        last_id, was_there = self.state.get(frame.camera_id, (0, False))
        ys, xs = np.nonzero(frame.image.max(axis=2) > 100)
        if len(xs) == 0:
            self.state[frame.camera_id] = (last_id, False)
            return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
        track = last_id if was_there else last_id + 1
        self.state[frame.camera_id] = (track, True)
        box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
        return Detections(box, np.array([0.9], np.float32), np.array([track], np.int64), np.zeros(1, np.int64))

    def reset(self, camera_id: str | None = None) -> None:
        if camera_id is None:
            self.state.clear()
        else:
            self.state.pop(camera_id, None)


class ColourEmbedder:
    fingerprint = FP
    dim = 3

    def embed(self, images: Sequence[np.ndarray]) -> Embeddings:
        vectors = np.array([img.reshape(-1, 3).mean(axis=0) + 1.0 for img in images], np.float32).reshape(-1, 3)
        return Embeddings(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), FP)


def write_video(path: Path, colours: Sequence[tuple[int, int, int]], frames_each: int = 14, gap: int = 14) -> Path:
    """One coloured 'person' after another, each walking for `frames_each` frames, with `gap` empty frames."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (160, 120))
    for colour in colours:
        for i in range(frames_each):
            image = np.zeros((120, 160, 3), np.uint8)
            image[20:80, 10 + 3 * i:30 + 3 * i] = colour
            writer.write(image)
        for _ in range(gap):
            writer.write(np.zeros((120, 160, 3), np.uint8))
    writer.release()
    return path


def write_grey_video(path: Path, frames: int = 30, fps: float = 10.0) -> Path:
    """`frames` frames of 64x48 at `fps`, frame i filled with grey level 8*i (skips the test if this
    OpenCV cannot write mp4v)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write mp4v video")
    for i in range(frames):
        writer.write(np.full((48, 64, 3), 8 * i % 256, np.uint8))
    writer.release()
    return path
