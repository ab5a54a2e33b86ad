"""TrackletStore: round trips, model fingerprints, retention, sweeps, locking, and SIGKILL mid-write."""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.storage.store import (
    CropsFolderMismatchError,
    FingerprintMismatchError,
    SchemaVersionError,
    StoreLockedError,
    TrackletStore,
    UnknownIdError,
)
from edge.uplink.outbox import Outbox
from models.errors import InvalidInputError
from models.types import Crop, Embeddings, Tracklet

FP = "reid/test-0288@abc"
REPO = Path(__file__).resolve().parents[2]


def fake_jpeg(size: int) -> bytes:
    """Bytes the store accepts as JPEG (SOI marker) of an exact size, for byte accounting."""
    return b"\xff\xd8\xff" + bytes(size - 3)


def unit(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((1, dim)).astype(np.float32)
    return v / np.linalg.norm(v)


def tracklet(tid: str, end_s: float, camera: str = "cam1", start_s: float | None = None,
             embedding: Embeddings | None = None) -> Tracklet:
    return Tracklet(tid, camera, 7, end_s - 1.0 if start_s is None else start_s, end_s, embedding=embedding)


@pytest.fixture
def store(tmp_path: Path) -> TrackletStore:
    s = TrackletStore(tmp_path / "edge.db", tmp_path / "crops")
    s.add_camera("cam1", name="Lobby", source="rtsp://lobby")
    s.add_camera("cam2", source="file.mp4")
    yield s
    s.close()


def files_under(folder: Path) -> set[Path]:
    """Crop files (in the shard folders), leaving out the store's own `.lock` and `.store-id`."""
    return {p for p in folder.glob("*/*") if p.is_file()}


def test_round_trip(store: TrackletStore) -> None:
    image = np.full((64, 32, 3), 120, np.uint8)
    crop = Crop(np.full((40, 20, 3), 60, np.uint8), "cam1", 1.5)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    emb = Embeddings(unit(1), FP)
    rec = store.upsert_tracklet(tracklet("t1", 10.0, embedding=emb), crops=[jpeg, image, crop], closed=True)

    assert (rec.tracklet_id, rec.camera_id, rec.track_id, rec.start_s, rec.end_s, rec.closed) == \
        ("t1", "cam1", 7, 9.0, 10.0, True)
    assert rec.fingerprints == (FP,)
    paths = store.crop_paths("t1")
    assert paths == list(rec.crop_paths) and len(paths) == 3
    assert paths[0].read_bytes() == jpeg
    assert cv2.imread(str(paths[1])).shape == (64, 32, 3)
    assert cv2.imread(str(paths[2])).shape == (40, 20, 3)
    assert rec.bytes == sum(p.stat().st_size for p in paths) + 8 * 4

    np.testing.assert_array_equal(store.vector("t1", FP).vectors, emb.vectors)
    ids, vectors = store.vectors(FP)
    assert ids == ["t1"] and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, emb.vectors)

    sid = store.add_sighting("t1", "person-42", 0.25, time_s=11.0, source="hub")
    [sighting] = store.sightings(identity_id="person-42")
    assert (sighting.sighting_id, sighting.tracklet_id, sighting.distance, sighting.time_s, sighting.source) == \
        (sid, "t1", 0.25, 11.0, "hub")
    assert store.cameras()[0][:3] == ("cam1", "Lobby", "rtsp://lobby")

    stats = store.stats()
    assert (stats.cameras, stats.tracklets, stats.open_tracklets, stats.crop_files, stats.sightings) == \
        (2, 1, 0, 3, 1)
    assert stats.vectors_by_fingerprint == {FP: 1} and stats.vector_bytes == 32


def test_data_survives_reopen(tmp_path: Path) -> None:
    with TrackletStore(tmp_path / "edge.db") as s:
        s.add_camera("cam1")
        s.upsert_tracklet(tracklet("t1", 3.0, embedding=Embeddings(unit(2), FP)), crops=[fake_jpeg(100)])
    with TrackletStore(tmp_path / "edge.db") as s:
        assert s.crops_dir == tmp_path / "edge.db.crops"
        assert s.crop_paths("t1")[0].read_bytes() == fake_jpeg(100)
        np.testing.assert_array_equal(s.vectors(FP)[1], unit(2))
        assert s.last_sweep.orphan_files_removed == 0


