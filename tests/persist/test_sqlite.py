"""persist.sqlite: the one migration runner and the SQLite base of the stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from persist.sqlite import SchemaVersionError, SqliteDatabase, migrate, open_database, run_migrations

STEPS = [
    ["CREATE TABLE a (x INTEGER)", "INSERT INTO a VALUES (1)"],
    ["ALTER TABLE a ADD COLUMN y INTEGER", "UPDATE a SET y = x + 1"],
    ["CREATE TABLE b (z TEXT)"],
]


def version(conn: sqlite3.Connection, component: str) -> int:
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_version'").fetchone() is None:
        return 0
    row = conn.execute("SELECT version FROM schema_version WHERE component = ?", (component,)).fetchone()
    return int(row[0]) if row else 0


def test_migrations_apply_in_order_once(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "db" / "x.db")  # the folder is created
    assert migrate(conn, "comp", STEPS[:2]) == 2
    assert conn.execute("SELECT x, y FROM a").fetchall() == [(1, 2)]
    # run again with one more step: only the new one runs (the INSERT of step 1 is not repeated)
    assert migrate(conn, "comp", STEPS) == 3
    assert conn.execute("SELECT x, y FROM a").fetchall() == [(1, 2)]
    assert conn.execute("SELECT COUNT(*) FROM b").fetchone()[0] == 0
    assert version(conn, "comp") == 3
    conn.close()


def test_components_share_a_file(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "x.db")
    migrate(conn, "one", STEPS[:1])
    migrate(conn, "two", [["CREATE TABLE c (w INTEGER)"]])
    assert (version(conn, "one"), version(conn, "two")) == (1, 1)
    conn.close()


def test_a_newer_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "x.db")
    migrate(conn, "comp", STEPS)
    with pytest.raises(SchemaVersionError, match=r"comp schema is version 3.*knows up to 1: upgrade crossview"):
        migrate(conn, "comp", STEPS[:1])
    assert version(conn, "comp") == 3
    conn.close()


def test_a_failing_step_rolls_back_the_whole_migration(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "x.db")
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, "comp", [STEPS[0], ["CREATE TABLE a (x INTEGER)"]])  # step 2 clashes
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'a'").fetchone() is None
    assert version(conn, "comp") == 0
    conn.close()


def test_render_skips_statements_for_another_backend(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "x.db")
    steps = [[("all", "CREATE TABLE a (x {kind})"), ("postgres", "SELECT pg_only()")]]

    def render(statement: tuple[str, str]) -> str | None:
        backend, sql = statement
        return sql.format(kind="BIGINT") if backend in ("all", "sqlite") else None

    conn.execute("BEGIN IMMEDIATE")
    assert run_migrations(conn.execute, "comp", steps, render) == 1
    conn.execute("COMMIT")
    assert version(conn, "comp") == 1
    conn.close()


def test_pragmas(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "x.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    conn.close()


class Counter(SqliteDatabase):
    def __init__(self, path: Path) -> None:
        self.released = 0
        super().__init__(path)
        self._migrate("counter", [["CREATE TABLE n (v INTEGER)"]])

    def _release(self) -> None:
        self.released += 1


def test_base_closes_once_and_works_as_a_context_manager(tmp_path: Path) -> None:
    with Counter(tmp_path / "x.db") as db:
        assert db.path == tmp_path / "x.db"
    assert db.released == 1
    db.close()  # idempotent
    assert db.released == 1
    with pytest.raises(sqlite3.ProgrammingError):
        db._conn.execute("SELECT 1")
