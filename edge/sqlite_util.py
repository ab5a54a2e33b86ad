"""SQLite plumbing shared by the edge's store and outbox: opening, write transactions, migrations.

Durability: WAL with ``synchronous=FULL`` — every commit fsyncs the WAL before returning, so what a
call acknowledged (by returning) survives a killed process *and* a power cut. ``NORMAL`` survives only
the former, and edge boxes (a Jetson on a pole) lose power far more often than servers.

``schema_version`` has a row per component (``store``, ``outbox``), so several components may share
one database file, each migrating its own tables.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from models.errors import CrossviewError


class SchemaVersionError(CrossviewError):
    """The database was written by a newer crossview than this one."""


def open_database(path: Path) -> sqlite3.Connection:
    """Open `path` in WAL mode with synchronous=FULL and foreign keys on; autocommit, explicit BEGINs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise CrossviewError(f"{path}: expected journal mode wal, got {mode} (is it on a network share?)")
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


def migrate(conn: sqlite3.Connection, component: str, migrations: Sequence[Sequence[str]]) -> int:
    """Bring `component` up to version len(migrations); step i (1-based) is migrations[i-1]."""
    with write_transaction(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version "
                     "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version WHERE component = ?", (component,)).fetchone()
        current = int(row[0]) if row else 0
        if current > len(migrations):
            raise SchemaVersionError(f"{component} schema is version {current}; this crossview knows up to "
                                     f"{len(migrations)}: upgrade crossview")
        for steps in migrations[current:]:
            for sql in steps:
                conn.execute(sql)
        conn.execute("INSERT INTO schema_version (component, version) VALUES (?, ?) "
                     "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                     (component, len(migrations)))
    return len(migrations)