def test_upsert_replaces_crops_and_deletes_old_files(store: TrackletStore) -> None:
    store.upsert_tracklet(tracklet("t1", 1.0), crops=[fake_jpeg(50), fake_jpeg(60)])
    old = store.crop_paths("t1")
    rec = store.upsert_tracklet(tracklet("t1", 2.0), crops=[fake_jpeg(70)], closed=True)
    assert not any(p.exists() for p in old)
    assert [p.stat().st_size for p in rec.crop_paths] == [70] and rec.end_s == 2.0 and rec.closed
    kept = store.upsert_tracklet(tracklet("t1", 3.0))  # no crops given: keep the stored ones
    assert kept.crop_paths == rec.crop_paths
    assert store.upsert_tracklet(tracklet("t1", 3.0), crops=[]).crop_paths == ()
    assert files_under(store.crops_dir) == set()


def test_vectors_never_mix_models(store: TrackletStore) -> None:
    store.upsert_tracklet(tracklet("a", 1.0, embedding=Embeddings(unit(1), FP)))
    store.upsert_tracklet(tracklet("b", 2.0, embedding=Embeddings(unit(2), FP)))
    store.put_vector("a", Embeddings(unit(3, dim=4), "other-model"))
    ids, vectors = store.vectors(FP)
    assert ids == ["a", "b"] and vectors.shape == (2, 8)
    ids, vectors = store.vectors(Embeddings(unit(9, dim=4), "other-model"))
    assert ids == ["a"] and vectors.shape == (1, 4)
    with pytest.raises(FingerprintMismatchError, match=r"fingerprint mismatch.*'new-model'"):
        store.vectors("new-model")
    with pytest.raises(InvalidInputError, match=r"expected dim 8.*got dim 4"):
        store.put_vector("b", Embeddings(unit(4, dim=4), FP))


def test_vectors_of_an_empty_store(store: TrackletStore) -> None:
    ids, vectors = store.vectors(FP)
    assert ids == [] and vectors.shape == (0, 0)


def test_vectors_filters(tmp_path: Path) -> None:
    ticks = itertools.count(1.0)
    store = TrackletStore(tmp_path / "edge.db", clock=lambda: next(ticks))  # a, b, c stored at 4, 6, 8
    store.add_camera("cam1")
    store.add_camera("cam2")
    store.upsert_tracklet(tracklet("a", 10.0, start_s=0.0, embedding=Embeddings(unit(1), FP)))
    store.upsert_tracklet(tracklet("b", 30.0, start_s=20.0, camera="cam2", embedding=Embeddings(unit(2), FP)))
    store.upsert_tracklet(tracklet("c", 50.0, start_s=40.0, embedding=Embeddings(unit(3), FP)))
    assert store.vectors(FP, camera="cam1")[0] == ["a", "c"]
    assert store.vectors(FP, start_s=25.0, end_s=45.0)[0] == ["b", "c"]
    assert store.vectors(FP, end_s=5.0)[0] == ["a"]
    assert store.vectors(FP, since=5.0)[0] == ["b", "c"]
    ids, vectors = store.vectors(FP, camera="cam2", start_s=60.0)
    assert ids == [] and vectors.shape == (0, 8)
    store.close()


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda s: s.get_tracklet("nope"), UnknownIdError, "unknown tracklet 'nope'"),
    (lambda s: s.crop_paths("nope"), UnknownIdError, "unknown tracklet 'nope'"),
    (lambda s: s.put_vector("nope", Embeddings(unit(1), FP)), UnknownIdError, "unknown tracklet 'nope'"),
    (lambda s: s.add_sighting("nope", "p1", 0.1), UnknownIdError, "unknown tracklet 'nope'"),
    (lambda s: s.vector("t1", "nope-model"), UnknownIdError, "no vector of model 'nope-model'"),
    (lambda s: s.upsert_tracklet(tracklet("t2", 1.0, camera="nope")), UnknownIdError, "unknown camera 'nope'"),
    (lambda s: s.vectors(FP, camera="nope"), UnknownIdError, "unknown camera 'nope'"),
    (lambda s: s.upsert_tracklet(tracklet("t2", 1.0), crops=[b"GIF89a"]), InvalidInputError, "expected JPEG"),
    (lambda s: s.upsert_tracklet(tracklet("t2", 1.0), crops=[np.zeros((4, 4, 3), np.float32)]),
     InvalidInputError, "expected a uint8"),
    (lambda s: s.upsert_tracklet(tracklet("t2", 1.0), crops=[np.zeros((0, 4, 3), np.uint8)]),
     InvalidInputError, "non-empty"),
    (lambda s: s.upsert_tracklet(tracklet("t1", 1.0, camera="cam2")), InvalidInputError, "expected camera 'cam1'"),
    (lambda s: s.put_vector("t1", Embeddings(np.vstack([unit(1), unit(2)]), FP)), InvalidInputError,
     "one aggregated vector"),
    (lambda s: s.add_sighting("t1", "p1", float("nan")), InvalidInputError, "finite"),
    (lambda s: s.add_sighting("t1", "", 0.1), InvalidInputError, "identity_id"),
    (lambda s: s.apply_retention(max_age_s=-1), InvalidInputError, "max_age_s"),
])
def test_errors(store: TrackletStore, call: Callable[[TrackletStore], object], error: type[Exception],
                message: str) -> None:
    store.upsert_tracklet(tracklet("t1", 1.0, embedding=Embeddings(unit(1), FP)), crops=[fake_jpeg(10)])
    before = files_under(store.crops_dir)
    with pytest.raises(error, match=message):
        call(store)
    assert files_under(store.crops_dir) == before  # a refused write leaves no file behind
    assert store.get_tracklet("t1").camera_id == "cam1"


