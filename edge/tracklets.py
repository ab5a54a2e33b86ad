"""Per-camera tracklet building: from tracked detections per frame to closed tracklets.

`TrackletBuilder` is fed every processed frame of one camera with the tracker's boxes. Per track it
keeps the first and last time seen, the number of frames, and only the `best_k` crops by quality
(copies, so the frame can be reused; memory per track is bounded by `best_k` crops whatever the
track's length). The crop's quality is scored from its box first (`CropQuality.bounds`); the
sharpness term, the costly part, is computed only for a crop that may be kept. A track not seen for
`close_after_s` seconds of stream time is closed and returned once; `flush()` closes every open
track at the end of a stream.

Everything depends only on the input (timestamps, pixels, boxes), never on wall-clock time or
hash randomisation, so replaying the same input gives the same tracklets with the same ids.

`aggregate` turns a tracklet's crop embeddings into its one vector: the quality-weighted mean,
L2-normalised.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge.quality import CropQuality
from edge.settings import TrackletSettings
from models.errors import InvalidInputError
from models.types import Crop, Detections, Embeddings, Tracklet, check_bgr_image


def make_tracklet_id(camera_id: str, track_id: int, start_s: float, namespace: str = "") -> str:
    """A stable id from (namespace, camera, track id, first timestamp): 24 hex characters.

    `namespace` (e.g. the edge id, or the recording a replay reads) keeps ids apart where the other
    three can repeat, such as a tracker restarting its ids on a second file of the same camera.
    """
    key = "\x1f".join((namespace, camera_id, str(int(track_id)), repr(float(start_s))))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True)
class ClosedTracklet:
    """A finished track: its span, frame count and best crops (best first, each with its quality)."""

    tracklet_id: str
    camera_id: str
    track_id: int
    start_s: float
    end_s: float
    frame_count: int
    crops: tuple[Crop, ...]

    @property
    def qualities(self) -> np.ndarray:
        """The crops' quality scores, float64 (K,), in crop order: the weights for `aggregate`."""
        return np.array([crop.quality for crop in self.crops], dtype=np.float64)

    def to_tracklet(self, embedding: Embeddings | None = None) -> Tracklet:
        """The boundary type the store and the hub link use, with the aggregated embedding if known."""
        return Tracklet(
            tracklet_id=self.tracklet_id,
            camera_id=self.camera_id,
            track_id=self.track_id,
            start_s=self.start_s,
            end_s=self.end_s,
            crops=self.crops,
            embedding=embedding,
        )


@dataclass(frozen=True)
class TrackletStats:
    """Counters since the builder was made (a snapshot; the builder keeps counting)."""

    frames: int = 0
    detections: int = 0
    crops_below_min_quality: int = 0
    crops_empty: int = 0
    untracked: int = 0  # boxes the tracker gave no track (id < 0): they belong to no tracklet
    tracklets_closed: int = 0
    dropped_short: int = 0
    dropped_no_crops: int = 0
    open_tracks: int = 0


@dataclass
class _Track:
    track_id: int
    first_s: float
    last_s: float
    last_frame: int
    frame_count: int = 1
    # min-heap of (quality, -sequence, crop): the root is the crop to evict next, the later of two
    # equally good crops goes first, so ties are broken by arrival order, deterministically
    best: list[tuple[float, int, Crop]] = field(default_factory=list)


