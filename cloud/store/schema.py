"""The hub's tables, written once for both backends.

`{blob}` and `{serial_pk}` are the only spellings SQLite and PostgreSQL disagree on; BIGINT and
DOUBLE PRECISION mean 64-bit integers and doubles in both. Booleans are 0/1 integers, JSON is text.
Step i of `MIGRATIONS` brings a database from schema version i to i + 1; never edit a released step,
append a new one. A statement only one backend needs is written `Only("postgres", ...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from persist.sqlite import SCHEMA_VERSION_DDL as SCHEMA_VERSION_DDL  # re-exported (tests build old schemas)
from persist.sqlite import SchemaVersionError as SchemaVersionError  # re-exported (API)
from persist.sqlite import run_migrations


@dataclass(frozen=True)
class Dialect:
    name: str
    blob: str
    serial_pk: str

    def render(self, ddl: str) -> str:
        return ddl.format(blob=self.blob, serial_pk=self.serial_pk)


@dataclass(frozen=True)
class Only:
    """A migration statement for one backend only."""

    dialect: str
    ddl: str


SQLITE = Dialect("sqlite", blob="BLOB", serial_pk="INTEGER PRIMARY KEY")
POSTGRES = Dialect("postgres", blob="BYTEA", serial_pk="BIGSERIAL PRIMARY KEY")

_V1 = (
    """CREATE TABLE edges (
        edge_id TEXT PRIMARY KEY,
        site TEXT NOT NULL DEFAULT '',
        model_fingerprint TEXT NOT NULL DEFAULT '',
        embedding_dim BIGINT NOT NULL DEFAULT 0,
        cameras TEXT NOT NULL DEFAULT '[]',
        gallery_version BIGINT NOT NULL DEFAULT 0,
        last_sequence BIGINT NOT NULL DEFAULT 0,
        last_acked_sequence BIGINT NOT NULL DEFAULT 0,
        created_s DOUBLE PRECISION NOT NULL,
        last_seen_s DOUBLE PRECISION,
        connected_hub_id TEXT,
        stats TEXT NOT NULL DEFAULT '{{}}'
    )""",
    """CREATE TABLE edge_tokens (
        token_id TEXT PRIMARY KEY,
        edge_id TEXT NOT NULL REFERENCES edges (edge_id) ON DELETE CASCADE,
        secret_hash TEXT NOT NULL,
        created_s DOUBLE PRECISION NOT NULL,
        expires_s DOUBLE PRECISION,
        revoked INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX edge_tokens_edge ON edge_tokens (edge_id)",
    # one row: the gallery's version counter and the oldest version deltas start from
    """CREATE TABLE gallery_state (
        id INTEGER PRIMARY KEY,
        version BIGINT NOT NULL,
        floor BIGINT NOT NULL
    )""",
    "INSERT INTO gallery_state (id, version, floor) VALUES (1, 0, 0)",
    # an identity's row is also its entry in the change log: `version` is its latest change and a
    # removal keeps the row as a tombstone (deleted = 1) until pruned
    """CREATE TABLE identities (
        identity_id TEXT PRIMARY KEY,
        display_name TEXT NOT NULL DEFAULT '',
        watchlist_threshold DOUBLE PRECISION,
        source TEXT NOT NULL,
        created_s DOUBLE PRECISION NOT NULL,
        version BIGINT NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX identities_version ON identities (version)",
    """CREATE TABLE reference_crops (
        crop_id {serial_pk},
        identity_id TEXT NOT NULL REFERENCES identities (identity_id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        created_s DOUBLE PRECISION NOT NULL,
        sighting_id BIGINT
    )""",
    "CREATE INDEX reference_crops_identity ON reference_crops (identity_id)",
    """CREATE TABLE embeddings (
        identity_id TEXT NOT NULL REFERENCES identities (identity_id) ON DELETE CASCADE,
        fingerprint TEXT NOT NULL,
        n BIGINT NOT NULL,
        dim BIGINT NOT NULL,
        vectors {blob} NOT NULL,
        PRIMARY KEY (identity_id, fingerprint)
    )""",
    """CREATE TABLE short_lists (
        idempotency_key TEXT PRIMARY KEY,
        edge_id TEXT NOT NULL,
        camera_id TEXT NOT NULL,
        tracklet_id TEXT NOT NULL,
        track_id BIGINT NOT NULL,
        start_s DOUBLE PRECISION NOT NULL,
        end_s DOUBLE PRECISION NOT NULL,
        n_crops BIGINT NOT NULL,
        candidates TEXT NOT NULL,
        model_fingerprint TEXT NOT NULL,
        gallery_version BIGINT NOT NULL,
        created_s DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL,
        received_s DOUBLE PRECISION NOT NULL,
        claimed_s DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX short_lists_edge ON short_lists (edge_id)",
    """CREATE TABLE verdicts (
        idempotency_key TEXT PRIMARY KEY REFERENCES short_lists (idempotency_key) ON DELETE CASCADE,
        decision TEXT NOT NULL,
        identity_id TEXT,
        stage2_score DOUBLE PRECISION NOT NULL,
        judge TEXT NOT NULL,
        scores TEXT NOT NULL,
        decided_s DOUBLE PRECISION NOT NULL
    )""",
    # no foreign key to identities: the timeline outlives a removed identity
    """CREATE TABLE sightings (
        sighting_id {serial_pk},
        identity_id TEXT NOT NULL,
        edge_id TEXT NOT NULL,
        camera_id TEXT NOT NULL,
        tracklet_id TEXT NOT NULL,
        start_s DOUBLE PRECISION NOT NULL,
        end_s DOUBLE PRECISION NOT NULL,
        crop_path TEXT NOT NULL,
        stage1_distance DOUBLE PRECISION,
        stage2_score DOUBLE PRECISION NOT NULL,
        idempotency_key TEXT NOT NULL,
        created_s DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX sightings_identity ON sightings (identity_id, sighting_id)",
    "CREATE INDEX sightings_edge ON sightings (edge_id, sighting_id)",
    """CREATE TABLE alerts (
        alert_id {serial_pk},
        identity_id TEXT NOT NULL,
        sighting_id BIGINT NOT NULL,
        edge_id TEXT NOT NULL,
        camera_id TEXT NOT NULL,
        stage2_score DOUBLE PRECISION NOT NULL,
        created_s DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE outgoing (
        edge_id TEXT NOT NULL REFERENCES edges (edge_id) ON DELETE CASCADE,
        sequence BIGINT NOT NULL,
        kind TEXT NOT NULL,
        payload {blob} NOT NULL,
        created_s DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (edge_id, sequence)
    )""",
)

# operators of the REST API and their login sessions (only hashes of passwords and session tokens);
# sightings looked up by the tracklet they came from (search hits name edge + tracklet)
_V2 = (
    """CREATE TABLE operators (
        username TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        created_s DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE operator_sessions (
        token_hash TEXT PRIMARY KEY,
        username TEXT NOT NULL REFERENCES operators (username) ON DELETE CASCADE,
        created_s DOUBLE PRECISION NOT NULL,
        expires_s DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX operator_sessions_expiry ON operator_sessions (expires_s)",
    "CREATE INDEX sightings_tracklet ON sightings (edge_id, tracklet_id)",
)

# search jobs shared by the replicas: an edge connected to another replica answers a job through the
# store, and the replica that asked collects the batches from here
_V3 = (
    """CREATE TABLE search_jobs (
        job_id TEXT PRIMARY KEY,
        hub_id TEXT NOT NULL,
        edge_ids TEXT NOT NULL,
        deadline_s DOUBLE PRECISION NOT NULL,
        created_s DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX search_jobs_deadline ON search_jobs (deadline_s)",
    """CREATE TABLE search_results (
        result_id {serial_pk},
        job_id TEXT NOT NULL REFERENCES search_jobs (job_id) ON DELETE CASCADE,
        edge_id TEXT NOT NULL,
        result_key TEXT NOT NULL,
        payload {blob} NOT NULL,
        created_s DOUBLE PRECISION NOT NULL,
        UNIQUE (job_id, edge_id, result_key)
    )""",
)

# Scores become calibrated probabilities (models.scores): a sighting keeps the fused `p_same` that
# thresholds read and each stage's `stage1_p_same` / `stage2_p_same`. A rejected short list becomes an
# "unknown" sighting (no identity), so `identity_id` may be NULL. SQLite cannot drop a NOT NULL, so the
# table is rebuilt (ids kept; PostgreSQL's id sequence moved past them). Old stage-1 values were
# distances, not probabilities: they are dropped; the old stage-2 score (the judge's 1 - μ) is kept as
# both the stage-2 and the fused value, uncalibrated.
_V4 = (
    """CREATE TABLE sightings_v4 (
        sighting_id {serial_pk},
        identity_id TEXT,
        edge_id TEXT NOT NULL,
        camera_id TEXT NOT NULL,
        tracklet_id TEXT NOT NULL,
        start_s DOUBLE PRECISION NOT NULL,
        end_s DOUBLE PRECISION NOT NULL,
        crop_path TEXT NOT NULL,
        p_same DOUBLE PRECISION,
        stage1_p_same DOUBLE PRECISION,
        stage2_p_same DOUBLE PRECISION,
        idempotency_key TEXT NOT NULL,
        created_s DOUBLE PRECISION NOT NULL
    )""",
    """INSERT INTO sightings_v4 (sighting_id, identity_id, edge_id, camera_id, tracklet_id, start_s, end_s, crop_path,
        p_same, stage1_p_same, stage2_p_same, idempotency_key, created_s)
       SELECT sighting_id, identity_id, edge_id, camera_id, tracklet_id, start_s, end_s, crop_path,
        stage2_score, NULL, stage2_score, idempotency_key, created_s FROM sightings""",
    "DROP TABLE sightings",
    "ALTER TABLE sightings_v4 RENAME TO sightings",
    Only("postgres", "SELECT setval(pg_get_serial_sequence('sightings', 'sighting_id'), "
                     "COALESCE((SELECT MAX(sighting_id) FROM sightings), 0) + 1, false)"),
    "CREATE INDEX sightings_identity ON sightings (identity_id, sighting_id)",
    "CREATE INDEX sightings_edge ON sightings (edge_id, sighting_id)",
    "CREATE INDEX sightings_tracklet ON sightings (edge_id, tracklet_id)",
    "ALTER TABLE alerts RENAME COLUMN stage2_score TO p_same",
    "ALTER TABLE verdicts RENAME COLUMN stage2_score TO p_same",
)

# Operator roles (issue 12): admin, operator or viewer, and a disabled flag. An existing database's oldest
# operator is the one the hub created at its first start (the configured admin_user), so it becomes admin
# and the others operators. The audit trail is append-only: only retention deletes rows (cloud.audit);
# SQLite refuses an UPDATE with a trigger, PostgreSQL ignores one with a rule.
_V5 = (
    "ALTER TABLE operators ADD COLUMN role TEXT NOT NULL DEFAULT 'operator'",
    "ALTER TABLE operators ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0",
    """UPDATE operators SET role = 'admin' WHERE username = (SELECT username FROM operators
       ORDER BY created_s, username LIMIT 1)""",
    "CREATE INDEX operator_sessions_user ON operator_sessions (username)",
    """CREATE TABLE audit_log (
        audit_id {serial_pk},
        at_s DOUBLE PRECISION NOT NULL,
        username TEXT NOT NULL,
        role TEXT NOT NULL,
        client TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
    )""",
    "CREATE INDEX audit_log_time ON audit_log (at_s)",
    "CREATE INDEX audit_log_user ON audit_log (username, audit_id)",
    "CREATE INDEX audit_log_action ON audit_log (action, audit_id)",
    "CREATE INDEX audit_log_target ON audit_log (target, audit_id)",
    Only("sqlite", """CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"""),
    Only("postgres", "CREATE RULE audit_log_append_only AS ON UPDATE TO audit_log DO INSTEAD NOTHING"),
)

# Idempotency keys are the edge's own: a short list is one per (edge, key), so one edge's key cannot
# make another's short list a duplicate (issue 12, finding 4). Both tables are rebuilt with the edge in
# their primary key; the child (verdicts) is dropped before its parent so no cascade runs.
_V6 = (
    """CREATE TABLE short_lists_v6 (
        idempotency_key TEXT NOT NULL,
        edge_id TEXT NOT NULL,
        camera_id TEXT NOT NULL,
        tracklet_id TEXT NOT NULL,
        track_id BIGINT NOT NULL,
        start_s DOUBLE PRECISION NOT NULL,
        end_s DOUBLE PRECISION NOT NULL,
        n_crops BIGINT NOT NULL,
        candidates TEXT NOT NULL,
        model_fingerprint TEXT NOT NULL,
        gallery_version BIGINT NOT NULL,
        created_s DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL,
        received_s DOUBLE PRECISION NOT NULL,
        claimed_s DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (edge_id, idempotency_key)
    )""",
    """INSERT INTO short_lists_v6 SELECT idempotency_key, edge_id, camera_id, tracklet_id, track_id, start_s, end_s,
        n_crops, candidates, model_fingerprint, gallery_version, created_s, status, received_s, claimed_s
       FROM short_lists""",
    """CREATE TABLE verdicts_v6 (
        edge_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        decision TEXT NOT NULL,
        identity_id TEXT,
        p_same DOUBLE PRECISION NOT NULL,
        judge TEXT NOT NULL,
        scores TEXT NOT NULL,
        decided_s DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (edge_id, idempotency_key),
        FOREIGN KEY (edge_id, idempotency_key) REFERENCES short_lists_v6 (edge_id, idempotency_key) ON DELETE CASCADE
    )""",
    """INSERT INTO verdicts_v6 SELECT s.edge_id, v.idempotency_key, v.decision, v.identity_id, v.p_same, v.judge,
        v.scores, v.decided_s FROM verdicts v JOIN short_lists s ON s.idempotency_key = v.idempotency_key""",
    "DROP TABLE verdicts",
    "DROP TABLE short_lists",
    "ALTER TABLE short_lists_v6 RENAME TO short_lists",
    "ALTER TABLE verdicts_v6 RENAME TO verdicts",
)

MIGRATIONS: tuple[tuple[str | Only, ...], ...] = (_V1, _V2, _V3, _V4, _V5, _V6)

COMPONENT = "hub"


class Tx:
    """One open transaction: `execute` with `?` placeholders, plus fetch helpers."""

    def __init__(self, execute: Callable[[str, Sequence[Any]], Any]) -> None:
        self._execute = execute

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._execute(sql, params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        return self._execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return list(self._execute(sql, params).fetchall())


def migrate(tx: Tx, dialect: Dialect) -> int:
    """Bring the hub's tables to the newest schema version inside the caller's transaction.

    The runner is `persist.sqlite.run_migrations`, the edge stores' too; this adds the dialect.
    """

    def render(ddl: str | Only) -> str | None:
        if isinstance(ddl, Only):
            if ddl.dialect != dialect.name:
                return None
            ddl = ddl.ddl
        return dialect.render(ddl)

    return run_migrations(tx.execute, COMPONENT, MIGRATIONS, render)
