"""The store's interface, one Protocol per domain (as the SQL is split: `cloud.store.sql`,
`sql_sightings`, `sql_search`, `sql_operators`); `cloud.store.base.HubStore` is all of them.

A service may ask for only the part it uses. Every method is one transaction; all are thread-safe.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np

from cloud.store.records import (
    UNCHANGED,
    AlertRecord,
    AuditFilter,
    AuditRecord,
    ClaimResult,
    CompletedShortList,
    EdgeRecord,
    GalleryEntry,
    IdentityCounts,
    IdentityRecord,
    NewSighting,
    OperatorRecord,
    OperatorSessionRecord,
    OutgoingMessage,
    ReferenceCrop,
    SearchJobRecord,
    ShortListRecord,
    ShortListSummary,
    SightingRecord,
    StoredSearchResult,
    TokenRecord,
    VerdictRecord,
    _Unchanged,
)


class EdgeStore(Protocol):
    """Edges, their tokens and liveness (`cloud.store.sql`)."""

    @abstractmethod
    def register_edge(self, edge_id: str, *, site: str = "", now: float) -> EdgeRecord:
        """Create the edge if it is new; return its record either way."""

    @abstractmethod
    def get_edge(self, edge_id: str) -> EdgeRecord | None: ...

    @abstractmethod
    def list_edges(self) -> list[EdgeRecord]: ...

    @abstractmethod
    def delete_edge(self, edge_id: str) -> bool:
        """Forget the edge, its tokens and its queued messages (its sightings stay)."""

    @abstractmethod
    def add_token(self, record: TokenRecord) -> None: ...

    @abstractmethod
    def get_token(self, token_id: str) -> TokenRecord | None: ...

    @abstractmethod
    def list_tokens(self, edge_id: str) -> list[TokenRecord]: ...

    @abstractmethod
    def revoke_token(self, token_id: str) -> bool: ...

    @abstractmethod
    def revoke_edge_tokens(self, edge_id: str) -> int: ...

    @abstractmethod
    def record_hello(self, edge_id: str, *, site: str, model_fingerprint: str, embedding_dim: int,
                     cameras: Sequence[Mapping[str, object]], gallery_version: int, acked_sequence: int,
                     hub_id: str, now: float) -> EdgeRecord:
        """Store what Hello said, mark the edge connected to `hub_id`, drop messages up to
        `acked_sequence` and the edge's unacknowledged gallery deltas (a fresh delta replaces them)."""

    @abstractmethod
    def record_disconnect(self, edge_id: str, *, hub_id: str, now: float) -> None:
        """Mark the edge disconnected, unless another replica has taken its session since."""

    @abstractmethod
    def touch_edge(self, edge_id: str, *, now: float, stats: Mapping[str, object] | None = None,
                   gallery_version: int | None = None, hub_id: str | None = None) -> None:
        """Record a heartbeat (last seen, stats); with `hub_id`, the edge is connected to that replica (again,
        if `disconnect_silent_edges` had given it up)."""

    @abstractmethod
    def disconnect_silent_edges(self, *, silent_since: float) -> list[str]:
        """Mark disconnected every edge marked connected that was last seen before `silent_since` (a silent edge,
        or a replica that died holding its session); the ids of those edges."""