class TrackletBuilder:
    """Builds tracklets for one camera from (timestamp, frame, tracked detections), frame by frame.

    Args:
        camera_id: the camera every crop and tracklet is labelled with.
        best_k: crops kept per track, the best by quality.
        close_after_s: a track unseen for this many seconds of stream time is closed.
        min_frames: a closed track seen in fewer frames is dropped (tracker noise), and counted.
        min_quality: crops scoring below this are never kept; a track with no crop left is dropped.
        scorer: the crop quality function; `CropQuality()` by default.
        id_namespace: mixed into every tracklet id (see `make_tracklet_id`).
    """

    def __init__(
        self,
        camera_id: str,
        *,
        best_k: int = 4,
        close_after_s: float = 2.0,
        min_frames: int = 3,
        min_quality: float = 0.2,
        scorer: CropQuality | None = None,
        id_namespace: str = "",
    ) -> None:
        if not isinstance(camera_id, str) or not camera_id:
            raise InvalidInputError(f"camera_id: expected a non-empty string, got {camera_id!r}")
        TrackletSettings(best_k, close_after_s, min_frames, min_quality)  # checks them
        self.camera_id = camera_id
        self.best_k = int(best_k)
        self.close_after_s = float(close_after_s)
        self.min_frames = int(min_frames)
        self.min_quality = float(min_quality)
        self.scorer = scorer if scorer is not None else CropQuality()
        self.id_namespace = id_namespace
        self._tracks: dict[int, _Track] = {}
        self._last_timestamp: float | None = None
        self._frame_index = 0
        self._sequence = 0
        self._counts = {name: 0 for name in TrackletStats.__dataclass_fields__ if name != "open_tracks"}

    @property
    def stats(self) -> TrackletStats:
        return TrackletStats(**self._counts, open_tracks=len(self._tracks))

    @property
    def open_track_ids(self) -> list[int]:
        return sorted(self._tracks)

    def crops_held(self, track_id: int) -> int:
        """How many crops an open track holds now (never more than `best_k`)."""
        track = self._tracks.get(track_id)
        return 0 if track is None else len(track.best)

    def update(self, timestamp_s: float, frame: np.ndarray, detections: Detections) -> list[ClosedTracklet]:
        """Add one frame's tracked boxes; return the tracklets this frame's time closes, oldest first.

        `timestamp_s` is stream time and must not go backwards; `frame` is the BGR uint8 (H, W, 3)
        image the boxes were found in; `detections` must carry track ids (boxes without a track
        cannot be grouped). A frame without boxes still advances time and can close tracklets.
        """
        timestamp_s = self._check_timestamp(timestamp_s)
        _check_frame(frame)
        if not isinstance(detections, Detections):
            raise InvalidInputError(f"detections: expected Detections, got {type(detections).__name__}")
        if len(detections) and detections.track_id is None:
            raise InvalidInputError("detections: expected track ids (run a tracker first), got none")
        self._last_timestamp = timestamp_s  # only once the whole input is valid
        self._frame_index += 1
        self._counts["frames"] += 1
        self._counts["detections"] += len(detections)
        frame_hw = (int(frame.shape[0]), int(frame.shape[1]))
        track_ids = detections.track_id if detections.track_id is not None else np.zeros(0, np.int64)
        for i in range(len(detections)):
            if track_ids[i] < 0:  # the tracker's "no track" (e.g. Ultralytics on a frame without tracks)
                self._counts["untracked"] += 1
                continue
            box = tuple(float(v) for v in detections.xyxy[i])
            self._observe(int(track_ids[i]), timestamp_s, frame, frame_hw, box, float(detections.confidence[i]))
        # a microsecond of slack so that, e.g., 1.4 - 0.4 (0.9999999999999999) counts as 1.0
        stale = [t for t in self._tracks.values() if timestamp_s - t.last_s >= self.close_after_s - 1e-6]
        return self._close(stale)

    def flush(self) -> list[ClosedTracklet]:
        """Close every open track (end of stream), oldest first; the builder can then start a new stream."""
        closed = self._close(list(self._tracks.values()))
        self._last_timestamp = None
        return closed

    def _check_timestamp(self, timestamp_s: float) -> float:
        try:
            timestamp_s = float(timestamp_s)
        except (TypeError, ValueError):
            raise InvalidInputError(f"timestamp_s: expected a number, got {timestamp_s!r}") from None
        if not math.isfinite(timestamp_s):
            raise InvalidInputError(f"timestamp_s: expected a finite number, got {timestamp_s}")
        if self._last_timestamp is not None and timestamp_s < self._last_timestamp:
            raise InvalidInputError(
                f"timestamp_s: expected >= the previous frame's {self._last_timestamp}, got {timestamp_s} "
                "(call flush() before starting a new stream)"
            )
        return timestamp_s

    def _observe(
        self,
        track_id: int,
        timestamp_s: float,
        frame: np.ndarray,
        frame_hw: tuple[int, int],
        box: tuple[float, ...],
        confidence: float,
    ) -> None:
        track = self._tracks.get(track_id)
        if track is None:
            track = _Track(track_id, timestamp_s, timestamp_s, self._frame_index)
            self._tracks[track_id] = track
        elif track.last_frame != self._frame_index:  # two boxes with one id in a frame count once
            track.frame_count += 1
            track.last_frame = self._frame_index
        track.last_s = timestamp_s

        x1, y1 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
        x2, y2 = min(frame_hw[1], math.ceil(box[2])), min(frame_hw[0], math.ceil(box[3]))
        if x2 <= x1 or y2 <= y1:
            self._counts["crops_empty"] += 1
            return
        view = frame[y1:y2, x1:x2]
        bounds = getattr(self.scorer, "bounds", None)  # `CropQuality`'s; any other scorer is always run
        if bounds is not None:  # the cheap terms first: the sharpness only for a crop that may be kept
            lowest, highest = bounds(box, frame_hw, confidence)
            if highest < self.min_quality:
                self._counts["crops_below_min_quality"] += 1
                return
            if lowest >= self.min_quality and len(track.best) >= self.best_k and highest <= track.best[0][0]:
                self._sequence += 1
                return  # no better than the worst crop held, whatever its sharpness: it would be evicted at once
        quality = self.scorer(view, box, frame_hw, confidence)
        if quality < self.min_quality:
            self._counts["crops_below_min_quality"] += 1
            return
        self._sequence += 1
        key = (quality, -self._sequence)
        if len(track.best) >= self.best_k and key <= track.best[0][:2]:
            return  # would be evicted at once: skip the copy
        crop = Crop(
            image=view.copy(),
            camera_id=self.camera_id,
            timestamp_s=timestamp_s,
            xyxy=(box[0], box[1], box[2], box[3]),
            confidence=confidence,
            quality=quality,
        )
        if len(track.best) < self.best_k:
            heapq.heappush(track.best, (*key, crop))
        else:
            heapq.heapreplace(track.best, (*key, crop))

    def _close(self, tracks: list[_Track]) -> list[ClosedTracklet]:
        closed: list[ClosedTracklet] = []
        for track in sorted(tracks, key=lambda t: (t.first_s, t.track_id)):
            del self._tracks[track.track_id]
            if track.frame_count < self.min_frames:
                self._counts["dropped_short"] += 1
                continue
            if not track.best:
                self._counts["dropped_no_crops"] += 1
                continue
            crops = tuple(item[2] for item in sorted(track.best, key=lambda item: (-item[0], -item[1])))
            closed.append(
                ClosedTracklet(
                    tracklet_id=make_tracklet_id(self.camera_id, track.track_id, track.first_s, self.id_namespace),
                    camera_id=self.camera_id,
                    track_id=track.track_id,
                    start_s=track.first_s,
                    end_s=track.last_s,
                    frame_count=track.frame_count,
                    crops=crops,
                )
            )
            self._counts["tracklets_closed"] += 1
        return closed


