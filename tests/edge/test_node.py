"""EdgeNode and `crossview edge run` / `edge replay` with a hub, on fakes (no models): a colour-blob
"tracker", a mean-colour "embedder", generated videos and a real gRPC test hub on 127.0.0.1.

The same flows on the real models and sample videos are in tests/integration/test_edge_to_hub.py.
No timing assertions: every wait is on a condition, with a generous timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from crossview_testing import hub_fixture
from crossview_testing.edge_fakes import FP, FPS, MIN_P_SAME, BlobTracker, ColourEmbedder, write_video

import edge.detect_track
import models.embed
from crossview.config import ConfigError, load_config
from crossview.edge_command import EdgeConfig, ReplayConfig, replay_command, run_command
from edge.gallery import MemoryGallery
from edge.node import EdgeNode, RetentionPolicy
from edge.pipeline import TrackletSettings
from edge.shortlist import ShortListPolicy
from edge.sources.frames import Frame
from edge.uplink.settings import HubLinkSettings
from models.errors import InvalidInputError
from protos.crossview.v1 import edge_to_hub_pb2

TOKEN = "node-token"
RED, GREEN, BLUE = (40, 40, 230), (40, 230, 40), (230, 40, 40)


def blob(i: int, colour: tuple[int, int, int]) -> np.ndarray:
    image = np.zeros((120, 160, 3), np.uint8)
    image[20:80, 10 + 3 * (i % 40):30 + 3 * (i % 40)] = colour
    return image


class EndlessCamera:
    """A live source: one red person walking for ever (until closed), a frame every few milliseconds."""

    live = True

    def __init__(self, camera_id: str) -> None:
        self.camera_id = camera_id
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[Frame]:
        i = 0
        while not self.closed.is_set():
            yield Frame(self.camera_id, i, i / FPS, blob(i, RED))
            i += 1
            time.sleep(0.005)

    def close(self) -> None:
        self.closed.set()


def gallery() -> MemoryGallery:
    g = MemoryGallery(FP, 3, rerank=False)
    for name, colour in {"red": RED, "green": GREEN}.items():
        g.add(name, ColourEmbedder().embed([np.full((8, 4, 3), colour, np.uint8)]))
    return g


def wait_until(condition: Any, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


@pytest.fixture
def hub() -> Iterator[Any]:
    h = hub_fixture.make_hub(token=TOKEN)
    yield h
    h.stop()


def make_node(workdir: Path, cameras: list[str], hub: Any | None = None, **kwargs: Any) -> EdgeNode:
    hub_args: dict[str, Any] = {} if hub is None else {
        "hub": HubLinkSettings(hub.address, TOKEN, heartbeat_s=0.1, initial_backoff_s=0.05, max_backoff_s=0.3)}
    return EdgeNode(workdir, "edge-n", cameras, tracker=BlobTracker(), embedder=ColourEmbedder(), gallery=gallery(),
                    policy=ShortListPolicy(top_k=1, min_p_same=MIN_P_SAME), embed_nice=None,
                    tracklets=TrackletSettings(close_after_s=0.5, min_quality=0.0), **hub_args, **kwargs)


def candidates(hub: Any) -> list[tuple[str, str]]:
    return sorted((s.camera_id, s.candidates[0].identity_id) for s in hub.short_lists.values())


# ---------------------------------------------------------------- EdgeNode

def test_without_a_hub_the_node_fills_the_outbox(tmp_path: Path) -> None:
    video = write_video(tmp_path / "a.mp4", [RED, GREEN])
    with make_node(tmp_path / "w", ["cam"]) as node:
        assert node.link is None and not node.wait_connected(0.01)
        report = node.replay([video], ["cam"], progress=False)
        assert report.ok and node.stats().link is None
        assert not node.close()  # short lists wait in the outbox for a hub
    assert node.outbox_depth_at_close == 2
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == [
        "edge.db", "edge.db.crops", "gallery.db", "outbox.db"]


def test_retention_runs_in_the_background_and_keeps_the_store_consistent(tmp_path: Path) -> None:
    video = write_video(tmp_path / "a.mp4", [RED, GREEN, BLUE])
    with make_node(tmp_path / "w", ["cam"], retention=RetentionPolicy(max_total_bytes=0, every_s=0.05)) as node:
        report = node.replay([video], ["cam"], progress=False)
        assert report.ok and node.stats().pipeline.worker.embedded == 3
        wait_until(lambda: node.store.stats().tracklets == 0, what="retention to empty the store")
        assert node.store.stats().crop_files == 0
        assert node.outbox.depth() == 2  # red and green are in the gallery; retention never touches the outbox
    with pytest.raises(InvalidInputError, match="every_s"):
        RetentionPolicy(max_age_s=1.0, every_s=0)


def test_replay_with_a_hub_delivers_and_drains(tmp_path: Path, hub: Any) -> None:
    videos = [write_video(tmp_path / "a.mp4", [RED]), write_video(tmp_path / "b.mp4", [GREEN, RED])]
    with make_node(tmp_path / "w", ["a", "b"], hub) as node:
        node.start()
        assert node.wait_connected(20)
        node.replay(videos, ["a", "b"], progress=False)
        assert node.close(drain_timeout_s=30)
    assert candidates(hub) == [("a", "red"), ("b", "green"), ("b", "red")]
    assert [c.camera_id for c in hub.hellos[0].cameras] == ["a", "b"]
    final = node.stats()
    assert final.outbox_depth == 0 and final.link is not None and final.link.acked == 3


IN_CHILD = "CROSSVIEW_TEST_IN_CHILD"


def run_in_child(test_name: str) -> None:
    test = f"{Path(__file__).resolve()}::{test_name}"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                            env={**os.environ, IN_CHILD: "1"}, capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout[-3000:] + result.stderr[-2000:]


# The SIGTERM and SIGINT scenarios run in a fresh pytest process each: after the rest of the suite, threads left by
# earlier tests made this process die with SIGSEGV when the signal came (cause still open, see the closing
# note of stop 7); a real edge gets its SIGTERM in a process of its own anyway.
in_child_only = pytest.mark.skipif(os.environ.get(IN_CHILD) != "1", reason="run in its own process (run_in_child)")


@pytest.mark.parametrize("test_name", ["test_live_cameras_heartbeats_and_a_clean_stop_on_sigterm",
                                       "test_sigterm_interrupts_a_replay_which_a_rerun_resumes",
                                       "test_run_command_cameras_to_the_hub"])
def test_sigterm_scenarios_in_their_own_process(test_name: str) -> None:
    run_in_child(test_name)


@in_child_only
def test_live_cameras_heartbeats_and_a_clean_stop_on_sigterm(tmp_path: Path, hub: Any) -> None:
    video = write_video(tmp_path / "rec.mp4", [GREEN])
    with make_node(tmp_path / "w", ["live", "rec"], hub) as node, node.stop_on_signals():
        node.start()
        sources = [EndlessCamera("live"), hub_source(video, "rec")]

        def kill_when_busy() -> None:  # SIGTERM once the recorded camera has finished and heartbeats flow
            wait_until(lambda: hub.short_lists and any(
                c.camera_id == "live" and c.fps > 0 for b in hub.heartbeats for c in b.cameras), what="heartbeats")
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)  # as a shell kill, to the main thread

        killer = threading.Thread(target=kill_when_busy, daemon=True)
        killer.start()
        status = node.run_cameras(sources)  # returns on SIGTERM: the live camera never ends by itself
        killer.join(5)
        assert node.stopping and status["rec"].state == "finished" and status["live"].state == "stopped"
        assert sources[0].closed.is_set()
        assert node.close(drain_timeout_s=30)  # the live camera's open tracklet is closed and sent
    assert candidates(hub) == [("live", "red"), ("rec", "green")]


@in_child_only
def test_sigterm_interrupts_a_replay_which_a_rerun_resumes(tmp_path: Path) -> None:
    video = write_video(tmp_path / "a.mp4", [RED, GREEN, RED, GREEN])
    node = make_node(tmp_path / "w", ["cam"])
    with node.stop_on_signals():
        def kill_when_started() -> None:
            wait_until(lambda: node.pipeline.stats.frames > 20, what="frames")
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)  # as a shell kill, to the main thread

        threading.Thread(target=kill_when_started, daemon=True).start()
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            node.replay([video], ["cam"], realtime=True, speed=4.0, progress=False)
        node.close(flush=False)  # the open tracklet is dropped, not stored truncated
    assert 0 < node.outbox_depth_at_close < 4
    with make_node(tmp_path / "w", ["cam"]) as again:
        again.replay([video], ["cam"], progress=False)
        assert again.pipeline.stats.worker.reused >= 1  # resumed: what was stored is not redone
    assert again.outbox_depth_at_close == 4


def hub_source(video: Path, camera_id: str) -> Any:
    from edge.sources.files import VideoFileSource

    return VideoFileSource(video, camera_id)


# ---------------------------------------------------------------- configuration and commands

def test_edge_config_from_yaml_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("edge_id: e1\ncameras:\n  - {camera_id: gate, uri: rtsp://10.0.0.5/live, target_fps: 10}\n"
                    "  - {camera_id: lobby, uri: lobby.mp4, stride: 2}\nhub: {target: 'hub:7443', token: t}\n")
    cfg = load_config(EdgeConfig, path, ["hub.blur_faces=true", "min_p_same=0.2"])
    assert [(c.camera_id, c.stride, c.target_fps) for c in cfg.cameras] == [("gate", 1, 10.0), ("lobby", 2, None)]
    assert (cfg.hub.target, cfg.hub.token, cfg.hub.blur_faces, cfg.min_p_same) == ("hub:7443", "t", True, 0.2)
    assert (cfg.min_p_same, cfg.calibration) == (0.2, None)
    assert load_config(EdgeConfig, path, []).min_p_same == 0.05  # low by default: stage one is for recall
    with pytest.raises(ConfigError, match="unknown config key 'max_distance'"):  # a distance no longer decides
        load_config(EdgeConfig, path, ["max_distance=0.2"])
    with pytest.raises(ConfigError, match=r"min_p_same: expected a P\(same\) in \[0, 1\], got 1.5"):
        load_config(ReplayConfig, None, ["min_p_same=1.5"])
    replay = load_config(ReplayConfig, None, ["stride=2", "hub.target=127.0.0.1:1", "hub.drain_timeout_s=5"])
    assert (replay.stride, replay.hub.target, replay.hub.drain_timeout_s, replay.top_k) == (2, "127.0.0.1:1", 5.0, 5)


@pytest.mark.parametrize(("schema", "overrides", "error"), [
    (EdgeConfig, ["hub.tagret=x"], "did you mean 'hub.target'"),
    (EdgeConfig, ["cameras=[{camera_id: a}]"], "expected a camera_id and a uri"),
    (EdgeConfig, ["cameras=[{camera_id: a, uri: x}, {camera_id: a, uri: y}]"], "unique camera ids"),
    (EdgeConfig, ["cameras=[{camera_id: a, url: x}]"], "did you mean 'cameras[0].uri'"),
    (ReplayConfig, ["hub.drain_timeout_s=-1"], "hub.drain_timeout_s: expected >= 0"),
    (ReplayConfig, ["hub.private_key=k.pem"], "expected both (mutual TLS) or neither"),
    (ReplayConfig, ["stride=0"], "stride: expected >= 1"),
])
def test_bad_configuration_is_refused(schema: type, overrides: list[str], error: str) -> None:
    with pytest.raises(ConfigError, match=error.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        load_config(schema, None, overrides)


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands build their models by name; here they get the fakes."""
    monkeypatch.setattr(models.embed, "create_embedder", lambda *a, **k: ColourEmbedder())
    monkeypatch.setattr(edge.detect_track, "PersonTracker", lambda *a, **k: BlobTracker())