class GalleryStore(Protocol):
    """Identities, reference crops, vectors per model and gallery versions (`cloud.store.sql`)."""

    @abstractmethod
    def create_identity(self, identity_id: str, *, display_name: str, watchlist_threshold: float | None,
                        source: str, crop_paths: Sequence[str], embeddings: Mapping[str, np.ndarray],
                        sighting_id: int | None = None, now: float) -> int | None:
        """Create an identity with its reference crops and vectors; its gallery version, or None
        (nothing written) when the id already exists."""

    @abstractmethod
    def add_reference_crops(self, identity_id: str, crop_paths: Sequence[str],
                            embeddings: Mapping[str, np.ndarray], *, sighting_id: int | None = None,
                            now: float) -> int:
        """Append crops and, per fingerprint, their vectors (N, D) to a live identity; new version."""

    @abstractmethod
    def set_embeddings(self, identity_id: str, fingerprint: str, vectors: np.ndarray, *, now: float) -> int:
        """Replace the identity's vectors of `fingerprint`; new version."""

    @abstractmethod
    def update_identity(self, identity_id: str, *, display_name: str | _Unchanged = UNCHANGED,
                        watchlist_threshold: float | _Unchanged | None = UNCHANGED, now: float) -> int: ...

    @abstractmethod
    def remove_identity(self, identity_id: str, *, now: float) -> tuple[int, list[str]]:
        """Tombstone the identity (edges are told to drop it); (version, crop paths to delete)."""

    @abstractmethod
    def get_identity(self, identity_id: str) -> IdentityRecord | None: ...

    @abstractmethod
    def get_identities(self, identity_ids: Iterable[str]) -> dict[str, IdentityRecord]:
        """The known ones of `identity_ids` (tombstoned included), by id; one query per few hundred ids."""

    @abstractmethod
    def list_identities(self, *, include_deleted: bool = False) -> list[IdentityRecord]: ...

    @abstractmethod
    def reference_crops(self, identity_id: str) -> list[ReferenceCrop]: ...

    @abstractmethod
    def get_embeddings(self, identity_id: str, fingerprint: str) -> np.ndarray | None: ...

    @abstractmethod
    def identities_missing(self, fingerprint: str) -> list[str]:
        """Live identities that have reference crops but no vectors of `fingerprint`."""

    @abstractmethod
    def fingerprints(self) -> set[str]:
        """Fingerprints of registered edges' models and of stored vectors."""

    @abstractmethod
    def gallery_version(self) -> int: ...

    @abstractmethod
    def gallery_floor(self) -> int:
        """Oldest version deltas can start from; older ones get a full snapshot."""

    @abstractmethod
    def bump_gallery_version(self) -> int:
        """A new version with no identity change (for resyncing an edge ahead of the hub)."""

    @abstractmethod
    def gallery_entries(self, fingerprint: str, *, after_version: int, up_to_version: int,
                        include_deleted: bool, limit: int) -> list[GalleryEntry]:
        """Identities with after_version < version <= up_to_version, by version, at most `limit`."""

    @abstractmethod
    def prune_tombstones(self, before_version: int) -> int:
        """Forget removals older than `before_version`; the floor moves up to it."""


class ShortListStore(Protocol):
    """Short lists claimed and decided exactly once, and their verdicts (`cloud.store.sql`)."""

    @abstractmethod
    def claim_short_list(self, summary: ShortListSummary, *, now: float, lease_s: float) -> ClaimResult:
        """"new": the caller processes it; "duplicate": already decided; "in_progress": another
        worker holds a claim younger than `lease_s`."""

    @abstractmethod
    def release_short_list(self, idempotency_key: str, edge_id: str | None = None) -> None:
        """Drop an unfinished claim so a retry processes the short list again. Keys are unique per
        edge: None releases the key's claims of every edge (tools and tests only)."""

    @abstractmethod
    def complete_short_list(self, verdict: VerdictRecord, sighting: NewSighting | None, *, edge_id: str,
                            verdict_payload: bytes, alert: bool, now: float) -> CompletedShortList:
        """Store the verdict, the sighting and an alert (when `alert`), queue the Verdict message."""

    @abstractmethod
    def get_short_list(self, idempotency_key: str, edge_id: str | None = None) -> ShortListRecord | None:
        """The short list `edge_id` sent under the key (None: any edge's, for tools and tests)."""

    @abstractmethod
    def count_short_lists(self, edge_id: str | None = None) -> int: ...

    @abstractmethod
    def get_verdict(self, idempotency_key: str, edge_id: str | None = None) -> VerdictRecord | None:
        """The verdict of `edge_id`'s short list under the key (None: any edge's)."""


class SightingStore(Protocol):
    """Sightings, per-identity counts and alerts (`cloud.store.sql_sightings`)."""

    @abstractmethod
    def get_sighting(self, sighting_id: int) -> SightingRecord | None: ...

    @abstractmethod
    def sightings(self, *, identity_id: str | None = None, edge_id: str | None = None, camera_id: str | None = None,
                  unknown: bool = False, limit: int = 100) -> list[SightingRecord]:
        """Newest first; `unknown`: only the sightings of nobody known (no identity)."""

    @abstractmethod
    def assign_sighting(self, sighting_id: int, identity_id: str) -> bool:
        """Give an unknown sighting its identity (it was promoted); False when it already has one.
        StoreError for an unknown sighting."""

    @abstractmethod
    def sightings_of_tracklets(self, tracklets: Sequence[tuple[str, str]]) -> dict[tuple[str, str], SightingRecord]:
        """The latest sighting of each (edge_id, tracklet_id) that has one."""

    @abstractmethod
    def identity_counts(self, identity_id: str | None = None) -> dict[str, IdentityCounts]:
        """Crop and sighting counts of every live identity (or of the one named)."""

    @abstractmethod
    def alerts(self, *, after_id: int = 0, limit: int = 100) -> list[AlertRecord]:
        """Oldest first, ids greater than `after_id`."""

    @abstractmethod
    def newest_alert_id(self) -> int:
        """The highest alert id so far; 0 when there is none."""


