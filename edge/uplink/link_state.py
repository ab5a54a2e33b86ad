"""The hub link's durable state: the last processed hub sequence and the dead letters.

Its own SQLite file (WAL, synchronous=FULL, like the store and the outbox), by default
``<outbox stem>.link.db`` beside the outbox. The sequence is written after a hub message is processed
and before it is acked, so a crash in between re-processes that message at most once more; the
handlers are idempotent for that (deltas by version, verdicts by sighting source, search results by
outbox key). Dead letters are outbox entries the hub REJECTED: kept here for an operator, with why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edge.uplink.outbox import Entry
from persist.sqlite import SqliteDatabase, write_transaction


@dataclass(frozen=True)
class DeadLetter:
    key: str
    kind: str
    payload: bytes
    reason: str
    time_s: float


class LinkState(SqliteDatabase):
    """The link's durable state (SQLite, WAL): the last processed hub sequence and the dead letters."""

    _MIGRATIONS: ClassVar[list[list[str]]] = [[
        "CREATE TABLE link_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE link_dead_letters (key TEXT PRIMARY KEY, kind TEXT NOT NULL, payload BLOB NOT NULL, "
        "reason TEXT NOT NULL, time REAL NOT NULL)",
    ]]

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            self._migrate("link", self._MIGRATIONS)
        except BaseException:
            self.close()
            raise

    @property
    def last_hub_sequence(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT value FROM link_meta WHERE key = 'hub_sequence'").fetchone()
        return int(row[0]) if row else 0

    def set_last_hub_sequence(self, sequence: int) -> None:
        with self._lock, write_transaction(self._conn) as conn:
            conn.execute("INSERT INTO link_meta (key, value) VALUES ('hub_sequence', ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(int(sequence)),))

    def add_dead_letter(self, entry: Entry, reason: str) -> None:
        with self._lock, write_transaction(self._conn) as conn:
            conn.execute("INSERT OR REPLACE INTO link_dead_letters (key, kind, payload, reason, time) "
                         "VALUES (?, ?, ?, ?, ?)", (entry.key, entry.kind, entry.payload, reason, time.time()))

    def dead_letters(self) -> list[DeadLetter]:
        with self._lock:
            rows = self._conn.execute("SELECT key, kind, payload, reason, time FROM link_dead_letters "
                                      "ORDER BY time, key").fetchall()
        return [DeadLetter(r[0], r[1], bytes(r[2]), r[3], float(r[4])) for r in rows]