def _fill(store: TrackletStore, n: int) -> None:
    """n closed tracklets ending at 0..n-1: 1000 B of crops + 32 B of vector each, one sighting each."""
    for i in range(n):
        store.upsert_tracklet(tracklet(f"t{i}", float(i), embedding=Embeddings(unit(i), FP)),
                              crops=[fake_jpeg(400), fake_jpeg(600)], closed=True)
        store.add_sighting(f"t{i}", "p", 0.1)


def _assert_consistent(store: TrackletStore) -> None:
    stats = store.stats()
    assert len(files_under(store.crops_dir)) == stats.crop_files
    with sqlite3.connect(store.path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM vectors WHERE tracklet NOT IN (SELECT id FROM tracklets)"
                           ).fetchone()[0] == 0
        assert raw.execute("SELECT COUNT(*) FROM sightings WHERE tracklet NOT IN (SELECT id FROM tracklets)"
                           ).fetchone()[0] == 0


def test_retention_by_age(store: TrackletStore) -> None:
    _fill(store, 10)
    report = store.apply_retention(max_age_s=5.0, now=10.0)  # end_s < 5 goes
    assert (report.tracklets_removed, report.crop_files_removed, report.bytes_freed) == (5, 10, 5 * 1032)
    assert report.bytes_remaining == 5 * 1032 and not report.over_budget
    assert store.vectors(FP)[0] == [f"t{i}" for i in range(5, 10)]
    assert {s.tracklet_id for s in store.sightings()} == {f"t{i}" for i in range(5, 10)}
    with pytest.raises(UnknownIdError):
        store.get_tracklet("t4")
    _assert_consistent(store)
    assert store.apply_retention(max_age_s=5.0, now=10.0).tracklets_removed == 0


def test_retention_by_size_removes_oldest_closed_first(store: TrackletStore) -> None:
    _fill(store, 6)
    store.upsert_tracklet(tracklet("t0", 0.0), closed=False)  # the oldest is still open: it stays
    report = store.apply_retention(max_total_bytes=3 * 1032 + 10)
    assert report.tracklets_removed == 3 and report.bytes_remaining == 3 * 1032
    assert sorted(store.vectors(FP)[0]) == ["t0", "t4", "t5"]
    _assert_consistent(store)

    report = store.apply_retention(max_total_bytes=0)
    assert report.tracklets_removed == 2 and report.over_budget and report.bytes_remaining == 1032
    assert store.stats().tracklets == 1
    _assert_consistent(store)


def test_retention_by_age_and_size_together(store: TrackletStore) -> None:
    _fill(store, 10)
    report = store.apply_retention(max_age_s=7.0, max_total_bytes=2 * 1032, now=10.0)
    assert report.tracklets_removed == 8 and store.vectors(FP)[0] == ["t8", "t9"]
    _assert_consistent(store)


