"""edge.sources.streams and the sampling parts of edge.sources.files: MJPEG over HTTP from a local server,
drops and reconnects, unreachable URLs, redaction, image folders, and target-FPS decimation.

Every server here listens on 127.0.0.1 only. Reconnect tests pass a fake `sleep` that also takes
the server down or brings it back, so outcomes never depend on timing.
"""

from __future__ import annotations

import functools
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
from crossview_testing.edge_fakes import write_grey_video

from edge.sources.files import FrameRateLimiter, ImageFolderSource, SourceError, SourceUnavailableError, VideoFileSource
from edge.sources.frames import Frame
from edge.sources.streams import ReconnectingSource, StreamSource, WebcamSource, redact_url
from models.errors import InvalidInputError

GREY_STEP = 12  # frame i of connection c is filled with grey level 100*(c-1) + GREY_STEP*i


class _MjpegHandler(BaseHTTPRequestHandler):
    server: _MjpegHTTPServer

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        with owner.lock:
            owner.connections += 1
            connection = owner.connections
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        for i in range(owner.frames_per_connection):
            level = min(255, 100 * (connection - 1) + GREY_STEP * i)
            ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), level, np.uint8))
            assert ok
            body = jpeg.tobytes()
            try:
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(body)
                                 + body + b"\r\n")
                self.wfile.flush()
            except OSError:
                return
        # returning closes the connection: the stream "drops" after its frames


class _MjpegHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: MjpegServer


class MjpegServer:
    """An MJPEG-over-HTTP camera on 127.0.0.1 that sends `frames_per_connection` frames per GET."""

    def __init__(self, frames_per_connection: int = 5) -> None:
        self.frames_per_connection = frames_per_connection
        self.connections = 0
        self.lock = threading.Lock()
        self.port = 0
        self._server: _MjpegHTTPServer | None = None

    def start(self) -> None:
        server = _MjpegHTTPServer(("127.0.0.1", self.port), _MjpegHandler)  # same port on a restart
        server.owner = self
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def url(self, credentials: str = "") -> str:
        return f"http://{credentials}127.0.0.1:{self.port}/cam.mjpg"


@pytest.fixture
def mjpeg() -> Iterator[MjpegServer]:
    server = MjpegServer()
    server.start()
    yield server
    server.stop()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _grey(frame: Frame) -> int:
    return round(float(frame.image.mean()))


def _no_secret_logged(caplog: pytest.LogCaptureFixture, secret: str) -> None:
    assert not [r.getMessage() for r in caplog.records if secret in r.getMessage()]


# --- redaction -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "expected"), [
    ("rtsp://admin:s3cret@10.0.0.5:554/live", "rtsp://***@10.0.0.5:554/live"),
    ("rtsp://admin:p@ss@10.0.0.5/live", "rtsp://***@10.0.0.5/live"),  # an unescaped '@' in the password
    ("http://user@cam.local/video.mjpg", "http://***@cam.local/video.mjpg"),
    ("https://cam.local/stream?user=a&password=hunter2&fps=5", "https://cam.local/stream?user=a&password=***&fps=5"),
    ("http://cam.local/s?token=abc", "http://cam.local/s?token=***"),
    ("rtsp://10.0.0.5/live", "rtsp://10.0.0.5/live"),
    ("http://cam.local/a@b", "http://cam.local/a@b"),  # an '@' in the path is no credential
])
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


# --- StreamSource over MJPEG/HTTP ------------------------------------------------------------------

def test_stream_source_reads_mjpeg_then_reports_the_drop(mjpeg: MjpegServer, caplog: pytest.LogCaptureFixture) -> None:
    source = StreamSource(mjpeg.url("viewer:hunter2@"), "gate", read_timeout_s=5)
    assert "hunter2" not in repr(source)
    frames: list[Frame] = []
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceUnavailableError) as info:
        frames.extend(source)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert [_grey(f) for f in frames] == pytest.approx([GREY_STEP * i for i in range(5)], abs=2)
    assert all(f.camera_id == "gate" and f.image.shape == (48, 64, 3) for f in frames)
    stamps = [f.timestamp_s for f in frames]
    assert stamps == sorted(stamps)  # wall clock since the connection opened
    message = str(info.value)
    assert "camera 'gate'" in message and "stopped sending frames after 5" in message
    assert f"http://***@127.0.0.1:{mjpeg.port}/cam.mjpg" in message and "hunter2" not in message
    _no_secret_logged(caplog, "hunter2")


