"""The operator tables of `SqlHubStore` (REST API log-ins): operators and their sessions, hashes only."""

from __future__ import annotations

import contextlib
from abc import abstractmethod

from cloud.store.records import (
    OperatorRecord,
    OperatorSessionRecord,
    StoreError,
)
from cloud.store.schema import Tx


class OperatorSql:
    """Mixed into `SqlHubStore`; the backend supplies `_transaction()` and `_reading()`."""

    @abstractmethod
    def _transaction(self) -> contextlib.AbstractContextManager[Tx]: ...

    @abstractmethod
    def _reading(self) -> contextlib.AbstractContextManager[Tx]: ...

    # ------------------------------------------------------------------ operators (REST API)
    def save_operator(self, username: str, password_hash: str, *, now: float) -> bool:
        if not username:
            raise StoreError("operator name: expected a non-empty string")
        with self._transaction() as tx:
            if tx.one("SELECT 1 FROM operators WHERE username = ?", (username,)) is not None:
                tx.execute("UPDATE operators SET password_hash = ? WHERE username = ?", (password_hash, username))
                return False
            tx.execute("INSERT INTO operators (username, password_hash, created_s) VALUES (?, ?, ?)",
                       (username, password_hash, now))
            return True

    def get_operator(self, username: str) -> OperatorRecord | None:
        with self._reading() as tx:
            row = tx.one("SELECT username, password_hash, created_s FROM operators WHERE username = ?", (username,))
        return OperatorRecord(row[0], row[1], float(row[2])) if row else None

    def list_operators(self) -> list[OperatorRecord]:
        with self._reading() as tx:
            rows = tx.all("SELECT username, password_hash, created_s FROM operators ORDER BY username")
        return [OperatorRecord(r[0], r[1], float(r[2])) for r in rows]

    def delete_operator(self, username: str) -> bool:
        with self._transaction() as tx:
            tx.execute("DELETE FROM operator_sessions WHERE username = ?", (username,))
            return tx.execute("DELETE FROM operators WHERE username = ?", (username,)).rowcount > 0

    def add_operator_session(self, record: OperatorSessionRecord) -> None:
        with self._transaction() as tx:
            if tx.one("SELECT 1 FROM operators WHERE username = ?", (record.username,)) is None:
                raise StoreError(f"unknown operator {record.username!r}")
            tx.execute("INSERT INTO operator_sessions (token_hash, username, created_s, expires_s) VALUES (?, ?, ?, ?)",
                       (record.token_hash, record.username, record.created_s, record.expires_s))

    def get_operator_session(self, token_hash: str) -> OperatorSessionRecord | None:
        with self._reading() as tx:
            row = tx.one("SELECT token_hash, username, created_s, expires_s FROM operator_sessions "
                         "WHERE token_hash = ?", (token_hash,))
        return OperatorSessionRecord(row[0], row[1], float(row[2]), float(row[3])) if row else None

    def delete_operator_session(self, token_hash: str) -> bool:
        with self._transaction() as tx:
            return tx.execute("DELETE FROM operator_sessions WHERE token_hash = ?", (token_hash,)).rowcount > 0

    def delete_expired_operator_sessions(self, now: float) -> int:
        with self._transaction() as tx:
            return tx.execute("DELETE FROM operator_sessions WHERE expires_s <= ?", (now,)).rowcount