class _CommitFails:
    """Stands in for the store's connection and fails every COMMIT, as a full or failing disk would."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> object:
        return getattr(self._conn, name)

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("disk I/O error (injected)")
        return self._conn.execute(sql, *args)


@pytest.mark.parametrize("write", [
    lambda s: s.apply_retention(max_age_s=0.0, now=100.0),
    lambda s: s.apply_retention(max_total_bytes=0),
    lambda s: s.upsert_tracklet(tracklet("t1", 5.0), crops=[fake_jpeg(77)], closed=True),
    lambda s: s.upsert_tracklet(tracklet("t9", 5.0), crops=[fake_jpeg(77)]),
], ids=["retention-age", "retention-size", "replace-crops", "new-tracklet"])
def test_a_failed_commit_leaves_rows_and_files_as_they_were(store: TrackletStore,
                                                            write: Callable[[TrackletStore], object]) -> None:
    _fill(store, 3)
    files, stats = files_under(store.crops_dir), store.stats()
    real, store._conn = store._conn, _CommitFails(store._conn)
    with pytest.raises(sqlite3.OperationalError, match="injected"):
        write(store)
    store._conn = real
    assert files_under(store.crops_dir) == files and store.stats() == stats


def test_open_sweeps_orphans_and_missing_files(tmp_path: Path) -> None:
    with TrackletStore(tmp_path / "edge.db", tmp_path / "crops") as s:
        s.add_camera("cam1")
        s.upsert_tracklet(tracklet("t1", 1.0), crops=[fake_jpeg(10), fake_jpeg(20)])
        s.upsert_tracklet(tracklet("t2", 2.0), crops=[fake_jpeg(30)])
        doomed = s.crop_paths("t1")[1]
    (tmp_path / "crops" / "ab").mkdir(exist_ok=True)
    orphan = tmp_path / "crops" / "ab" / "orphan.jpg"
    orphan.write_bytes(fake_jpeg(5))
    temp = tmp_path / "crops" / "ab" / ".half-written.jpg.part"
    temp.write_bytes(b"\xff")
    foreign = tmp_path / "crops" / "notes.txt"
    foreign.write_text("not ours")
    doomed.unlink()

    with TrackletStore(tmp_path / "edge.db", tmp_path / "crops") as s:
        assert (s.last_sweep.orphan_files_removed, s.last_sweep.temp_files_removed,
                s.last_sweep.missing_crops_dropped) == (1, 1, 1)
        assert not orphan.exists() and not temp.exists() and foreign.exists()
        assert len(s.crop_paths("t1")) == 1 and s.get_tracklet("t1").bytes == 10
        assert all(p.exists() for p in s.crop_paths("t1") + s.crop_paths("t2"))


def test_one_store_per_crops_folder(tmp_path: Path) -> None:
    first = TrackletStore(tmp_path / "edge.db")
    with pytest.raises(StoreLockedError, match="in use"):
        TrackletStore(tmp_path / "edge.db")
    first.close()
    TrackletStore(tmp_path / "edge.db").close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    TrackletStore(tmp_path / "edge.db").close()
    with sqlite3.connect(tmp_path / "edge.db") as raw:
        raw.execute("UPDATE schema_version SET version = 99 WHERE component = 'store'")
    raw.close()
    with pytest.raises(SchemaVersionError, match="version 99"):
        TrackletStore(tmp_path / "edge.db")


def test_threads_share_one_store(store: TrackletStore) -> None:
    def work(t: int) -> None:
        for i in range(10):
            tid = f"th{t}-{i}"
            store.upsert_tracklet(tracklet(tid, float(i), embedding=Embeddings(unit(i), FP)),
                                  crops=[fake_jpeg(20)], closed=True)
            store.add_sighting(tid, "p", 0.5)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.vectors(FP)[0]) == 40 and len(store.sightings()) == 40
    _assert_consistent(store)


# ---------------------------------------------------------------- SIGKILL mid-write

def _run_and_kill(folder: Path, round_: int, lines_before_kill: int, delay_s: float) -> list[str]:
    """Start the writer, SIGKILL it `delay_s` after it reported `lines_before_kill` commits; all it reported."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, str(Path(__file__).with_name("crash_writer.py")), str(folder),
                              str(round_)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    try:
        while len(lines) < lines_before_kill:
            line = child.stdout.readline()
            if not line:
                pytest.fail(f"writer exited early (rc={child.wait()}): {child.stderr.read()[-2000:]}")
            lines.append(line.strip())
        time.sleep(delay_s)  # lands the kill at varying points of the next write
    finally:
        child.kill()  # SIGKILL
        rest, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return lines + rest.split("\n")[:-1]  # a last line without its newline promises nothing


