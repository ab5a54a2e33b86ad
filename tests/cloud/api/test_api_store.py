"""Store queries the REST API adds, on SQLite and PostgreSQL: operators, sessions, tracklet look-ups, counts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cloud.store import HubStore, NewSighting, OperatorSessionRecord, ShortListSummary, StoreError, VerdictRecord
from cloud.store.schema import MIGRATIONS
from cloud.store.sqlite import SqliteHubStore

NOW = 1_700_000_000.0


def _sighting(store: HubStore, key: str, identity_id: str, *, tracklet: str, camera: str = "cam-1",
              end_s: float = 12.0) -> int:
    store.claim_short_list(ShortListSummary(key, "edge-a", camera, tracklet, 1, 10.0, end_s, 1, (), "fp@1", 0, NOW),
                           now=NOW, lease_s=60)
    done = store.complete_short_list(
        VerdictRecord(key, "confirmed", identity_id, 0.9, "reid", {}, NOW),
        NewSighting(identity_id, "edge-a", camera, tracklet, 10.0, end_s, f"s/{key}.jpg", 0.9, 0.6, 0.9, key),
        edge_id="edge-a", verdict_payload=b"", alert=False, now=NOW)
    assert done.sighting_id is not None
    return done.sighting_id


def test_operators_and_sessions(store: HubStore) -> None:
    assert store.save_operator("ann", "h1", now=NOW) and not store.save_operator("ann", "h2", now=NOW + 1)
    record = store.get_operator("ann")
    assert record is not None and (record.password_hash, record.created_s) == ("h2", NOW)
    store.save_operator("bob", "h3", now=NOW)
    assert [o.username for o in store.list_operators()] == ["ann", "bob"]
    store.add_operator_session(OperatorSessionRecord("t1", "ann", NOW, NOW + 10))
    store.add_operator_session(OperatorSessionRecord("t2", "ann", NOW, NOW + 20))
    store.add_operator_session(OperatorSessionRecord("t3", "bob", NOW, NOW + 20))
    with pytest.raises(StoreError, match="unknown operator"):
        store.add_operator_session(OperatorSessionRecord("t4", "eve", NOW, NOW + 20))
    assert store.get_operator_session("t1") == OperatorSessionRecord("t1", "ann", NOW, NOW + 10)
    assert store.delete_expired_operator_sessions(NOW + 10) == 1 and store.get_operator_session("t1") is None
    assert store.delete_operator_session("t2") and not store.delete_operator_session("t2")
    assert store.delete_operator("bob") and store.get_operator_session("t3") is None
    assert store.get_operator("bob") is None and not store.delete_operator("bob")


def test_tracklet_lookups_counts_and_camera_filter(store: HubStore) -> None:
    store.register_edge("edge-a", now=NOW)
    for identity_id in ("id-1", "id-2"):
        store.create_identity(identity_id, display_name="", watchlist_threshold=None, source="photo",
                              crop_paths=["a.jpg", "b.jpg"] if identity_id == "id-1" else [], embeddings={}, now=NOW)
    first = _sighting(store, "k1", "id-1", tracklet="t1", end_s=12.0)
    second = _sighting(store, "k2", "id-1", tracklet="t1", camera="cam-2", end_s=30.0)
    _sighting(store, "k3", "id-2", tracklet="t2", end_s=20.0)
    found = store.sightings_of_tracklets([("edge-a", "t1"), ("edge-a", "t2"), ("edge-b", "t1"), ("edge-a", "t1")])
    assert set(found) == {("edge-a", "t1"), ("edge-a", "t2")}
    assert found[("edge-a", "t1")].sighting_id == second != first  # the latest sighting of a tracklet
    assert store.sightings_of_tracklets([]) == {}
    many = [("edge-a", f"x{i}") for i in range(450)] + [("edge-a", "t2")]  # more than one query's worth
    assert list(store.sightings_of_tracklets(many)) == [("edge-a", "t2")]
    counts = store.identity_counts()
    assert (counts["id-1"].crop_count, counts["id-1"].sighting_count, counts["id-1"].last_seen_s) == (2, 2, 30.0)
    assert (counts["id-2"].crop_count, counts["id-2"].sighting_count) == (0, 1)
    assert list(store.identity_counts("id-2")) == ["id-2"] and store.identity_counts("id-x") == {}
    assert [s.sighting_id for s in store.sightings(camera_id="cam-2")] == [second]
    assert [s.sighting_id for s in store.sightings(identity_id="id-1", camera_id="cam-1")] == [first]


def test_a_version_1_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (component TEXT PRIMARY KEY, version BIGINT NOT NULL)")
    for ddl in MIGRATIONS[0]:
        conn.execute(ddl.format(blob="BLOB", serial_pk="INTEGER PRIMARY KEY"))
    conn.execute("INSERT INTO schema_version VALUES ('hub', 1)")
    conn.execute("INSERT INTO edges (edge_id, created_s) VALUES ('edge-old', 1.0)")
    conn.commit()
    conn.close()
    with SqliteHubStore(path) as store:
        assert store.get_edge("edge-old") is not None
        assert store.save_operator("ann", "h", now=NOW)