def aggregate(
    embeddings: Embeddings | Sequence[Embeddings],
    weights: Sequence[float] | np.ndarray | None = None,
) -> Embeddings:
    """One vector for a tracklet: the weighted mean of its crop vectors (N, D), L2-normalised → (1, D).

    `weights` (N,) are usually the crops' qualities (`ClosedTracklet.qualities`); None weighs all
    crops equally. Each row is re-normalised first so a weight means what it says. Several
    `Embeddings` may be given, and must all come from one model; the result keeps its fingerprint.
    """
    if isinstance(embeddings, Embeddings):
        parts = [embeddings]
    else:
        parts = list(embeddings)
        if not parts:
            raise InvalidInputError("embeddings: expected at least one Embeddings, got none")
        for index, part in enumerate(parts):
            if not isinstance(part, Embeddings):
                raise InvalidInputError(f"embeddings[{index}]: expected Embeddings, got {type(part).__name__}")
    fingerprints = sorted({part.model_fingerprint for part in parts})
    if len(fingerprints) > 1:
        raise InvalidInputError(
            f"embeddings: expected vectors from one model, got mixed model fingerprints {fingerprints}"
        )
    dims = sorted({part.dim for part in parts})
    if len(dims) > 1:
        raise InvalidInputError(f"embeddings: expected one vector dimension, got {dims}")
    vectors = np.concatenate([part.vectors for part in parts]).astype(np.float64)
    if len(vectors) == 0:
        raise InvalidInputError("embeddings: expected at least one vector, got 0")

    if weights is None:
        w = np.ones(len(vectors), dtype=np.float64)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(vectors),):
            raise InvalidInputError(f"weights: expected shape ({len(vectors)},), got {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise InvalidInputError("weights: expected finite, non-negative values")
        if w.sum() <= 0:
            raise InvalidInputError("weights: expected a positive sum, got all zeros")

    norms = np.linalg.norm(vectors, axis=1)
    if np.any(norms <= 1e-12):
        raise InvalidInputError(f"embeddings: vectors {np.flatnonzero(norms <= 1e-12).tolist()} have zero norm")
    mean = (w[:, None] * (vectors / norms[:, None])).sum(axis=0) / w.sum()
    norm = np.linalg.norm(mean)
    if norm <= 1e-12:
        raise InvalidInputError("embeddings: the weighted vectors cancel out (zero mean); cannot aggregate")
    return Embeddings((mean / norm)[None, :].astype(np.float32), fingerprints[0])


def _check_frame(frame: object) -> None:
    check_bgr_image("frame", frame, noun="frame")
    if frame.dtype != np.uint8:
        raise InvalidInputError(f"frame: expected dtype uint8, got {frame.dtype}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InvalidInputError(f"frame: expected a non-empty frame, got shape {frame.shape}")
