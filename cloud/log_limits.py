"""`RateLimitedLog`: log a repeated error at most once per interval per key, counting what it held back.

    limited = RateLimitedLog(logging.getLogger(__name__), interval_s=10.0)
    limited.error("accept", "socket.accept() failed: %s", exc)   # later calls within 10 s: counted only
    # the next line for "accept" ends with " (suppressed 11999 similar)"

A hostile client can make the hub fail the same way thousands of times a second (issue 12: 89 MB of
accept() tracebacks in 18 s); the log must still say what happened, once. Thread-safe.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

MAX_KEYS = 1024  # keys remembered; past this the oldest is forgotten (keys may carry client input)


class RateLimitedLog:
    """One line per `key` per `interval_s` on `logger`; `clock` for tests."""

    def __init__(self, logger: logging.Logger, *, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not interval_s >= 0:
            raise ValueError(f"interval_s: expected >= 0, got {interval_s}")
        self.logger, self.interval_s, self._clock = logger, interval_s, clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """None when `key` was logged within the interval (counted); else how many were suppressed since."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            self._last.pop(key, None)
            self._last[key] = now  # re-inserted: dict order is least recently logged first
            if len(self._last) > MAX_KEYS:
                oldest = next(iter(self._last))
                del self._last[oldest]
                self._suppressed.pop(oldest, None)
            return self._suppressed.pop(key, 0)

    def log(self, level: int, key: str, msg: str, *args: object, exc_info: BaseException | None = None) -> bool:
        """Log `msg % args` unless `key` was logged within the interval; whether it was logged.
        `exc_info` adds the traceback (only to the lines that are logged)."""
        suppressed = self.allow(key)
        if suppressed is None:
            return False
        if suppressed:
            msg = f"{msg} (suppressed {suppressed} similar)"
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def error(self, key: str, msg: str, *args: object, exc_info: BaseException | None = None) -> bool:
        return self.log(logging.ERROR, key, msg, *args, exc_info=exc_info)

    def warning(self, key: str, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, msg, *args)
