"""What FFmpeg, OpenCV and other native libraries print, routed through Python logging at debug level.

The edge decodes video with OpenCV's FFmpeg backend, and both print their own warnings straight to
the process's stderr (file descriptor 2), bypassing logging::

    [tcp @ 0x7fe2740054c0] Connection to tcp://127.0.0.1:8554?timeout=0 failed: Connection refused
    [ WARN:0@5.146] global cap.cpp:212 open VIDEOIO(FFMPEG): backend is generally available but ...

Neither can be given a Python callback through cv2 (``cv2.utils.logging`` only sets OpenCV's level;
FFmpeg's ``av_log_set_callback`` is not exposed), and the edge's own log line already says what went
wrong ("camera 'gate': cannot open rtsp://***@host/live ...; reconnecting with backoff"). So
`route_native_output()` points descriptor 2 at a pipe; a thread logs each line read from it at DEBUG
on the ``native.ffmpeg``, ``native.opencv`` or ``native`` logger (``log_level=DEBUG`` shows them),
while Python's `sys.stderr` (logging, tracebacks, progress bars) and `faulthandler` keep writing to
the original stderr through a duplicate of it, so a crash report is never swallowed.

Process-wide: call it once, at an entry point (the ``crossview edge`` commands), before logging is
configured; `restore_native_output()` undoes it.
"""

from __future__ import annotations

import faulthandler
import io
import logging
import os
import re
import sys
import threading
from typing import TextIO

_FFMPEG = re.compile(r"^\[[^\]@]+ @ (0x)?[0-9a-fA-F]+\]")  # [h264 @ 0x55d…], [mov,mp4,m4a,… @ 0x…]
_OPENCV = re.compile(r"^\[ ?(WARN|ERROR|INFO|DEBUG|FATAL|VERBOSE)[:\]]")

_lock = threading.Lock()
_state: dict[str, object] = {}


def logger_for(line: str) -> logging.Logger:
    """The logger a native line goes to, by who printed it."""
    if _FFMPEG.match(line):
        return logging.getLogger("native.ffmpeg")
    if _OPENCV.match(line):
        return logging.getLogger("native.opencv")
    return logging.getLogger("native")


def _pump(read_fd: int) -> None:
    pending = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except OSError:
            return
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            _emit(raw)
    if pending:
        _emit(pending)
    os.close(read_fd)


def _emit(raw: bytes) -> None:
    line = raw.decode("utf-8", errors="replace").rstrip("\r")
    if line.strip():
        logger_for(line).debug("%s", line)


def route_native_output() -> bool:
    """Send what native code writes to descriptor 2 through logging (DEBUG); False when already done or
    stderr is not a real descriptor."""
    with _lock:
        if _state:
            return False
        try:
            sys.stderr.flush()
            original = os.dup(2)
        except (OSError, AttributeError, ValueError):
            return False
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        old_stream = sys.stderr
        stream: TextIO = io.TextIOWrapper(io.FileIO(original, "w", closefd=False), encoding="utf-8",
                                          errors="backslashreplace", line_buffering=True)
        sys.stderr = stream
        for handler in logging.getLogger().handlers:  # never log into the pipe: each line would come back
            if isinstance(handler, logging.StreamHandler) and handler.stream is old_stream:
                handler.setStream(stream)
        faulthandler.enable(file=stream)
        thread = threading.Thread(target=_pump, args=(read_fd,), name="native-output", daemon=True)
        thread.start()
        _state.update(original=original, old_stream=old_stream, stream=stream, thread=thread)
        return True


def restore_native_output() -> None:
    """Undo `route_native_output()`: descriptor 2 and `sys.stderr` as they were (lines in flight are logged)."""
    with _lock:
        if not _state:
            return
        original, stream = int(_state["original"]), _state["stream"]  # type: ignore[call-overload]
        os.dup2(original, 2)  # closes the pipe's last writer: the thread reads to the end and stops
        thread = _state["thread"]
        assert isinstance(thread, threading.Thread)
        thread.join(5)
        old_stream = _state["old_stream"]
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is stream:
                handler.setStream(old_stream)  # type: ignore[arg-type]
        sys.stderr = old_stream  # type: ignore[assignment]
        faulthandler.enable(file=sys.stderr)
        assert isinstance(stream, io.TextIOWrapper)
        stream.flush()
        os.close(original)
        _state.clear()
