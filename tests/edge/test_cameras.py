"""edge.sources.cameras: camera specs, the scheme → source map, and CameraRunner's isolation of cameras.

The fault tests run a real sample video next to a camera that fails (an unreachable RTSP URL, a
truncated file) and check that the failure is reported for that camera only. Queue tests use fake
sources and wait for states, never for time, so their outcomes are exact.
"""

from __future__ import annotations

import functools
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.sources.cameras import SOURCE_CLASSES, CameraRunner, CameraSpec, open_source
from edge.sources.files import ImageFolderSource, SourceError, SourceUnavailableError, VideoFileSource
from edge.sources.frames import Frame
from edge.sources.streams import ReconnectingSource, StreamSource, WebcamSource
from models.errors import InvalidInputError

SHORT_VIDEO = "video/pedestrians__nandinib1999.mp4"  # 640x360, 188 frames
MOOV_AT_END = "video/pedestrians__amirhossein.mp4"  # its index comes after the media data
INDEX_FIRST = "video/one-by-one-person-detection.mp4"  # 1394 frames, index before the media data


def _sample(data_dir: Path, relpath: str) -> Path:
    path = data_dir / relpath
    if not path.is_file():
        pytest.skip(f"{relpath} is not in CROSSVIEW_DATA ({data_dir})")
    return path


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until(predicate: object, runner: CameraRunner) -> None:
    """Wait for a state, not for a time (the test's own timeout is the safety net)."""
    event = threading.Event()
    while not predicate(runner.status()):  # type: ignore[operator]
        event.wait(0.01)


# --- CameraSpec ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "kind", "error"), [
    ({"uri": "rtsp://admin:pw@10.0.0.5/live"}, "stream", None),
    ({"uri": "HTTPS://cam.local/video.mjpg"}, "stream", None),
    ({"uri": "webcam:0"}, "webcam", None),
    ({"uri": "webcam://2"}, "webcam", None),
    ({"uri": "recordings/lobby.mp4"}, "file", None),
    ({"uri": "file:///recordings/lobby.264"}, "file", None),
    ({"uri": "TMP"}, "folder", None),
    ({"uri": Path("a.mp4"), "stride": 3, "target_fps": 7.5, "tracker": "botsort"}, "file", None),
    ({"uri": "a.mp4", "tracker": "configs/my_tracker.yaml"}, "file", None),
    ({"camera_id": ""}, None, "camera_id: expected a non-empty printable string"),
    ({"camera_id": " gate"}, None, "camera_id"),
    ({"camera_id": "gate\n"}, None, "camera_id"),
    ({"uri": ""}, None, "uri: expected a path"),
    ({"uri": "ftp://user:hunter2@host/x"}, None, "unknown scheme 'ftp'"),
    ({"uri": "webcam:front"}, None, "expected webcam:<index>"),
    ({"stride": 0}, None, "stride: expected an integer >= 1"),
    ({"target_fps": 0.0}, None, "target_fps: expected a finite number > 0"),
    ({"fps": float("nan")}, None, "fps: expected a finite number > 0"),
    ({"tracker": "sort"}, None, "tracker: expected one of bytetrack, botsort"),
])
def test_camera_spec(tmp_path: Path, kwargs: dict, kind: str | None, error: str | None) -> None:
    if kwargs.get("uri") == "TMP":
        kwargs = kwargs | {"uri": str(tmp_path)}
    args = {"camera_id": "gate", "uri": "a.mp4"} | kwargs
    if error is None:
        spec = CameraSpec(**args)
        assert spec.kind == kind and spec.live == (kind in ("stream", "webcam"))
        assert isinstance(spec.uri, str)
    else:
        with pytest.raises(InvalidInputError, match=re.escape(error)) as info:
            CameraSpec(**args)
        assert "hunter2" not in str(info.value)


def test_spec_redacts_its_uri() -> None:
    spec = CameraSpec("gate", "rtsp://admin:hunter2@10.0.0.5/live")
    assert spec.display_uri == "rtsp://***@10.0.0.5/live"


# --- open_source -----------------------------------------------------------------------------------

