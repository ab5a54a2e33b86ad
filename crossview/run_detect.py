"""Run detection + tracking over one video file and summarise who was seen when.

`summarise_video` does the work and returns a `VideoSummary`; `format_summary` / `print_summary`
turn it into text (one line per sampled frame, then a table of tracks and the FPS achieved).

    >>> summary = summarise_video("lobby.mp4", camera_id="lobby", max_frames=200, stride=2)
    >>> print_summary(summary)
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from edge.detect_track import DEFAULT_DETECTOR, PersonTracker
from edge.sources.files import VideoFileSource
from models.types import Detections


@dataclass(frozen=True, eq=False)  # holds arrays: identity equality
class FrameRecord:
    """The detections of one sampled frame."""

    index: int
    timestamp_s: float
    detections: Detections


@dataclass(frozen=True)
class TrackSummary:
    """One track id's life in the video: first and last sighting, sampled frames it was in."""

    track_id: int
    first_seen_s: float
    last_seen_s: float
    first_index: int
    last_index: int
    frames: int
    mean_confidence: float


@dataclass(frozen=True, eq=False)
class VideoSummary:
    """What `summarise_video` saw; FPS figures exclude model loading."""

    path: Path
    camera_id: str
    stride: int
    width: int
    height: int
    source_fps: float
    model: str
    tracker: str
    frames: tuple[FrameRecord, ...]  # every sampled frame, in order
    tracks: tuple[TrackSummary, ...]  # by first sighting
    untracked_boxes: int  # boxes no track held (track id -1)
    elapsed_s: float  # wall time of decoding + detection + tracking (model loading excluded)
    detect_track_s: float  # of which inside PersonTracker.update
    load_s: float  # model loading and warm-up (0 when a ready tracker was passed in)

    @property
    def frames_processed(self) -> int:
        return len(self.frames)

    @property
    def frames_with_people(self) -> int:
        return sum(1 for f in self.frames if len(f.detections))

    @property
    def unique_track_ids(self) -> int:
        return len(self.tracks)

    @property
    def fps(self) -> float:
        """Sampled frames per second of wall time, decoding included."""
        return self.frames_processed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def detect_track_fps(self) -> float:
        """Frames per second of detector + tracker alone."""
        return self.frames_processed / self.detect_track_s if self.detect_track_s > 0 else 0.0


class _TrackTally:
    def __init__(self) -> None:
        self.tracks: dict[int, list[float]] = {}  # id -> [first_s, last_s, first_i, last_i, n, conf_sum]
        self.untracked = 0

    def add(self, index: int, timestamp_s: float, detections: Detections) -> None:
        ids = detections.track_id
        if ids is None:
            self.untracked += len(detections)
            return
        for track_id, conf in zip(ids.tolist(), detections.confidence.tolist(), strict=True):
            if track_id < 0:
                self.untracked += 1
                continue
            entry = self.tracks.setdefault(track_id, [timestamp_s, timestamp_s, index, index, 0, 0.0])
            entry[1], entry[3] = timestamp_s, index
            entry[4] += 1
            entry[5] += conf

    def summaries(self) -> tuple[TrackSummary, ...]:
        rows = [TrackSummary(tid, e[0], e[1], int(e[2]), int(e[3]), int(e[4]), e[5] / e[4])
                for tid, e in self.tracks.items()]
        return tuple(sorted(rows, key=lambda t: (t.first_index, t.track_id)))


