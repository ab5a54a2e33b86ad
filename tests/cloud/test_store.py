"""The hub store, on SQLite and on PostgreSQL (skipped with a reason when PostgreSQL is not reachable)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cloud.store import (
    HubStore,
    NewSighting,
    SchemaVersionError,
    SearchJobRecord,
    ShortListSummary,
    StoreError,
    TokenRecord,
    VerdictRecord,
)

NOW = 1_700_000_000.0


def summary(key: str, edge_id: str = "edge-a") -> ShortListSummary:
    return ShortListSummary(key, edge_id, "cam-1", f"t-{key}", 3, 10.0, 12.5, 2, (("id-1", 0.25), ("id-2", 0.5)),
                            "fp@1", 4, NOW)


def verdict(key: str, decision: str = "confirmed", identity_id: str | None = "id-1") -> VerdictRecord:
    return VerdictRecord(key, decision, identity_id, 0.9, "reid", {"id-1": 0.9, "id-2": 0.2}, NOW)  # type: ignore[arg-type]


def sighting(key: str, identity_id: str | None = "id-1") -> NewSighting:
    p_same = None if identity_id is None else (0.9, 0.6, 0.95)
    return NewSighting(identity_id, "edge-a", "cam-1", f"t-{key}", 10.0, 12.5, f"sightings/{key}.jpg",
                       *(p_same or (None, None, None)), key)


def vectors(n: int, dim: int = 4, value: float = 1.0) -> np.ndarray:
    return np.full((n, dim), value, np.float32)


def test_edges_and_tokens(store: HubStore) -> None:
    edge = store.register_edge("edge-a", site="north", now=NOW)
    assert (edge.edge_id, edge.site, edge.last_sequence, edge.connected_hub_id) == ("edge-a", "north", 0, None)
    assert store.register_edge("edge-a", now=NOW + 1).created_s == NOW  # registering again changes nothing
    store.add_token(TokenRecord("t1", "edge-a", "hash", NOW, NOW + 60, revoked=False))
    assert store.get_token("t1") == TokenRecord("t1", "edge-a", "hash", NOW, NOW + 60, False)
    with pytest.raises(StoreError, match="unknown edge"):
        store.add_token(TokenRecord("t2", "edge-x", "hash", NOW, None, revoked=False))
    assert store.revoke_token("t1") and not store.revoke_token("t1")
    assert store.get_token("t1").revoked  # type: ignore[union-attr]

    edge = store.record_hello("edge-a", site="north", model_fingerprint="fp@1", embedding_dim=4,
                              cameras=[{"camera_id": "cam-1", "fps": 10.0}], gallery_version=3, acked_sequence=0,
                              hub_id="hub-1", now=NOW + 2)
    assert (edge.model_fingerprint, edge.connected_hub_id, edge.cameras[0]["camera_id"]) == ("fp@1", "hub-1", "cam-1")
    store.touch_edge("edge-a", now=NOW + 3, stats={"outbox_depth": 2}, gallery_version=5)
    edge = store.get_edge("edge-a")
    assert edge is not None
    assert (edge.last_seen_s, edge.stats, edge.gallery_version) == (NOW + 3, {"outbox_depth": 2}, 5)
    store.record_disconnect("edge-a", hub_id="other-hub", now=NOW + 4)  # another replica's session: untouched
    assert store.get_edge("edge-a").connected_hub_id == "hub-1"  # type: ignore[union-attr]
    store.record_disconnect("edge-a", hub_id="hub-1", now=NOW + 4)
    assert store.get_edge("edge-a").connected_hub_id is None  # type: ignore[union-attr]
    assert [e.edge_id for e in store.list_edges()] == ["edge-a"]
    assert store.fingerprints() == {"fp@1"}
    assert store.delete_edge("edge-a") and store.get_token("t1") is None  # tokens go with their edge


def test_gallery_versions_and_entries(store: HubStore) -> None:
    assert store.gallery_version() == 0
    v1 = store.create_identity("id-1", display_name="Ann", watchlist_threshold=None, source="photo",
                               crop_paths=["a.jpg", "b.jpg"], embeddings={"fp@1": vectors(2)}, now=NOW)
    v2 = store.create_identity("id-2", display_name="", watchlist_threshold=0.3, source="auto",
                               crop_paths=["c.jpg"], embeddings={}, now=NOW)
    assert (v1, v2) == (1, 2)
    assert store.create_identity("id-1", display_name="again", watchlist_threshold=None, source="photo",
                                 crop_paths=[], embeddings={}, now=NOW) is None
    assert store.identities_missing("fp@1") == ["id-2"]
    v3 = store.set_embeddings("id-2", "fp@1", vectors(1, value=2.0), now=NOW)
    v4 = store.add_reference_crops("id-1", ["d.jpg"], {"fp@1": vectors(1, value=3.0)}, now=NOW)
    assert (v3, v4) == (3, 4)
    assert store.get_embeddings("id-1", "fp@1").shape == (3, 4)  # type: ignore[union-attr]
    with pytest.raises(StoreError, match="dimension"):
        store.add_reference_crops("id-1", ["e.jpg"], {"fp@1": vectors(1, dim=5)}, now=NOW)
    assert [c.path for c in store.reference_crops("id-1")] == ["a.jpg", "b.jpg", "d.jpg"]

    v5 = store.update_identity("id-2", watchlist_threshold=None, display_name="Bo", now=NOW)
    identity = store.get_identity("id-2")
    assert identity is not None and (identity.display_name, identity.watchlist_threshold, identity.version) == (
        "Bo", None, v5)
    entries = store.gallery_entries("fp@1", after_version=0, up_to_version=v5, include_deleted=False, limit=10)
    assert [(e.identity.identity_id, e.identity.version) for e in entries] == [("id-1", 4), ("id-2", 5)]
    assert entries[0].vectors is not None and entries[0].vectors[2, 0] == 3.0
    assert store.gallery_entries("fp@other", after_version=0, up_to_version=v5, include_deleted=False,
                                 limit=10)[0].vectors is None

    v6, paths = store.remove_identity("id-1", now=NOW)
    assert paths == ["a.jpg", "b.jpg", "d.jpg"] and store.reference_crops("id-1") == []
    with pytest.raises(StoreError, match="unknown identity"):
        store.remove_identity("id-1", now=NOW)
    tombstones = store.gallery_entries("fp@1", after_version=5, up_to_version=v6, include_deleted=True, limit=10)
    assert [(e.identity.identity_id, e.identity.deleted) for e in tombstones] == [("id-1", True)]
    assert [i.identity_id for i in store.list_identities()] == ["id-2"]
    assert store.bump_gallery_version() == v6 + 1
    assert store.prune_tombstones(v6 + 1) == 1 and store.gallery_floor() == v6 + 1


def test_short_list_claims_are_idempotent_and_leased(store: HubStore) -> None:
    store.register_edge("edge-a", now=NOW)
    assert store.claim_short_list(summary("k1"), now=NOW, lease_s=60) == "new"
    assert store.claim_short_list(summary("k1"), now=NOW + 1, lease_s=60) == "in_progress"
    assert store.claim_short_list(summary("k1"), now=NOW + 61, lease_s=60) == "new"  # its worker died
    done = store.complete_short_list(verdict("k1"), sighting("k1"), edge_id="edge-a", verdict_payload=b"v1",
                                     alert=True, now=NOW)
    assert done.sequence == 1 and done.sighting_id is not None and done.alert_id is not None
    assert store.claim_short_list(summary("k1"), now=NOW + 100, lease_s=60) == "duplicate"
    with pytest.raises(StoreError, match="not being processed"):
        store.complete_short_list(verdict("k1"), None, edge_id="edge-a", verdict_payload=b"", alert=False, now=NOW)
    assert store.count_short_lists() == 1 and store.count_short_lists("edge-a") == 1

    record = store.get_short_list("k1")
    assert record is not None and record.status == "done" and record.summary == summary("k1")
    assert store.get_verdict("k1") == verdict("k1")
    seen = store.get_sighting(done.sighting_id)  # type: ignore[arg-type]
    assert seen is not None and seen.identity_id == "id-1" and not seen.unknown
    assert (seen.p_same, seen.stage1_p_same, seen.stage2_p_same) == (0.9, 0.6, 0.95)
    alerts = [(a.sighting_id, a.p_same, a.start_s, a.end_s) for a in store.alerts()]
    assert alerts == [(done.sighting_id, 0.9, 10.0, 12.5)]
    assert store.alerts(after_id=done.alert_id) == []  # type: ignore[arg-type]

    assert store.claim_short_list(summary("k2"), now=NOW, lease_s=60) == "new"
    store.release_short_list("k2")  # processing failed: a retry starts afresh
    assert store.claim_short_list(summary("k2"), now=NOW, lease_s=60) == "new"
    store.complete_short_list(verdict("k2", "rejected", None), None, edge_id="edge-a", verdict_payload=b"v2",
                              alert=False, now=NOW)
    assert [s.idempotency_key for s in store.sightings(identity_id="id-1")] == ["k1"]


def test_outgoing_sequences_acks_and_resume(store: HubStore) -> None:
    store.register_edge("edge-a", now=NOW)
    assert store.enqueue_outgoing("edge-a", "verdict", [b"a", b"b"], now=NOW) == [1, 2]
    assert store.enqueue_outgoing("edge-a", "gallery_delta", [b"c"], now=NOW) == [3]
    assert [m.sequence for m in store.outgoing_after("edge-a", 1)] == [2, 3]
    assert store.ack_outgoing("edge-a", 1) == 1 and store.get_edge("edge-a").last_acked_sequence == 1  # type: ignore[union-attr]
    # a reconnect drops what the edge acked and the stale gallery deltas (a fresh delta replaces them)
    store.record_hello("edge-a", site="", model_fingerprint="fp@1", embedding_dim=4, cameras=[], gallery_version=0,
                       acked_sequence=1, hub_id="h", now=NOW)
    assert [(m.sequence, m.kind, m.payload) for m in store.outgoing_after("edge-a", 0)] == [(2, "verdict", b"b")]
    # an edge that acked sequences this database never issued still gets new numbers above them
    store.record_hello("edge-a", site="", model_fingerprint="fp@1", embedding_dim=4, cameras=[], gallery_version=0,
                       acked_sequence=40, hub_id="h", now=NOW)
    assert store.enqueue_outgoing("edge-a", "verdict", [b"d"], now=NOW) == [41]
    with pytest.raises(StoreError, match="unknown edge"):
        store.enqueue_outgoing("edge-x", "verdict", [b"e"], now=NOW)
    assert store.count_outgoing("edge-a") == 1


def test_replicas_share_counters(open_store: Callable[[], HubStore]) -> None:
    """Two store instances on one database (two hub replicas): versions and sequences never collide."""
    first, second = open_store(), open_store()
    first.register_edge("edge-a", now=NOW)
    sequences: list[int] = []
    versions: list[int] = []
    lock = threading.Lock()

    def work(store: HubStore, worker: int) -> None:
        for i in range(10):
            seq = store.enqueue_outgoing("edge-a", "verdict", [b"x"], now=NOW)
            version = store.create_identity(f"id-{worker}-{i}", display_name="", watchlist_threshold=None,
                                            source="photo", crop_paths=[], embeddings={}, now=NOW)
            with lock:
                sequences.extend(seq)
                versions.append(version)  # type: ignore[arg-type]

    threads = [threading.Thread(target=work, args=(s, n)) for n, s in enumerate([first, second, first, second])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(sequences) == list(range(1, 41))
    assert sorted(versions) == list(range(1, 41))
    assert second.gallery_version() == first.gallery_version() == 40


def test_reopen_keeps_data_and_refuses_newer_schema(open_store: Callable[[], HubStore]) -> None:
    store = open_store()
    store.register_edge("edge-a", now=NOW)
    store.close()
    again = open_store()
    assert again.get_edge("edge-a") is not None
    with again._transaction() as tx:  # type: ignore[attr-defined]
        tx.execute("UPDATE schema_version SET version = 99 WHERE component = 'hub'")
    with pytest.raises(SchemaVersionError, match="upgrade crossview"):
        open_store()


def test_search_jobs_and_results_shared_by_replicas(open_store: Callable[[], HubStore]) -> None:
    asker, other = open_store(), open_store()
    asker.create_search_job(SearchJobRecord("job-1", "replica-a", ("edge-a", "edge-b"), NOW + 10, NOW))
    asker.create_search_job(SearchJobRecord("job-old", "replica-a", ("edge-a",), NOW - 7200, NOW - 7210))
    assert other.get_search_job("job-1") == SearchJobRecord("job-1", "replica-a", ("edge-a", "edge-b"), NOW + 10, NOW)
    assert other.get_search_job("nope") is None
    assert other.add_search_result("job-1", "edge-b", "job-1/0", b"batch-0", now=NOW + 1)
    assert not other.add_search_result("job-1", "edge-b", "job-1/0", b"batch-0", now=NOW + 2)  # a retry: kept once
    assert other.add_search_result("job-1", "edge-a", "job-1/0", b"a-0", now=NOW + 2)  # keys are per edge
    assert other.add_search_result("job-old", "edge-a", "job-old/0", b"old", now=NOW + 2)
    with pytest.raises(StoreError, match="unknown search job"):
        other.add_search_result("nope", "edge-b", "nope/0", b"x", now=NOW)
    rows = asker.search_results_after("job-1", 0)
    assert [(r.edge_id, r.payload) for r in rows] == [("edge-b", b"batch-0"), ("edge-a", b"a-0")]
    assert [r.payload for r in asker.search_results_after("job-1", rows[0].result_id)] == [b"a-0"]
    assert asker.delete_search_jobs(deadline_before_s=NOW - 3600) == 1
    assert asker.get_search_job("job-old") is None and asker.search_results_after("job-old", 0) == []
    assert asker.get_search_job("job-1") is not None


def test_newest_alert_id_of_an_empty_store(store: HubStore) -> None:
    assert store.newest_alert_id() == 0


def test_unknown_sightings_are_listed_and_promoted(store: HubStore) -> None:
    store.register_edge("edge-a", now=NOW)
    ids = {}
    for key, identity_id in (("k1", "id-1"), ("k2", None), ("k3", None)):
        store.claim_short_list(summary(key), now=NOW, lease_s=60)
        decision = "confirmed" if identity_id else "rejected"
        done = store.complete_short_list(verdict(key, decision, identity_id), sighting(key, identity_id),
                                         edge_id="edge-a", verdict_payload=b"v", alert=False, now=NOW)
        ids[key] = done.sighting_id
    unknown = store.sightings(unknown=True)
    assert [s.idempotency_key for s in unknown] == ["k3", "k2"]  # newest first
    assert all(s.unknown and s.p_same is None and s.stage1_p_same is None for s in unknown)
    assert [s.idempotency_key for s in store.sightings()] == ["k3", "k2", "k1"]
    assert store.sightings(unknown=True, edge_id="edge-b") == []

    assert store.assign_sighting(ids["k2"], "id-2")
    assert not store.assign_sighting(ids["k2"], "id-3")  # it has an identity now
    assert not store.assign_sighting(ids["k1"], "id-3")
    with pytest.raises(StoreError, match="unknown sighting"):
        store.assign_sighting(999_999, "id-3")
    assert [s.idempotency_key for s in store.sightings(unknown=True)] == ["k3"]
    assert [s.idempotency_key for s in store.sightings(identity_id="id-2")] == ["k2"]


def test_an_alert_needs_an_identity_and_a_p_same(store: HubStore) -> None:
    store.register_edge("edge-a", now=NOW)
    store.claim_short_list(summary("k1"), now=NOW, lease_s=60)
    with pytest.raises(StoreError, match="an alert needs"):
        store.complete_short_list(verdict("k1", "rejected", None), sighting("k1", None), edge_id="edge-a",
                                  verdict_payload=b"v", alert=True, now=NOW)
    assert store.sightings() == [] and store.alerts() == []  # nothing of the transaction was kept


def _version_3_database(backend: str, tmp_path: Path, open_store: Callable[[], HubStore]) -> None:
    """Create the tables as crossview wrote them at schema version 3, with one sighting, alert and verdict."""
    from cloud.store import schema

    dialect = schema.SQLITE if backend == "sqlite" else schema.POSTGRES
    rows = [
        "INSERT INTO short_lists VALUES ('k1', 'edge-a', 'cam-1', 't-k1', 3, 10.0, 12.5, 2, '[]', 'fp@1', 4, "
        f"{NOW}, 'done', {NOW}, {NOW})",
        f"INSERT INTO verdicts VALUES ('k1', 'confirmed', 'id-1', 0.7, 'reid', '{{}}', {NOW})",
        "INSERT INTO sightings (sighting_id, identity_id, edge_id, camera_id, tracklet_id, start_s, end_s, crop_path, "
        f"stage1_distance, stage2_score, idempotency_key, created_s) VALUES (5, 'id-1', 'edge-a', 'cam-1', 't-k1', "
        f"10.0, 12.5, 'sightings/k1.jpg', 0.25, 0.7, 'k1', {NOW})",
        f"INSERT INTO alerts (identity_id, sighting_id, edge_id, camera_id, stage2_score, created_s) VALUES "
        f"('id-1', 5, 'edge-a', 'cam-1', 0.7, {NOW})",
        "INSERT INTO schema_version (component, version) VALUES ('hub', 3)",
    ]
    statements = [schema.SCHEMA_VERSION_DDL]
    for steps in schema.MIGRATIONS[:3]:
        statements += [dialect.render(ddl) for ddl in steps if isinstance(ddl, str)]
    if backend == "sqlite":
        import sqlite3

        with sqlite3.connect(tmp_path / "hub.db") as conn:
            for sql in statements + rows:
                conn.execute(sql)
        return
    # PostgreSQL: make the fixture's schema, then fill it as version 3 left it
    probe = open_store()
    schema_name = probe.schema  # type: ignore[attr-defined]
    probe.drop_schema()  # type: ignore[attr-defined]
    import psycopg

    with psycopg.connect(probe.conninfo, autocommit=True) as conn:  # type: ignore[attr-defined]
        conn.execute(f"CREATE SCHEMA {schema_name}")
        conn.execute(f"SET search_path TO {schema_name}")
        with conn.transaction():
            for sql in statements + rows:
                conn.execute(sql)


def test_schema_3_migrates_to_p_same_and_nullable_identities(backend: str, tmp_path: Path,
                                                             open_store: Callable[[], HubStore]) -> None:
    _version_3_database(backend, tmp_path, open_store)
    store = open_store()
    old = store.get_sighting(5)
    assert old is not None and old.identity_id == "id-1"
    # a stage-1 distance is no probability: dropped; the judge's score stays as stage 2 and fused value
    assert (old.p_same, old.stage1_p_same, old.stage2_p_same) == (0.7, None, 0.7)
    assert [(a.sighting_id, a.p_same, a.start_s) for a in store.alerts()] == [(5, 0.7, 10.0)]
    assert store.get_verdict("k1").p_same == 0.7  # type: ignore[union-attr]
    store.register_edge("edge-a", now=NOW)
    store.claim_short_list(summary("k2"), now=NOW, lease_s=60)
    done = store.complete_short_list(verdict("k2", "rejected", None), sighting("k2", None), edge_id="edge-a",
                                     verdict_payload=b"v", alert=False, now=NOW)
    assert done.sighting_id == 6  # numbering continues after the kept ids
    assert [s.sighting_id for s in store.sightings(unknown=True)] == [6]


def test_sqlite_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    """A read opens a deferred transaction: another connection holding the write lock does not stall it."""
    import sqlite3

    from cloud.store.sqlite import SqliteHubStore

    path = tmp_path / "hub.db"
    with SqliteHubStore(path, busy_timeout_s=0.2) as store:
        store.register_edge("edge-a", now=1.0)
        writer = sqlite3.connect(path, isolation_level=None)
        try:
            writer.execute("BEGIN IMMEDIATE")
            assert store.get_edge("edge-a") is not None and store.gallery_version() == 0
            with pytest.raises((StoreError, sqlite3.OperationalError)):  # a write waits for the lock, then gives up
                store.register_edge("edge-b", now=2.0)
        finally:
            writer.execute("ROLLBACK")
            writer.close()
