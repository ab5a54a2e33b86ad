"""Frame sources: where an edge's frames come from.

Every source is an iterable of `Frame`s for one camera (the `Source` protocol). This module has
the video-file source (OpenCV's FFmpeg backend: .mp4, .avi, .mkv, raw .264/.h264, ...). Live
sources (RTSP, webcam, image folders) implement the same protocol and add reconnects.

    >>> for frame in VideoFileSource("lobby.mp4", camera_id="lobby", stride=2):
    ...     print(frame.index, frame.timestamp_s, frame.image.shape)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

import cv2
import numpy as np

from edge.frames import Frame
from models.errors import CrossviewError, InvalidInputError

logger = logging.getLogger(__name__)

# Used when a container reports no usable frame rate (some raw streams); also what FFmpeg assumes.
DEFAULT_FPS = 25.0


class SourceError(CrossviewError):
    """A source cannot be opened or gives no frames; the message names the camera and the source."""


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


class VideoFileSource:
    """Frames of a video file, decoded with OpenCV.

    Args:
        path: the video file.
        camera_id: the camera these frames are attributed to.
        stride: yield every `stride`-th frame (the others are grabbed but not converted).
        max_frames: stop after yielding this many frames (None: to the end of the file).
        start_frame: skip the frames before this index.

    Timestamps come from the container's presentation times where it has them, else
    `index / fps` (raw .264 streams carry none). A file that cannot be opened raises `SourceError`
    here; one that gives no frame raises it from the iterator. A decode failure part-way through
    ends the iteration with a logged error: frames already yielded stay valid.
    """

    def __init__(self, path: str | Path, camera_id: str, stride: int = 1, max_frames: int | None = None,
                 start_frame: int = 0) -> None:
        if not isinstance(camera_id, str) or not camera_id.strip():
            raise InvalidInputError(f"camera_id: expected a non-empty string, got {camera_id!r}")
        _positive_int("stride", stride, 1)
        _positive_int("max_frames", max_frames, 1, allow_none=True)
        _positive_int("start_frame", start_frame, 0)
        self.path = Path(path)
        self.camera_id = camera_id
        self.stride = stride
        self.max_frames = max_frames
        self.start_frame = start_frame
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
                f"max_frames={self.max_frames}, start_frame={self.start_frame})")

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
        yielded = 0
        index = 0
        last_ts = 0.0
        while self.max_frames is None or yielded < self.max_frames:
            if self._cap is not cap:  # close() was called while iterating
                return
            wanted = index >= self.start_frame and (index - self.start_frame) % self.stride == 0
            try:
                if wanted:
                    ok, image = cap.read()
                else:
                    ok, image = cap.grab(), None
            except cv2.error as exc:
                logger.error("camera %r: decoding %s failed at frame %d (%s); ending this source",
                             self.camera_id, self.path, index, str(exc).strip())
                break
            if not ok:
                if self.frame_count is not None and 0 < index < self.frame_count:
                    logger.error("camera %r: %s ended at frame %d of the %d its header announces "
                                   "(truncated or corrupt file?)", self.camera_id, self.path, index,
                                   self.frame_count)
                break
            if wanted:
                if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 \
                        or image.dtype != np.uint8 or image.size == 0:
                    got = getattr(image, "shape", type(image).__name__)
                    logger.error("camera %r: %s gave an unusable frame %d (%s); ending this source",
                                 self.camera_id, self.path, index, got)
                    break
                last_ts = self._timestamp(cap, index, last_ts)
                yield Frame(self.camera_id, index, last_ts, image)
                yielded += 1
            index += 1
        if yielded == 0:
            where = f" from frame {self.start_frame}" if self.start_frame else ""
            raise SourceError(f"camera {self.camera_id!r}: {self.path} gave no frames{where} "
                              "(empty, corrupt, or not a video)")

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
