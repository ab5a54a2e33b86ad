"""The operator tables of `SqlHubStore` (REST API log-ins): operators, their roles and sessions, hashes only.

A changed password hash, a disabled operator or a deleted one loses every session in the same
transaction, so a revoked session stays revoked across a restart and on every replica. The last
enabled admin cannot be demoted or disabled (StoreError); deleting (not offered by the API or the CLI,
which disable instead) is not checked.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod

from cloud.store.records import (
    OperatorRecord,
    OperatorSessionRecord,
    StoreError,
)
from cloud.store.schema import Tx

_COLUMNS = "username, password_hash, created_s, role, disabled"


def _operator(row: tuple) -> OperatorRecord:
    return OperatorRecord(row[0], row[1], float(row[2]), role=row[3], disabled=bool(row[4]))


class OperatorSql:
    """Mixed into `SqlHubStore`; the backend supplies `_transaction()` and `_reading()`."""

    @abstractmethod
    def _transaction(self) -> contextlib.AbstractContextManager[Tx]: ...

    @abstractmethod
    def _reading(self) -> contextlib.AbstractContextManager[Tx]: ...

    # ------------------------------------------------------------------ operators (REST API)
    def save_operator(self, username: str, password_hash: str, *, now: float, role: str | None = None) -> bool:
        if not username:
            raise StoreError("operator name: expected a non-empty string")
        with self._transaction() as tx:
            row = tx.one("SELECT password_hash FROM operators WHERE username = ?", (username,))
            if row is not None:
                if row[0] != password_hash:
                    tx.execute("UPDATE operators SET password_hash = ? WHERE username = ?", (password_hash, username))
                    tx.execute("DELETE FROM operator_sessions WHERE username = ?", (username,))
                if role is not None:
                    self._set_role(tx, username, role)
                return False
            tx.execute("INSERT INTO operators (username, password_hash, created_s, role) VALUES (?, ?, ?, ?)",
                       (username, password_hash, now, role or "operator"))
            return True

    def get_operator(self, username: str) -> OperatorRecord | None:
        with self._reading() as tx:
            row = tx.one(f"SELECT {_COLUMNS} FROM operators WHERE username = ?", (username,))
        return _operator(row) if row else None

    def list_operators(self) -> list[OperatorRecord]:
        with self._reading() as tx:
            rows = tx.all(f"SELECT {_COLUMNS} FROM operators ORDER BY username")
        return [_operator(r) for r in rows]

    def delete_operator(self, username: str) -> bool:
        with self._transaction() as tx:
            tx.execute("DELETE FROM operator_sessions WHERE username = ?", (username,))
            return tx.execute("DELETE FROM operators WHERE username = ?", (username,)).rowcount > 0

    def set_operator_role(self, username: str, role: str) -> OperatorRecord:
        with self._transaction() as tx:
            self._set_role(tx, username, role)
            row = tx.one(f"SELECT {_COLUMNS} FROM operators WHERE username = ?", (username,))
        assert row is not None
        return _operator(row)

    def set_operator_disabled(self, username: str, disabled: bool) -> OperatorRecord:
        with self._transaction() as tx:
            if tx.one("SELECT 1 FROM operators WHERE username = ?", (username,)) is None:
                raise StoreError(f"unknown operator {username!r}")
            if disabled:
                self._keep_an_admin(tx, username, "disable")
                tx.execute("DELETE FROM operator_sessions WHERE username = ?", (username,))
            tx.execute("UPDATE operators SET disabled = ? WHERE username = ?", (int(disabled), username))
            row = tx.one(f"SELECT {_COLUMNS} FROM operators WHERE username = ?", (username,))
        assert row is not None
        return _operator(row)

    def _set_role(self, tx: Tx, username: str, role: str) -> None:
        row = tx.one("SELECT role FROM operators WHERE username = ?", (username,))
        if row is None:
            raise StoreError(f"unknown operator {username!r}")
        if row[0] == "admin" and role != "admin":
            self._keep_an_admin(tx, username, "demote")
        tx.execute("UPDATE operators SET role = ? WHERE username = ?", (role, username))

    @staticmethod
    def _keep_an_admin(tx: Tx, username: str, verb: str) -> None:
        """StoreError when `username` is the only enabled admin. The no-op UPDATE write-locks the admins' rows
        first, so two replicas demoting the last two admins at once cannot both pass (PostgreSQL)."""
        tx.execute("UPDATE operators SET role = role WHERE role = 'admin' AND disabled = 0")
        admins = [r[0] for r in tx.all("SELECT username FROM operators WHERE role = 'admin' AND disabled = 0")]
        if admins == [username]:
            raise StoreError(f"cannot {verb} {username!r}: it is the last enabled admin")

    def add_operator_session(self, record: OperatorSessionRecord) -> None:
        with self._transaction() as tx:
            row = tx.one("SELECT disabled FROM operators WHERE username = ?", (record.username,))
            if row is None:
                raise StoreError(f"unknown operator {record.username!r}")
            if row[0]:
                raise StoreError(f"operator {record.username!r} is disabled")
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

    def delete_operator_sessions(self, username: str) -> int:
        with self._transaction() as tx:
            return tx.execute("DELETE FROM operator_sessions WHERE username = ?", (username,)).rowcount

    def delete_expired_operator_sessions(self, now: float) -> int:
        with self._transaction() as tx:
            return tx.execute("DELETE FROM operator_sessions WHERE expires_s <= ?", (now,)).rowcount
