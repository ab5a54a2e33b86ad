"""The default hub store: one SQLite file in WAL mode.

One connection, guarded by a lock: the hub's writes are small and SQLite serialises writers anyway.
The connection and its pragmas come from `persist.sqlite` (as the edge stores'):
``synchronous=FULL`` makes every acknowledged write (a short list's verdict, a queued message)
survive a power cut, not only a killed process. For several hub replicas use the PostgreSQL store.

The file and its -wal/-shm companions are readable by the hub's user only (0600): they hold operators'
password hashes and edge-token hashes. SQLite gives the companions the main file's mode.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cloud.store.base import StoreError
from cloud.store.schema import SQLITE, Tx, migrate
from cloud.store.sql import SqlHubStore
from persist.sqlite import open_database

log = logging.getLogger(__name__)


def _create_private(path: Path) -> None:
    """Create `path` empty with mode 0600 unless it exists (its folder too)."""
    if str(path) == ":memory:" or path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class SqliteHubStore(SqlHubStore):
    """`HubStore` on a SQLite file (created, with its folder, if missing; schema migrated on open)."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        _create_private(self.path)
        self._conn: sqlite3.Connection | None = open_database(self.path, timeout_s=busy_timeout_s, error=StoreError)
        try:
            with self._transaction() as tx:
                migrate(tx, SQLITE)
        except BaseException:
            self.close()
            raise
        for suffix in ("", "-wal", "-shm"):  # a file an older version created 0644
            try:
                os.chmod(f"{self.path}{suffix}", 0o600)
            except FileNotFoundError:
                pass
            except OSError as exc:  # another owner's file: say so, still open it
                log.warning("%s%s: cannot make it private (0600): %s", self.path, suffix, exc.strerror or exc)

    def _execute(self, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
        assert self._conn is not None
        return self._conn.execute(sql, params)

    @contextlib.contextmanager
    def _transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[Tx]:
        with self._lock:
            if self._conn is None:
                raise StoreError(f"{self.path}: the store is closed")
            self._conn.execute(begin)
            try:
                yield Tx(self._execute)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def _reading(self) -> contextlib.AbstractContextManager[Tx]:
        return self._transaction("BEGIN")  # deferred: a read takes no write lock

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"SqliteHubStore({str(self.path)!r})"