def test_open_source_follows_the_scheme_map(tmp_path: Path) -> None:
    assert SOURCE_CLASSES["rtsp"] is StreamSource and SOURCE_CLASSES["webcam"] is WebcamSource
    assert SOURCE_CLASSES["file"] is VideoFileSource and SOURCE_CLASSES["folder"] is ImageFolderSource

    stream = open_source(CameraSpec("gate", "rtsp://admin:hunter2@127.0.0.1:1/x", target_fps=5))
    assert isinstance(stream, ReconnectingSource) and stream.live
    assert "hunter2" not in repr(stream) and stream.state == "idle"  # nothing connects before iteration
    raw = open_source(CameraSpec("gate", "http://127.0.0.1:1/x", stride=2), reconnect=False, read_timeout_s=3)
    assert isinstance(raw, StreamSource) and raw.stride == 2 and raw.read_timeout_s == 3

    cv2.imwrite(str(tmp_path / "0001.png"), np.zeros((8, 8, 3), np.uint8))
    folder = open_source(CameraSpec("hall", str(tmp_path), fps=5))
    assert isinstance(folder, ImageFolderSource) and folder.fps == 5 and not folder.live
    assert [f.timestamp_s for f in folder] == [0.0]

    with pytest.raises(SourceError, match=r"camera 'lobby': video file not found"):
        open_source(CameraSpec("lobby", str(tmp_path / "missing.mp4")))
    with pytest.raises(InvalidInputError, match="fps applies to image folders only"):
        open_source(CameraSpec("gate", "rtsp://127.0.0.1/x", fps=5))


# --- CameraRunner: real video next to failing cameras ----------------------------------------------

def test_unreachable_rtsp_fails_alone(data_dir: Path) -> None:
    video = _sample(data_dir, SHORT_VIDEO)
    expected = len(list(VideoFileSource(video, "street", stride=4)))
    url = f"rtsp://admin:hunter2@127.0.0.1:{_closed_port()}/x"
    opener = functools.partial(open_source, max_attempts=3, initial_backoff_s=0.01, open_timeout_s=2)
    specs = [CameraSpec("dock", url), CameraSpec("street", str(video), stride=4)]
    with CameraRunner(specs, queue_size=4, opener=opener) as runner:
        frames = list(runner)
        status = runner.status()
    assert len(frames) == expected and {f.camera_id for f in frames} == {"street"}
    assert [f.index for f in frames] == list(range(0, 4 * expected, 4))
    street, dock = status["street"], status["dock"]
    assert (street.state, street.frames, street.dropped, street.last_error) == ("finished", expected, 0, None)
    assert dock.state == "failed" and dock.frames == 0 and dock.live
    assert dock.last_error is not None and dock.last_error.startswith("camera 'dock': gave up on rtsp://***@127.0.0.1:")
    assert "after 3 failed connection attempt(s)" in dock.last_error and "hunter2" not in dock.last_error


def test_corrupt_and_truncated_files_fail_alone(data_dir: Path, tmp_path: Path) -> None:
    video = _sample(data_dir, SHORT_VIDEO)
    no_index = tmp_path / "no-index.mp4"
    no_index.write_bytes(_sample(data_dir, MOOV_AT_END).read_bytes()[:300_000])  # cannot even be opened
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(_sample(data_dir, INDEX_FIRST).read_bytes()[:150_000])  # opens, ends early
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video" * 100)
    specs = [CameraSpec("yard", str(no_index)), CameraSpec("hall", str(cut), stride=10),
             CameraSpec("roof", str(garbage)), CameraSpec("street", str(video), stride=8)]
    with CameraRunner(specs, queue_size=2) as runner:
        frames = list(runner)
        status = runner.status()
    assert status["street"].state == "finished" and status["street"].last_error is None
    assert sum(f.camera_id == "street" for f in frames) == status["street"].frames == len(range(0, 188, 8))
    assert status["yard"].state == "failed" and status["yard"].frames == 0
    assert re.match(r"camera 'yard': cannot open .*no-index\.mp4", status["yard"].last_error or "")
    assert status["roof"].state == "failed" and "camera 'roof'" in (status["roof"].last_error or "")
    hall = status["hall"]  # a truncated file is finished, with the reason it ended early
    assert hall.state == "finished" and 0 < hall.frames < 1394 // 10
    assert hall.last_error is not None and "truncated" in hall.last_error


# --- CameraRunner: queues, isolation, stop -----------------------------------------------------------

class FakeSource:
    """Yields `count` frames (None: until closed), then raises `error` if given."""

    def __init__(self, camera_id: str, count: int | None, live: bool, error: Exception | None = None) -> None:
        self.camera_id, self.count, self.live, self.error = camera_id, count, live, error
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[Frame]:
        i = 0
        while (self.count is None or i < self.count) and not self.closed.is_set():
            yield Frame(self.camera_id, i, i / 25, np.full((2, 2, 3), i % 256, np.uint8))
            i += 1
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.closed.set()