def test_stream_source_stride_and_target_fps_on_stream_times() -> None:
    server = MjpegServer(frames_per_connection=20)
    server.start()
    try:
        strided = []
        with pytest.raises(SourceUnavailableError):
            strided.extend(StreamSource(server.url(), "cam", stride=3))
        # MJPEG has no real times: FFmpeg stamps it at 25 fps (0, 0.04, ...), which makes this exact.
        limited = []
        with pytest.raises(SourceUnavailableError):
            limited.extend(StreamSource(server.url(), "cam", target_fps=5, timestamps="stream"))
        capped = list(StreamSource(server.url(), "cam", max_frames=4))  # ends normally, no drop
    finally:
        server.stop()
    assert [f.index for f in strided] == [0, 3, 6, 9, 12, 15, 18]
    assert [f.index for f in limited] == [0, 5, 10, 15]
    assert [f.timestamp_s for f in limited] == pytest.approx([0.0, 0.2, 0.4, 0.6])
    assert [f.index for f in capped] == [0, 1, 2, 3]


def test_video_file_over_http_ends_without_a_drop(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(12):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    calls = []
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/clip.avi"
        source = ReconnectingSource(lambda: calls.append(1) or StreamSource(url, "cam", timestamps="stream"), "cam",
                                    sleep=lambda s: pytest.fail("a finished stream must not be reopened"))
        frames = list(source)
    finally:
        server.shutdown()
        server.server_close()
    assert len(calls) == 1 and source.state == "finished" and source.gaps == []
    assert [f.index for f in frames] == list(range(12))
    assert [f.timestamp_s for f in frames] == pytest.approx([i / 10 for i in range(12)], abs=0.05)


# --- ReconnectingSource ----------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_server_drop_is_reconnected_and_the_gap_recorded(mjpeg: MjpegServer,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # first wait: the server is down; second: it is back
        sleeps.append(seconds)
        clock.now += seconds
        if len(sleeps) == 1:
            mjpeg.stop()
        elif len(sleeps) == 2:
            mjpeg.start()

    url = mjpeg.url("viewer:hunter2@")
    source = ReconnectingSource(lambda: StreamSource(url, "gate", read_timeout_s=5), "gate", initial_backoff_s=0.5,
                                jitter=0.0, sleep=sleep, clock=clock)
    with caplog.at_level(logging.INFO):
        iterator = iter(source)
        frames = [next(iterator) for _ in range(10)]
        assert source.state == "running"
        source.close()
        iterator.close()
    assert [f.index for f in frames] == list(range(10))  # indices continue across the reconnect
    levels = [_grey(f) for f in frames]
    assert levels[:5] == pytest.approx([GREY_STEP * i for i in range(5)], abs=2)
    assert levels[5:] == pytest.approx([100 + GREY_STEP * i for i in range(5)], abs=2)  # second connection
    stamps = [f.timestamp_s for f in frames]
    assert stamps == sorted(stamps)
    assert stamps[5] >= 1.5  # the second connection opened after the 0.5 + 1.0 s of (fake) backoff
    assert sleeps == [0.5, 1.0]
    assert len(source.gaps) == 1
    gap = source.gaps[0]
    assert gap.attempts == 2 and gap.duration_s == pytest.approx(1.5) and gap.start_s == pytest.approx(0.0)
    assert "stopped sending frames" in gap.error and "hunter2" not in gap.error
    assert source.total_gap_s == pytest.approx(1.5)
    assert any("is back after a 1.5 s gap" in r.getMessage() and "2 attempt(s)" in r.getMessage()
               for r in caplog.records)
    _no_secret_logged(caplog, "hunter2")


def test_unreachable_rtsp_gives_up_with_a_clear_error(caplog: pytest.LogCaptureFixture) -> None:
    port = _closed_port()
    url = f"rtsp://admin:hunter2@127.0.0.1:{port}/x"
    sleeps: list[float] = []
    source = ReconnectingSource(lambda: StreamSource(url, "dock", open_timeout_s=2), "dock", initial_backoff_s=0.5,
                                max_backoff_s=1.0, max_attempts=4, jitter=0.0, sleep=sleeps.append)
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceError) as info:
        list(source)
    message = str(info.value)
    assert not isinstance(info.value, SourceUnavailableError)  # final: a runner must not retry it
    assert message.startswith("camera 'dock': gave up on ")
    assert f"rtsp://***@127.0.0.1:{port}/x" in message and "after 4 failed connection attempt(s)" in message
    assert "hunter2" not in message and "hunter2" not in repr(source)
    assert sleeps == [0.5, 1.0, 1.0]  # doubling, capped at max_backoff_s
    assert source.state == "failed" and source.attempts == 4 and source.gaps == []
    _no_secret_logged(caplog, "hunter2")


class _ListSource:
    """A fake source: yields `count` frames, then raises `error` (if any)."""

    def __init__(self, camera_id: str, count: int, error: Exception | None = None, live: bool = True) -> None:
        self.camera_id, self.count, self.error, self.live = camera_id, count, error, live
        self.closed = False

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.count):
            yield Frame(self.camera_id, i, i / 10, np.zeros((2, 2, 3), np.uint8))
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.closed = True