def gallery_dir(tmp_path: Path) -> Path:
    for name, colour in {"red": RED, "green": GREEN}.items():
        (tmp_path / "gallery" / name).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "gallery" / name / "1.png"), np.full((8, 4, 3), colour, np.uint8))
    return tmp_path / "gallery"


@pytest.mark.parametrize(("overrides", "error"), [
    ([], "cameras: expected at least one camera"),
    (["cameras=[{camera_id: a, uri: a.mp4}]", "hub.target=127.0.0.1:1"], "hub.token: expected the edge's token"),
    (["cameras=[{camera_id: a, uri: a.mp4}]", "hub.target=127.0.0.1:1", "hub.token=t",
      "hub.root_certificates=/nonexistent/ca.pem"], "hub.root_certificates: /nonexistent/ca.pem is not a file"),
])
def test_run_command_refuses_bad_setups(overrides: list[str], error: str, fake_models: None,
                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("CROSSVIEW_EDGE_TOKEN", raising=False)
    assert run_command(None, overrides) == 2
    assert error in capsys.readouterr().err


@in_child_only  # it Ctrl-C's its own process: after tests/cloud in the same process, SIGSEGV (see above)
def test_run_command_cameras_to_the_hub(tmp_path: Path, hub: Any, fake_models: None,
                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("CROSSVIEW_EDGE_TOKEN", TOKEN)  # the token from the environment
    write_video(tmp_path / "a.mp4", [RED])
    write_video(tmp_path / "b.mp4", [GREEN])
    config = tmp_path / "edge.yaml"
    config.write_text(f"edge_id: edge-cli\nworkdir: {tmp_path / 'w'}\ngallery_dir: {gallery_dir(tmp_path)}\n"
                      f"tracklets:\n  close_after_s: 0.5\n  min_quality: 0.0\nmin_p_same: {MIN_P_SAME}\ntop_k: 1\n"
                      f"cameras:\n  - {{camera_id: a, uri: {tmp_path / 'a.mp4'}}}\n"
                      f"  - {{camera_id: b, uri: {tmp_path / 'b.mp4'}, stride: 2}}\n"
                      f"hub: {{target: '{hub.address}', heartbeat_s: 0.2, drain_timeout_s: 30}}\n")
    finished = edge_to_hub_pb2.CAMERA_STATE_FINISHED

    def stop_once_served() -> None:
        """The files are done, both short lists acknowledged and the hub told so: then Ctrl-C, as an operator
        would (until then the edge serves searches)."""
        hub.wait_for(lambda h: len(h.accepted) == 2 and any(
            sorted((c.camera_id, c.state) for c in beat.cameras) == [("a", finished), ("b", finished)]
            for beat in h.heartbeats), timeout=120, what="both cameras finished and their short lists stored")
        os.kill(os.getpid(), signal.SIGINT)

    stopper = threading.Thread(target=stop_once_served, daemon=True)
    stopper.start()
    assert run_command(config, []) == 0, capsys.readouterr()
    stopper.join(10)
    out = capsys.readouterr().out
    assert out.count("finished") == 2 and "holds 0 unsent" in out and "2 acknowledged" in out
    assert candidates(hub) == [("a", "red"), ("b", "green")]


def test_replay_command_sends_to_the_hub_and_waits_for_the_outbox(tmp_path: Path, hub: Any, fake_models: None,
                                                                   capsys: pytest.CaptureFixture) -> None:
    video = write_video(tmp_path / "a.mp4", [RED, GREEN])
    overrides = [f"gallery_dir={gallery_dir(tmp_path)}", "tracklets.close_after_s=0.5", "tracklets.min_quality=0.0",
                 f"min_p_same={MIN_P_SAME}", "top_k=1", f"hub.target={hub.address}", f"hub.token={TOKEN}",
                 "hub.drain_timeout_s=30"]
    assert replay_command([video], ["cam"], overrides=overrides, workdir=tmp_path / "w", progress=False) == 0
    assert "holds 0 unsent" in capsys.readouterr().out
    assert candidates(hub) == [("cam", "green"), ("cam", "red")]
    keys = sorted(hub.short_lists)
    # replayed again: the same short lists, already acknowledged; the hub stores nothing twice
    assert replay_command([video], ["cam"], overrides=overrides, workdir=tmp_path / "w", progress=False) == 0
    assert sorted(hub.accepted) == keys and all(k.startswith("shortlist/edge/") for k in keys)
    assert all(isinstance(m, edge_to_hub_pb2.ShortList) for m in hub.short_lists.values())


def test_replay_command_with_the_hub_down_keeps_the_outbox(tmp_path: Path, fake_models: None,
                                                            capsys: pytest.CaptureFixture) -> None:
    hub = hub_fixture.make_hub(token=TOKEN)
    address = hub.address
    hub.stop()  # nobody listens there now
    video = write_video(tmp_path / "a.mp4", [RED])
    code = replay_command([video], ["cam"], workdir=tmp_path / "w", progress=False, overrides=[
        f"gallery_dir={gallery_dir(tmp_path)}", "tracklets.close_after_s=0.5", "tracklets.min_quality=0.0",
        f"min_p_same={MIN_P_SAME}",
        f"hub.target={address}", f"hub.token={TOKEN}", "hub.connect_timeout_s=0.5", "hub.drain_timeout_s=0.5"])
    assert code == 1 and "holds 1 unsent" in capsys.readouterr().out
