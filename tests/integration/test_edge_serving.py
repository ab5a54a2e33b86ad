"""Issue #10: an edge that has finished its files stays searchable, and the hub's view of edges is honest.

A real hub in this process (`cloud.running.RunningHub`, SQLite, the `reid` judge) and real edge processes
(``crossview edge replay --serve`` with the real detector and intel-0288, through `crossview.demo_edges`,
what `crossview demo` runs) on the first ~10 s of people-detection.264:

1. after its files have ended the edge keeps its link and answers a search from the hub with the person
   whose photo was asked for; SIGTERM stops it cleanly and the hub sees it go;
2. an edge that stops talking (SIGSTOP: its connection stays open) is marked disconnected within the
   hub's heartbeat timeout and connected again when it resumes; a SIGKILLed one is marked disconnected.
   While serving, its camera is reported "finished" with no frames per second.

Skipped without $CROSSVIEW_MODELS / $CROSSVIEW_DATA. No timing assertions: every wait polls a state
with a generous deadline.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud.api.views import edge_view
from cloud.running import RunningHub
from cloud.search import SearchQuery
from cloud.sessions import SessionLimits
from crossview.demo_edges import EdgeProcess

VIDEO = "people-detection.264"
EDGE_SETTINGS = ("stride=2", "max_frames=130", "tracklets.close_after_s=1.0", "hub.connect_timeout_s=120")


def wait_until(condition: Callable[[], Any], what: str, timeout_s: float = 180.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


@pytest.fixture(scope="module")
def video(models_dir: Path, data_dir: Path) -> Path:
    path = data_dir / "video" / VIDEO
    if not path.is_file():
        pytest.skip(f"sample video {path} is absent")
    return path


@pytest.fixture
def hub(tmp_path: Path, video: Path) -> Iterator[RunningHub]:
    # heartbeats every 0.5 s, silent for 4 s = disconnected: the timeout path in seconds, not half a minute
    limits = SessionLimits(heartbeat_interval_ms=500, heartbeat_timeout_s=4.0)
    with RunningHub(data_dir=tmp_path / "hub", api_port=None, limits=limits) as running:
        yield running


def serving_edge(hub: RunningHub, video: Path, workdir: Path, edge_id: str) -> EdgeProcess:
    edge = EdgeProcess(video, "cam-b", edge_id=edge_id, workdir=workdir, hub_address=hub.grpc_address,
                       token=hub.create_edge_token(edge_id), settings=EDGE_SETTINGS, serve=True)
    return edge.start()


def connected(hub: RunningHub, edge_id: str) -> bool:
    record = hub.hub.store.get_edge(edge_id)
    return record is not None and record.connected_hub_id is not None


def test_a_replayed_edge_answers_searches_until_sigterm(hub: RunningHub, video: Path, tmp_path: Path) -> None:
    edge = serving_edge(hub, video, tmp_path / "edge", "edge-s")
    try:
        summary = edge.wait_replayed(600)
        assert "ok" in summary and "holds 0 unsent" in summary, summary
        assert edge.running, "the edge exited after its files instead of serving"
        crops = sorted((tmp_path / "edge" / "edge.db.crops").rglob("*.jpg"))
        assert crops, "the replay stored no crops: nobody to search for"
        photo = crops[len(crops) // 2].read_bytes()

        outcome = hub.call(hub.hub.search.search(SearchQuery(photos=[photo]), deadline_s=120), timeout=300)
        assert outcome.edges_asked == ["edge-s"] and outcome.edges_answered == ["edge-s"], outcome
        assert outcome.hits and {h.camera_id for h in outcome.hits} == {"cam-b"}
        assert edge.running  # still serving after answering
    finally:
        code = edge.stop()
    assert code == 0  # SIGTERM while serving is a clean stop
    wait_until(lambda: not connected(hub, "edge-s"), "the hub to see the stopped edge go")


def test_a_silent_or_killed_edge_is_marked_disconnected(hub: RunningHub, video: Path, tmp_path: Path) -> None:
    edge = serving_edge(hub, video, tmp_path / "edge", "edge-k")
    try:
        edge.wait_replayed(600)
        store = hub.hub.store

        def camera() -> dict[str, Any] | None:
            view = edge_view(store.get_edge("edge-k"))
            return view["cameras"][0] if view["connected"] and view["cameras"] else None

        wait_until(lambda: (c := camera()) and c["status"] == "finished" and c["fps"] == 0.0,
                   "the serving edge's camera reported finished, with no frames a second")
        assert camera() == {"camera_id": "cam-b", "fps": 0.0, "status": "finished", "since_s": None}

        edge.send_signal(signal.SIGSTOP)  # alive, connection open, silent
        wait_until(lambda: not connected(hub, "edge-k"), "the silent edge to be marked disconnected")
        assert edge_view(store.get_edge("edge-k"))["cameras"][0]["status"] == "offline"
        edge.send_signal(signal.SIGCONT)
        wait_until(lambda: connected(hub, "edge-k"), "the resumed edge to reconnect")

        edge.send_signal(signal.SIGKILL)
        wait_until(lambda: not connected(hub, "edge-k"), "the killed edge to be marked disconnected")
        assert not edge.running
    finally:
        edge.stop()
