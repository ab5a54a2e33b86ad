"""Cameras of one edge: what each one is (`CameraSpec`), its source (`open_source`), and running
several at once (`CameraRunner`), each in its own thread so a slow or failing camera stalls no other.

    >>> specs = [CameraSpec("gate", "rtsp://user:pw@10.0.0.5/live", target_fps=10),
    ...          CameraSpec("lobby", "recordings/lobby.mp4", stride=2)]
    >>> with CameraRunner(specs) as runner:
    ...     for frame in runner:            # frames of all cameras, in arrival order
    ...         ...
    ...     print(runner.status())          # per camera: state, recent fps, frames, dropped, gaps, last error

A camera's state is "running" while frames arrive, "no_frames" once none came for a few frame
intervals (`edge.sources.camera_health.GapWatch`, at least `no_frames_after_s`: an RTSP read can hang for
its whole read timeout before the source itself notices), "reconnecting" while its source reopens,
and "finished", "failed" or "stopped" at the end; `gap_since` says when a gap began. A watchdog
thread logs each gap once as it begins and calls `on_change` on every change of state, so a
heartbeat can tell the hub at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from edge.sources.camera_health import NO_FRAMES_AFTER_S, CameraState, FrameRateWindow, GapWatch
from edge.sources.files import (
    DEFAULT_FPS,
    ImageFolderSource,
    Source,
    VideoFileSource,
    _positive_float,
    _positive_int,
    without_camera,
)
from edge.sources.frames import Frame
from edge.sources.streams import (
    STREAM_SCHEMES,
    CaptureSource,
    ReconnectingSource,
    StreamSource,
    WebcamSource,
    redact_url,
)
from models.errors import CrossviewError, InvalidInputError

logger = logging.getLogger(__name__)

# Kept in step with edge.detect_track.SUPPORTED_TRACKERS (not imported: that module pulls in the zoo).
TRACKERS = ("bytetrack", "botsort")

# The explicit URI scheme → source class map. Paths have no scheme: "file" for a video file,
# "folder" for a folder of images.
SOURCE_CLASSES: dict[str, type] = {scheme: StreamSource for scheme in STREAM_SCHEMES} | {
    "webcam": WebcamSource,
    "file": VideoFileSource,
    "folder": ImageFolderSource,
}

SourceKind = Literal["stream", "webcam", "file", "folder"]


@dataclass(frozen=True)
class CameraSpec:
    """One camera: an id, where its frames come from, and how to sample and track them.

    `uri` is a video file path, a folder of images, `file:///path`, `webcam:<index>`, or a stream URL
    (rtsp://, rtsps://, http://, https://, rtmp://, srt://, udp://, tcp://). `fps` is the frame rate of
    an image folder (its images carry none) and is refused for anything else. `tracker` is "bytetrack",
    "botsort", or a path to an Ultralytics tracker YAML.
    """

    camera_id: str
    uri: str
    stride: int = 1
    target_fps: float | None = None
    tracker: str = "bytetrack"
    fps: float | None = None

    def __post_init__(self) -> None:
        camera_id = self.camera_id
        if not isinstance(camera_id, str) or not camera_id.strip() or camera_id != camera_id.strip() \
                or not camera_id.isprintable():
            raise InvalidInputError(f"camera_id: expected a non-empty printable string without surrounding spaces, "
                                    f"got {self.camera_id!r}")
        if isinstance(self.uri, Path):
            object.__setattr__(self, "uri", str(self.uri))
        if not isinstance(self.uri, str) or not self.uri.strip():
            raise InvalidInputError(f"camera {self.camera_id!r}: uri: expected a path, webcam:<index> or a stream "
                                    f"URL, got {self.uri!r}")
        _positive_int("stride", self.stride, 1)
        _positive_float("target_fps", self.target_fps, allow_none=True)
        _positive_float("fps", self.fps, allow_none=True)
        tracker = self.tracker
        if not isinstance(tracker, str) or not (tracker.removesuffix(".yaml") in TRACKERS
                                                or tracker.endswith((".yaml", ".yml"))):
            raise InvalidInputError(f"camera {self.camera_id!r}: tracker: expected one of {', '.join(TRACKERS)} or "
                                    f"a tracker .yaml path, got {tracker!r}")
        self._parse()  # raises on an unknown scheme or a bad webcam index

    def _parse(self) -> tuple[str, str | int]:
        """(scheme, target): the scheme key of SOURCE_CLASSES, and the URL, path or device index."""
        uri = self.uri.strip()
        if uri.lower().startswith("webcam:"):
            index = uri[len("webcam:"):].removeprefix("//")
            if not index.isdigit():
                raise InvalidInputError(f"camera {self.camera_id!r}: uri {uri!r}: expected webcam:<index>, "
                                        "e.g. webcam:0")
            return "webcam", int(index)
        if "://" in uri:
            scheme = uri.split("://", 1)[0].lower()
            if scheme == "file":
                return "file", uri.split("://", 1)[1]
            if scheme not in STREAM_SCHEMES:
                raise InvalidInputError(f"camera {self.camera_id!r}: uri {redact_url(uri)!r}: unknown scheme "
                                        f"{scheme!r}; expected a path, file://, webcam:<index> or one of "
                                        f"{', '.join(s + '://' for s in STREAM_SCHEMES)}")
            return scheme, uri
        return "file", uri

    @property
    def scheme(self) -> str:
        """The SOURCE_CLASSES key for this camera ("folder" when the path is a folder now)."""
        scheme, target = self._parse()
        if scheme == "file" and Path(str(target)).expanduser().is_dir():
            return "folder"
        return scheme

    @property
    def kind(self) -> SourceKind:
        scheme = self.scheme
        return scheme if scheme in ("webcam", "file", "folder") else "stream"  # type: ignore[return-value]

    @property
    def live(self) -> bool:
        return self.kind in ("stream", "webcam")

    @property
    def display_uri(self) -> str:
        return redact_url(self.uri)


def open_source(spec: CameraSpec, *, reconnect: bool = True, open_timeout_s: float = 10.0,
                read_timeout_s: float = 10.0, initial_backoff_s: float = 0.5, max_backoff_s: float = 30.0,
                max_attempts: int | None = None) -> Source:
    """The source for `spec`, chosen by its URI's scheme from SOURCE_CLASSES.

    Streams and webcams come wrapped in a `ReconnectingSource` (unless `reconnect=False`), which
    connects on iteration. Files and folders are checked here: a missing or unreadable one raises
    `SourceError` now, and they are never reopened (their end is the end).
    """
    scheme = spec.scheme
    cls = SOURCE_CLASSES[scheme]
    _, target = spec._parse()
    if spec.fps is not None and cls is not ImageFolderSource:
        raise InvalidInputError(f"camera {spec.camera_id!r}: fps applies to image folders only; "
                                f"{spec.display_uri} is a {spec.kind}")
    common: dict[str, Any] = {"stride": spec.stride, "target_fps": spec.target_fps}
    if cls is VideoFileSource:
        return VideoFileSource(Path(str(target)).expanduser(), spec.camera_id, **common)
    if cls is ImageFolderSource:
        return ImageFolderSource(Path(str(target)).expanduser(), spec.camera_id, fps=spec.fps or DEFAULT_FPS, **common)

    def factory() -> Source:
        if cls is WebcamSource:
            return WebcamSource(int(target), spec.camera_id, **common)
        return cls(str(target), spec.camera_id, open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s,
                   **common)

    if not reconnect:
        return factory()
    return ReconnectingSource(factory, spec.camera_id, initial_backoff_s=initial_backoff_s,
                              max_backoff_s=max_backoff_s, max_attempts=max_attempts, description=spec.display_uri,
                              wall_clock=True)  # live sightings carry Unix seconds (cloud/times.py)


@dataclass(frozen=True)
class CameraStatus:
    """A snapshot of one camera in a `CameraRunner`."""

    camera_id: str
    state: CameraState
    live: bool
    frames: int  # frames its source produced
    dropped: int  # of those, dropped from a full queue (live cameras only)
    queued: int  # waiting to be consumed now
    gaps: int  # reconnects after a drop or a failed open
    last_error: str | None
    fps: float = 0.0  # frames its source produced per second over the last 10 s
    gap_since: float | None = None  # epoch seconds: when the current gap began ("no_frames", "reconnecting")


class _Lane:
    """One camera's thread, queue and counters. Guarded by the runner's condition."""

    def __init__(self, camera_id: str, spec: CameraSpec | None, source: Source | None, maxlen: int) -> None:
        self.camera_id = camera_id
        self.spec = spec
        self.source = source
        self.live = spec.live if spec is not None else bool(getattr(source, "live", False))
        self.queue: deque[tuple[int, Frame]] = deque()
        self.maxlen = maxlen
        self.state: CameraState = "starting"
        self.frames = 0
        self.dropped = 0
        self.last_error: str | None = None
        self.done = False
        self.thread: threading.Thread | None = None
        self.rate = FrameRateWindow()
        self.watch: GapWatch | None = None  # set by the runner
        self.started_at = time.time()


class CameraRunner:
    """Runs several cameras, each in its own thread, and yields their frames as they arrive.

    Args:
        cameras: `CameraSpec`s (opened in their thread with `opener`, so an unopenable one fails alone)
            or ready `Source`s. Camera ids must be unique.
        queue_size: frames buffered per camera. Live cameras drop their oldest buffered frame when
            full, so a slow consumer never stalls decoding and memory stays bounded; recorded ones
            (files, folders, replay) block until there is room, so none of their frames is lost.
        opener: turns a spec into a source (default `open_source`; pass a `functools.partial` to set
            timeouts or `max_attempts`).
        no_frames_after_s: the shortest time without a frame that is called a gap ("no_frames").
        on_change: called (on the watchdog thread) with a camera's new status whenever its state changes.

    Iterating starts the threads and ends when every camera has finished or failed and its queue is
    empty, or after `stop()`. A camera that fails is reported in `status()` and logged; the others
    keep running. Use it as a context manager so `stop()` always runs.
    """

    def __init__(self, cameras: Iterable[CameraSpec | Source], queue_size: int = 32,
                 opener: Callable[[CameraSpec], Source] = open_source,
                 no_frames_after_s: float = NO_FRAMES_AFTER_S,
                 on_change: Callable[[CameraStatus], None] | None = None) -> None:
        _positive_int("queue_size", queue_size, 1)
        _positive_float("no_frames_after_s", no_frames_after_s)
        self._lanes: dict[str, _Lane] = {}
        for camera in cameras:
            spec = camera if isinstance(camera, CameraSpec) else None
            if spec is None and not isinstance(camera, Source):
                raise InvalidInputError(f"cameras: expected CameraSpec or Source objects, got {type(camera).__name__}")
            camera_id = camera.camera_id
            if camera_id in self._lanes:
                raise InvalidInputError(f"camera ids must be unique: {camera_id!r} appears twice")
            lane = _Lane(camera_id, spec, None if spec else camera, queue_size)  # type: ignore[arg-type]
            lane.watch = GapWatch(no_frames_after_s)
            self._lanes[camera_id] = lane
        if not self._lanes:
            raise InvalidInputError("cameras: expected at least one camera")
        self._opener = opener
        self._cond = threading.Condition()
        self._stopping = False
        self._started = False
        self._seq = 0
        self._on_change = on_change
        self._watchdog: threading.Thread | None = None
        self._watchdog_stop = threading.Event()

    @property
    def camera_ids(self) -> list[str]:
        return list(self._lanes)

    def start(self) -> None:
        """Start every camera's thread (iterating does this too)."""
        with self._cond:
            if self._started:
                return
            self._started = True
        for lane in self._lanes.values():
            lane.started_at = time.time()
            lane.thread = threading.Thread(target=self._run, args=(lane,), name=f"camera-{lane.camera_id}",
                                           daemon=True)
            lane.thread.start()
        self._watchdog = threading.Thread(target=self._watch, name="camera-watchdog", daemon=True)
        self._watchdog.start()

    def _run(self, lane: _Lane) -> None:
        iterator: Iterator[Frame] | None = None
        try:
            if lane.source is None:
                assert lane.spec is not None
                lane.source = self._opener(lane.spec)
            with self._cond:
                if self._stopping:
                    lane.state = "stopped"
                    return
                lane.state = "running"
            iterator = iter(lane.source)
            for frame in iterator:
                if not self._put(lane, frame):
                    break
            end_error = getattr(lane.source, "last_error", None)  # e.g. a truncated file that ended early
            with self._cond:
                lane.state = "stopped" if self._stopping else "finished"
                if end_error and lane.last_error is None and lane.state == "finished":
                    lane.last_error = str(end_error)
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            # A CrossviewError's message says it all; anything else is a bug worth a traceback.
            logger.error("camera %r failed: %s", lane.camera_id, without_camera(lane.camera_id, message),
                         exc_info=not isinstance(exc, CrossviewError))
            with self._cond:
                lane.state, lane.last_error = "failed", message
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
            if lane.source is not None:
                lane.source.close()
            with self._cond:
                lane.done = True
                self._cond.notify_all()

    def _put(self, lane: _Lane, frame: Frame) -> bool:
        """Queue a frame; False when the runner is stopping."""
        with self._cond:
            if self._stopping:
                return False
            lane.frames += 1
            lane.rate.tick()
            assert lane.watch is not None
            lane.watch.frame()
            if lane.live:
                if len(lane.queue) >= lane.maxlen:
                    lane.queue.popleft()
                    lane.dropped += 1
            else:
                while len(lane.queue) >= lane.maxlen and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return False
            lane.queue.append((self._seq, frame))
            self._seq += 1
            self._cond.notify_all()
            return True

    def __iter__(self) -> Iterator[Frame]:
        self.start()
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    heads = [lane for lane in self._lanes.values() if lane.queue]
                    if heads:
                        lane = min(heads, key=lambda ln: ln.queue[0][0])
                        _, frame = lane.queue.popleft()
                        self._cond.notify_all()  # room for a blocked recorded camera
                        break
                    if all(lane.done for lane in self._lanes.values()):
                        return
                    self._cond.wait()
            yield frame

    def status(self) -> dict[str, CameraStatus]:
        """Per camera: state, recent frame rate, counters and last error (a snapshot; safe from any thread)."""
        out = {}
        with self._cond:
            for lane in self._lanes.values():
                out[lane.camera_id] = self._lane_status(lane)
        return out

    @staticmethod
    def _lane_status(lane: _Lane) -> CameraStatus:
        assert lane.watch is not None
        state: CameraState = lane.state
        since: float | None = None
        inner = getattr(lane.source, "state", None)
        if state == "running":
            if inner == "reconnecting":
                state = "reconnecting"
                since = lane.watch.last_frame_at or getattr(lane.source, "gap_since", None) or lane.started_at
            elif inner == "connecting" or lane.frames == 0:
                state = "starting"
            elif lane.watch.stalled() and not (not lane.live and len(lane.queue) >= lane.maxlen):
                # (a recorded camera waiting for room in its queue is not silent: it is being held back)
                state, since = "no_frames", lane.watch.last_frame_at
        gaps = getattr(lane.source, "gaps", ())
        error = lane.last_error or getattr(lane.source, "last_error", None)
        return CameraStatus(lane.camera_id, state, lane.live, lane.frames, lane.dropped, len(lane.queue), len(gaps),
                            error, fps=lane.rate.fps(), gap_since=since)

    def _watch(self, every_s: float = 0.25) -> None:
        """Log a gap once as it begins (the source logs its own drops and reconnects) and report changes."""
        previous: dict[str, CameraStatus] = {}
        while True:
            with self._cond:
                ended = self._stopping or all(lane.done for lane in self._lanes.values())
                current = {lane.camera_id: self._lane_status(lane) for lane in self._lanes.values()}
            for camera_id, now in current.items():
                before = previous.get(camera_id)
                if before is not None and before.state == now.state:
                    continue
                if now.state == "no_frames":
                    assert now.gap_since is not None
                    logger.warning("camera %r: no frames since %s", camera_id, _clock_time(now.gap_since))
                elif now.state == "running" and before is not None and before.state == "no_frames":
                    assert before.gap_since is not None
                    logger.info("camera %r: frames again after a %.1f s gap", camera_id,
                                time.time() - before.gap_since)
                if self._on_change is not None:
                    try:
                        self._on_change(now)
                    except Exception:
                        logger.exception("camera %r: the on_change callback failed", camera_id)
            previous = current
            if ended or self._watchdog_stop.wait(every_s):
                return

    def stop(self, timeout_s: float = 15.0) -> bool:
        """Stop every camera and join their threads; True if all ended within `timeout_s`.

        Queued frames are discarded. A thread blocked in a live read ends within that source's read
        timeout; a reconnect backoff wait is interrupted at once.
        """
        _positive_float("timeout_s", timeout_s)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._watchdog_stop.set()
        for lane in self._lanes.values():
            # Only these sources' close() is safe while another thread reads them.
            if isinstance(lane.source, ReconnectingSource | CaptureSource):
                lane.source.close()
        deadline = time.monotonic() + timeout_s
        for lane in self._lanes.values():
            if lane.thread is not None:
                lane.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        alive = [lane.camera_id for lane in self._lanes.values() if lane.thread is not None and lane.thread.is_alive()]
        if alive:
            logger.warning("cameras %s did not stop within %.1f s", ", ".join(map(repr, alive)), timeout_s)
        with self._cond:
            for lane in self._lanes.values():
                lane.queue.clear()
        return not alive

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _clock_time(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds")
