"""`crossview hub export-training`: a real hub store's confirmed sightings as a Market-1501 training folder.

The store is filled the way the hub fills it (`complete_short_list` with a verdict and a sighting whose
crop `CropFiles` saved); the export is read back with the training loader (`models.train.data`).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from crossview_testing.colour_model import jpeg

from cloud.crops import CropFiles
from cloud.store import HubStore, NewSighting, ShortListSummary, VerdictRecord
from cloud.store.sqlite import SqliteHubStore
from cloud.training_export import TrainingExportError, export_training
from crossview.hub_command import parse_since

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_780_000_000.0
# (key, identity or None, edge, camera, colour, recorded at)
SIGHTINGS = [
    ("k01", "id-alice", "edge-a", "gate", "red", NOW),
    ("k02", "id-bob", "edge-a", "lobby", "blue", NOW + 1),
    ("k03", "id-alice", "edge-b", "door", "red", NOW + 2),
    ("k04", None, "edge-a", "gate", "green", NOW + 3),  # unknown: left out
    ("k05", "id-carol", "edge-a", "gate", "yellow", NOW + 4),  # identity deleted below: left out
    ("k06", "id-alice", "edge-a", "gate", "red", NOW + 5),
    ("k07", "id-bob", "edge-b", "door", "blue", NOW + 6),
    ("k08", "id-bob", "edge-a", "lobby", "blue", NOW + 7),  # crop file removed below: left out
]


def fill(store: HubStore, crops: CropFiles) -> dict[str, str]:
    """The identities and sightings of SIGHTINGS; returns key -> stored crop path."""
    for identity_id, name in (("id-alice", "Alice"), ("id-bob", "Bob"), ("id-carol", "Carol")):
        store.create_identity(identity_id, display_name=name, watchlist_threshold=None, source="photo",
                              crop_paths=[], embeddings={}, now=NOW - 100)
    paths = {}
    for n, (key, identity_id, edge_id, camera_id, colour, at) in enumerate(SIGHTINGS):
        store.register_edge(edge_id, now=at)
        summary = ShortListSummary(key, edge_id, camera_id, f"t-{key}", 3, 10.0, 12.5, 2, (("id-alice", 0.25),),
                                   "fp@1", 4, at)
        assert store.claim_short_list(summary, now=at, lease_s=60) == "new"
        paths[key] = crops.save("sightings", key, jpeg(colour, seed=n))
        decision = "confirmed" if identity_id else "rejected"
        verdict = VerdictRecord(key, decision, identity_id, 0.9 if identity_id else 0.1, "reid",  # type: ignore[arg-type]
                                {"id-alice": 0.9}, at)
        sighting = NewSighting(identity_id, edge_id, camera_id, f"t-{key}", 10.0 + n, 12.0 + n, paths[key],
                               *((0.9, 0.6, 0.95) if identity_id else (None, None, None)), key)
        store.complete_short_list(verdict, sighting, edge_id=edge_id, verdict_payload=b"v", alert=False, now=at)
    store.remove_identity("id-carol", now=NOW + 10)
    crops.delete(paths["k08"])
    return paths


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_confirmed_sightings_become_a_market1501_training_folder(store: HubStore, tmp_path: Path) -> None:
    crops = CropFiles(tmp_path / "crops")
    paths = fill(store, crops)
    out = tmp_path / "export"
    summary = export_training(store, crops, out, progress=False)

    assert (summary.images, summary.identities, summary.cameras) == (5, 2, 3)
    assert (summary.skipped_unknown, summary.skipped_deleted, summary.skipped_missing_crop) == (1, 1, 1)
    # pids in order of first sighting (Alice, Bob); cameras sorted by (edge, camera): a/gate, a/lobby, b/door
    names = sorted(p.name for p in (out / "bounding_box_train").iterdir())
    assert names == ["0001_c1s1_000001_00.jpg", "0001_c1s1_000002_00.jpg", "0001_c3s1_000001_00.jpg",
                     "0002_c2s1_000001_00.jpg", "0002_c3s1_000001_00.jpg"]
    assert rows(out / "identities.csv") == [
        {"pid": "0001", "identity_id": "id-alice", "display_name": "Alice", "images": "3"},
        {"pid": "0002", "identity_id": "id-bob", "display_name": "Bob", "images": "2"}]
    assert rows(out / "cameras.csv") == [
        {"camera": "c1", "edge_id": "edge-a", "camera_id": "gate", "images": "2"},
        {"camera": "c2", "edge_id": "edge-a", "camera_id": "lobby", "images": "1"},
        {"camera": "c3", "edge_id": "edge-b", "camera_id": "door", "images": "2"}]
    by_file = {r["file"]: r for r in rows(out / "sightings.csv")}
    assert [by_file[n]["identity_id"] for n in names] == ["id-alice"] * 3 + ["id-bob"] * 2
    key_of = {str(store.get_sighting(int(r["sighting_id"])).idempotency_key): f for f, r in by_file.items()}  # type: ignore[union-attr]
    assert sorted(key_of) == ["k01", "k02", "k03", "k06", "k07"]
    for key, name in key_of.items():  # the crop the hub stores, byte for byte
        assert (out / "bounding_box_train" / name).read_bytes() == crops.read(paths[key])

    from models.train.data import load_training_set  # what `crossview train reid --format market1501` reads

    training = load_training_set(out, "market1501")
    assert len(training.paths) == 5 and training.identity_names == ("0001", "0002")
    assert sorted(zip(training.labels.tolist(), training.cameras.tolist(), strict=True)) == [
        (0, 0), (0, 0), (0, 2), (1, 1), (1, 2)]


def test_since_keeps_only_sightings_recorded_from_then(store: HubStore, tmp_path: Path) -> None:
    crops = CropFiles(tmp_path / "crops")
    fill(store, crops)
    summary = export_training(store, crops, tmp_path / "export", since_s=NOW + 2, progress=False)
    assert (summary.images, summary.skipped_before) == (3, 2)  # k03, k06, k07 (k04 unknown, k05 deleted, k08 gone)
    assert rows(tmp_path / "export" / "identities.csv")[0]["identity_id"] == "id-alice"
    with pytest.raises(TrainingExportError, match="no confirmed sightings with crops recorded since then"):
        export_training(store, crops, tmp_path / "later", since_s=NOW + 100, progress=False)
    assert not (tmp_path / "later").exists()


def test_a_non_empty_folder_needs_force_and_keeps_other_files(store: HubStore, tmp_path: Path) -> None:
    crops = CropFiles(tmp_path / "crops")
    fill(store, crops)
    out = tmp_path / "export"
    export_training(store, crops, out, progress=False)
    (out / "bounding_box_train" / "0099_c1s1_000001_00.jpg").write_bytes(b"stale")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(TrainingExportError, match="is not empty; pass --force"):
        export_training(store, crops, out, progress=False)
    export_training(store, crops, out, since_s=NOW + 5, force=True, progress=False)
    assert sorted(p.name for p in (out / "bounding_box_train").iterdir()) == [
        "0001_c1s1_000001_00.jpg", "0002_c2s1_000001_00.jpg"]  # Alice at k06, Bob at k07 (edge-b/door)
    assert (out / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(TrainingExportError, match="expected a folder, got a file"):
        export_training(store, crops, tmp_path / "file", progress=False)


def test_an_empty_store_and_too_many_cameras_are_refused(store: HubStore, tmp_path: Path) -> None:
    crops = CropFiles(tmp_path / "crops")
    with pytest.raises(TrainingExportError, match="no confirmed sightings"):
        export_training(store, crops, tmp_path / "export", progress=False)
    store.register_edge("edge-a", now=NOW)
    store.create_identity("id-x", display_name="X", watchlist_threshold=None, source="photo", crop_paths=[],
                          embeddings={}, now=NOW)
    for n in range(10):
        key = f"c{n}"
        summary = ShortListSummary(key, "edge-a", f"cam-{n}", f"t-{key}", 3, 1.0, 2.0, 1, (("id-x", 0.2),),
                                   "fp@1", 4, NOW)
        store.claim_short_list(summary, now=NOW, lease_s=60)
        path = crops.save("sightings", key, jpeg("red", seed=n))
        store.complete_short_list(VerdictRecord(key, "confirmed", "id-x", 0.9, "reid", {"id-x": 0.9}, NOW),
                                  NewSighting("id-x", "edge-a", f"cam-{n}", f"t-{key}", 1.0, 2.0, path, 0.9, 0.6,
                                              0.95, key),
                                  edge_id="edge-a", verdict_payload=b"v", alert=False, now=NOW)
    with pytest.raises(TrainingExportError, match=r"at most 9 cameras.*got 10"):
        export_training(store, crops, tmp_path / "export", progress=False)
    assert not (tmp_path / "export").exists()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crossview.cli", "hub", "export-training", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))


def test_the_command_reads_the_hubs_store(tmp_path: Path) -> None:
    hub_dir = tmp_path / "hub"
    store = SqliteHubStore(hub_dir / "hub.db")
    try:
        fill(store, CropFiles(hub_dir / "crops"))
    finally:
        store.close()
    out = tmp_path / "export"
    done = _cli(str(out), "--set", f"data_dir={hub_dir}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"wrote 5 crops of 2 identities on 3 cameras to {out / 'bounding_box_train'}",
        "left out: 1 unknown, 1 of deleted identities, 1 without a crop file, 0 before --since"]
    since = _cli(str(tmp_path / "since"), "--since", "2026-05-28T20:26:42Z", "--set", f"data_dir={hub_dir}")
    assert since.returncode == 0 and "wrote 3 crops" in since.stdout, since.stderr  # NOW + 2 s
    for args, message in (([str(out), "--set", f"data_dir={hub_dir}"], "is not empty; pass --force"),
                          ([str(tmp_path / "x"), "--since", "yesterday", "--set", f"data_dir={hub_dir}"],
                           "--since: expected an ISO time"),
                          ([str(tmp_path / "x"), "--set", f"data_dir={tmp_path / 'nohub'}"], "no hub store at")):
        refused = _cli(*args)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert not (tmp_path / "nohub").exists()


def test_parse_since() -> None:
    assert parse_since(None) is None
    assert parse_since("2026-05-28T20:26:40Z") == NOW
    assert parse_since("2026-05-28T20:26:40") == NOW  # no zone: UTC
    assert parse_since("2026-05-28T22:26:40+02:00") == NOW
    assert parse_since("2026-05-29") == 1_780_012_800.0