def test_file_source_is_not_reopened_and_permanent_errors_pass_through() -> None:
    made: list[_ListSource] = []

    def factory() -> _ListSource:
        made.append(_ListSource("cam", 3, live=False))
        return made[-1]

    source = ReconnectingSource(factory, "cam", sleep=lambda s: pytest.fail("must not wait"))
    assert [f.index for f in source] == [0, 1, 2]
    assert len(made) == 1 and made[0].closed and source.state == "finished"

    broken = ReconnectingSource(lambda: _ListSource("cam", 2, SourceError("camera 'cam': corrupt file")), "cam",
                                sleep=lambda s: pytest.fail("must not wait"))
    with pytest.raises(SourceError, match="corrupt file"):
        list(broken)
    assert broken.state == "failed" and broken.attempts == 1


def test_live_cameras_stamp_wall_clock_times() -> None:
    """wall_clock=True (what `edge run` opens live cameras with): Unix seconds, so the hub shows real times."""
    clock = FakeClock()
    before = time.time()
    source = ReconnectingSource(lambda: _ListSource("cam", 3, live=False), "cam", clock=clock, wall_clock=True)
    stamps = [f.timestamp_s for f in source]
    after = time.time()
    assert before <= stamps[0] <= after and stamps == pytest.approx([stamps[0] + i / 10 for i in range(3)])
    relative = ReconnectingSource(lambda: _ListSource("cam", 3, live=False), "cam", clock=FakeClock())
    assert [f.timestamp_s for f in relative] == pytest.approx([0.0, 0.1, 0.2])


def test_failed_first_opens_count_as_a_gap_and_close_interrupts_the_wait() -> None:
    outcomes = [SourceUnavailableError("refused"), SourceUnavailableError("refused"), None]
    clock = FakeClock()

    def factory() -> _ListSource:
        error = outcomes.pop(0)
        if error is not None:
            raise error
        return _ListSource("cam", 2, SourceUnavailableError("dropped"))

    def sleep(seconds: float) -> None:
        clock.now += seconds

    source = ReconnectingSource(factory, "cam", initial_backoff_s=1.0, jitter=0.0, sleep=sleep, clock=clock)
    iterator = iter(source)
    assert [next(iterator).index for _ in range(2)] == [0, 1]
    assert [(g.attempts, g.duration_s, g.error) for g in source.gaps] == [(3, 3.0, "refused")]
    iterator.close()

    # Now the fake drops and every factory call fails: the default sleep waits until close().
    outcomes.extend([SourceUnavailableError("refused")] * 1000)
    waiting = ReconnectingSource(factory, "cam", initial_backoff_s=60.0)
    thread = threading.Thread(target=lambda: list(waiting), daemon=True)
    thread.start()
    while waiting.state != "reconnecting":
        thread.join(0.01)
    waiting.close()
    thread.join(30)
    assert not thread.is_alive() and waiting.state == "closed"

    closed_early = ReconnectingSource(lambda: pytest.fail("a closed source must not connect"), "cam")
    closed_early.close()
    assert list(closed_early) == [] and closed_early.state == "closed"


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"url": "ftp://127.0.0.1/x"}, "expected a scheme in rtsp"),
    ({"url": "/videos/a.mp4"}, "expected a stream URL"),
    ({"url": "rtsp://u:hunter2@h/x", "stride": 0}, "stride: expected an integer >= 1"),
    ({"target_fps": 0}, "target_fps: expected a finite number > 0"),
    ({"read_timeout_s": -1}, "read_timeout_s"),
    ({"timestamps": "pts"}, "timestamps: expected 'wall' or 'stream'"),
    ({"camera_id": " "}, "camera_id"),
])
def test_stream_source_arguments(kwargs: dict, error: str) -> None:
    args = {"url": "rtsp://127.0.0.1/x", "camera_id": "cam"} | kwargs
    with pytest.raises(InvalidInputError, match=re.escape(error)) as info:
        StreamSource(**args)
    assert "hunter2" not in str(info.value)


def test_missing_webcam_is_unavailable() -> None:
    with pytest.raises(SourceUnavailableError, match=r"camera 'desk': cannot open webcam:99"):
        list(WebcamSource(99, "desk"))


# --- image folders -------------------------------------------------------------------------------

def _write_images(folder: Path, count: int) -> None:
    folder.mkdir(exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"frame{i + 1}.png"), np.full((24, 16, 3), 10 * i, np.uint8))


