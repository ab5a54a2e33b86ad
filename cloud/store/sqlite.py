"""The default hub store: one SQLite file in WAL mode.

One connection, guarded by a lock: the hub's writes are small and SQLite serialises writers anyway.
``synchronous=FULL`` makes every acknowledged write (a short list's verdict, a queued message)
survive a power cut, not only a killed process. For several hub replicas use the PostgreSQL store.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cloud.store.base import StoreError
from cloud.store.schema import SQLITE, Tx, migrate
from cloud.store.sql import SqlHubStore


class SqliteHubStore(SqlHubStore):
    """`HubStore` on a SQLite file (created, with its folder, if missing; schema migrated on open)."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            str(self.path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        try:
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: expected journal mode wal, got {mode} (a network share?)")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            with self._transaction() as tx:
                migrate(tx, SQLITE)
        except BaseException:
            self.close()
            raise

    def _execute(self, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
        assert self._conn is not None
        return self._conn.execute(sql, params)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Tx]:
        with self._lock:
            if self._conn is None:
                raise StoreError(f"{self.path}: the store is closed")
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._execute)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"SqliteHubStore({str(self.path)!r})"
