"""Replay: merging cameras, sequential files, bad files, pacing, determinism, and SIGKILL + restart.

Fakes (a colour-blob "tracker", a mean-colour "embedder", generated videos) cover the replay logic
without models. The last two tests use the real detector and embedder on a sample video (skipped
without $CROSSVIEW_MODELS / $CROSSVIEW_DATA): a real-time paced replay against a fast one, and an edge
process killed with SIGKILL mid-replay, then restarted.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from crossview_testing.edge_fakes import FP, MIN_P_SAME, BlobTracker, ColourEmbedder, write_video
from crossview_testing.processes import sigkill_when

import edge.replay as replay_module
from crossview.edge_command import replay_command
from edge.gallery import MemoryGallery
from edge.pipeline import EdgePipeline, TrackletSettings
from edge.replay import camera_ids_for, recording_id, replay
from edge.shortlist import ShortListPolicy
from edge.storage.store import TrackletStore
from edge.uplink.outbox import Outbox
from models.errors import InvalidInputError
from protos import codec
from protos.crossview.v1 import edge_to_hub_pb2

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def videos(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "videos"
    folder.mkdir()
    return {
        "lobby": write_video(folder / "lobby.mp4", [(40, 40, 230), (40, 230, 40)]),
        "gate": write_video(folder / "gate.mp4", [(230, 40, 40), (230, 230, 40), (40, 230, 230)]),
    }


def fake_gallery() -> MemoryGallery:
    gallery = MemoryGallery(FP, 3, rerank=False)
    for name, colour in {"red": (40, 40, 230), "green": (40, 230, 40), "blue": (230, 40, 40)}.items():
        gallery.add(name, ColourEmbedder().embed([np.full((8, 4, 3), colour, np.uint8)]))
    return gallery


def run_fake(tmp: Path, files: list[Path], cameras: list[str] | None = None, **kwargs) -> dict:
    with TrackletStore(tmp / "edge.db") as store, Outbox(tmp / "outbox.db") as outbox:
        pipeline = EdgePipeline("edge-f", tracker=BlobTracker(), embedder=ColourEmbedder(), store=store,
                                outbox=outbox, gallery=fake_gallery(),
                                policy=ShortListPolicy(top_k=1, min_p_same=MIN_P_SAME),
                                tracklets=TrackletSettings(close_after_s=0.5, min_quality=0.0))
        with pipeline:
            report = replay(files, cameras, pipeline=pipeline, progress=False, **kwargs)
        ids = store.vectors(FP)[0]
        return {"report": report, "records": [store.get_tracklet(t) for t in ids],
                "outbox": {e.key: e.payload for e in outbox.pending(1000)}, "cameras": store.cameras()}


def names(outbox: dict[str, bytes]) -> list[str]:
    return sorted(c.identity_id for p in outbox.values() for c in edge_to_hub_pb2.ShortList.FromString(p).candidates)


# ---------------------------------------------------------------- the replay logic, with fakes

@pytest.mark.parametrize(("files", "cameras", "expected"), [
    (["a/x.mp4", "b/x.mp4", "c/y.264"], None, ["x", "x-2", "y"]),
    (["lobby cam #1.mp4"], None, ["lobby-cam-1"]),
    (["a.mp4", "b.mp4"], ["door", "door"], ["door", "door"]),
    (["a.mp4", "b.mp4"], ["door"], InvalidInputError),
    (["a.mp4"], [""], InvalidInputError),
])
def test_camera_ids_for(files: list[str], cameras: list[str] | None, expected) -> None:
    paths = [Path(f) for f in files]
    if isinstance(expected, list):
        assert camera_ids_for(paths, cameras) == expected
    else:
        with pytest.raises(expected):
            camera_ids_for(paths, cameras)


def test_recording_id_follows_content_not_path(videos: dict[str, Path], tmp_path: Path) -> None:
    copy = shutil.copy(videos["lobby"], tmp_path / "moved.mp4")
    assert recording_id(copy) == recording_id(videos["lobby"]) != recording_id(videos["gate"])
    assert len(recording_id(copy)) == 16


def test_replay_plays_cameras_concurrently_to_short_lists(videos: dict[str, Path], tmp_path: Path) -> None:
    run = run_fake(tmp_path, [videos["lobby"], videos["gate"]])
    report = run["report"]
    assert report.ok and [f.frames for f in report.files] == [56, 84]
    assert [f.camera_id for f in report.files] == ["lobby", "gate"]
    assert sorted(r.camera_id for r in run["records"]) == ["gate"] * 3 + ["lobby"] * 2
    assert names(run["outbox"]) == ["blue", "green", "red"]  # one per colour known to the gallery
    assert {c[0]: c[2] for c in run["cameras"]} == {"gate": str(videos["gate"]), "lobby": str(videos["lobby"])}
    assert report.stats.cameras["lobby"].frames == 56 and report.stats.worker.failed == 0


def test_replay_files_of_one_camera_play_in_turn(videos: dict[str, Path], tmp_path: Path) -> None:
    run = run_fake(tmp_path, [videos["lobby"], videos["gate"]], ["door", "door"], stride=2)
    assert [f.frames for f in run["report"].files] == [28, 42]
    assert run["report"].stats.cameras["door"].streams == 2
    assert len({r.tracklet_id for r in run["records"]}) == 5 and {r.camera_id for r in run["records"]} == {"door"}


def test_replay_reports_a_bad_file_and_plays_the_others(videos: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "videos" / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    run = run_fake(tmp_path, [bad, videos["lobby"], tmp_path / "missing.mp4"])
    broken, lobby, missing = run["report"].files
    assert not run["report"].ok
    assert "camera 'broken'" in (broken.error or "") and broken.frames == 0
    assert lobby.error is None and lobby.frames == 56 and len(run["records"]) == 2
    assert "missing.mp4" in (missing.error or "")


def test_paced_and_fast_replays_give_the_same_results(videos: dict[str, Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    fast = run_fake(tmp_path / "fast", [videos["lobby"], videos["gate"]])
    delays: list[float] = []
    real_sleep = time.sleep
    monkeypatch.setattr(replay_module.time, "sleep", lambda s: (delays.append(s), real_sleep(s / 50)))
    paced = run_fake(tmp_path / "paced", [videos["lobby"], videos["gate"]], realtime=True, speed=2.0)
    monkeypatch.undo()
    assert delays  # frames were held back to their stream time
    assert sorted(r.tracklet_id for r in paced["records"]) == sorted(r.tracklet_id for r in fast["records"])
    assert paced["outbox"] == fast["outbox"] and len(fast["outbox"]) == 3


def test_recorded_at_shifts_every_time(videos: dict[str, Path], tmp_path: Path) -> None:
    plain = run_fake(tmp_path / "plain", [videos["lobby"], videos["gate"]])
    start = 1_795_599_000.0  # 2026-11-25 09:30 UTC
    dated = run_fake(tmp_path / "dated", [videos["lobby"], videos["gate"]], recorded_at=start)
    spans = sorted((r.camera_id, r.start_s, r.end_s) for r in plain["records"])
    shifted = sorted((r.camera_id, r.start_s - start, r.end_s - start) for r in dated["records"])
    assert len(shifted) == len(spans) == 5
    for (camera, s0, e0), (camera_dated, s1, e1) in zip(spans, shifted, strict=True):
        assert camera == camera_dated and (s1, e1) == pytest.approx((s0, e0), abs=1e-5)
    sent = [edge_to_hub_pb2.ShortList.FromString(p) for p in dated["outbox"].values()]
    assert len(sent) == len(plain["outbox"]) and all(codec.time_range_from_proto(m.span)[0] >= start for m in sent)
    again = run_fake(tmp_path / "again", [videos["lobby"], videos["gate"]], recorded_at=start)
    assert again["outbox"] == dated["outbox"]  # the same recorded_at: the same tracklets and keys (a resume)
    for bad in (-1.0, float("nan"), True, "09:30"):
        with pytest.raises(InvalidInputError, match="recorded_at"):
            run_fake(tmp_path / f"bad-{bad}", [videos["lobby"]], recorded_at=bad)


@pytest.mark.parametrize(("overrides", "cameras", "message"), [
    (["recorded_at=yesterday"], None, "recorded_at: expected an ISO 8601 time"),
    (["strid=2"], None, "did you mean 'stride'"),
    (["stride=0"], None, "stride: expected >= 1"),
    ([], ["a", "b"], "expected one camera per file"),
    (["uplink.max_height=8"], None, "expected >= 16"),
])
def test_replay_command_rejects_bad_settings_before_loading_models(
        overrides: list[str], cameras: list[str] | None, message: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    code = replay_command([tmp_path / "a.mp4"], cameras, overrides=overrides, workdir=tmp_path / "w")
    assert code == 2 and message in capsys.readouterr().err


# ---------------------------------------------------------------- the real models

VIDEO = "pedestrians__nandinib1999.mp4"


@pytest.fixture(scope="module")
def sample(models_dir: Path, data_dir: Path) -> tuple[Path, Path]:
    video = data_dir / "video" / VIDEO
    strangers = sorted((data_dir / "cuhk03_labeled" / "val").glob("*.jpg"))
    if not video.is_file() or len(strangers) < 40:
        pytest.skip(f"sample video {video} or CUHK03 val crops are absent")
    return video, data_dir


def test_real_paced_and_fast_replays_give_the_same_results(sample: tuple[Path, Path], tmp_path: Path) -> None:
    from edge.detect_track import PersonTracker
    from models.embed import create_embedder

    video, data_dir = sample
    tracker, embedder = PersonTracker(), create_embedder("reid/intel-0288", num_threads=1)
    gallery = MemoryGallery(embedder.fingerprint, embedder.dim)
    strangers = sorted((data_dir / "cuhk03_labeled" / "val").glob("*.jpg"))[:40]
    for i in range(0, 40, 2):
        gallery.add(f"cuhk03-{i}", embedder.embed([cv2.imread(str(f)) for f in strangers[i:i + 2]]))

    def run(workdir: Path, realtime: bool) -> tuple[list[str], dict[str, bytes]]:
        with TrackletStore(workdir / "edge.db") as store, Outbox(workdir / "outbox.db") as outbox:
            with EdgePipeline("edge-rt", tracker=tracker, embedder=embedder, store=store, outbox=outbox,
                              gallery=gallery, policy=ShortListPolicy(top_k=3, min_p_same=0.0)) as pipeline:
                replay([video], ["cam"], pipeline=pipeline, stride=2, max_frames=30, realtime=realtime,
                       progress=False)
            return sorted(store.vectors(embedder.fingerprint)[0]), {e.key: e.payload for e in outbox.pending(1000)}

    fast_ids, fast_outbox = run(tmp_path / "fast", realtime=False)
    paced_ids, paced_outbox = run(tmp_path / "paced", realtime=True)  # 60 source frames at 24 fps: ~2.5 s
    assert len(fast_ids) >= 3 and paced_ids == fast_ids
    assert len(fast_outbox) == len(fast_ids) and paced_outbox == fast_outbox


CHILD = ("import sys; from pathlib import Path; from crossview.edge_command import replay_command; "
         "sys.exit(replay_command([Path(sys.argv[1])], ['cam'], workdir=Path(sys.argv[2]), progress=False, "
         "overrides=['gallery_dir=' + sys.argv[3], 'max_frames=120', 'tracklets.close_after_s=0.5', 'min_p_same=0.0', "
         "'edge_id=edge-kill']))")


def outbox_depth(path: Path) -> int:
    if not path.with_name(path.name + "-wal").exists():  # not opened in WAL mode yet: don't get in its way
        return 0
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=1)) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    except sqlite3.OperationalError:  # tables not created yet, or busy
        return 0


def short_lists(workdir: Path) -> dict[str, bytes]:
    with Outbox(workdir / "outbox.db") as outbox:
        return {e.key: e.payload for e in outbox.pending(1000)}


def test_sigkill_mid_replay_then_restart_loses_and_duplicates_nothing(sample: tuple[Path, Path],
                                                                      tmp_path: Path) -> None:
    video, data_dir = sample
    gallery_dir = tmp_path / "gallery"
    for i, crop in enumerate(sorted((data_dir / "cuhk03_labeled" / "val").glob("*.jpg"))[:40]):
        (gallery_dir / f"cuhk03-{i // 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(crop, gallery_dir / f"cuhk03-{i // 2}" / crop.name)
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    command = [sys.executable, "-c", CHILD, str(video), str(killed), str(gallery_dir)]

    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sigkill_when(child, lambda: outbox_depth(killed / "outbox.db") >= 1)
    depth_at_kill = outbox_depth(killed / "outbox.db")

    for db in ("edge.db", "outbox.db"):  # the files are intact, as SQLite left them
        with contextlib.closing(sqlite3.connect(killed / db)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with TrackletStore(killed / "edge.db") as store:  # and the store opens (its sweep tidies crop files)
        stored_at_kill = store.stats().tracklets

    restarted = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    reused = re.search(r"(\d+) already stored", restarted.stdout)
    assert reused is not None and int(reused.group(1)) >= 1, restarted.stdout  # resumed, not redone
    assert replay_command([video], ["cam"], workdir=reference, progress=False, overrides=[
        f"gallery_dir={gallery_dir}", "max_frames=120", "tracklets.close_after_s=0.5", "min_p_same=0.0",
        "edge_id=edge-kill"]) == 0

    expected, got = short_lists(reference), short_lists(killed)
    assert 0 < depth_at_kill < len(expected)  # killed part-way: some short lists were still to come
    assert got == expected  # nothing lost, nothing twice: the same keys and byte-identical short lists
    tracklets = [edge_to_hub_pb2.ShortList.FromString(p).tracklet_id for p in got.values()]
    assert len(set(tracklets)) == len(tracklets)
    with TrackletStore(killed / "edge.db") as store, TrackletStore(reference / "edge.db") as ref:
        assert 0 < stored_at_kill <= store.stats().tracklets == ref.stats().tracklets
        fingerprint = next(iter(ref.stats().vectors_by_fingerprint))
        assert store.vectors(fingerprint)[0] == ref.vectors(fingerprint)[0]
        crop_files = sum(1 for _ in store.crops_dir.glob("*/*.jpg"))
        assert crop_files == store.stats().crop_files  # no orphan crop files left by the kill
