"""The read side of sightings and alerts in `SqlHubStore`: lookups, listings, per-identity counts.
(They are written with the verdict that makes them, in `SqlHubStore.complete_short_list`.)"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Sequence

from cloud.store.base import AlertRecord, IdentityCounts, SightingRecord
from cloud.store.schema import Tx

SIGHTING_COLUMNS = ("identity_id, edge_id, camera_id, tracklet_id, start_s, end_s, crop_path, stage1_distance, "
                    "stage2_score, idempotency_key")


def _sighting(row: tuple) -> SightingRecord:
    return SightingRecord(*row[:10], sighting_id=int(row[10]), created_s=float(row[11]))


class SightingSql:
    """Mixed into `SqlHubStore`; the backend supplies `_transaction()`."""

    @abstractmethod
    def _transaction(self) -> contextlib.AbstractContextManager[Tx]: ...

    def get_sighting(self, sighting_id: int) -> SightingRecord | None:
        with self._transaction() as tx:
            r = tx.one(f"SELECT {SIGHTING_COLUMNS}, sighting_id, created_s FROM sightings WHERE sighting_id = ?",
                       (sighting_id,))
        return _sighting(r) if r else None

    def sightings(self, *, identity_id: str | None = None, edge_id: str | None = None, camera_id: str | None = None,
                  limit: int = 100) -> list[SightingRecord]:
        clauses, params = [], []
        for column, value in (("identity_id", identity_id), ("edge_id", edge_id), ("camera_id", camera_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._transaction() as tx:
            rows = tx.all(f"SELECT {SIGHTING_COLUMNS}, sighting_id, created_s FROM sightings{where} "
                          "ORDER BY sighting_id DESC LIMIT ?", (*params, limit))
        return [_sighting(r) for r in rows]

    def sightings_of_tracklets(self, tracklets: Sequence[tuple[str, str]]) -> dict[tuple[str, str], SightingRecord]:
        found: dict[tuple[str, str], SightingRecord] = {}
        wanted = sorted(set(tracklets))
        with self._transaction() as tx:
            for start in range(0, len(wanted), 200):
                chunk = wanted[start:start + 200]
                where = " OR ".join(["(edge_id = ? AND tracklet_id = ?)"] * len(chunk))
                rows = tx.all(f"SELECT {SIGHTING_COLUMNS}, sighting_id, created_s FROM sightings WHERE {where} "
                              "ORDER BY sighting_id", [v for pair in chunk for v in pair])
                for row in rows:  # ascending ids: the latest sighting of a tracklet wins
                    sighting = _sighting(row)
                    found[(sighting.edge_id, sighting.tracklet_id)] = sighting
        return found

    def identity_counts(self, identity_id: str | None = None) -> dict[str, IdentityCounts]:
        where, params = ("AND i.identity_id = ?", (identity_id,)) if identity_id is not None else ("", ())
        with self._transaction() as tx:
            rows = tx.all(
                "SELECT i.identity_id, "
                "(SELECT COUNT(*) FROM reference_crops c WHERE c.identity_id = i.identity_id), "
                "(SELECT COUNT(*) FROM sightings s WHERE s.identity_id = i.identity_id), "
                "(SELECT MAX(s.end_s) FROM sightings s WHERE s.identity_id = i.identity_id) "
                f"FROM identities i WHERE i.deleted = 0 {where}", params)
        return {r[0]: IdentityCounts(int(r[1]), int(r[2]), None if r[3] is None else float(r[3])) for r in rows}

    def alerts(self, *, after_id: int = 0, limit: int = 100) -> list[AlertRecord]:
        with self._transaction() as tx:
            rows = tx.all("SELECT alert_id, identity_id, sighting_id, edge_id, camera_id, stage2_score, created_s "
                          "FROM alerts WHERE alert_id > ? ORDER BY alert_id LIMIT ?", (after_id, limit))
        return [AlertRecord(int(r[0]), r[1], int(r[2]), r[3], r[4], float(r[5]), float(r[6])) for r in rows]

    def newest_alert_id(self) -> int:
        with self._transaction() as tx:
            row = tx.one("SELECT MAX(alert_id) FROM alerts")
        return int(row[0]) if row and row[0] is not None else 0
