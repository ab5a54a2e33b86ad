"""`HubStore` written once in SQL that SQLite and PostgreSQL both run.

A backend supplies `_transaction()`, a context manager yielding a `Tx` (placeholders are written
`?`; the PostgreSQL backend rewrites them), may supply `_reading()` for transactions that only read
(SQLite opens those without the write lock), and runs the migrations of `cloud.store.schema`.
"""

from __future__ import annotations

import contextlib
import json
from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from cloud.store.base import HubStore
from cloud.store.records import (
    UNCHANGED,
    ClaimResult,
    CompletedShortList,
    EdgeRecord,
    GalleryEntry,
    IdentityRecord,
    NewSighting,
    OutgoingMessage,
    ReferenceCrop,
    ShortListRecord,
    ShortListSummary,
    StoreError,
    TokenRecord,
    VerdictRecord,
    _Unchanged,
)
from cloud.store.schema import Tx
from cloud.store.sql_audit import AuditSql
from cloud.store.sql_operators import OperatorSql
from cloud.store.sql_search import SearchSql
from cloud.store.sql_sightings import SIGHTING_COLUMNS, SightingSql

_EDGE_COLUMNS = ("edge_id, site, model_fingerprint, embedding_dim, cameras, gallery_version, last_sequence, "
                 "last_acked_sequence, created_s, last_seen_s, connected_hub_id, stats")
_IDENTITY_COLUMNS = "identity_id, display_name, watchlist_threshold, source, created_s, version, deleted"
_TOKEN_COLUMNS = "token_id, edge_id, secret_hash, created_s, expires_s, revoked"
_SHORT_LIST_COLUMNS = ("idempotency_key, edge_id, camera_id, tracklet_id, track_id, start_s, end_s, n_crops, "
                       "candidates, model_fingerprint, gallery_version, created_s")

# keys are unique per edge (schema step 6); without an edge id a lookup takes any edge's (tools, tests)
def _and_edge(edge_id: str | None) -> tuple[str, tuple[str, ...]]:
    return ("", ()) if edge_id is None else (" AND edge_id = ?", (edge_id,))


_IN_CHUNK = 500  # ids per "IN (...)" list: under SQLite's host-parameter limit on any build


def _edge(row: tuple) -> EdgeRecord:
    return EdgeRecord(edge_id=row[0], site=row[1], model_fingerprint=row[2], embedding_dim=int(row[3]),
                      cameras=tuple(json.loads(row[4])), gallery_version=int(row[5]), last_sequence=int(row[6]),
                      last_acked_sequence=int(row[7]), created_s=float(row[8]), last_seen_s=row[9],
                      connected_hub_id=row[10], stats=json.loads(row[11]))


def _identity(row: tuple) -> IdentityRecord:
    return IdentityRecord(identity_id=row[0], display_name=row[1], watchlist_threshold=row[2], source=row[3],
                          created_s=float(row[4]), version=int(row[5]), deleted=bool(row[6]))


def _token(row: tuple) -> TokenRecord:
    return TokenRecord(token_id=row[0], edge_id=row[1], secret_hash=row[2], created_s=float(row[3]),
                       expires_s=row[4], revoked=bool(row[5]))


def _vectors_blob(vectors: np.ndarray) -> tuple[int, int, bytes]:
    array = np.ascontiguousarray(vectors, dtype="<f4")
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2 or array.shape[1] == 0:
        raise StoreError(f"vectors: expected shape (N, D) with D > 0, got {array.shape}")
    return int(array.shape[0]), int(array.shape[1]), array.tobytes()


def _vectors(n: int, dim: int, blob: bytes) -> np.ndarray:
    return np.frombuffer(bytes(blob), dtype="<f4").reshape(int(n), int(dim)).astype(np.float32)


