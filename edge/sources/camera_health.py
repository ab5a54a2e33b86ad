"""Is a camera delivering frames, and how fast lately: what heartbeats and logs say about it.

    >>> rate = FrameRateWindow(window_s=10.0)
    >>> rate.tick(); ...; rate.fps()            # frames per second over the last 10 s (0 once they stop)
    >>> watch = GapWatch(no_frames_after_s=2.0)
    >>> watch.frame(); ...; watch.stalled()     # True once no frame came for max(2 s, 4 frame intervals)

A lifetime average hides an outage (a camera that delivered 30 fps for an hour and nothing for the
last minute still averages ~30 fps), so rates here are over a recent window. A gap is declared after a
few frame intervals without a frame, with a floor (`no_frames_after_s`) so a jittery stream is not
flagged; the interval is learnt from the frames themselves, so a 1 fps camera is not called silent
between two of its frames.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from models.errors import InvalidInputError

#: what a camera is doing (the wire's CameraState, lower case)
CameraState = Literal["starting", "running", "no_frames", "reconnecting", "finished", "failed", "stopped"]
CAMERA_STATES: tuple[str, ...] = ("starting", "running", "no_frames", "reconnecting", "finished", "failed", "stopped")

RECENT_WINDOW_S = 10.0
NO_FRAMES_AFTER_S = 2.0
INTERVALS_BEFORE_GAP = 4  # frame intervals without a frame before a gap is declared


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"{name}: expected a finite number > 0, got {value!r}")
    return float(value)


class FrameRateWindow:
    """Frames per second over the last `window_s` seconds of `clock` (thread-safe).

    Before `window_s` has passed since the first frame, the rate is over the time since that frame
    (at least one second, so the first few frames do not read as a burst).
    """

    def __init__(self, window_s: float = RECENT_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = _positive("window_s", window_s)
        self._clock = clock
        self._times: deque[float] = deque()
        self._first: float | None = None
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        with self._lock:
            if self._first is None:
                self._first = now
            self._times.append(now)
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()

    def fps(self, now: float | None = None) -> float:
        now = self._clock() if now is None else now
        with self._lock:
            self._trim(now)
            if not self._times or self._first is None:
                return 0.0
            span = min(self.window_s, max(now - self._first, 1.0))
            return len(self._times) / span


class GapWatch:
    """When did the last frame arrive, and is it overdue (a gap)? Thread-safe.

    Args:
        no_frames_after_s: the shortest silence called a gap.
        clock: monotonic seconds; `wall`: epoch seconds, for when a gap began.
    """

    def __init__(self, no_frames_after_s: float = NO_FRAMES_AFTER_S, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.no_frames_after_s = _positive("no_frames_after_s", no_frames_after_s)
        self._clock, self._wall = clock, wall
        self._lock = threading.Lock()
        self._last: float | None = None  # monotonic time of the last frame
        self._last_wall: float | None = None
        self._interval: float | None = None  # smoothed time between frames

    def frame(self) -> None:
        now, wall = self._clock(), self._wall()
        with self._lock:
            if self._last is not None:
                gap = now - self._last
                # a gap is not a frame interval: only learn from intervals below the threshold
                if gap < self.threshold_s():
                    self._interval = gap if self._interval is None else 0.9 * self._interval + 0.1 * gap
            self._last, self._last_wall = now, wall

    def threshold_s(self) -> float:
        """How long without a frame makes a gap: a few frame intervals, at least `no_frames_after_s`."""
        interval = self._interval or 0.0
        return max(self.no_frames_after_s, INTERVALS_BEFORE_GAP * interval)

    @property
    def last_frame_at(self) -> float | None:
        """Epoch seconds of the last frame; None before the first."""
        with self._lock:
            return self._last_wall

    def silent_for(self) -> float | None:
        """Seconds since the last frame; None before the first."""
        with self._lock:
            return None if self._last is None else self._clock() - self._last

    def stalled(self) -> bool:
        """True when frames have come before and none for longer than `threshold_s()`."""
        with self._lock:
            if self._last is None:
                return False
            return self._clock() - self._last > self.threshold_s()