def summarise_video(
    path: str | Path,
    camera_id: str = "cam0",
    max_frames: int | None = None,
    stride: int = 1,
    *,
    start_frame: int = 0,
    tracker: PersonTracker | None = None,
    model: str | Path = DEFAULT_DETECTOR,
    tracker_type: str | Path = "bytetrack",
    conf: float = 0.25,
    imgsz: int = 640,
    progress: bool = True,
    on_frame: Callable[[FrameRecord], None] | None = None,
) -> VideoSummary:
    """Detect and track people in a video file and summarise the tracks.

    Args:
        path: the video file (.mp4, raw .264, ... anything `VideoFileSource` reads).
        camera_id: the camera the video is attributed to.
        max_frames: process at most this many sampled frames (None: the whole video).
        stride: process every `stride`-th frame.
        start_frame: skip the frames before this index.
        tracker: a ready `PersonTracker` to reuse (its state for `camera_id` is reset first);
            otherwise one is built from `model`, `tracker_type`, `conf` and `imgsz`.
        progress: show a progress bar on stderr.
        on_frame: called with each frame's record as soon as it is ready, e.g. to print it live
            (use `tqdm.write` so the line does not tear the progress bar).
    """
    source = VideoFileSource(path, camera_id, stride=stride, max_frames=max_frames, start_frame=start_frame)
    load_s = 0.0
    if tracker is None:
        t0 = time.perf_counter()
        tracker = PersonTracker(model, tracker=tracker_type, conf=conf, imgsz=imgsz)
        load_s = time.perf_counter() - t0
    tracker.reset(camera_id)

    total = max_frames
    if source.frame_count is not None:
        remaining = math.ceil(max(source.frame_count - start_frame, 0) / stride)
        total = remaining if max_frames is None else min(max_frames, remaining)
    records: list[FrameRecord] = []
    tally = _TrackTally()
    detect_s = 0.0
    t_start = time.perf_counter()
    with source, tqdm(total=total, desc=camera_id, unit="frame", file=sys.stderr, disable=not progress,
                      dynamic_ncols=True) as bar:
        for frame in source:
            t0 = time.perf_counter()
            detections = tracker.update(frame)
            detect_s += time.perf_counter() - t0
            record = FrameRecord(frame.index, frame.timestamp_s, detections)
            records.append(record)
            tally.add(frame.index, frame.timestamp_s, detections)
            if on_frame is not None:
                on_frame(record)
            bar.update(1)
    elapsed_s = time.perf_counter() - t_start
    return VideoSummary(
        path=source.path, camera_id=camera_id, stride=stride, width=source.width, height=source.height,
        source_fps=source.fps, model=tracker.model_name, tracker=tracker.tracker_config.stem,
        frames=tuple(records), tracks=tally.summaries(), untracked_boxes=tally.untracked,
        elapsed_s=elapsed_s, detect_track_s=detect_s, load_s=load_s,
    )


def format_frame(record: FrameRecord) -> str:
    """One line: frame index, time, and each person's track id, box (whole pixels) and confidence."""
    det = record.detections
    head = f"frame {record.index:>6}  t={record.timestamp_s:8.2f}s"
    if not len(det):
        return f"{head}  -"
    ids = det.track_id.tolist() if det.track_id is not None else [-1] * len(det)
    parts = []
    for track_id, box, conf in zip(ids, det.xyxy.round().astype(int).tolist(), det.confidence.tolist(),
                                   strict=True):
        name = f"#{track_id}" if track_id >= 0 else "#-"
        parts.append(f"{name} [{box[0]},{box[1]},{box[2]},{box[3]}] {conf:.2f}")
    people = "person" if len(det) == 1 else "people"
    return f"{head}  {len(det)} {people}: " + "; ".join(parts)


def format_summary(summary: VideoSummary, per_frame: bool = True) -> str:
    """The per-frame lines (optional) followed by the totals and the track table."""
    lines = [format_frame(r) for r in summary.frames] if per_frame else []
    if lines:
        lines.append("")
    s = summary
    lines += [
        f"camera {s.camera_id}: {s.path} ({s.width}x{s.height}, {s.source_fps:.2f} fps), stride {s.stride}",
        f"model {s.model} + {s.tracker}",
        f"  frames processed     {s.frames_processed}",
        f"  frames with people   {s.frames_with_people}",
        f"  unique track ids     {s.unique_track_ids}",
    ]
    if s.untracked_boxes:
        lines.append(f"  untracked boxes      {s.untracked_boxes}")
    lines.append(f"  FPS                  {s.fps:.1f} overall (decode + detect + track), "
                 f"{s.detect_track_fps:.1f} detector + tracker")
    if s.load_s:
        lines.append(f"  model load           {s.load_s:.1f} s (not counted in FPS)")
    if s.tracks:
        lines += ["", f"  {'track':>6}  {'first seen':>10}  {'last seen':>10}  {'frames':>6}  {'mean conf':>9}"]
        for t in s.tracks:
            lines.append(f"  {t.track_id:>6}  {t.first_seen_s:>9.2f}s  {t.last_seen_s:>9.2f}s  "
                         f"{t.frames:>6}  {t.mean_confidence:>9.2f}")
    return "\n".join(lines)


def print_summary(summary: VideoSummary, file: TextIO | None = None, per_frame: bool = True) -> None:
    print(format_summary(summary, per_frame=per_frame), file=file or sys.stdout)
