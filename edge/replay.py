"""Replay: recorded footage through the live `EdgePipeline`, as fast as the machine allows.

    >>> report = replay(["lobby.mp4", "gate.mp4"], pipeline=pipeline, stride=2)

Cameras and files: each file is a camera — its `cameras` entry, or by default the file's stem.
Files of different cameras play **concurrently**: each camera has a reader thread that decodes ahead
(a few frames, bounded), and the frames of all cameras are merged into one sequence by stream time
(ties: camera order, then frame order), which is the order the pipeline sees them in. Files given the
same camera play one after another, as one camera whose stream restarts between them. Detection runs
on the calling thread; decoding overlaps with it, and embedding runs on the pipeline's worker.

Pacing: `realtime=True` holds each frame back until its stream time (divided by `speed`) has passed
since the start — the "live" mode. Frames are never dropped to catch up, and the merge order is the
same at any pace, so a paced and a fast replay at the same stride give the same tracklets and short
lists; they differ only in wall time.

Tracklet ids are namespaced by `<edge id>/<recording id>/s<stride>`, the recording id being a hash of
the file's size and its first and last MiB: the same file gives the same ids wherever it lies.

Resuming after a crash (or SIGKILL): replay the same files again (with the same `recorded_at`, if
any) into the same store and outbox. Tracklets get the same ids; those already stored are not
embedded or written again, and short lists keep their idempotency keys, so the outbox stores each
once (and does not re-send one the hub already acknowledged). Nothing is lost: work that was not
committed is simply done again. An interrupted replay (an exception, Ctrl-C) drops the tracklets
still open rather than storing them truncated.

A file that cannot be opened or decoded is reported for its camera (`FileReport.error`); the other
files keep playing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import logging
import math
import queue
import re
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from edge.pipeline import EdgePipeline, PipelineStats
from edge.sources.files import VideoFileSource, camera_message
from edge.sources.frames import Frame
from models.errors import CrossviewError, InvalidInputError

log = logging.getLogger(__name__)

_HASH_SPAN = 1 << 20


def recording_id(path: str | Path) -> str:
    """16 hex characters identifying a recording by content (size, first and last MiB), not by path."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        digest.update(str(size).encode())
        f.seek(0)
        digest.update(f.read(_HASH_SPAN))
        if size > _HASH_SPAN:
            f.seek(max(_HASH_SPAN, size - _HASH_SPAN))
            digest.update(f.read(_HASH_SPAN))
    return digest.hexdigest()[:16]


def camera_ids_for(files: Sequence[Path], cameras: Sequence[str] | None = None) -> list[str]:
    """One camera id per file: the given ones (one per file), else the file stems made unique."""
    if cameras is not None:
        if len(cameras) != len(files):
            raise InvalidInputError(f"cameras: expected one camera per file ({len(files)}), got {len(cameras)}")
        for camera in cameras:
            if not isinstance(camera, str) or not camera.strip():
                raise InvalidInputError(f"cameras: expected non-empty names, got {camera!r}")
        return list(cameras)
    ids: list[str] = []
    for path in files:
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(path).stem).strip("-") or "camera"
        name, n = base, 1
        while name in ids:
            n += 1
            name = f"{base}-{n}"
        ids.append(name)
    return ids


@dataclass
class FileReport:
    """How one file played."""

    path: Path
    camera_id: str
    recording_id: str = ""
    frames: int = 0
    error: str | None = None


@dataclass(frozen=True)
class ReplayReport:
    files: tuple[FileReport, ...]
    stats: PipelineStats
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return all(f.error is None for f in self.files)

    @property
    def frames(self) -> int:
        return sum(f.frames for f in self.files)

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0


# events a reader thread sends, in order, for its camera
@dataclass
class _Begin:
    file: int
    total: int | None


@dataclass
class _End:
    file: int
    error: str | None


@dataclass
class _Frame:
    time: float  # merge time: stream time plus the durations of the camera's earlier files
    file: int
    frame: Frame


_DONE = object()


@dataclass
class _Reader:
    camera_id: str
    order: int
    files: list[int]
    events: queue.Queue = field(default_factory=lambda: queue.Queue(maxsize=8))
    thread: threading.Thread | None = None


