"""The audit trail of `SqlHubStore`: append, read with filters (keyset paging), and retention deletes.

There is no update: the table refuses one (`cloud.store.schema`, step 5); rows leave only by retention.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from typing import Any

from cloud.store.records import AuditFilter, AuditRecord, StoreError
from cloud.store.schema import Tx

_COLUMNS = "audit_id, at_s, username, role, client, action, target, detail"


class AuditSql:
    """Mixed into `SqlHubStore`; the backend supplies `_transaction()` and `_reading()`."""

    @abstractmethod
    def _transaction(self) -> contextlib.AbstractContextManager[Tx]: ...

    @abstractmethod
    def _reading(self) -> contextlib.AbstractContextManager[Tx]: ...

    def append_audit(self, record: AuditRecord) -> int:
        if not record.username or not record.action:
            raise StoreError("audit line: expected a user name and an action")
        with self._transaction() as tx:
            row = tx.one("INSERT INTO audit_log (at_s, username, role, client, action, target, detail) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING audit_id",
                         (record.at_s, record.username, record.role, record.client, record.action, record.target,
                          record.detail))
        assert row is not None
        return int(row[0])

    def audit_entries(self, where: AuditFilter | None = None, *, before_id: int | None = None,
                      after_id: int | None = None, limit: int = 100) -> list[AuditRecord]:
        where = where or AuditFilter()
        if limit < 1:
            raise StoreError(f"limit: expected >= 1, got {limit}")
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("username", where.username), ("action", where.action), ("target", where.target)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if where.since_s is not None:
            clauses.append("at_s >= ?")
            params.append(where.since_s)
        if where.until_s is not None:
            clauses.append("at_s < ?")
            params.append(where.until_s)
        if before_id is not None:
            clauses.append("audit_id < ?")
            params.append(before_id)
        if after_id is not None:
            clauses.append("audit_id > ?")
            params.append(after_id)
        sql = f"SELECT {_COLUMNS} FROM audit_log"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        # newest first, unless reading forwards from after_id (exports)
        sql += f" ORDER BY audit_id {'ASC' if after_id is not None else 'DESC'} LIMIT ?"
        with self._reading() as tx:
            rows = tx.all(sql, (*params, limit))
        return [AuditRecord(at_s=float(r[1]), username=r[2], role=r[3], client=r[4], action=r[5], target=r[6],
                            detail=r[7], audit_id=int(r[0])) for r in rows]

    def delete_audit_before(self, cutoff_s: float) -> int:
        with self._transaction() as tx:
            return tx.execute("DELETE FROM audit_log WHERE at_s < ?", (cutoff_s,)).rowcount