class SearchStore(Protocol):
    """Search jobs and the result batches kept for the replica that asked (`cloud.store.sql_search`)."""

    @abstractmethod
    def create_search_job(self, record: SearchJobRecord) -> None:
        """Record a search job so that any replica can take its edges' results."""

    @abstractmethod
    def get_search_job(self, job_id: str) -> SearchJobRecord | None: ...

    @abstractmethod
    def add_search_result(self, job_id: str, edge_id: str, result_key: str, payload: bytes, *, now: float) -> bool:
        """Keep one result batch for the replica that asked; False when that batch is here already.
        Raises StoreError for an unknown job."""

    @abstractmethod
    def search_results_after(self, job_id: str, after_id: int, *, limit: int = 100) -> list[StoredSearchResult]:
        """Result batches of the job with ``result_id > after_id``, oldest first."""

    @abstractmethod
    def delete_search_jobs(self, *, deadline_before_s: float) -> int:
        """Forget jobs (and their results) whose deadline is before `deadline_before_s`; how many."""


class OperatorStore(Protocol):
    """Operators of the REST API and their sessions (`cloud.store.sql_operators`)."""

    @abstractmethod
    def save_operator(self, username: str, password_hash: str, *, now: float, role: str | None = None) -> bool:
        """Create the operator (role None: "operator") or replace its password hash (a changed hash ends its
        sessions) and, when given, its role; True when it was created."""

    @abstractmethod
    def get_operator(self, username: str) -> OperatorRecord | None: ...

    @abstractmethod
    def list_operators(self) -> list[OperatorRecord]: ...

    @abstractmethod
    def delete_operator(self, username: str) -> bool:
        """Forget the operator and end its sessions."""

    @abstractmethod
    def set_operator_role(self, username: str, role: str) -> OperatorRecord:
        """StoreError for an unknown operator, or for demoting the last enabled admin."""

    @abstractmethod
    def set_operator_disabled(self, username: str, disabled: bool) -> OperatorRecord:
        """Disabling ends the operator's sessions; StoreError for an unknown one or the last enabled admin."""

    @abstractmethod
    def delete_operator_sessions(self, username: str) -> int:
        """End every session of the operator; how many."""

    @abstractmethod
    def add_operator_session(self, record: OperatorSessionRecord) -> None:
        """Store a session of a known operator (StoreError for an unknown one)."""

    @abstractmethod
    def get_operator_session(self, token_hash: str) -> OperatorSessionRecord | None: ...

    @abstractmethod
    def delete_operator_session(self, token_hash: str) -> bool: ...

    @abstractmethod
    def delete_expired_operator_sessions(self, now: float) -> int:
        """Forget sessions with expires_s <= now; how many."""


class AuditStore(Protocol):
    """The append-only audit trail (`cloud.store.sql_audit`)."""

    @abstractmethod
    def append_audit(self, record: AuditRecord) -> int:
        """Append one line (its `audit_id` ignored); the id it got."""

    @abstractmethod
    def audit_entries(self, where: AuditFilter | None = None, *, before_id: int | None = None,
                      after_id: int | None = None, limit: int = 100) -> list[AuditRecord]:
        """Lines matching `where`: newest first below `before_id`, or oldest first above `after_id`."""

    @abstractmethod
    def delete_audit_before(self, cutoff_s: float) -> int:
        """Retention: forget lines with at_s < cutoff_s; how many."""


class OutgoingStore(Protocol):
    """Sequenced messages queued per edge until it acknowledges them (`cloud.store.sql`)."""

    @abstractmethod
    def enqueue_outgoing(self, edge_id: str, kind: str, payloads: Sequence[bytes], *, now: float) -> list[int]:
        """Queue messages for the edge; their sequences, increasing."""

    @abstractmethod
    def outgoing_after(self, edge_id: str, after_sequence: int, *, limit: int = 32) -> list[OutgoingMessage]: ...

    @abstractmethod
    def ack_outgoing(self, edge_id: str, up_to_sequence: int) -> int:
        """Forget messages up to and including `up_to_sequence`; how many were dropped."""

    @abstractmethod
    def count_outgoing(self, edge_id: str) -> int: ...