def _read(reader: _Reader, paths: list[Path], stride: int, max_frames: int | None, stop: threading.Event) -> None:
    def send(event: object) -> bool:
        while not stop.is_set():
            try:
                reader.events.put(event, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    offset = 0.0
    for file in reader.files:
        last, error = 0.0, None
        try:
            source = VideoFileSource(paths[file], reader.camera_id, stride=stride, max_frames=max_frames)
            total = None if source.frame_count is None else math.ceil(source.frame_count / stride)
            if not send(_Begin(file, total if max_frames is None or total is None else min(total, max_frames))):
                return
            with source:
                for frame in source:
                    if not send(_Frame(offset + frame.timestamp_s, file, frame)):
                        return
                    last = frame.timestamp_s
            offset += last + stride / source.fps
        except CrossviewError as exc:
            error = str(exc)
        except Exception as exc:  # a reader must always say it is done, or the merge waits forever
            error = f"{type(exc).__name__}: {exc}"
        if not send(_End(file, error)):
            return
    send(_DONE)


def replay(files: Sequence[str | Path], cameras: Sequence[str] | None = None, *, pipeline: EdgePipeline,
           stride: int = 1, realtime: bool = False, speed: float = 1.0, max_frames: int | None = None,
           progress: bool = True, recorded_at: float | None = None) -> ReplayReport:
    """Play `files` through `pipeline` (see the module docstring); returns once every tracklet is
    short-listed (the pipeline is drained, not closed).

    Args:
        files: video files; `cameras`: one camera id per file (default: the file stems).
        pipeline: the edge pipeline (its store, outbox and gallery receive the results).
        stride: process every `stride`-th frame.
        realtime: pace frames at their stream time (÷ `speed`) instead of as fast as possible.
        max_frames: per file, stop after this many processed frames.
        progress: a tqdm bar per file on stderr.
        recorded_at: when the recordings started (Unix seconds): frames are then stamped
            ``recorded_at + stream time``, so tracklets, short lists and the hub's sightings carry
            wall-clock times. None (default): stream times, seconds into each camera's footage.
            One value for all files; the frame order does not depend on it, tracklet ids do (they
            include the start time): resume an interrupted replay with the same `recorded_at`.
    """
    paths = [Path(f) for f in files]
    if not paths:
        raise InvalidInputError("files: expected at least one video file, got none")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise InvalidInputError(f"stride: expected an integer >= 1, got {stride!r}")
    if not (speed > 0 and math.isfinite(speed)):
        raise InvalidInputError(f"speed: expected a finite number > 0, got {speed!r}")
    if recorded_at is not None and not (isinstance(recorded_at, int | float) and not isinstance(recorded_at, bool)
                                        and math.isfinite(recorded_at) and recorded_at >= 0):
        raise InvalidInputError(f"recorded_at: expected Unix seconds >= 0 or None, got {recorded_at!r}")
    camera_ids = camera_ids_for(paths, cameras)
    reports = [FileReport(p, c) for p, c in zip(paths, camera_ids, strict=True)]
    readers: dict[str, _Reader] = {}
    for index, (path, camera_id) in enumerate(zip(paths, camera_ids, strict=True)):
        reader = readers.setdefault(camera_id, _Reader(camera_id, len(readers), []))
        reader.files.append(index)
        try:
            reports[index].recording_id = recording_id(path)
        except OSError as exc:
            reports[index].error = f"camera {camera_id!r}: cannot read {path}: {exc}"

    stop = threading.Event()
    bars: dict[int, tqdm] = {}
    failed: set[int] = set()
    heap: list[tuple[float, int, int, _Frame]] = []
    sequence = 0

    def pull(reader: _Reader) -> None:
        """Handle the reader's next events up to its next frame, which goes on the heap."""
        nonlocal sequence
        while True:
            event = reader.events.get()
            if event is _DONE:
                return
            if isinstance(event, _Frame):
                if event.file in failed:
                    continue
                sequence += 1
                heapq.heappush(heap, (event.time, reader.order, sequence, event))
                return
            report = reports[event.file]
            if isinstance(event, _Begin):
                pipeline.begin_stream(reader.camera_id, source=str(report.path),
                                      id_namespace=f"{pipeline.edge_id}/{report.recording_id}/s{stride}")
                bars[event.file] = tqdm(total=event.total, desc=f"{reader.camera_id} ({report.path.name})",
                                        unit="frame", position=event.file, file=sys.stderr,
                                        disable=not progress, dynamic_ncols=True, leave=True)
            elif isinstance(event, _End):
                if event.error is not None and report.error is None:
                    report.error = event.error
                    log.error("replay: %s", event.error)
                pipeline.end_stream(reader.camera_id, flush=event.file not in failed)
                if event.file in bars:
                    bars.pop(event.file).close()

    started = time.perf_counter()
    try:
        for reader in readers.values():
            reader.thread = threading.Thread(target=_read, args=(reader, paths, stride, max_frames, stop),
                                             name=f"replay-{reader.camera_id}", daemon=True)
            reader.thread.start()
        for reader in readers.values():
            pull(reader)
        first_time = heap[0][0] if heap else 0.0
        while heap:
            when, order, _, event = heapq.heappop(heap)
            reader = next(r for r in readers.values() if r.order == order)
            if realtime:
                delay = started + (when - first_time) / speed - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            report = reports[event.file]
            if event.file not in failed:
                try:
                    frame = event.frame if recorded_at is None else dataclasses.replace(
                        event.frame, timestamp_s=recorded_at + event.frame.timestamp_s)
                    pipeline.process(frame)
                    report.frames += 1
                    bars[event.file].update(1)
                except CrossviewError as exc:  # e.g. the detector failing on this camera's frames
                    report.error = camera_message(reader.camera_id, str(exc))
                    log.error("replay: %s; skipping the rest of %s", report.error, report.path)
                    failed.add(event.file)
            pull(reader)
        pipeline.drain()
    finally:
        stop.set()
        for bar in bars.values():
            bar.close()
        for reader in readers.values():
            if reader.thread is not None:
                reader.thread.join(timeout=5)
    return ReplayReport(tuple(reports), pipeline.stats, time.perf_counter() - started)
