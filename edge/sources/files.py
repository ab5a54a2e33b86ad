"""Frame sources: where an edge's frames come from.

Every source is an iterable of `Frame`s for one camera (the `Source` protocol). This module has
the sources that read recorded data: video files (OpenCV's FFmpeg backend: .mp4, .avi, .mkv, raw
.264/.h264, ...) and image folders. Live sources (RTSP/HTTP streams, webcams) and reconnects are in
`edge.sources.streams`; `edge.sources.cameras` maps a camera's URI to the right class and runs many cameras.

Every source takes a `stride` (keep every n-th frame) and a `target_fps` (drop frames, judged by
their timestamps, so the kept ones approach that rate). A source may say `live = True` (frames keep
coming and may be dropped under load) or `live = False` (recorded: nothing may be dropped).

    >>> for frame in VideoFileSource("lobby.mp4", camera_id="lobby", stride=2, target_fps=5):
    ...     print(frame.index, frame.timestamp_s, frame.image.shape)
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

import cv2
import numpy as np

from edge.sources.frames import Frame
from models.errors import CrossviewError, InvalidInputError

logger = logging.getLogger(__name__)

# Used when a container reports no usable frame rate (some raw streams); also what FFmpeg assumes.
DEFAULT_FPS = 25.0


# What an image folder source reads when no pattern is given.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"})


class SourceError(CrossviewError):
    """A source cannot be opened or gives no frames; the message names the camera and the source."""


class SourceUnavailableError(SourceError):
    """A live source cannot be reached now or stopped sending frames: worth reopening later.

    Every other `SourceError` is permanent (a corrupt file, a missing folder) and is not retried.
    """


@runtime_checkable
class Source(Protocol):
    """One camera's frames, in order. Iterating may block (live sources); `close()` frees the device."""

    camera_id: str

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


