"""Live sources: RTSP/HTTP streams and webcams, and `ReconnectingSource`, which reopens them.

A live source raises `SourceUnavailableError` when it cannot be reached or stops sending frames;
`ReconnectingSource` catches exactly that, reopens with exponential backoff and jitter, and records
each gap. Any other `SourceError` (a corrupt file, a bad argument) is permanent and passes through.

    >>> cam = ReconnectingSource(lambda: StreamSource("rtsp://user:pw@10.0.0.5/live", "gate"), "gate")
    >>> for frame in cam:   # runs until cam.close(), or max_attempts failed reconnects in a row
    ...     ...

URLs in logs, errors and reprs go through `redact_url`: no `user:password@`, no `?password=`.
Messages that FFmpeg itself prints to stderr are outside this module's control; the ones seen on
connection errors name the host and port only.
"""

from __future__ import annotations

import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Literal, Self

import cv2
import numpy as np

from edge.sources.files import (
    FrameRateLimiter,
    Source,
    SourceError,
    SourceUnavailableError,
    _camera_id,
    _positive_float,
    _positive_int,
    camera_message,
    without_camera,
)
from edge.sources.frames import Frame
from models.errors import InvalidInputError

logger = logging.getLogger(__name__)

# URL schemes StreamSource hands to FFmpeg.
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "udp", "tcp")

