"""A durable outbox: messages for the hub wait in SQLite (WAL) until the hub acknowledges them.

Life of an entry: ``put`` → pending → ``mark_sent`` (in flight; attempts and last attempt time
recorded) → ``ack`` (deleted). ``requeue_inflight`` after a reconnect puts every in-flight entry back
in line; order is always the order of ``put`` (a sequence number that is never reused).

Durability: WAL with ``synchronous=FULL``, like the store — once ``put`` returns, the entry survives
a killed process and a power cut. Idempotency: an entry's key (given, or a fresh UUID) is unique;
putting a key that is queued stores nothing new — the first payload wins, as a producer replaying its
work after a crash may rebuild a message slightly differently (a warning is logged when it differs).
Acked keys are remembered (the last `remember_acked` of them), so such a replay does not send an acked
message again either; the hub still deduplicates by key, which is what makes delivery exactly-once.

File: by default its own file (e.g. ``outbox.db`` beside the store's ``edge.db``). It may share the
store's file — its tables are ``outbox*`` and ``schema_version`` has a row per component — but a
separate file keeps unsent messages safe when an operator wipes the store to reclaim space, and gives
the outbox its own write lock so a long retention pass never delays a ``put``. Nothing needs one
transaction across both: a producer derives the key from what it sends (e.g. the tracklet id), so
redoing "store, then put" after a crash is harmless.

Threads: one connection and one lock, as in the store.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from edge.storage.store import UnknownIdError
from models.errors import InvalidInputError
from persist.sqlite import SqliteDatabase, write_transaction

log = logging.getLogger(__name__)

DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024 - 64 * 1024  # under gRPC's default 4 MiB message limit


class PayloadTooLargeError(InvalidInputError):
    """A payload over the outbox's limit; the message names both sizes."""


_MIGRATIONS: list[list[str]] = [
    [  # 1
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, "
        "kind TEXT NOT NULL, payload BLOB NOT NULL, created REAL NOT NULL, "
        "inflight INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, last_attempt REAL)",
        "CREATE INDEX outbox_by_state ON outbox (inflight, seq)",
        "CREATE TABLE outbox_acked (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, "
        "acked REAL NOT NULL)",
    ],
]

_COLUMNS = "seq, key, kind, payload, created, inflight, attempts, last_attempt"


@dataclass(frozen=True)
class Entry:
    """One queued message, as stored."""

    key: str
    kind: str
    payload: bytes
    seq: int
    created: float
    inflight: bool
    attempts: int
    last_attempt: float | None


def _entry(row: tuple) -> Entry:
    seq, key, kind, payload, created, inflight, attempts, last_attempt = row
    return Entry(key, kind, bytes(payload), int(seq), float(created), bool(inflight), int(attempts),
                 None if last_attempt is None else float(last_attempt))


class Outbox(SqliteDatabase):
    """Durable FIFO of messages for the hub, keyed for idempotency. See the module docstring."""

    def __init__(self, path: Path, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
                 remember_acked: int = 100_000) -> None:
        if max_payload_bytes < 1:
            raise InvalidInputError(f"max_payload_bytes: expected >= 1, got {max_payload_bytes}")
        if remember_acked < 0:
            raise InvalidInputError(f"remember_acked: expected >= 0, got {remember_acked}")
        self.max_payload_bytes = max_payload_bytes
        self.remember_acked = remember_acked
        super().__init__(path)
        try:
            self._migrate("outbox", _MIGRATIONS)
        except BaseException:
            self.close()
            raise

    def put(self, kind: str, payload: bytes, idempotency_key: str | None = None) -> str:
        """Queue a message; returns its key. A key already queued or recently acked stores nothing."""
        if not isinstance(kind, str) or not kind:
            raise InvalidInputError(f"kind: expected a non-empty string, got {kind!r}")
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise InvalidInputError(f"payload: expected bytes, got {type(payload).__name__}")
        payload = bytes(payload)
        if len(payload) > self.max_payload_bytes:
            raise PayloadTooLargeError(f"payload of {kind!r}: expected at most {self.max_payload_bytes} bytes "
                                       f"(max_payload_bytes), got {len(payload)}")
        if idempotency_key is None:
            idempotency_key = uuid.uuid4().hex
        elif not isinstance(idempotency_key, str) or not idempotency_key:
            raise InvalidInputError(f"idempotency_key: expected a non-empty string or None, got {idempotency_key!r}")
        key = idempotency_key
        with self._lock, write_transaction(self._conn) as conn:
            row = conn.execute("SELECT kind, payload FROM outbox WHERE key = ?", (key,)).fetchone()
            if row is not None:
                if row[0] != kind or bytes(row[1]) != payload:
                    log.warning("outbox key %r is already queued with another kind or payload; keeping the first",
                                key)
                return key
            if conn.execute("SELECT 1 FROM outbox_acked WHERE key = ?", (key,)).fetchone() is not None:
                return key
            conn.execute("INSERT INTO outbox (key, kind, payload, created) VALUES (?, ?, ?, ?)",
                         (key, kind, payload, time.time()))
        return key

    def pending(self, limit: int = 100) -> list[Entry]:
        """Up to `limit` entries not in flight, first put first."""
        if not isinstance(limit, int) or limit < 1:
            raise InvalidInputError(f"limit: expected a positive int, got {limit!r}")
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM outbox WHERE inflight = 0 ORDER BY seq LIMIT ?",
                                      (limit,)).fetchall()
        return [_entry(r) for r in rows]

    def inflight(self) -> list[Entry]:
        """Entries sent but not yet acknowledged, first put first."""
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM outbox WHERE inflight = 1 ORDER BY seq").fetchall()
        return [_entry(r) for r in rows]

    def get(self, key: str) -> Entry | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {_COLUMNS} FROM outbox WHERE key = ?", (key,)).fetchone()
        return None if row is None else _entry(row)

    def mark_sent(self, key: str, now: float | None = None) -> None:
        """Mark an entry in flight (call it before sending): one more attempt, at `now`."""
        with self._lock, write_transaction(self._conn) as conn:
            cur = conn.execute("UPDATE outbox SET inflight = 1, attempts = attempts + 1, last_attempt = ? "
                               "WHERE key = ?", (time.time() if now is None else float(now), key))
            if cur.rowcount == 0:
                raise UnknownIdError(f"unknown outbox key {key!r} (never queued, or already acknowledged)")

    def ack(self, key: str) -> bool:
        """The hub has the entry: delete it. False (and nothing changes) when the key is not queued."""
        with self._lock, write_transaction(self._conn) as conn:
            if conn.execute("DELETE FROM outbox WHERE key = ?", (key,)).rowcount == 0:
                return False
            if self.remember_acked:
                conn.execute("INSERT OR IGNORE INTO outbox_acked (key, acked) VALUES (?, ?)", (key, time.time()))
                conn.execute("DELETE FROM outbox_acked WHERE seq <= (SELECT MAX(seq) FROM outbox_acked) - ?",
                             (self.remember_acked,))
            return True

    def requeue_inflight(self) -> int:
        """After a reconnect: every in-flight entry becomes pending again (keeping its place). Returns how many."""
        with self._lock, write_transaction(self._conn) as conn:
            return int(conn.execute("UPDATE outbox SET inflight = 0 WHERE inflight = 1").rowcount)

    def depth(self) -> int:
        """Entries not yet acknowledged, pending and in flight."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