def _positive_int(name: str, value: int | None, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(f"{name}: expected an integer >= {minimum}, got {value!r}")


def _positive_float(name: str, value: float | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"{name}: expected a finite number > 0, got {value!r}")


def camera_message(camera_id: str, message: str) -> str:
    """`message` about camera `camera_id`, naming the camera once: errors raised here already start with
    ``camera 'x': ``, so a log line that adds the name would say it twice."""
    prefix = f"camera {camera_id!r}: "
    return message if message.startswith(prefix) else prefix + message


def without_camera(camera_id: str, message: str) -> str:
    """`message` without its leading ``camera 'x': `` (to put the name elsewhere in a line)."""
    return message.removeprefix(f"camera {camera_id!r}: ")


def _camera_id(camera_id: str) -> None:
    if not isinstance(camera_id, str) or not camera_id.strip():
        raise InvalidInputError(f"camera_id: expected a non-empty string, got {camera_id!r}")


class FrameRateLimiter:
    """Decides which frames to keep so that their rate approaches `target_fps`, judged by timestamps.

    The first frame is kept; after that a frame is kept once its timestamp reaches the next due time,
    which advances by 1/target_fps per kept frame (so 25 fps → 10 fps keeps 10 frames a second, not
    every third frame = 8.3). After a gap longer than a period the schedule restarts at the next
    kept frame instead of letting a burst through. A source slower than the target keeps everything.
    `target_fps=None` keeps every frame.
    """

    def __init__(self, target_fps: float | None) -> None:
        _positive_float("target_fps", target_fps, allow_none=True)
        self.target_fps = None if target_fps is None else float(target_fps)
        self.period = None if target_fps is None else 1.0 / float(target_fps)
        self._due: float | None = None

    def wants(self, timestamp_s: float) -> bool:
        """Would a frame at this time be kept? (Changes nothing: call `keep` once it is used.)"""
        # Timestamps are i/fps or rounded container times: allow 1 % of a period of float error.
        return self.period is None or self._due is None or timestamp_s >= self._due - 0.01 * self.period

    def keep(self, timestamp_s: float) -> bool:
        """Decide for a frame at this time; True means it is kept and counts towards the rate."""
        if not self.wants(timestamp_s):
            return False
        if self.period is None:
            return True
        due = timestamp_s if self._due is None else self._due
        due += self.period
        self._due = due if due > timestamp_s else timestamp_s + self.period
        return True

    def reset(self) -> None:
        self._due = None


class VideoFileSource:
    """Frames of a video file, decoded with OpenCV.

    Args:
        path: the video file.
        camera_id: the camera these frames are attributed to.
        stride: yield every `stride`-th frame (the others are grabbed but not converted).
        max_frames: stop after yielding this many frames (None: to the end of the file).
        start_frame: skip the frames before this index.
        target_fps: of the frames the stride leaves, keep only enough to approach this rate
            (judged by their timestamps; None: keep all). Frames dropped are not converted.

    Timestamps come from the container's presentation times where it has them, else
    `index / fps` (raw .264 streams carry none). A file that cannot be opened raises `SourceError`
    here; one that gives no frame raises it from the iterator. A decode failure part-way through
    ends the iteration with a logged error, also kept in `last_error`: frames already yielded stay valid.
    """

    live = False

    def __init__(self, path: str | Path, camera_id: str, stride: int = 1, max_frames: int | None = None,
                 start_frame: int = 0, target_fps: float | None = None) -> None:
        _camera_id(camera_id)
        _positive_int("stride", stride, 1)
        _positive_int("max_frames", max_frames, 1, allow_none=True)
        _positive_int("start_frame", start_frame, 0)
        _positive_float("target_fps", target_fps, allow_none=True)
        self.path = Path(path)
        self.camera_id = camera_id
        self.stride = stride
        self.max_frames = max_frames
        self.start_frame = start_frame
        self.target_fps = target_fps
        # Why the last iteration ended early (a decode error, a truncated file); None if it did not.
        self.last_error: str | None = None
        if not self.path.exists():
            raise SourceError(f"camera {camera_id!r}: video file not found: {self.path}")
        if not self.path.is_file():
            raise SourceError(f"camera {camera_id!r}: not a file: {self.path}")
        cap = self._open()
        try:
            fps = cap.get(cv2.CAP_PROP_FPS)
            count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
            self.width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
            self.height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        finally:
            cap.release()
        if not (math.isfinite(fps) and 0 < fps < 1000):
            logger.warning("camera %r: %s reports no usable frame rate (%s); assuming %.0f fps",
                           camera_id, self.path, fps, DEFAULT_FPS)
            fps = DEFAULT_FPS
        self.fps = float(fps)
        # Raw streams report nonsense (negative or huge) counts: None means "unknown".
        self.frame_count: int | None = int(count) if math.isfinite(count) and 0 < count < 1e9 else None
        self._cap: cv2.VideoCapture | None = None

    def __repr__(self) -> str:
        return (f"VideoFileSource({str(self.path)!r}, camera_id={self.camera_id!r}, stride={self.stride}, "
                f"max_frames={self.max_frames}, start_frame={self.start_frame}, target_fps={self.target_fps})")

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"camera {self.camera_id!r}: cannot open {self.path} as a video "
                "(corrupt, truncated, or a format OpenCV's FFmpeg backend cannot read)"
            )
        return cap

    def _timestamp(self, cap: cv2.VideoCapture, index: int, previous: float) -> float:
        """Container time of the frame just decoded, else index / fps; never goes backwards."""
        fallback = index / self.fps
        pos_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
        if math.isfinite(pos_ms) and (pos_ms > 0 or index == 0):
            seconds = pos_ms / 1000.0
            if seconds >= previous:
                return seconds
        return max(fallback, previous)

    def __iter__(self) -> Iterator[Frame]:
        cap = self._open()
        self._cap = cap
        try:
            yield from self._read(cap)
        finally:
            cap.release()
            if self._cap is cap:
                self._cap = None

    def _read(self, cap: cv2.VideoCapture) -> Iterator[Frame]:
        self.last_error = None
        limiter = FrameRateLimiter(self.target_fps)
        yielded = 0
        index = 0
        last_ts = 0.0
        while self.max_frames is None or yielded < self.max_frames:
            if self._cap is not cap:  # close() was called while iterating
                return
            wanted = index >= self.start_frame and (index - self.start_frame) % self.stride == 0
            image = None
            try:
                ok = cap.grab()
                if ok and wanted:
                    last_ts = self._timestamp(cap, index, last_ts)
                    wanted = limiter.keep(last_ts)
                    if wanted:
                        ok, image = cap.retrieve()
            except cv2.error as exc:
                self._fail(f"decoding {self.path} failed at frame {index} ({str(exc).strip()}); ending this source")
                break
            if not ok:
                if self.frame_count is not None and 0 < index < self.frame_count:
                    self._fail(f"{self.path} ended at frame {index} of the {self.frame_count} its header "
                               "announces (truncated or corrupt file?)")
                break
            if wanted:
                if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 \
                        or image.dtype != np.uint8 or image.size == 0:
                    got = getattr(image, "shape", type(image).__name__)
                    self._fail(f"{self.path} gave an unusable frame {index} ({got}); ending this source")
                    break
                yield Frame(self.camera_id, index, last_ts, image)
                yielded += 1
            index += 1
        if yielded == 0:
            where = f" from frame {self.start_frame}" if self.start_frame else ""
            raise SourceError(f"camera {self.camera_id!r}: {self.path} gave no frames{where} "
                              "(empty, corrupt, or not a video)")

    def _fail(self, message: str) -> None:
        self.last_error = message
        logger.error("camera %r: %s", self.camera_id, message)

    def close(self) -> None:
        """Release the file if an iteration is in progress (an abandoned iterator releases it too)."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _natural_key(path: Path) -> list[str | int]:
    """'frame2.jpg' sorts before 'frame10.jpg' (split parts alternate text, digits: types line up)."""
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(re.split(r"(\d+)", path.name))]


class ImageFolderSource:
    """Frames from the images of one folder, in natural name order (`2.jpg` before `10.jpg`).

    Args:
        folder: the folder (not searched recursively).
        camera_id: the camera these frames are attributed to.
        fps: the rate the images were taken at; frame i gets timestamp i / fps.
        pattern: a glob for the file names (e.g. "*.png"); None: every file with an image suffix.
        stride, target_fps, max_frames: as for `VideoFileSource`.

    `index` is the image's position in the sorted list, so skipped images keep their numbers. An
    image that cannot be decoded is skipped with a logged warning (counted in `skipped`); a folder
    with no readable image raises `SourceError`.
    """

    live = False

    def __init__(self, folder: str | Path, camera_id: str, fps: float = DEFAULT_FPS, pattern: str | None = None,
                 stride: int = 1, target_fps: float | None = None, max_frames: int | None = None) -> None:
        _camera_id(camera_id)
        _positive_float("fps", fps)
        _positive_int("stride", stride, 1)
        _positive_float("target_fps", target_fps, allow_none=True)
        _positive_int("max_frames", max_frames, 1, allow_none=True)
        if pattern is not None and (not isinstance(pattern, str) or not pattern or "/" in pattern):
            raise InvalidInputError(f"pattern: expected a file-name glob such as '*.jpg', got {pattern!r}")
        self.folder = Path(folder)
        self.camera_id = camera_id
        self.fps = float(fps)
        self.pattern = pattern
        self.stride = stride
        self.target_fps = target_fps
        self.max_frames = max_frames
        if not self.folder.is_dir():
            what = "not a folder" if self.folder.exists() else "folder not found"
            raise SourceError(f"camera {camera_id!r}: {what}: {self.folder}")
        candidates = self.folder.glob(pattern or "*")
        self.paths = sorted((p for p in candidates if p.is_file() and (pattern or p.suffix.lower() in IMAGE_SUFFIXES)),
                            key=_natural_key)
        if not self.paths:
            wanted = f"matching {pattern!r}" if pattern else "with an image suffix"
            raise SourceError(f"camera {camera_id!r}: no files {wanted} in {self.folder}")
        self.skipped = 0
        self._closed = False

    def __repr__(self) -> str:
        return (f"ImageFolderSource({str(self.folder)!r}, camera_id={self.camera_id!r}, fps={self.fps}, "
                f"pattern={self.pattern!r}, stride={self.stride}, target_fps={self.target_fps})")

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, path: Path) -> np.ndarray | None:
        try:
            data = np.fromfile(path, dtype=np.uint8)  # also reads non-ASCII paths, unlike cv2.imread
            image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        except (OSError, cv2.error) as exc:
            logger.warning("camera %r: skipping %s: cannot read it (%s)", self.camera_id, path, exc)
            return None
        if image is None or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
            logger.warning("camera %r: skipping %s: not a decodable image", self.camera_id, path)
            return None
        return image

    def __iter__(self) -> Iterator[Frame]:
        self._closed = False
        self.skipped = 0
        limiter = FrameRateLimiter(self.target_fps)
        yielded = 0
        for index, path in enumerate(self.paths):
            if self._closed or (self.max_frames is not None and yielded >= self.max_frames):
                return
            timestamp = index / self.fps
            if index % self.stride or not limiter.wants(timestamp):
                continue
            image = self._load(path)
            if image is None:  # the next readable image takes its place in the rate
                self.skipped += 1
                continue
            limiter.keep(timestamp)
            yield Frame(self.camera_id, index, timestamp, image)
            yielded += 1
        if yielded == 0:
            raise SourceError(f"camera {self.camera_id!r}: no readable image in {self.folder} "
                              f"({self.skipped} file(s) could not be decoded)")

    def close(self) -> None:
        """End an iteration in progress before its next image."""
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
