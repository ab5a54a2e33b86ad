"""SQLite plumbing for every store: opening a connection, write transactions, one migration runner.

Durability: WAL with ``synchronous=FULL`` — every commit fsyncs the WAL before returning, so what a
call acknowledged (by returning) survives a killed process *and* a power cut. ``NORMAL`` survives only
the former, and edge boxes (a Jetson on a pole) lose power far more often than servers.

Migrations: ``schema_version`` has a row per component (``store``, ``outbox``, ``gallery``, ``link``,
``hub``), so several components may share one database file, each migrating its own tables. Step i
(1-based) of a component's migrations brings it from version i - 1 to i; a released step is never
edited, a new one is appended. A database newer than the code is refused (`SchemaVersionError`).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

from models.errors import CrossviewError

Statement = TypeVar("Statement")

SCHEMA_VERSION_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY, version BIGINT NOT NULL)"
)


class SchemaVersionError(CrossviewError):
    """The database was written by a newer crossview than this one."""


def open_database(path: str | Path, *, timeout_s: float = 30.0,
                  error: type[Exception] = CrossviewError) -> sqlite3.Connection:
    """Open `path` (its folder created) in WAL mode with synchronous=FULL and foreign keys on.

    Autocommit (``isolation_level=None``): callers BEGIN explicitly (`write_transaction`). Usable from
    any thread; callers serialise access. A file system without WAL (a network share) raises `error`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None, check_same_thread=False)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise error(f"{path}: expected journal mode wal, got {mode} (is it on a network share?)")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _as_sql(statement: Any) -> str | None:
    return statement


def run_migrations(execute: Callable[[str, Sequence[Any]], Any], component: str,
                   migrations: Sequence[Sequence[Statement]],
                   render: Callable[[Statement], str | None] = _as_sql) -> int:
    """Bring `component` to version len(migrations) inside the caller's transaction; the version reached.

    `execute(sql, params)` runs one statement (``?`` placeholders); `render` turns a migration
    statement into SQL, or None to skip it (a statement for another database backend).
    """
    execute(SCHEMA_VERSION_DDL, ())
    row = execute("SELECT version FROM schema_version WHERE component = ?", (component,)).fetchone()
    current = int(row[0]) if row else 0
    if current > len(migrations):
        raise SchemaVersionError(f"{component} schema is version {current}; this crossview knows up to "
                                 f"{len(migrations)}: upgrade crossview")
    for steps in migrations[current:]:
        for statement in steps:
            sql = render(statement)
            if sql is not None:
                execute(sql, ())
    execute("INSERT INTO schema_version (component, version) VALUES (?, ?) "
            "ON CONFLICT (component) DO UPDATE SET version = excluded.version", (component, len(migrations)))
    return len(migrations)


def migrate(conn: sqlite3.Connection, component: str, migrations: Sequence[Sequence[str]]) -> int:
    """`run_migrations` on a SQLite connection, in its own write transaction."""
    with write_transaction(conn):
        return run_migrations(conn.execute, component, migrations)


class SqliteDatabase:
    """Base of a store on one SQLite file: the connection (`open_database`), a lock, close, `with`.

    A subclass calls ``super().__init__(path)``, then migrates (`_migrate`) and reads what it needs,
    calling `close` if that fails. Hold ``self._lock`` around every use of ``self._conn``. `close` is
    idempotent; `_release` is where a subclass frees what it holds besides the connection.
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._closed = False
        self._conn = open_database(self.path, timeout_s=timeout_s)

    def _migrate(self, component: str, migrations: Sequence[Sequence[str]]) -> int:
        with self._lock:
            return migrate(self._conn, component, migrations)

    def _release(self) -> None:
        """Free what the subclass holds besides the connection; called once, by `close`."""

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.close()
            finally:
                self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

