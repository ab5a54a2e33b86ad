"""Edge to hub, end to end, with the real detector and Re-ID model on the sample videos and a real gRPC
test hub on 127.0.0.1 (tests/crossview_testing/hub_fixture.py). Skipped without $CROSSVIEW_MODELS / $CROSSVIEW_DATA.

1. Two videos replayed as two cameras; the hub pushes a gallery (a person of one video plus CUHK03
   strangers) over the real sync path; a short list naming that person reaches the hub.
2. The hub goes down part-way through a replay and comes back: every short list arrives exactly once.
3. `crossview edge replay ... --set hub.target=...` killed with SIGKILL mid-replay and run again: the
   store is intact, the run resumes, and the hub has each short list exactly once across both runs.

No timing assertions: every wait is on a condition with a generous timeout.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest
from crossview_testing import hub_fixture
from crossview_testing.processes import sigkill_when

from edge.node import EdgeNode
from edge.pipeline import TrackletSettings
from edge.shortlist import ShortListPolicy
from edge.storage.store import TrackletStore
from edge.uplink.messages import short_list_key
from edge.uplink.settings import HubLinkSettings
from protos.codec import vector_to_proto
from protos.crossview.v1 import hub_to_edge_pb2

REPO = Path(__file__).resolve().parents[2]
TOKEN = "integration-token"
VIDEO_A, VIDEO_B, VIDEO_C = "one-by-one-person-detection.mp4", "people-detection.264", "pedestrians__nandinib1999.mp4"


def wait_until(condition: Any, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def samples(models_dir: Path, data_dir: Path) -> dict[str, Path]:
    videos = {name: data_dir / "video" / name for name in (VIDEO_A, VIDEO_B, VIDEO_C)}
    strangers = sorted((data_dir / "cuhk03_labeled" / "val").glob("*.jpg"))
    missing = [str(p) for p in videos.values() if not p.is_file()]
    if missing or len(strangers) < 20:
        pytest.skip(f"sample videos {missing} or 20 CUHK03 val crops are absent")
    return {**videos, "strangers": strangers[0].parent}


@pytest.fixture(scope="module")
def models(samples: dict[str, Path]) -> dict[str, Any]:
    from edge.detect_track import PersonTracker
    from models.embed import create_embedder

    return {"tracker": PersonTracker(), "embedder": create_embedder("reid/intel-0288", num_threads=1)}


@pytest.fixture
def hub() -> Iterator[Any]:
    h = hub_fixture.make_hub(token=TOKEN)
    yield h
    h.stop()


def stranger_upserts(samples: dict[str, Path], embedder: Any, n: int = 10) -> list[hub_to_edge_pb2.IdentityUpsert]:
    """`n` CUHK03 identities of two crops each: the rest of the gallery, so re-ranking has neighbours."""
    crops = sorted(samples["strangers"].glob("*.jpg"))[: 2 * n]
    return [hub_to_edge_pb2.IdentityUpsert(identity_id=f"cuhk03-{i // 2}", vectors=[vector_to_proto(
        embedder.embed([cv2.imread(str(f)) for f in crops[i:i + 2]]).vectors, embedder.fingerprint)])
        for i in range(0, len(crops), 2)]


def node(workdir: Path, cameras: list[str], models: dict[str, Any], hub: Any | None = None, **kwargs: Any
         ) -> EdgeNode:
    hub_args: dict[str, Any] = {} if hub is None else {
        "hub": HubLinkSettings(hub.address, TOKEN, heartbeat_s=0.5, initial_backoff_s=0.05, max_backoff_s=0.5)}
    return EdgeNode(workdir, "edge-int", cameras, tracker=models["tracker"], embedder=models["embedder"],
                    tracklets=TrackletSettings(close_after_s=0.5), policy=ShortListPolicy(3, min_p_same=0.0),
                    **hub_args, **kwargs)


def test_a_short_list_naming_a_gallery_person_reaches_the_hub(samples: dict[str, Path], models: dict[str, Any],
                                                              hub: Any, tmp_path: Path) -> None:
    embedder = models["embedder"]
    video_a, video_b = samples[VIDEO_A], samples[VIDEO_B]
    # enrolment: a first pass over camera A's video, no hub; the person is the tracklet with the most crops
    with node(tmp_path / "enrol", ["cam-a"], models) as first:
        first.replay([video_a], ["cam-a"], max_frames=200, progress=False)
        tracklet_ids, _ = first.store.vectors(embedder.fingerprint)
        assert tracklet_ids, "the enrolment pass found nobody"
        person = max((first.store.get_tracklet(t) for t in tracklet_ids), key=lambda r: len(r.crop_paths))
        crops = [cv2.imread(str(p)) for p in person.crop_paths]
    person_vectors = embedder.embed(crops)
    delta = hub_to_edge_pb2.GalleryDelta(from_version=0, to_version=1, upserts=[
        hub_to_edge_pb2.IdentityUpsert(identity_id="person-a", vectors=[
            vector_to_proto(person_vectors.vectors, embedder.fingerprint)]), *stranger_upserts(samples, embedder)])
    sequence = hub.push(gallery_delta=delta)

    with node(tmp_path / "edge", ["cam-a", "cam-b"], models, hub=hub) as edge:
        edge.start()
        assert edge.wait_connected(30)
        assert edge.wait_gallery(30) and edge.gallery.version == 1  # the real sync path: delta, applied, acked
        hub.wait_for(lambda h: h.acks_for(sequence), what="the gallery delta's ack")
        report = edge.replay([video_a, video_b], ["cam-a", "cam-b"], max_frames=200, progress=False)
        assert report.ok and {f.camera_id: f.frames for f in report.files} == {"cam-a": 200, "cam-b": 200}
        assert edge.close(drain_timeout_s=60)
    assert edge.outbox_depth_at_close == 0
    by_camera = Counter(s.camera_id for s in hub.short_lists.values())
    assert by_camera["cam-a"] >= 1 and by_camera["cam-b"] >= 1  # both cameras were short-listed
    naming = [s for s in hub.short_lists.values() if s.candidates and s.candidates[0].identity_id == "person-a"]
    # the enrolled person's tracklet (same id: same edge, recording and stride) is named, top-1
    assert person.tracklet_id in {s.tracklet_id for s in naming if s.camera_id == "cam-a"}
    assert all(n == 1 for n in Counter(hub.accepted).values())
    rates = {c.camera_id for b in hub.heartbeats for c in b.cameras if c.fps > 0}
    assert rates == {"cam-a", "cam-b"}  # heartbeats carried each camera's frame rate


def test_hub_down_part_of_a_replay_every_short_list_arrives_once(samples: dict[str, Path], models: dict[str, Any],
                                                                 hub: Any, tmp_path: Path) -> None:
    hub.push(gallery_delta=hub_to_edge_pb2.GalleryDelta(from_version=0, to_version=1,
                                                        upserts=stranger_upserts(samples, models["embedder"])))
    made: list[str] = []
    down = threading.Event()

    def on_result(result: Any) -> None:
        if result.short_list_key is not None:
            made.append(result.short_list_key)
            if not down.is_set():  # the hub dies once the first short list exists
                down.set()
                hub.stop()

    with node(tmp_path / "edge", ["cam"], models, hub=hub, on_result=on_result) as edge:
        edge.start()
        assert edge.wait_connected(30) and edge.wait_gallery(30)
        edge.replay([samples[VIDEO_C]], ["cam"], max_frames=120, progress=False)
        assert down.is_set() and len(made) >= 2
        assert edge.outbox.depth() >= 1  # the replay ended with short lists the hub never acknowledged
        hub.start()  # back, on the same port, with what it had stored
        assert edge.close(drain_timeout_s=60)
    assert edge.outbox_depth_at_close == 0
    assert sorted(hub.accepted) == sorted(set(made))  # each short list stored exactly once
    assert len(hub.accepted) == len(set(hub.accepted)) == len(made)
    assert len(hub.hellos) >= 2  # the link reconnected


def outbox_rows(path: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_sigkill_mid_replay_then_restart_sends_each_short_list_once(samples: dict[str, Path],
                                                                    models: dict[str, Any], hub: Any,
                                                                    tmp_path: Path) -> None:
    embedder = models["embedder"]
    hub.push(gallery_delta=hub_to_edge_pb2.GalleryDelta(from_version=0, to_version=1,
                                                        upserts=stranger_upserts(samples, embedder)))
    workdir = tmp_path / "edge"
    command = [sys.executable, "-m", "crossview.cli", "edge", "replay", str(samples[VIDEO_C]), "--camera", "cam",
               "--workdir", str(workdir)]
    for setting in ("edge_id=edge-kill", "max_frames=150", "tracklets.close_after_s=0.5", "min_p_same=0.0", "top_k=3",
                    "progress=false", f"hub.target={hub.address}", f"hub.token={TOKEN}", "hub.wait_gallery_s=60",
                    "hub.drain_timeout_s=60", "hub.heartbeat_s=0.5"):
        command += ["--set", setting]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    # first run, paced at real time (same tracklets and short lists, more time to be killed in)
    child = subprocess.Popen([*command, "--set", "realtime=true"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    sigkill_when(child, lambda: bool(hub.accepted))
    at_kill = set(hub.accepted)
    assert at_kill

    for db in ("edge.db", "outbox.db", "gallery.db"):  # the files are intact, as SQLite left them
        with contextlib.closing(sqlite3.connect(workdir / db)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with TrackletStore(workdir / "edge.db") as store:
        stored_at_kill = store.stats().tracklets
    assert stored_at_kill >= 1

    restarted = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert restarted.returncode == 0, restarted.stdout[-2000:] + restarted.stderr[-3000:]
    assert " 0 already stored" not in restarted.stdout, restarted.stdout  # resumed, not redone
    assert outbox_rows(workdir / "outbox.db") == 0

    with TrackletStore(workdir / "edge.db") as store:
        tracklet_ids, _ = store.vectors(embedder.fingerprint)
    expected = {short_list_key("edge-kill", t, 1) for t in tracklet_ids}  # min_p_same=0.0: every tracklet
    assert len(expected) > len(at_kill)  # killed part-way: some short lists were still to come
    assert Counter(hub.accepted) == Counter(expected)  # each exactly once across both runs, none lost
    assert len(hub.hellos) == 2 and hub.hellos[1].gallery_version == 1  # resumed the synced gallery
