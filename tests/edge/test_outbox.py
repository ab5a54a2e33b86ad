"""Outbox: FIFO, idempotency, in-flight bookkeeping, limits, reopen, threads, and sharing the store's file."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.storage.schema import STORE_MIGRATIONS
from edge.storage.store import TrackletStore, UnknownIdError
from edge.uplink.outbox import _MIGRATIONS as OUTBOX_MIGRATIONS
from edge.uplink.outbox import Outbox, PayloadTooLargeError
from models.errors import InvalidInputError


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    box = Outbox(tmp_path / "outbox.db", max_payload_bytes=1024)
    yield box
    box.close()


def test_fifo_round_trip(outbox: Outbox) -> None:
    keys = [outbox.put("shortlist", f"p{i}".encode(), f"k{i}") for i in range(5)]
    assert keys == [f"k{i}" for i in range(5)]
    entries = outbox.pending(10)
    assert [(e.key, e.kind, e.payload) for e in entries] == [(f"k{i}", "shortlist", f"p{i}".encode())
                                                             for i in range(5)]
    assert all(not e.inflight and e.attempts == 0 and e.last_attempt is None for e in entries)
    assert [e.key for e in outbox.pending(2)] == ["k0", "k1"]
    assert outbox.depth() == 5


def test_generated_keys_are_unique(outbox: Outbox) -> None:
    keys = {outbox.put("heartbeat", b"") for _ in range(20)}
    assert len(keys) == 20 and outbox.depth() == 20


def test_idempotent_put(outbox: Outbox, caplog: pytest.LogCaptureFixture) -> None:
    outbox.put("shortlist", b"payload", "tracklet-1")
    outbox.put("other", b"x", "tracklet-2")
    assert outbox.put("shortlist", b"payload", "tracklet-1") == "tracklet-1"
    assert outbox.depth() == 2 and [e.key for e in outbox.pending()] == ["tracklet-1", "tracklet-2"]
    assert caplog.records == []
    assert outbox.put("shortlist", b"rebuilt differently", "tracklet-1") == "tracklet-1"
    assert outbox.depth() == 2 and outbox.pending()[0].payload == b"payload"  # the first one wins
    assert "'tracklet-1' is already queued" in caplog.text


def test_acked_key_is_not_queued_again(outbox: Outbox) -> None:
    outbox.put("shortlist", b"payload", "tracklet-1")
    assert outbox.ack("tracklet-1")
    outbox.put("shortlist", b"payload", "tracklet-1")  # a producer replaying after a restart
    assert outbox.depth() == 0


def test_acked_keys_are_forgotten_beyond_the_limit(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", remember_acked=2) as box:
        for key in ("a", "b", "c"):
            box.put("k", b"1", key)
            box.ack(key)
        for key in ("a", "b", "c"):
            box.put("k", b"1", key)
        assert [e.key for e in box.pending()] == ["a"]


def test_send_ack_requeue_cycle(outbox: Outbox) -> None:
    for i in range(4):
        outbox.put("shortlist", b"x", f"k{i}")
    outbox.mark_sent("k0", now=100.0)
    outbox.mark_sent("k2", now=101.0)
    assert [e.key for e in outbox.pending()] == ["k1", "k3"]
    assert [(e.key, e.attempts, e.last_attempt) for e in outbox.inflight()] == [("k0", 1, 100.0), ("k2", 1, 101.0)]
    assert outbox.depth() == 4

    assert outbox.ack("k2") is True
    assert outbox.ack("k2") is False
    assert outbox.ack("never-queued") is False
    assert outbox.depth() == 3

    assert outbox.requeue_inflight() == 1
    assert [e.key for e in outbox.pending()] == ["k0", "k1", "k3"]  # k0 keeps its place
    outbox.mark_sent("k0", now=200.0)
    entry = outbox.get("k0")
    assert entry is not None and (entry.attempts, entry.last_attempt, entry.inflight) == (2, 200.0, True)
    assert outbox.get("k2") is None


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda b: b.put("shortlist", b"x" * 1025), PayloadTooLargeError, "at most 1024 bytes.*got 1025"),
    (lambda b: b.put("", b"x"), InvalidInputError, "kind"),
    (lambda b: b.put("shortlist", "text"), InvalidInputError, "expected bytes, got str"),
    (lambda b: b.put("shortlist", b"x", ""), InvalidInputError, "idempotency_key"),
    (lambda b: b.pending(0), InvalidInputError, "limit"),
    (lambda b: b.mark_sent("nope"), UnknownIdError, "unknown outbox key 'nope'"),
])
def test_errors(outbox: Outbox, call: Callable[[Outbox], object], error: type[Exception], message: str) -> None:
    outbox.put("shortlist", b"ok", "k")
    with pytest.raises(error, match=message):
        call(outbox)
    assert [e.key for e in outbox.pending()] == ["k"]


def test_payload_at_the_limit_is_accepted(outbox: Outbox) -> None:
    outbox.put("shortlist", bytearray(1024), "k")
    assert outbox.pending()[0].payload == bytes(1024)


def test_survives_reopen_with_state(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        for i in range(3):
            box.put("shortlist", bytes([i]), f"k{i}")
        box.mark_sent("k0")
        box.ack("k1")
    with Outbox(tmp_path / "o.db") as box:
        assert [e.key for e in box.inflight()] == ["k0"] and [e.key for e in box.pending()] == ["k2"]
        box.requeue_inflight()
        assert [e.key for e in box.pending()] == ["k0", "k2"]
        assert box.put("shortlist", b"new") not in {"k0", "k2"}
        assert [e.key for e in box.pending()][:2] == ["k0", "k2"]


def test_durability_settings(outbox: Outbox) -> None:
    with sqlite3.connect(outbox.path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()
    assert outbox._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_can_share_the_store_file(tmp_path: Path) -> None:
    with TrackletStore(tmp_path / "edge.db") as store, Outbox(tmp_path / "edge.db") as box:
        store.add_camera("cam1")
        box.put("shortlist", b"x", "k")
        assert store.stats().cameras == 1 and box.depth() == 1
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL, as the outbox
    with sqlite3.connect(tmp_path / "edge.db") as raw:
        versions = dict(raw.execute("SELECT component, version FROM schema_version"))
    raw.close()
    assert versions == {"store": len(STORE_MIGRATIONS), "outbox": len(OUTBOX_MIGRATIONS)}


def test_threads_put_and_ack(outbox: Outbox) -> None:
    def producer(t: int) -> None:
        for i in range(25):
            outbox.put("shortlist", b"x", f"t{t}-{i}")
            outbox.put("shortlist", b"x", f"t{t}-{i}")

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outbox.depth() == 100
    for t in range(4):
        per_thread = [int(e.key.split("-")[1]) for e in outbox.pending(1000) if e.key.startswith(f"t{t}-")]
        assert per_thread == list(range(25))  # each producer's order is kept
    for e in outbox.pending(1000):
        outbox.mark_sent(e.key)
        assert outbox.ack(e.key)
    assert outbox.depth() == 0