class SqlHubStore(OperatorSql, AuditSql, SearchSql, SightingSql, HubStore):
    """The backend-independent part of the store."""

    @abstractmethod
    def _transaction(self) -> contextlib.AbstractContextManager[Tx]: ...

    def _reading(self) -> contextlib.AbstractContextManager[Tx]:
        """A transaction that only reads: a backend may open it without taking the write lock."""
        return self._transaction()

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _bump_version(tx: Tx) -> int:
        row = tx.one("UPDATE gallery_state SET version = version + 1 WHERE id = 1 RETURNING version")
        assert row is not None
        return int(row[0])

    @staticmethod
    def _allocate(tx: Tx, edge_id: str, count: int) -> list[int]:
        row = tx.one("UPDATE edges SET last_sequence = last_sequence + ? WHERE edge_id = ? RETURNING last_sequence",
                     (count, edge_id))
        if row is None:
            raise StoreError(f"unknown edge {edge_id!r}")
        last = int(row[0])
        return list(range(last - count + 1, last + 1))

    @staticmethod
    def _live_identity(tx: Tx, identity_id: str) -> None:
        row = tx.one("SELECT deleted FROM identities WHERE identity_id = ?", (identity_id,))
        if row is None or row[0]:
            raise StoreError(f"unknown identity {identity_id!r}")

    @staticmethod
    def _append_embeddings(tx: Tx, identity_id: str, embeddings: Mapping[str, np.ndarray]) -> None:
        for fingerprint, vectors in embeddings.items():
            n, dim, blob = _vectors_blob(vectors)
            row = tx.one("SELECT n, dim, vectors FROM embeddings WHERE identity_id = ? AND fingerprint = ?",
                         (identity_id, fingerprint))
            if row is not None:
                if int(row[1]) != dim:
                    raise StoreError(f"vectors of {fingerprint}: expected dimension {row[1]}, got {dim}")
                n, blob = n + int(row[0]), bytes(row[2]) + blob
            tx.execute("INSERT INTO embeddings (identity_id, fingerprint, n, dim, vectors) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT (identity_id, fingerprint) DO UPDATE SET n = excluded.n, dim = excluded.dim, "
                       "vectors = excluded.vectors", (identity_id, fingerprint, n, dim, blob))

    # ------------------------------------------------------------------ edges and tokens
    def register_edge(self, edge_id: str, *, site: str = "", now: float) -> EdgeRecord:
        if not edge_id:
            raise StoreError("edge id: expected a non-empty string")
        with self._transaction() as tx:
            tx.execute("INSERT INTO edges (edge_id, site, created_s) VALUES (?, ?, ?) ON CONFLICT (edge_id) "
                       "DO NOTHING", (edge_id, site, now))
            row = tx.one(f"SELECT {_EDGE_COLUMNS} FROM edges WHERE edge_id = ?", (edge_id,))
        assert row is not None
        return _edge(row)

    def get_edge(self, edge_id: str) -> EdgeRecord | None:
        with self._reading() as tx:
            row = tx.one(f"SELECT {_EDGE_COLUMNS} FROM edges WHERE edge_id = ?", (edge_id,))
        return _edge(row) if row else None

    def list_edges(self) -> list[EdgeRecord]:
        with self._reading() as tx:
            return [_edge(r) for r in tx.all(f"SELECT {_EDGE_COLUMNS} FROM edges ORDER BY edge_id")]

    def delete_edge(self, edge_id: str) -> bool:
        with self._transaction() as tx:
            return tx.execute("DELETE FROM edges WHERE edge_id = ?", (edge_id,)).rowcount > 0

    def add_token(self, record: TokenRecord) -> None:
        with self._transaction() as tx:
            if tx.one("SELECT 1 FROM edges WHERE edge_id = ?", (record.edge_id,)) is None:
                raise StoreError(f"unknown edge {record.edge_id!r}")
            tx.execute(f"INSERT INTO edge_tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                       (record.token_id, record.edge_id, record.secret_hash, record.created_s, record.expires_s,
                        int(record.revoked)))

    def get_token(self, token_id: str) -> TokenRecord | None:
        with self._reading() as tx:
            row = tx.one(f"SELECT {_TOKEN_COLUMNS} FROM edge_tokens WHERE token_id = ?", (token_id,))
        return _token(row) if row else None

    def list_tokens(self, edge_id: str) -> list[TokenRecord]:
        with self._reading() as tx:
            rows = tx.all(f"SELECT {_TOKEN_COLUMNS} FROM edge_tokens WHERE edge_id = ? ORDER BY created_s",
                          (edge_id,))
        return [_token(r) for r in rows]

    def revoke_token(self, token_id: str) -> bool:
        with self._transaction() as tx:
            return tx.execute("UPDATE edge_tokens SET revoked = 1 WHERE token_id = ? AND revoked = 0",
                              (token_id,)).rowcount > 0

    def revoke_edge_tokens(self, edge_id: str) -> int:
        with self._transaction() as tx:
            return tx.execute("UPDATE edge_tokens SET revoked = 1 WHERE edge_id = ? AND revoked = 0",
                              (edge_id,)).rowcount

    def record_hello(self, edge_id: str, *, site: str, model_fingerprint: str, embedding_dim: int,
                     cameras: Sequence[Mapping[str, object]], gallery_version: int, acked_sequence: int,
                     hub_id: str, now: float) -> EdgeRecord:
        with self._transaction() as tx:
            row = tx.one("SELECT last_sequence, last_acked_sequence FROM edges WHERE edge_id = ?", (edge_id,))
            if row is None:
                raise StoreError(f"unknown edge {edge_id!r}")
            # an edge that has seen sequences this database never issued (a restored backup) must
            # still see new messages as new: continue numbering above what it acknowledged
            last_sequence = max(int(row[0]), acked_sequence)
            last_acked = max(int(row[1]), acked_sequence)
            tx.execute("UPDATE edges SET site = ?, model_fingerprint = ?, embedding_dim = ?, cameras = ?, "
                       "gallery_version = ?, last_sequence = ?, last_acked_sequence = ?, last_seen_s = ?, "
                       "connected_hub_id = ? WHERE edge_id = ?",
                       (site, model_fingerprint, embedding_dim, json.dumps(list(cameras)), gallery_version,
                        last_sequence, last_acked, now, hub_id, edge_id))
            tx.execute("DELETE FROM outgoing WHERE edge_id = ? AND (sequence <= ? OR kind = 'gallery_delta')",
                       (edge_id, acked_sequence))
            new = tx.one(f"SELECT {_EDGE_COLUMNS} FROM edges WHERE edge_id = ?", (edge_id,))
        assert new is not None
        return _edge(new)

    def record_disconnect(self, edge_id: str, *, hub_id: str, now: float) -> None:
        with self._transaction() as tx:
            tx.execute("UPDATE edges SET connected_hub_id = NULL, last_seen_s = ? WHERE edge_id = ? "
                       "AND connected_hub_id = ?", (now, edge_id, hub_id))

    def touch_edge(self, edge_id: str, *, now: float, stats: Mapping[str, object] | None = None,
                   gallery_version: int | None = None, hub_id: str | None = None) -> None:
        with self._transaction() as tx:
            if hub_id is None:
                tx.execute("UPDATE edges SET last_seen_s = ? WHERE edge_id = ?", (now, edge_id))
            else:
                tx.execute("UPDATE edges SET last_seen_s = ?, connected_hub_id = ? WHERE edge_id = ?",
                           (now, hub_id, edge_id))
            if stats is not None:
                tx.execute("UPDATE edges SET stats = ? WHERE edge_id = ?", (json.dumps(dict(stats)), edge_id))
            if gallery_version is not None:
                tx.execute("UPDATE edges SET gallery_version = ? WHERE edge_id = ?", (gallery_version, edge_id))

    def disconnect_silent_edges(self, *, silent_since: float) -> list[str]:
        with self._transaction() as tx:
            rows = tx.all("UPDATE edges SET connected_hub_id = NULL WHERE connected_hub_id IS NOT NULL AND "
                          "COALESCE(last_seen_s, created_s) < ? RETURNING edge_id", (silent_since,))
        return sorted(str(r[0]) for r in rows)

    # ------------------------------------------------------------------ gallery
    def create_identity(self, identity_id: str, *, display_name: str, watchlist_threshold: float | None,
                        source: str, crop_paths: Sequence[str], embeddings: Mapping[str, np.ndarray],
                        sighting_id: int | None = None, now: float) -> int | None:
        if not identity_id:
            raise StoreError("identity id: expected a non-empty string")
        with self._transaction() as tx:
            if tx.one("SELECT 1 FROM identities WHERE identity_id = ?", (identity_id,)) is not None:
                return None
            version = self._bump_version(tx)
            tx.execute(f"INSERT INTO identities ({_IDENTITY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 0)",
                       (identity_id, display_name, watchlist_threshold, source, now, version))
            for path in crop_paths:
                tx.execute("INSERT INTO reference_crops (identity_id, path, created_s, sighting_id) "
                           "VALUES (?, ?, ?, ?)", (identity_id, path, now, sighting_id))
            self._append_embeddings(tx, identity_id, embeddings)
        return version

    def add_reference_crops(self, identity_id: str, crop_paths: Sequence[str],
                            embeddings: Mapping[str, np.ndarray], *, sighting_id: int | None = None,
                            now: float) -> int:
        with self._transaction() as tx:
            self._live_identity(tx, identity_id)
            version = self._bump_version(tx)
            tx.execute("UPDATE identities SET version = ? WHERE identity_id = ?", (version, identity_id))
            for path in crop_paths:
                tx.execute("INSERT INTO reference_crops (identity_id, path, created_s, sighting_id) "
                           "VALUES (?, ?, ?, ?)", (identity_id, path, now, sighting_id))
            self._append_embeddings(tx, identity_id, embeddings)
        return version

    def set_embeddings(self, identity_id: str, fingerprint: str, vectors: np.ndarray, *, now: float) -> int:
        n, dim, blob = _vectors_blob(vectors)
        with self._transaction() as tx:
            self._live_identity(tx, identity_id)
            version = self._bump_version(tx)
            tx.execute("UPDATE identities SET version = ? WHERE identity_id = ?", (version, identity_id))
            tx.execute("INSERT INTO embeddings (identity_id, fingerprint, n, dim, vectors) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT (identity_id, fingerprint) DO UPDATE SET n = excluded.n, dim = excluded.dim, "
                       "vectors = excluded.vectors", (identity_id, fingerprint, n, dim, blob))
        return version

    def update_identity(self, identity_id: str, *, display_name: str | _Unchanged = UNCHANGED,
                        watchlist_threshold: float | _Unchanged | None = UNCHANGED, now: float) -> int:
        with self._transaction() as tx:
            self._live_identity(tx, identity_id)
            version = self._bump_version(tx)
            tx.execute("UPDATE identities SET version = ? WHERE identity_id = ?", (version, identity_id))
            if display_name is not UNCHANGED:
                tx.execute("UPDATE identities SET display_name = ? WHERE identity_id = ?",
                           (display_name, identity_id))
            if watchlist_threshold is not UNCHANGED:
                tx.execute("UPDATE identities SET watchlist_threshold = ? WHERE identity_id = ?",
                           (watchlist_threshold, identity_id))
        return version

    def remove_identity(self, identity_id: str, *, now: float) -> tuple[int, list[str]]:
        with self._transaction() as tx:
            self._live_identity(tx, identity_id)
            version = self._bump_version(tx)
            paths = [r[0] for r in tx.all("SELECT path FROM reference_crops WHERE identity_id = ?", (identity_id,))]
            tx.execute("DELETE FROM reference_crops WHERE identity_id = ?", (identity_id,))
            tx.execute("DELETE FROM embeddings WHERE identity_id = ?", (identity_id,))
            tx.execute("UPDATE identities SET deleted = 1, version = ? WHERE identity_id = ?", (version, identity_id))
        return version, paths

    def get_identity(self, identity_id: str) -> IdentityRecord | None:
        with self._reading() as tx:
            row = tx.one(f"SELECT {_IDENTITY_COLUMNS} FROM identities WHERE identity_id = ?", (identity_id,))
        return _identity(row) if row else None

    def get_identities(self, identity_ids: Iterable[str]) -> dict[str, IdentityRecord]:
        wanted = sorted(set(identity_ids))
        found: dict[str, IdentityRecord] = {}
        with self._reading() as tx:
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start:start + _IN_CHUNK]
                rows = tx.all(f"SELECT {_IDENTITY_COLUMNS} FROM identities WHERE identity_id IN "
                              f"({', '.join('?' * len(chunk))})", chunk)
                found.update((r[0], _identity(r)) for r in rows)
        return found

    def list_identities(self, *, include_deleted: bool = False) -> list[IdentityRecord]:
        where = "" if include_deleted else " WHERE deleted = 0"
        with self._reading() as tx:
            rows = tx.all(f"SELECT {_IDENTITY_COLUMNS} FROM identities{where} ORDER BY created_s, identity_id")
        return [_identity(r) for r in rows]

    def reference_crops(self, identity_id: str) -> list[ReferenceCrop]:
        with self._reading() as tx:
            rows = tx.all("SELECT crop_id, identity_id, path, created_s, sighting_id FROM reference_crops "
                          "WHERE identity_id = ? ORDER BY crop_id", (identity_id,))
        return [ReferenceCrop(int(r[0]), r[1], r[2], float(r[3]), r[4]) for r in rows]

    def get_embeddings(self, identity_id: str, fingerprint: str) -> np.ndarray | None:
        with self._reading() as tx:
            row = tx.one("SELECT n, dim, vectors FROM embeddings WHERE identity_id = ? AND fingerprint = ?",
                         (identity_id, fingerprint))
        return _vectors(*row) if row else None

    def identities_missing(self, fingerprint: str) -> list[str]:
        with self._reading() as tx:
            rows = tx.all("SELECT i.identity_id FROM identities i WHERE i.deleted = 0 AND EXISTS "
                          "(SELECT 1 FROM reference_crops c WHERE c.identity_id = i.identity_id) AND NOT EXISTS "
                          "(SELECT 1 FROM embeddings e WHERE e.identity_id = i.identity_id AND e.fingerprint = ?) "
                          "ORDER BY i.version", (fingerprint,))
        return [r[0] for r in rows]

    def fingerprints(self) -> set[str]:
        with self._reading() as tx:
            rows = tx.all("SELECT model_fingerprint FROM edges WHERE model_fingerprint <> '' UNION "
                          "SELECT fingerprint FROM embeddings")
        return {r[0] for r in rows}

    def gallery_version(self) -> int:
        with self._reading() as tx:
            row = tx.one("SELECT version FROM gallery_state WHERE id = 1")
        assert row is not None
        return int(row[0])

    def gallery_floor(self) -> int:
        with self._reading() as tx:
            row = tx.one("SELECT floor FROM gallery_state WHERE id = 1")
        assert row is not None
        return int(row[0])

    def bump_gallery_version(self) -> int:
        with self._transaction() as tx:
            return self._bump_version(tx)

    def gallery_entries(self, fingerprint: str, *, after_version: int, up_to_version: int,
                        include_deleted: bool, limit: int) -> list[GalleryEntry]:
        deleted = "" if include_deleted else " AND i.deleted = 0"
        with self._reading() as tx:
            rows = tx.all(
                f"SELECT {', '.join('i.' + c.strip() for c in _IDENTITY_COLUMNS.split(','))}, e.n, e.dim, e.vectors "
                "FROM identities i LEFT JOIN embeddings e ON e.identity_id = i.identity_id AND e.fingerprint = ? "
                f"WHERE i.version > ? AND i.version <= ?{deleted} ORDER BY i.version LIMIT ?",
                (fingerprint, after_version, up_to_version, limit))
        return [GalleryEntry(_identity(r[:7]), _vectors(r[7], r[8], r[9]) if r[9] is not None else None)
                for r in rows]

    def prune_tombstones(self, before_version: int) -> int:
        with self._transaction() as tx:
            count = tx.execute("DELETE FROM identities WHERE deleted = 1 AND version < ?", (before_version,)).rowcount
            tx.execute("UPDATE gallery_state SET floor = ? WHERE id = 1 AND floor < ?",
                       (before_version, before_version))
        return count

    # ------------------------------------------------------------------ short lists
    def claim_short_list(self, summary: ShortListSummary, *, now: float, lease_s: float) -> ClaimResult:
        s = summary
        with self._transaction() as tx:
            inserted = tx.execute(
                f"INSERT INTO short_lists ({_SHORT_LIST_COLUMNS}, status, received_s, claimed_s) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'processing', ?, ?) "
                "ON CONFLICT (edge_id, idempotency_key) DO NOTHING",
                (s.idempotency_key, s.edge_id, s.camera_id, s.tracklet_id, s.track_id, s.start_s, s.end_s, s.n_crops,
                 json.dumps([list(c) for c in s.candidates]), s.model_fingerprint, s.gallery_version, s.created_s,
                 now, now)).rowcount
            if inserted == 1:
                return "new"
            row = tx.one("SELECT status, claimed_s FROM short_lists WHERE edge_id = ? AND idempotency_key = ?",
                         (s.edge_id, s.idempotency_key))
            assert row is not None
            if row[0] == "done":
                return "duplicate"
            if float(row[1]) < now - lease_s:  # its worker died: take over the claim
                taken = tx.execute("UPDATE short_lists SET claimed_s = ? WHERE edge_id = ? AND idempotency_key = ? "
                                   "AND status = 'processing' AND claimed_s = ?",
                                   (now, s.edge_id, s.idempotency_key, row[1])).rowcount
                if taken == 1:
                    return "new"
            return "in_progress"

    def release_short_list(self, idempotency_key: str, edge_id: str | None = None) -> None:
        with self._transaction() as tx:
            where, params = _and_edge(edge_id)
            tx.execute("DELETE FROM short_lists WHERE idempotency_key = ? AND status = 'processing'" + where,
                       (idempotency_key, *params))

    def complete_short_list(self, verdict: VerdictRecord, sighting: NewSighting | None, *, edge_id: str,
                            verdict_payload: bytes, alert: bool, now: float) -> CompletedShortList:
        v = verdict
        with self._transaction() as tx:
            done = tx.execute("UPDATE short_lists SET status = 'done' WHERE edge_id = ? AND idempotency_key = ? "
                              "AND status = 'processing'", (edge_id, v.idempotency_key)).rowcount
            if done != 1:
                raise StoreError(f"short list {v.idempotency_key!r} is not being processed (already decided?)")
            tx.execute("INSERT INTO verdicts (edge_id, idempotency_key, decision, identity_id, p_same, judge, scores, "
                       "decided_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (edge_id, v.idempotency_key, v.decision, v.identity_id, v.p_same, v.judge,
                        json.dumps(dict(v.scores)), v.decided_s))
            sighting_id = alert_id = None
            if sighting is not None:
                s = sighting
                row = tx.one(f"INSERT INTO sightings ({SIGHTING_COLUMNS}, created_s) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING sighting_id",
                             (s.identity_id, s.edge_id, s.camera_id, s.tracklet_id, s.start_s, s.end_s, s.crop_path,
                              s.p_same, s.stage1_p_same, s.stage2_p_same, s.idempotency_key, now))
                assert row is not None
                sighting_id = int(row[0])
                if alert:
                    if s.identity_id is None or s.p_same is None:
                        raise StoreError("an alert needs a sighting with an identity and its P(same)")
                    row = tx.one("INSERT INTO alerts (identity_id, sighting_id, edge_id, camera_id, p_same, "
                                 "created_s) VALUES (?, ?, ?, ?, ?, ?) RETURNING alert_id",
                                 (s.identity_id, sighting_id, s.edge_id, s.camera_id, s.p_same, now))
                    assert row is not None
                    alert_id = int(row[0])
            (sequence,) = self._allocate(tx, edge_id, 1)
            tx.execute("INSERT INTO outgoing (edge_id, sequence, kind, payload, created_s) VALUES (?, ?, ?, ?, ?)",
                       (edge_id, sequence, "verdict", verdict_payload, now))
        return CompletedShortList(sequence, sighting_id, alert_id)

    def get_short_list(self, idempotency_key: str, edge_id: str | None = None) -> ShortListRecord | None:
        where, params = _and_edge(edge_id)
        with self._reading() as tx:
            r = tx.one(f"SELECT {_SHORT_LIST_COLUMNS}, status, received_s, claimed_s FROM short_lists "
                       f"WHERE idempotency_key = ?{where} ORDER BY edge_id LIMIT 1", (idempotency_key, *params))
        if r is None:
            return None
        candidates = tuple((str(c[0]), float(c[1])) for c in json.loads(r[8]))
        summary = ShortListSummary(r[0], r[1], r[2], r[3], int(r[4]), float(r[5]), float(r[6]), int(r[7]),
                                   candidates, r[9], int(r[10]), float(r[11]))
        return ShortListRecord(summary, r[12], float(r[13]), float(r[14]))

    def count_short_lists(self, edge_id: str | None = None) -> int:
        with self._reading() as tx:
            if edge_id is None:
                row = tx.one("SELECT COUNT(*) FROM short_lists")
            else:
                row = tx.one("SELECT COUNT(*) FROM short_lists WHERE edge_id = ?", (edge_id,))
        assert row is not None
        return int(row[0])

    def get_verdict(self, idempotency_key: str, edge_id: str | None = None) -> VerdictRecord | None:
        where, params = _and_edge(edge_id)
        with self._reading() as tx:
            r = tx.one("SELECT idempotency_key, decision, identity_id, p_same, judge, scores, decided_s "
                       f"FROM verdicts WHERE idempotency_key = ?{where} ORDER BY edge_id LIMIT 1",
                       (idempotency_key, *params))
        if r is None:
            return None
        return VerdictRecord(r[0], r[1], r[2], float(r[3]), r[4], json.loads(r[5]), float(r[6]))

    # ------------------------------------------------------------------ outgoing messages
    def enqueue_outgoing(self, edge_id: str, kind: str, payloads: Sequence[bytes], *, now: float) -> list[int]:
        if not payloads:
            return []
        with self._transaction() as tx:
            sequences = self._allocate(tx, edge_id, len(payloads))
            for sequence, payload in zip(sequences, payloads, strict=True):
                tx.execute("INSERT INTO outgoing (edge_id, sequence, kind, payload, created_s) VALUES (?, ?, ?, ?, ?)",
                           (edge_id, sequence, kind, payload, now))
        return sequences

    def outgoing_after(self, edge_id: str, after_sequence: int, *, limit: int = 32) -> list[OutgoingMessage]:
        with self._reading() as tx:
            rows = tx.all("SELECT edge_id, sequence, kind, payload, created_s FROM outgoing WHERE edge_id = ? "
                          "AND sequence > ? ORDER BY sequence LIMIT ?", (edge_id, after_sequence, limit))
        return [OutgoingMessage(r[0], int(r[1]), r[2], bytes(r[3]), float(r[4])) for r in rows]

    def ack_outgoing(self, edge_id: str, up_to_sequence: int) -> int:
        with self._transaction() as tx:
            count = tx.execute("DELETE FROM outgoing WHERE edge_id = ? AND sequence <= ?",
                               (edge_id, up_to_sequence)).rowcount
            # a sequence never issued is not remembered as acknowledged
            tx.execute("UPDATE edges SET last_acked_sequence = ? WHERE edge_id = ? AND last_acked_sequence < ? "
                       "AND last_sequence >= ?", (up_to_sequence, edge_id, up_to_sequence, up_to_sequence))
        return count

    def count_outgoing(self, edge_id: str) -> int:
        with self._reading() as tx:
            row = tx.one("SELECT COUNT(*) FROM outgoing WHERE edge_id = ?", (edge_id,))
        assert row is not None
        return int(row[0])
