"""The read side of sightings and alerts in `SqlHubStore`: lookups, listings, per-identity counts.
(They are written with the verdict that makes them, in `SqlHubStore.complete_short_list`.)"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Sequence

from cloud.store.records import (
    AlertRecord,
    IdentityCounts,
    SightingRecord,
    StoreError,
)
from cloud.store.schema import Tx

SIGHTING_COLUMNS = ("identity_id, edge_id, camera_id, tracklet_id, start_s, end_s, crop_path, p_same, stage1_p_same, "
                    "stage2_p_same, idempotency_key")


def _sighting(row: tuple) -> SightingRecord:
    return SightingRecord(*row[:11], sighting_id=int(row[11]), created_s=float(row[12]))


class SightingSql:
    """Mixed into `SqlHubStore`; the backend supplies `_transaction()` and `_reading()`."""

    @abstractmethod
    def _transaction(self) -> contextlib.AbstractContextManager[Tx]: ...

    @abstractmethod
    def _reading(self) -> contextlib.AbstractContextManager[Tx]: ...

    def get_sighting(self, sighting_id: int) -> SightingRecord | None:
        with self._reading() as tx:
            r = tx.one(f"SELECT {SIGHTING_COLUMNS}, sighting_id, created_s FROM sightings WHERE sighting_id = ?",
                       (sighting_id,))
        return _sighting(r) if r else None

    def sightings(self, *, identity_id: str | None = None, edge_id: str | None = None, camera_id: str | None = None,
                  unknown: bool = False, limit: int = 100) -> list[SightingRecord]:
        clauses, params = ["identity_id IS NULL"] if unknown else [], []
        for column, value in (("identity_id", identity_id), ("edge_id", edge_id), ("camera_id", camera_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._reading() as tx:
            rows = tx.all(f"SELECT {SIGHTING_COLUMNS}, sighting_id, created_s FROM sightings{where} "
                          "ORDER BY sighting_id DESC LIMIT ?", (*params, limit))
        return [_sighting(r) for r in rows]

    def assign_sighting(self, sighting_id: int, identity_id: str) -> bool:
        with self._transaction() as tx:
            if tx.one("SELECT 1 FROM sightings WHERE sighting_id = ?", (sighting_id,)) is None:
                raise StoreError(f"unknown sighting {sighting_id}")
            return tx.execute("UPDATE sightings SET identity_id = ? WHERE sighting_id = ? AND identity_id IS NULL",
                              (identity_id, sighting_id)).rowcount == 1

    def sightings_of_tracklets(self, tracklets: Sequence[tuple[str, str]]) -> dict[tuple[str, str], SightingRecord]:
        found: dict[tuple[str, str], SightingRecord] = {}
        wanted = sorted(set(tracklets))
        with self._reading() as tx:
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
        with self._reading() as tx:
            rows = tx.all(
                "SELECT i.identity_id, "
                "(SELECT COUNT(*) FROM reference_crops c WHERE c.identity_id = i.identity_id), "
                "(SELECT COUNT(*) FROM sightings s WHERE s.identity_id = i.identity_id), "
                "(SELECT MAX(s.end_s) FROM sightings s WHERE s.identity_id = i.identity_id) "
                f"FROM identities i WHERE i.deleted = 0 {where}", params)
        return {r[0]: IdentityCounts(int(r[1]), int(r[2]), None if r[3] is None else float(r[3])) for r in rows}

    def alerts(self, *, after_id: int = 0, limit: int = 100) -> list[AlertRecord]:
        with self._reading() as tx:
            rows = tx.all("SELECT a.alert_id, a.identity_id, a.sighting_id, a.edge_id, a.camera_id, a.p_same, "
                          "a.created_s, s.start_s, s.end_s FROM alerts a "
                          "LEFT JOIN sightings s ON s.sighting_id = a.sighting_id "
                          "WHERE a.alert_id > ? ORDER BY a.alert_id LIMIT ?", (after_id, limit))
        return [AlertRecord(int(r[0]), r[1], int(r[2]), r[3], r[4], float(r[5]), float(r[6]),
                            None if r[7] is None else float(r[7]), None if r[8] is None else float(r[8]))
                for r in rows]

    def newest_alert_id(self) -> int:
        with self._reading() as tx:
            row = tx.one("SELECT MAX(alert_id) FROM alerts")
        return int(row[0]) if row and row[0] is not None else 0