def test_live_camera_drops_oldest_and_recorded_camera_drops_nothing() -> None:
    live = FakeSource("live", 100, live=True)
    recorded = FakeSource("replay", 100, live=False)
    runner = CameraRunner([live, recorded], queue_size=4)
    runner.start()
    # Nobody consumes: the live camera runs to its end regardless, the recorded one waits for room.
    _wait_until(lambda s: s["live"].state == "finished" and s["replay"].queued == 4, runner)
    status = runner.status()
    assert (status["live"].frames, status["live"].dropped, status["live"].queued) == (100, 96, 4)
    assert status["replay"].state == "running" and status["replay"].dropped == 0
    frames = list(runner)
    runner.stop()
    assert [f.index for f in frames if f.camera_id == "live"] == [96, 97, 98, 99]  # the newest survive
    assert [f.index for f in frames if f.camera_id == "replay"] == list(range(100))
    final = runner.status()
    assert final["replay"].state == "finished" and final["replay"].frames == 100 and final["replay"].dropped == 0


def test_a_crashing_camera_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    cameras = [FakeSource("bad", 5, live=False, error=RuntimeError("decoder exploded")),
               FakeSource("good", 50, live=False)]
    with CameraRunner(cameras, queue_size=3) as runner:
        frames = list(runner)
        status = runner.status()
    assert [f.index for f in frames if f.camera_id == "good"] == list(range(50))
    assert [f.index for f in frames if f.camera_id == "bad"] == list(range(5))
    assert status["bad"].state == "failed" and status["bad"].last_error == "decoder exploded"
    assert status["good"].state == "finished"
    assert all(camera.closed.is_set() for camera in cameras)
    assert any("camera 'bad' failed: decoder exploded" in r.getMessage() for r in caplog.records)


def test_stop_joins_endless_cameras() -> None:
    cameras = [FakeSource("a", None, live=True), FakeSource("b", None, live=False)]
    runner = CameraRunner(cameras, queue_size=2)
    seen = set()
    for frame in runner:
        seen.add(frame.camera_id)
        if seen == {"a", "b"}:
            break
    assert runner.stop() is True
    assert {s.state for s in runner.status().values()} == {"stopped"}
    assert all(camera.closed.is_set() for camera in cameras)
    assert list(runner) == []  # a stopped runner yields nothing more


def test_runner_reports_reconnects_of_a_live_camera() -> None:
    attempts: list[int] = []
    release = threading.Event()

    def factory() -> FakeSource:  # 1st connection: 3 frames then a drop; 2nd: refused; 3rd: endless
        attempts.append(1)
        if len(attempts) == 1:
            return FakeSource("gate", 3, live=True, error=SourceUnavailableError("camera 'gate': dropped"))
        if len(attempts) == 2:
            raise SourceUnavailableError("camera 'gate': refused")
        return FakeSource("gate", None, live=True)

    source = ReconnectingSource(factory, "gate", initial_backoff_s=0.01, sleep=lambda s: release.wait(s))
    with CameraRunner([source], queue_size=8) as runner:
        for frame in runner:
            if frame.index >= 10:
                break
        status = runner.status()["gate"]
    assert status.gaps == 1 and status.state in ("running", "reconnecting") and len(attempts) == 3


def test_stop_interrupts_a_camera_that_retries_forever() -> None:
    spec = CameraSpec("dock", f"rtsp://127.0.0.1:{_closed_port()}/x")  # no max_attempts: retries forever
    opener = functools.partial(open_source, initial_backoff_s=30.0, open_timeout_s=2)
    runner = CameraRunner([spec], opener=opener)
    runner.start()
    _wait_until(lambda s: s["dock"].state == "reconnecting", runner)
    assert runner.stop() is True  # the 30 s backoff wait is interrupted
    status = runner.status()["dock"]
    assert status.state == "stopped" and "camera 'dock': cannot open rtsp://127.0.0.1:" in (status.last_error or "")


@pytest.mark.parametrize(("cameras", "error"), [
    ([], "expected at least one camera"),
    ([CameraSpec("a", "x.mp4"), CameraSpec("a", "y.mp4")], "camera ids must be unique: 'a'"),
    (["rtsp://host/x"], "expected CameraSpec or Source objects"),
])
def test_runner_arguments(cameras: list, error: str) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(error)):
        CameraRunner(cameras)