def test_image_folder_in_natural_order_skipping_unreadable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write_images(tmp_path, 12)  # frame1 ... frame12: natural order, not frame1, frame10, frame11, frame12, frame2
    (tmp_path / "frame5.png").write_bytes(b"not a png")  # index 4, unreadable: skipped, keeps its number
    (tmp_path / "notes.txt").write_text("ignored: no image suffix")
    with caplog.at_level(logging.WARNING, logger="edge.sources.files"):
        source = ImageFolderSource(tmp_path, "hall", fps=4)
        frames = list(source)
    assert len(source) == 12 and source.skipped == 1
    assert [f.index for f in frames] == [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11]
    assert [f.timestamp_s for f in frames] == pytest.approx([i / 4 for i in (0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11)])
    assert [int(f.image[0, 0, 0]) for f in frames] == [10 * i for i in (0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11)]
    assert any("frame5.png" in r.getMessage() and "'hall'" in r.getMessage() for r in caplog.records)

    assert [f.index for f in ImageFolderSource(tmp_path, "hall", fps=4, stride=4)] == [0, 8]  # 4 is unreadable
    # Index 4 is due at 1 fps but unreadable: the next readable one (5) takes its place; 8 stays on schedule.
    assert [f.index for f in ImageFolderSource(tmp_path, "hall", fps=4, target_fps=1)] == [0, 5, 8]
    matched = ImageFolderSource(tmp_path, "hall", pattern="frame1*.png")  # frame1, frame10, frame11, frame12
    assert [int(f.image[0, 0, 0]) for f in matched] == [0, 90, 100, 110] and len(matched) == 4
    assert [f.index for f in ImageFolderSource(tmp_path, "hall", max_frames=2)] == [0, 1]


@pytest.mark.parametrize(("setup", "error"), [
    ("missing", "folder not found"),
    ("file", "not a folder"),
    ("empty", "no files with an image suffix"),
    ("corrupt", "no readable image"),
])
def test_image_folder_errors(tmp_path: Path, setup: str, error: str) -> None:
    folder = tmp_path / "imgs"
    if setup == "file":
        folder.write_text("x")
    elif setup in ("empty", "corrupt"):
        folder.mkdir()
        if setup == "corrupt":
            (folder / "a.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(SourceError, match=rf"camera 'hall': .*{error}"):
        list(ImageFolderSource(folder, "hall"))


def test_image_folder_of_real_crops(data_dir: Path) -> None:
    folder = data_dir / "market1501_mini" / "query"
    if not folder.is_dir():
        pytest.skip(f"market1501_mini/query is not in CROSSVIEW_DATA ({data_dir})")
    names = sorted(p.name for p in folder.glob("*.jpg"))
    frames = list(ImageFolderSource(folder, "market", fps=2))
    assert len(frames) == len(names) > 0
    assert [f.index for f in frames] == list(range(len(names)))
    assert all(f.image.shape == (128, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    assert frames[-1].timestamp_s == pytest.approx((len(names) - 1) / 2)
    assert len(list(ImageFolderSource(folder, "market", fps=2, target_fps=0.5))) == (len(names) + 3) // 4


# --- target FPS ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("source_fps", "target_fps", "seconds", "expected"), [
    (25.0, 10.0, 2.0, 20),  # not every 3rd frame (= 17): the rate itself is approached
    (30.0, 10.0, 1.0, 10),
    (10.0, 30.0, 1.0, 10),  # slower than the target: everything is kept
    (23.976, 24.0, 2.0, 48),
    (30.0, None, 1.0, 30),
])
def test_frame_rate_limiter(source_fps: float, target_fps: float | None, seconds: float, expected: int) -> None:
    limiter = FrameRateLimiter(target_fps)
    kept = [i for i in range(round(source_fps * seconds)) if limiter.keep(i / source_fps)]
    assert len(kept) == expected
    assert kept[0] == 0


def test_frame_rate_limiter_lets_no_burst_through_after_a_gap() -> None:
    limiter = FrameRateLimiter(5.0)
    before = [t for t in np.arange(0, 1, 0.04) if limiter.keep(float(t))]
    after = [t for t in np.arange(10, 11, 0.04) if limiter.keep(float(t))]
    assert len(before) == 5 and len(after) == 5


def test_video_file_target_fps(tmp_path: Path) -> None:
    path = write_grey_video(tmp_path / "ten-fps.mp4")
    assert [f.index for f in VideoFileSource(path, "cam", target_fps=5)] == list(range(0, 30, 2))
    assert [f.index for f in VideoFileSource(path, "cam", target_fps=2.5)] == list(range(0, 30, 4))
    assert [f.index for f in VideoFileSource(path, "cam", stride=3, target_fps=5)] == list(range(0, 30, 3))
    with pytest.raises(InvalidInputError, match="target_fps"):
        VideoFileSource(path, "cam", target_fps=-1)
