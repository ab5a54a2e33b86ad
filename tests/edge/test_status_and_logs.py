"""What an edge says about itself (issue #10): recent frame rates, camera states and when a gap began,
carried by heartbeats to a real gRPC test hub; and its logs: the camera named once, FFmpeg's and OpenCV's
own lines through logging, "connected to hub ..., gallery vN (K identities)", counts that add up.

No timing assertions: waits poll a condition with a generous deadline; clocks are fakes where a rate or
a threshold is checked.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from crossview_testing import hub_fixture

from edge.embed_worker import SHORT_LIST_KIND, UplinkSettings, short_list_entry
from edge.gallery import EdgeGallery
from edge.sources.camera_health import FrameRateWindow, GapWatch
from edge.sources.cameras import CameraRunner, CameraStatus
from edge.sources.files import SourceUnavailableError, camera_message, without_camera
from edge.sources.frames import Frame
from edge.sources.streams import ReconnectingSource
from edge.uplink.hub_link import CameraLoad, HubLink
from edge.uplink.outbox import Outbox
from edge.uplink.settings import HubLinkSettings
from models.types import Crop, Embeddings, Tracklet
from protos.codec import timestamp_to_seconds, vector_to_proto
from protos.crossview.v1 import edge_to_hub_pb2, hub_to_edge_pb2

FP, DIM, TOKEN = "status-test-model@1", 8, "test-token"


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def wait_until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# -- rates and gaps

def test_the_frame_rate_is_over_the_last_ten_seconds_not_a_lifetime() -> None:
    clock = FakeClock()
    rate = FrameRateWindow(window_s=10.0, clock=clock)
    assert rate.fps() == 0.0
    for _ in range(300):  # 30 s at 10 fps
        clock.now += 0.1
        rate.tick()
    assert rate.fps() == pytest.approx(10.0, abs=0.2)
    clock.now += 4.0  # 4 s without a frame: 6 s of the window still hold frames
    assert rate.fps() == pytest.approx(6.0, abs=0.2)
    clock.now += 7.0  # an outage longer than the window: none, whatever the camera did before
    assert rate.fps() == 0.0


def test_a_gap_is_a_few_frame_intervals_with_a_floor() -> None:
    clock, wall = FakeClock(), FakeClock(1_800_000_000.0)
    fast = GapWatch(no_frames_after_s=2.0, clock=clock, wall=wall)
    for _ in range(20):  # 25 fps
        clock.now += 0.04
        wall.now += 0.04
        fast.frame()
    last = wall.now
    assert fast.threshold_s() == 2.0 and not fast.stalled()
    clock.now += 2.1
    assert fast.stalled() and fast.last_frame_at == last

    slow = GapWatch(no_frames_after_s=2.0, clock=clock)
    for _ in range(5):  # one frame a second: silence between two frames is no gap
        clock.now += 1.0
        slow.frame()
    clock.now += 3.0
    assert slow.threshold_s() == pytest.approx(4.0) and not slow.stalled()
    clock.now += 1.5
    assert slow.stalled()


class StallingCamera:
    """A live source: frames until `stall` is set, none while it is, frames again once it is cleared."""

    live = True

    def __init__(self) -> None:
        self.camera_id = "gate"
        self.stall = threading.Event()
        self.closed = threading.Event()
        self.stalled_after = threading.Event()  # set once it has stopped sending
        self.last_frame_wall = 0.0

    def __iter__(self) -> Iterator[Frame]:
        i = 0
        while not self.closed.is_set():
            if self.stall.is_set():
                self.stalled_after.set()
                time.sleep(0.01)
                continue
            self.last_frame_wall = time.time()
            yield Frame(self.camera_id, i, i / 50, np.zeros((8, 8, 3), np.uint8))
            i += 1
            time.sleep(0.02)

    def close(self) -> None:
        self.closed.set()


def test_a_camera_without_frames_is_declared_at_once_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    camera = StallingCamera()
    changes: list[CameraStatus] = []
    runner = CameraRunner([camera], no_frames_after_s=0.3, on_change=changes.append)
    consumed = threading.Thread(target=lambda: [None for _ in runner], daemon=True)
    with caplog.at_level(logging.INFO, logger="edge.sources.cameras"):
        consumed.start()
        wait_until(lambda: runner.status()["gate"].state == "running" and runner.status()["gate"].fps > 0,
                   "frames")
        camera.stall.set()
        assert camera.stalled_after.wait(30)
        last_frame = camera.last_frame_wall
        wait_until(lambda: runner.status()["gate"].state == "no_frames", "the gap to be declared")
        status = runner.status()["gate"]
        assert status.gap_since == pytest.approx(last_frame, abs=0.05)  # the gap began with the last frame
        wait_until(lambda: any(c.state == "no_frames" for c in changes), "the change to be reported")
        camera.stall.clear()
        wait_until(lambda: runner.status()["gate"].state == "running", "frames again")
        wait_until(lambda: any("frames again" in r.getMessage() for r in caplog.records), "the resumption logged")
        runner.stop()
    consumed.join(10)
    gaps = [r.getMessage() for r in caplog.records if "no frames since" in r.getMessage()]
    assert len(gaps) == 1 and gaps[0].startswith("camera 'gate': no frames since ")
    assert [c.state for c in changes][:3] == ["running", "no_frames", "running"]


def test_a_drop_is_logged_naming_the_camera_once_and_its_gap_begins_at_the_last_frame(
        caplog: pytest.LogCaptureFixture) -> None:
    seen: list[float] = []

    class Drops:
        camera_id = "room"

        def __iter__(self) -> Iterator[Frame]:
            for i in range(2):
                yield Frame("room", i, i / 10, np.zeros((4, 4, 3), np.uint8))
            raise SourceUnavailableError("camera 'room': rtsp://***@cam/live stopped sending frames after 2")

        def close(self) -> None:
            pass

    source: ReconnectingSource

    def sleep(_seconds: float) -> None:
        source.close()

    source = ReconnectingSource(Drops, "room", sleep=sleep)
    with caplog.at_level(logging.WARNING):
        for _ in source:
            seen.append(time.time())
    assert len(seen) == 2 and source.gap_since is not None and source.gap_since <= seen[-1]
    (line,) = [r.getMessage() for r in caplog.records if "reconnecting" in r.getMessage()]
    assert line == "camera 'room': rtsp://***@cam/live stopped sending frames after 2; reconnecting with backoff"
    assert camera_message("room", "camera 'room': x") == camera_message("room", "x") == "camera 'room': x"
    assert without_camera("room", "camera 'room': x") == "x"


# -- heartbeats and the link's log

@pytest.fixture
def hub() -> Iterator[hub_fixture.HubFixture]:
    h = hub_fixture.make_hub(token=TOKEN)
    yield h
    h.stop()


@pytest.fixture
def link_parts(tmp_path: Path) -> Iterator[tuple[EdgeGallery, Outbox]]:
    gallery, outbox = EdgeGallery(tmp_path / "gallery.db", FP, DIM, k1=4, k2=2), Outbox(tmp_path / "outbox.db")
    yield gallery, outbox
    gallery.close()
    outbox.close()


def test_heartbeats_carry_states_and_the_link_says_when_it_is_connected_and_synced(
        hub: hub_fixture.HubFixture, link_parts: tuple[EdgeGallery, Outbox], caplog: pytest.LogCaptureFixture) -> None:
    gallery, outbox = link_parts
    vectors = np.random.default_rng(0).normal(size=(2, DIM)).astype(np.float32)
    hub.push(gallery_delta=hub_to_edge_pb2.GalleryDelta(from_version=0, to_version=3, upserts=[
        hub_to_edge_pb2.IdentityUpsert(identity_id=f"id-{i}", vectors=[vector_to_proto(vectors[i:i + 1], FP)])
        for i in range(2)]))
    loads = [CameraLoad("gate", 7.5, state="no_frames", gap_since=1_800_000_000.5), CameraLoad("lobby", 0.0)]
    link = HubLink(HubLinkSettings(hub.address, TOKEN, heartbeat_s=60.0), "edge-1", ["gate", "lobby"], FP, gallery,
                   outbox, camera_stats=lambda: loads)
    with caplog.at_level(logging.INFO, logger="edge.uplink.hub_link"):
        link.start()
        try:
            hub.wait_for(lambda h: len(h.heartbeats) == 1, what="the first heartbeat")
            link.heartbeat_soon()  # a camera changed: no waiting for the next interval (60 s)
            hub.wait_for(lambda h: len(h.heartbeats) == 2, what="a heartbeat on demand")
            wait_until(lambda: any("connected to hub" in r.getMessage() for r in caplog.records),
                       "the connected line")
        finally:
            link.stop()
    gate, lobby = hub.heartbeats[-1].cameras
    assert (gate.camera_id, gate.fps, gate.state) == ("gate", 7.5, edge_to_hub_pb2.CAMERA_STATE_NO_FRAMES)
    assert timestamp_to_seconds(gate.gap_since) == pytest.approx(1_800_000_000.5)
    assert lobby.state == edge_to_hub_pb2.CAMERA_STATE_UNSPECIFIED and not lobby.HasField("gap_since")
    connected = [r.getMessage() for r in caplog.records if "connected to hub" in r.getMessage()]
    assert connected == [f"connected to hub {hub.address}, gallery v3 (2 identities)"]


def test_link_counts_first_sends_and_resends_apart(hub: hub_fixture.HubFixture,
                                                   link_parts: tuple[EdgeGallery, Outbox]) -> None:
    gallery, outbox = link_parts
    image = np.full((64, 32, 3), 90, np.uint8)
    person = Tracklet("t1", "cam-a", 1, 10.0, 12.0, (Crop(image, "cam-a", 10.5),),
                      Embeddings(np.ones((1, DIM), np.float32), FP))
    link = HubLink(HubLinkSettings(hub.address, TOKEN, heartbeat_s=0.2, initial_backoff_s=0.05, max_backoff_s=0.2),
                   "edge-1", ["cam-a"], FP, gallery, outbox)
    key, payload = short_list_entry(person, [("someone", 0.1)], edge_id="edge-1", model_fingerprint=FP,
                                    gallery_version=gallery.version, uplink=UplinkSettings(),
                                    max_bytes=outbox.max_payload_bytes)  # as the embedding worker builds it
    outbox.put(SHORT_LIST_KIND, payload, key)
    hub.retry_once_keys.add(key)  # the hub says "retry" once
    link.start()
    try:
        wait_until(lambda: outbox.depth() == 0, "the short list acknowledged after one retry")
        stats = link.stats()
    finally:
        link.stop()
    assert (stats.sent, stats.short_lists_sent, stats.resent, stats.acked) == (1, 1, 1, 1)


# -- FFmpeg's and OpenCV's own output

NATIVE_SCRIPT = """
import logging, os, sys
import cv2
from edge.native_logs import restore_native_output, route_native_output
route_native_output()
logging.basicConfig(level=sys.argv[1], stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
os.write(2, b"[h264 @ 0x55d0c0] error while decoding MB 12 3\\nsomething else native\\n")
cv2.VideoCapture(sys.argv[2], cv2.CAP_FFMPEG)  # OpenCV's own warning about a file that is not a video
logging.getLogger("edge").warning("camera 'gate': a line of ours")
restore_native_output()
"""


@pytest.mark.parametrize("level", ["DEBUG", "INFO"])
def test_native_output_goes_through_logging_at_debug(level: str, tmp_path: Path) -> None:
    not_a_video = tmp_path / "x.mp4"
    not_a_video.write_bytes(b"not a video")
    done = subprocess.run([sys.executable, "-c", NATIVE_SCRIPT, level, str(not_a_video)], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert "WARNING edge: camera 'gate': a line of ours" in lines
    raw = [line for line in lines if line.startswith(("[h264", "[ WARN", "[ERROR", "something else"))]
    assert raw == []  # nothing printed past logging
    if level == "DEBUG":
        assert "DEBUG native.ffmpeg: [h264 @ 0x55d0c0] error while decoding MB 12 3" in lines
        assert "DEBUG native: something else native" in lines
        assert any(line.startswith("DEBUG native.ffmpeg: [mov,mp4,") for line in lines)  # FFmpeg's, about x.mp4
        assert any(line.startswith("DEBUG native.opencv: [ WARN") for line in lines)
    else:
        assert [line for line in lines if "native" in line] == []
