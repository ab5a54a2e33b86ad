"""The hub store on PostgreSQL, for several hub replicas sharing one database.

Nothing a replica must agree on lives in process memory: gallery versions come from the
`gallery_state` row and message sequences from each edge's row, both incremented with
``UPDATE … RETURNING`` inside the writing transaction. The row lock that takes makes concurrent
writers commit in number order, so a replica that reads version n has every version below n too.
Schema migrations run under a transaction-level advisory lock, so replicas starting together
migrate once. psycopg 3 is imported lazily (extra ``postgres``).
"""

from __future__ import annotations

import contextlib
import queue
import re
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from cloud.store.records import (
    StoreError,
)
from cloud.store.schema import POSTGRES, Tx, migrate
from cloud.store.sql import SqlHubStore
from models.errors import require


def postgres_reachable(conninfo: str) -> str | None:
    """None when PostgreSQL answers at `conninfo`; else why not, in one line (for a skip or an error)."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'crossview[postgres]')"
    try:
        psycopg.connect(conninfo, connect_timeout=3).close()
    except Exception as exc:
        return f"PostgreSQL not reachable at {conninfo!r}: {str(exc).strip().splitlines()[0]}"
    return None


_MIGRATION_LOCK_KEY = 0x63726F7373  # "cross": any constant shared by all replicas
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresHubStore(SqlHubStore):
    """`HubStore` on PostgreSQL: `conninfo` is a libpq URL or key=value string.

    `schema` puts the tables in their own PostgreSQL schema (created if missing), e.g. one per test
    or per deployment sharing a database; `pool_size` connections are opened lazily and reused.
    """

    def __init__(self, conninfo: str, *, schema: str | None = None, pool_size: int = 4,
                 connect_timeout_s: int = 10) -> None:
        self._psycopg = require("psycopg")
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise StoreError(f"schema: expected a lower-case SQL identifier, got {schema!r}")
        if pool_size < 1:
            raise StoreError(f"pool_size: expected >= 1, got {pool_size}")
        self.conninfo = conninfo
        self.schema = schema
        self._connect_timeout_s = connect_timeout_s
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._all: set[Any] = set()
        self._lock = threading.Lock()
        self._closed = False
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
            migrate(Tx(self._executor(conn)), POSTGRES)

    def _connect(self) -> Any:
        conn = self._psycopg.connect(self.conninfo, autocommit=True, connect_timeout=self._connect_timeout_s)
        if self.schema is not None:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
            conn.execute(f"SET search_path TO {self.schema}")
        with self._lock:
            self._all.add(conn)
        return conn

    def _discard(self, conn: Any) -> None:
        with self._lock:
            self._all.discard(conn)
        with contextlib.suppress(Exception):
            conn.close()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        if self._closed:
            raise StoreError("the PostgreSQL store is closed")
        self._slots.acquire()
        conn = None
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
            yield conn
        except self._psycopg.OperationalError:
            if conn is not None:  # the connection may be broken: never reuse it
                self._discard(conn)
                conn = None
            raise
        finally:
            if conn is not None:
                if conn.closed or self._closed:
                    self._discard(conn)
                else:
                    self._idle.put(conn)
            self._slots.release()

    @staticmethod
    def _executor(conn: Any) -> Any:
        def execute(sql: str, params: Sequence[Any]) -> Any:
            return conn.execute(sql.replace("?", "%s"), tuple(params))
        return execute

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Tx]:
        with self._connection() as conn, conn.transaction():
            yield Tx(self._executor(conn))

    def drop_schema(self) -> None:
        """Drop this store's schema and everything in it (tests and teardown only)."""
        if self.schema is None:
            raise StoreError("drop_schema: this store has no schema of its own")
        with self._connection() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")

    def close(self) -> None:
        self._closed = True
        with self._lock:
            conns, self._all = list(self._all), set()
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()

    def __repr__(self) -> str:
        return f"PostgresHubStore(schema={self.schema!r})"
