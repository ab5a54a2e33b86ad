"""The search-job tables of `SqlHubStore`: jobs and result batches shared by the hub replicas."""

from __future__ import annotations

import contextlib
import json
from abc import abstractmethod

from cloud.store.records import (
    SearchJobRecord,
    StoredSearchResult,
    StoreError,
)
from cloud.store.schema import Tx


class SearchSql:
    """Mixed into `SqlHubStore`; the backend supplies `_transaction()` and `_reading()`."""

    @abstractmethod
    def _transaction(self) -> contextlib.AbstractContextManager[Tx]: ...

    @abstractmethod
    def _reading(self) -> contextlib.AbstractContextManager[Tx]: ...

    def create_search_job(self, record: SearchJobRecord) -> None:
        with self._transaction() as tx:
            tx.execute("INSERT INTO search_jobs (job_id, hub_id, edge_ids, deadline_s, created_s) "
                       "VALUES (?, ?, ?, ?, ?)", (record.job_id, record.hub_id, json.dumps(list(record.edge_ids)),
                                                  record.deadline_s, record.created_s))

    def get_search_job(self, job_id: str) -> SearchJobRecord | None:
        with self._reading() as tx:
            row = tx.one("SELECT job_id, hub_id, edge_ids, deadline_s, created_s FROM search_jobs WHERE job_id = ?",
                         (job_id,))
        if row is None:
            return None
        return SearchJobRecord(row[0], row[1], tuple(json.loads(row[2])), float(row[3]), float(row[4]))

    def add_search_result(self, job_id: str, edge_id: str, result_key: str, payload: bytes, *, now: float) -> bool:
        with self._transaction() as tx:
            if tx.one("SELECT 1 FROM search_jobs WHERE job_id = ?", (job_id,)) is None:
                raise StoreError(f"unknown search job {job_id!r}")
            if tx.one("SELECT 1 FROM search_results WHERE job_id = ? AND edge_id = ? AND result_key = ?",
                      (job_id, edge_id, result_key)) is not None:
                return False
            tx.execute("INSERT INTO search_results (job_id, edge_id, result_key, payload, created_s) "
                       "VALUES (?, ?, ?, ?, ?)", (job_id, edge_id, result_key, payload, now))
            return True

    def search_results_after(self, job_id: str, after_id: int, *, limit: int = 100) -> list[StoredSearchResult]:
        with self._reading() as tx:
            rows = tx.all("SELECT result_id, edge_id, payload FROM search_results WHERE job_id = ? AND result_id > ? "
                          "ORDER BY result_id LIMIT ?", (job_id, after_id, limit))
        return [StoredSearchResult(int(r[0]), r[1], bytes(r[2])) for r in rows]

    def delete_search_jobs(self, *, deadline_before_s: float) -> int:
        with self._transaction() as tx:
            tx.execute("DELETE FROM search_results WHERE job_id IN (SELECT job_id FROM search_jobs "
                       "WHERE deadline_s < ?)", (deadline_before_s,))
            return tx.execute("DELETE FROM search_jobs WHERE deadline_s < ?", (deadline_before_s,)).rowcount