def _check_after_kill(folder: Path, promised: list[str]) -> None:
    made = {line[2:] for line in promised if line[0] == "T"}
    newest = max((int(tid.split("-")[1]) for tid in made), default=0)
    must_exist = {tid for tid in made if int(tid.split("-")[1]) >= newest - 20}  # retention spares these
    queued = {line[2:] for line in promised if line[0] == "O"}
    acked = {line[2:] for line in promised if line[0] == "A"}

    # Before anything of ours opens it: intact, committed rows present, no row without its file.
    with sqlite3.connect(folder / "edge.db") as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
        with_vector = {r[0] for r in raw.execute("SELECT tracklet FROM vectors")}
        with_crops = {r[0] for r in raw.execute("SELECT DISTINCT tracklet FROM crops")}
        crop_rows = [r[0] for r in raw.execute("SELECT path FROM crops")]
    raw.close()
    assert must_exist <= with_vector and must_exist <= with_crops
    missing = [rel for rel in crop_rows if not (folder / "crops" / rel).is_file()]
    assert missing == []
    with sqlite3.connect(folder / "outbox.db") as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        keys = [r[0] for r in raw.execute("SELECT key FROM outbox ORDER BY seq")]
    raw.close()
    assert len(keys) == len(set(keys))
    assert queued - acked <= set(keys) and not acked & set(keys)

    # Opening sweeps the orphan files a kill between "write file" and "commit row" can leave.
    with TrackletStore(folder / "edge.db", folder / "crops") as store:
        on_disk = {p.relative_to(store.crops_dir).as_posix() for p in files_under(store.crops_dir)}
        assert on_disk == set(crop_rows)
    with Outbox(folder / "outbox.db") as outbox:
        outbox.requeue_inflight()
        assert [e.key for e in outbox.pending(10_000)] == keys and outbox.depth() == len(keys)


def test_sigkill_mid_write_loses_nothing_committed(tmp_path: Path) -> None:
    promised: list[str] = []
    kills = [(1, 0.0), (7, 0.0003), (40, 0.001), (3, 0.0006), (90, 0.002), (15, 0.0015), (60, 0.0025),
             (25, 0.0001)]
    for round_, (lines_before_kill, delay_s) in enumerate(kills):
        promised += _run_and_kill(tmp_path, round_, lines_before_kill, delay_s)
        _check_after_kill(tmp_path, promised)
    assert sum(line.startswith("A ") for line in promised) > 0
    assert sum(line.startswith("R ") for line in promised) > 0
    assert sum(line.startswith("D ") for line in promised) > 0


def test_a_crops_folder_belongs_to_one_database(tmp_path: Path) -> None:
    with TrackletStore(tmp_path / "edge.db", tmp_path / "crops") as s:
        s.add_camera("cam1")
        s.upsert_tracklet(tracklet("t1", 1.0), crops=[fake_jpeg(10)])
    before = files_under(tmp_path / "crops")
    with pytest.raises(CropsFolderMismatchError, match="not the crops folder"):
        TrackletStore(tmp_path / "edge.db", tmp_path / "elsewhere")  # would drop every crop row
    with pytest.raises(CropsFolderMismatchError, match="not the crops folder"):
        TrackletStore(tmp_path / "other.db", tmp_path / "crops")  # would delete every crop file
    assert files_under(tmp_path / "crops") == before
    with TrackletStore(tmp_path / "edge.db", tmp_path / "crops") as s:
        assert s.crop_paths("t1")[0].read_bytes() == fake_jpeg(10)


def test_retention_by_stored_time_for_recorded_footage(tmp_path: Path) -> None:
    """Replayed files have stream times from 0: age them by when they were written, not by end_s."""
    now = [100.0]
    with TrackletStore(tmp_path / "edge.db", tmp_path / "crops", clock=lambda: now[0]) as s:
        s.add_camera("cam1")
        for i in range(5):
            now[0] = 100.0 + i
            s.upsert_tracklet(tracklet(f"t{i}", float(i), embedding=Embeddings(unit(i), FP)),
                              crops=[fake_jpeg(400)], closed=True)
        report = s.apply_retention(max_age_s=2.5, now=105.0, age_by="stored")  # written before 102.5 goes
        assert report.tracklets_removed == 3
        assert sorted(s.vectors(FP)[0]) == ["t3", "t4"]
        with pytest.raises(InvalidInputError, match="age_by: expected 'seen' or 'stored'"):
            s.apply_retention(max_age_s=1.0, age_by="written")
        _assert_consistent(s)