_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")  # greedy: a '@' in a password too
_SECRET_QUERY = re.compile(r"(?P<key>[?&;](?:password|passwd|pass|pwd|token|access_token|key|apikey|api_key|auth"
                           r"|secret|signature|sig)=)[^&#;]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """`rtsp://admin:pw@host/x?token=t` → `rtsp://***@host/x?token=***`: safe to log."""
    url = _USERINFO.sub(r"\g<scheme>***@", str(url))
    return _SECRET_QUERY.sub(r"\g<key>***", url)


def _check_frame(image: object) -> bool:
    return isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 \
        and image.dtype == np.uint8 and image.size > 0


class CaptureSource:
    """Base of the live OpenCV sources: open, read with stride / target FPS, stamp, close.

    Subclasses say how to open the capture (`_open_capture`) and how to name it (`describe`).
    `close()` may be called from another thread: it never releases the capture during a read, the
    reading thread does that right after (a read waits at most the read timeout).
    """

    live = True

    def __init__(self, camera_id: str, stride: int = 1, target_fps: float | None = None,
                 max_frames: int | None = None, timestamps: Literal["wall", "stream"] = "wall",
                 clock: Callable[[], float] = time.monotonic) -> None:
        _camera_id(camera_id)
        _positive_int("stride", stride, 1)
        _positive_float("target_fps", target_fps, allow_none=True)
        _positive_int("max_frames", max_frames, 1, allow_none=True)
        if timestamps not in ("wall", "stream"):
            raise InvalidInputError(f"timestamps: expected 'wall' or 'stream', got {timestamps!r}")
        self.camera_id = camera_id
        self.stride = stride
        self.target_fps = target_fps
        self.max_frames = max_frames
        self.timestamps = timestamps
        self._clock = clock
        self.started_at: float | None = None  # epoch seconds of the last open: timestamp 0
        self.fps: float | None = None
        self.frame_count: int | None = None
        self._cap: cv2.VideoCapture | None = None
        self._lock = threading.Lock()
        self._reading = False
        self._closed = False

    def describe(self) -> str:
        raise NotImplementedError

    def _open_capture(self) -> cv2.VideoCapture:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.describe()!r}, camera_id={self.camera_id!r}, stride={self.stride}, "
                f"target_fps={self.target_fps})")

    def open(self) -> None:
        """Connect now (iterating connects too). Raises `SourceUnavailableError` if it cannot."""
        with self._lock:
            if self._cap is not None:
                return
            self._closed = False
        try:
            cap = self._open_capture()
        except cv2.error as exc:
            raise SourceUnavailableError(f"camera {self.camera_id!r}: cannot open {self.describe()} "
                                         f"({str(exc).strip()})") from exc
        if not cap.isOpened():
            cap.release()
            raise SourceUnavailableError(f"camera {self.camera_id!r}: cannot open {self.describe()} "
                                         "(unreachable, refused, timed out, or not a video stream)")
        fps = cap.get(cv2.CAP_PROP_FPS)
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.fps = float(fps) if math.isfinite(fps) and 0 < fps < 1000 else None
        # A known frame count means a finite stream (e.g. a file served over HTTP): its end is no drop.
        self.frame_count = int(count) if math.isfinite(count) and 0 < count < 1e9 else None
        self.started_at = time.time()
        with self._lock:
            self._cap = cap

    def __iter__(self) -> Iterator[Frame]:
        self.open()
        cap = self._cap
        assert cap is not None
        try:
            yield from self._read(cap)
        finally:
            with self._lock:
                if self._cap is cap:
                    self._cap = None
            cap.release()

    def _grab(self, cap: cv2.VideoCapture) -> bool | None:
        """Grab the next frame; None when closed."""
        with self._lock:
            if self._closed or self._cap is not cap:
                return None
            self._reading = True
        try:
            return bool(cap.grab())
        except cv2.error as exc:
            logger.warning("camera %r: reading %s failed (%s)", self.camera_id, self.describe(), str(exc).strip())
            return False
        finally:
            with self._lock:
                self._reading = False

    def _read(self, cap: cv2.VideoCapture) -> Iterator[Frame]:
        limiter = FrameRateLimiter(self.target_fps)
        t0 = self._clock()
        index = 0
        yielded = 0
        last_ts = 0.0
        while self.max_frames is None or yielded < self.max_frames:
            ok = self._grab(cap)
            if ok is None:
                return
            if not ok:
                if self.frame_count is not None and index >= self.frame_count:
                    return  # a finite stream came to its end
                raise SourceUnavailableError(
                    f"camera {self.camera_id!r}: {self.describe()} stopped sending frames after {index} "
                    "(dropped, ended, or no frame within the read timeout)")
            ts = max(last_ts, self._clock() - t0)
            if self.timestamps == "stream":
                pos_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
                if math.isfinite(pos_ms) and pos_ms >= 0:
                    ts = max(last_ts, pos_ms / 1000.0)
            last_ts = ts
            if index % self.stride == 0 and limiter.keep(ts):
                ok, image = cap.retrieve()
                if ok and _check_frame(image):
                    yield Frame(self.camera_id, index, ts, image)
                    yielded += 1
                else:
                    logger.warning("camera %r: %s gave an unusable frame %d; skipped", self.camera_id,
                                   self.describe(), index)
            index += 1

    def close(self) -> None:
        """Release the device; safe from another thread (a read in progress finishes first)."""
        with self._lock:
            self._closed = True
            cap = None if self._reading else self._cap
            if cap is not None:
                self._cap = None
        if cap is not None:
            cap.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class StreamSource(CaptureSource):
    """An RTSP / HTTP(S) / RTMP / ... stream read with OpenCV's FFmpeg backend.

    Args:
        url: the stream URL; credentials in it are used but never logged.
        camera_id: the camera these frames are attributed to.
        stride: keep every `stride`-th frame received (all are read, so the stream never lags).
        target_fps: keep only enough frames to approach this rate (judged by timestamps).
        open_timeout_s / read_timeout_s: give up connecting / waiting for the next frame after this.
        max_frames: end after this many frames (None: until the stream drops or `close()`).
        timestamps: "wall" (default): seconds on `clock` since the connection opened, which is what a
            live camera means; "stream": the stream's presentation times (RTSP's RTP clock), where they
            are meaningful — MJPEG over HTTP has none and FFmpeg invents 25 fps ones.

    Transport options such as `rtsp_transport;tcp` go in the OPENCV_FFMPEG_CAPTURE_OPTIONS environment
    variable (OpenCV reads it process-wide). A stream that stops raises `SourceUnavailableError`;
    a stream with a known frame count (a file over HTTP) ends normally after its last frame.
    """

    def __init__(self, url: str, camera_id: str, stride: int = 1, target_fps: float | None = None,
                 open_timeout_s: float = 10.0, read_timeout_s: float = 10.0, max_frames: int | None = None,
                 timestamps: Literal["wall", "stream"] = "wall", clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(camera_id, stride, target_fps, max_frames, timestamps, clock)
        if not isinstance(url, str) or "://" not in url:
            raise InvalidInputError(f"url: expected a stream URL such as rtsp://host/path, "
                                    f"got {redact_url(str(url))!r}")
        scheme = url.split("://", 1)[0].lower()
        if scheme not in STREAM_SCHEMES:
            raise InvalidInputError(f"url {redact_url(url)!r}: expected a scheme in {', '.join(STREAM_SCHEMES)}, "
                                    f"got {scheme!r}")
        _positive_float("open_timeout_s", open_timeout_s)
        _positive_float("read_timeout_s", read_timeout_s)
        self.url = url
        self.open_timeout_s = float(open_timeout_s)
        self.read_timeout_s = float(read_timeout_s)

    def describe(self) -> str:
        return redact_url(self.url)

    def _open_capture(self) -> cv2.VideoCapture:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, round(self.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, round(self.read_timeout_s * 1000)]
        return cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)


class WebcamSource(CaptureSource):
    """A local camera by device index (`/dev/video<index>` on Linux), with wall-clock timestamps.

    `width`, `height` and `fps` are requests to the driver (it may pick the nearest mode it has);
    `backend` is an OpenCV `CAP_*` API id (default: let OpenCV choose, V4L2 on Linux).
    """

    def __init__(self, index: int, camera_id: str, stride: int = 1, target_fps: float | None = None,
                 width: int | None = None, height: int | None = None, fps: float | None = None,
                 backend: int = cv2.CAP_ANY, max_frames: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(camera_id, stride, target_fps, max_frames, "wall", clock)
        _positive_int("index", index, 0)
        _positive_int("width", width, 1, allow_none=True)
        _positive_int("height", height, 1, allow_none=True)
        _positive_float("fps", fps, allow_none=True)
        self.index = index
        self.width, self.height, self.requested_fps = width, height, fps
        self.backend = backend

    def describe(self) -> str:
        return f"webcam:{self.index}"

    def _open_capture(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.index, self.backend)
        if cap.isOpened():
            for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, self.width), (cv2.CAP_PROP_FRAME_HEIGHT, self.height),
                                (cv2.CAP_PROP_FPS, self.requested_fps)):
                if value is not None:
                    cap.set(prop, float(value))
        return cap


@dataclass(frozen=True)
class SourceGap:
    """A time without frames: the source dropped (or never opened) and was being reconnected."""

    start_s: float  # seconds since the ReconnectingSource started, on its clock
    started_at: float  # epoch seconds, for logs and reports
    duration_s: float
    attempts: int  # connection attempts it took (the successful one included)
    error: str  # the error that began it


ReconnectState = Literal["idle", "connecting", "running", "reconnecting", "finished", "failed", "closed"]


class ReconnectingSource:
    """Wraps a live source: reopens it with exponential backoff when it drops or fails to open.

    Args:
        factory: makes a fresh source (called for every connection attempt; it should not connect
            itself — iterating the source does). It or its iterator raising `SourceUnavailableError`
            means "try again later"; any other error ends this source.
        camera_id: the camera; frames are re-labelled with it.
        initial_backoff_s, max_backoff_s: the wait before retry k is
            min(max_backoff_s, initial_backoff_s · 2^(k-1)), less up to `jitter` of it at random.
        max_attempts: consecutive failed attempts after which to give up with `SourceError`
            (None: never give up).
        sleep: how to wait (default: a wait that `close()` interrupts); tests pass a fake.
        clock: monotonic seconds, for timestamps and gap durations.
        description: what to call the source in messages (redacted); default: the source's URL.
        wall_clock: timestamps in Unix seconds (the wall-clock time of the first attempt plus `clock` time
            since), which a live camera's sightings carry; default: seconds since the first attempt.

    Frame indices and timestamps continue across reconnects: a frame's timestamp is the time the
    connection opened plus the inner source's timestamp, and never goes backwards. A source that
    ends normally (a file, a finite stream) is finished and not reopened. Gaps are kept in `gaps`.
    `close()` is final: a closed ReconnectingSource yields nothing more.
    """

    live = True

    def __init__(self, factory: Callable[[], Source], camera_id: str, initial_backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0, max_attempts: int | None = None, jitter: float = 0.1,
                 sleep: Callable[[float], object] | None = None, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, description: str | None = None, wall_clock: bool = False) -> None:
        if not callable(factory):
            raise InvalidInputError(f"factory: expected a callable that returns a source, got {factory!r}")
        _camera_id(camera_id)
        _positive_float("initial_backoff_s", initial_backoff_s)
        _positive_float("max_backoff_s", max_backoff_s)
        _positive_int("max_attempts", max_attempts, 1, allow_none=True)
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter < 1:
            raise InvalidInputError(f"jitter: expected a fraction in [0, 1), got {jitter!r}")
        self.factory = factory
        self.camera_id = camera_id
        self.initial_backoff_s = float(initial_backoff_s)
        self.max_backoff_s = max(float(max_backoff_s), self.initial_backoff_s)
        self.max_attempts = max_attempts
        self.jitter = float(jitter)
        self._stop = threading.Event()
        self._sleep = sleep if sleep is not None else self._stop.wait
        self._clock = clock
        self._rng = rng or random.Random()
        self.description = redact_url(description) if description else None
        self.wall_clock = wall_clock
        self.state: ReconnectState = "idle"
        self.gaps: list[SourceGap] = []
        self.attempts = 0  # connection attempts in all
        self.last_error: str | None = None
        self._outage_since: float | None = None  # epoch seconds: when the current outage began

    @property
    def gap_since(self) -> float | None:
        """Epoch seconds when the current outage began (its last frame, or its first failed attempt);
        None while frames flow."""
        return self._outage_since

    def __repr__(self) -> str:
        return f"ReconnectingSource({self.description or self.factory!r}, camera_id={self.camera_id!r})"

    @property
    def total_gap_s(self) -> float:
        return sum(gap.duration_s for gap in self.gaps)

    def backoff_s(self, attempt: int) -> float:
        """The wait before retry number `attempt` (1-based) of one outage."""
        base = min(self.max_backoff_s, self.initial_backoff_s * 2.0 ** min(attempt - 1, 60))
        return base * (1.0 - self.jitter * self._rng.random())

    def _name(self, source: Source | None) -> str:
        if self.description:
            return self.description
        describe = getattr(source, "describe", None)
        if callable(describe):
            self.description = redact_url(str(describe()))
            return self.description
        return "its source" if source is None else type(source).__name__

    def __iter__(self) -> Iterator[Frame]:
        t0 = self._clock()
        epoch0 = time.time() if self.wall_clock else 0.0  # timestamp of t0: Unix seconds, or 0
        next_index, last_ts = 0, 0.0
        failures = waits = 0  # failed attempts and backoff waits in the current outage
        outage: tuple[float, float, str] | None = None  # (clock time, epoch time, error) when it began
        last_frame: tuple[float, float] | None = None  # (clock time, epoch time) of the last frame
        source: Source | None = None
        self.state = "connecting"
        while not self._stop.is_set():
            self.attempts += 1
            frames = 0
            try:
                source = self.factory()
                self._name(source)  # learn the description for messages
                opened_at = self._clock() - t0
                base = next_index
                for frame in source:
                    if outage is not None:
                        self._record_gap(outage, t0, failures + 1, source)
                        outage, failures, waits = None, 0, 0
                        self._outage_since = None
                    self.state = "running"
                    frames += 1
                    last_frame = (self._clock(), time.time())
                    last_ts = max(last_ts, epoch0 + opened_at + frame.timestamp_s)
                    next_index = base + frame.index + 1
                    yield Frame(self.camera_id, base + frame.index, last_ts, frame.image)
                    if self._stop.is_set():
                        break
                else:
                    self.state = "finished"
                    return
            except SourceUnavailableError as exc:
                error = str(exc)
            except Exception as exc:  # permanent: a corrupt file, a bad argument, a bug in the factory
                self.state, self.last_error = "failed", str(exc)
                raise
            finally:
                if source is not None:
                    source.close()
                    source = None
            if self._stop.is_set():
                break
            self.last_error = error
            if outage is None:  # a drop (it began with the last frame), or the very first attempt failed
                began = last_frame if frames and last_frame is not None else (self._clock(), time.time())
                outage = (*began, error)
                self._outage_since = began[1]
                logger.warning("%s; reconnecting with backoff", camera_message(self.camera_id, error))
            if not frames:
                failures += 1
            self.state = "reconnecting"
            if self.max_attempts is not None and failures >= self.max_attempts:
                self.state = "failed"
                waited = self._clock() - outage[0]
                raise SourceError(f"camera {self.camera_id!r}: gave up on {self._name(None)} after {failures} failed "
                                  f"connection attempt(s) over {waited:.1f} s; last error: "
                                  f"{without_camera(self.camera_id, error)}")
            waits += 1
            self._sleep(self.backoff_s(waits))
        self.state = "closed"

    def _record_gap(self, outage: tuple[float, float, str], t0: float, attempts: int, source: Source) -> None:
        began, began_epoch, error = outage
        gap = SourceGap(start_s=began - t0, started_at=began_epoch, duration_s=self._clock() - began,
                        attempts=attempts, error=error)
        self.gaps.append(gap)
        logger.warning("camera %r: %s is back after a %.1f s gap (began %s, %d attempt(s))", self.camera_id,
                       self._name(source), gap.duration_s,
                       datetime.fromtimestamp(began_epoch, UTC).isoformat(timespec="seconds"), attempts)

    def close(self) -> None:
        """Stop for good: interrupts a backoff wait; the iterating thread closes the inner source.

        Thread-safe; takes effect even if called before iteration starts.
        """
        self._stop.set()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
