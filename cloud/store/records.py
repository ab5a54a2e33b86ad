"""The records the hub's store returns and takes: plain frozen dataclasses, no database in sight.

Versions and sequences are explained in `cloud.store.base`; crops live on the filesystem
(`cloud.crops`), the records keep their paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

import numpy as np

from models.errors import CrossviewError


class StoreError(CrossviewError):
    """A store operation that cannot be done (unknown edge or identity, a conflicting id)."""


class _Unchanged(Enum):
    UNCHANGED = "unchanged"


UNCHANGED = _Unchanged.UNCHANGED
"""Sentinel for `update_identity`: leave this field as it is (None means "clear it")."""

ClaimResult = Literal["new", "duplicate", "in_progress"]
Decision = Literal["confirmed", "rejected", "new_identity"]


@dataclass(frozen=True)
class EdgeRecord:
    """A registered edge and what its last Hello and heartbeat said."""

    edge_id: str
    site: str = ""
    model_fingerprint: str = ""
    embedding_dim: int = 0
    cameras: tuple[Mapping[str, object], ...] = ()
    gallery_version: int = 0
    last_sequence: int = 0  # highest sequence allocated for this edge's hub messages
    last_acked_sequence: int = 0
    created_s: float = 0.0
    last_seen_s: float | None = None
    connected_hub_id: str | None = None  # replica holding its session; None when disconnected
    stats: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenRecord:
    """An edge token without its secret; the store holds only the secret's hash."""

    token_id: str
    edge_id: str
    secret_hash: str
    created_s: float
    expires_s: float | None
    revoked: bool


@dataclass(frozen=True)
class IdentityRecord:
    identity_id: str
    display_name: str
    watchlist_threshold: float | None
    source: str  # "photo" | "sighting" | "auto"
    created_s: float
    version: int  # gallery version of the identity's latest change
    deleted: bool = False


@dataclass(frozen=True)
class ReferenceCrop:
    crop_id: int
    identity_id: str
    path: str  # relative to the hub's crops folder
    created_s: float
    sighting_id: int | None = None


@dataclass(frozen=True)
class GalleryEntry:
    """One identity as a gallery delta carries it; `vectors` (N, D) of one fingerprint, or None."""

    identity: IdentityRecord
    vectors: np.ndarray | None


@dataclass(frozen=True)
class ShortListSummary:
    """What the hub records of a received short list (its crops and vectors are not kept)."""

    idempotency_key: str
    edge_id: str
    camera_id: str
    tracklet_id: str
    track_id: int
    start_s: float
    end_s: float
    n_crops: int
    candidates: tuple[tuple[str, float], ...]
    model_fingerprint: str
    gallery_version: int
    created_s: float


@dataclass(frozen=True)
class ShortListRecord:
    summary: ShortListSummary
    status: Literal["processing", "done"]
    received_s: float
    claimed_s: float


@dataclass(frozen=True)
class VerdictRecord:
    idempotency_key: str
    decision: Decision
    identity_id: str | None
    p_same: float  # fused P(same) of identity_id (or of the best candidate); 0 without one
    judge: str
    scores: Mapping[str, float]  # fused P(same) per judged candidate identity
    decided_s: float


@dataclass(frozen=True)
class NewSighting:
    """A tracklet the hub decided: seen as `identity_id`, or an unknown person (None: no candidate
    confirmed, no new identity). Scores are P(same) in [0, 1] for `identity_id` (`models.scores`);
    None where that stage did not score it (always for an unknown person or a new identity)."""

    identity_id: str | None
    edge_id: str
    camera_id: str
    tracklet_id: str
    start_s: float  # Unix seconds (live cameras, replays with recorded_at) or seconds into a video
    end_s: float
    crop_path: str
    p_same: float | None
    stage1_p_same: float | None
    stage2_p_same: float | None
    idempotency_key: str

    @property
    def unknown(self) -> bool:
        return self.identity_id is None


@dataclass(frozen=True)
class SightingRecord(NewSighting):
    sighting_id: int = 0
    created_s: float = 0.0


@dataclass(frozen=True)
class AlertRecord:
    alert_id: int
    identity_id: str
    sighting_id: int
    edge_id: str
    camera_id: str
    p_same: float  # the confirmed sighting's fused P(same), >= the identity's watch threshold
    created_s: float
    start_s: float | None = None  # when the person was seen (the sighting's span)
    end_s: float | None = None


@dataclass(frozen=True)
class IdentityCounts:
    """How much the hub holds of one identity (for listings)."""

    crop_count: int
    sighting_count: int
    last_seen_s: float | None  # end of its latest sighting's tracklet


@dataclass(frozen=True)
class SearchJobRecord:
    """A search fan-out as the replicas share it: who asked, which edges, until when."""

    job_id: str
    hub_id: str
    edge_ids: tuple[str, ...]
    deadline_s: float
    created_s: float


@dataclass(frozen=True)
class StoredSearchResult:
    """One SearchResult batch an edge sent to a replica other than the one that asked."""

    result_id: int
    edge_id: str
    payload: bytes


@dataclass(frozen=True)
class OperatorRecord:
    """An operator of the REST API; the store holds only the password's hash."""

    username: str
    password_hash: str
    created_s: float
    role: str = "operator"  # "admin" | "operator" | "viewer" (cloud.operators.ROLES)
    disabled: bool = False


@dataclass(frozen=True)
class OperatorSessionRecord:
    """A logged-in operator; the store holds only the session token's hash."""

    token_hash: str
    username: str
    created_s: float
    expires_s: float


@dataclass(frozen=True)
class AuditRecord:
    """One line of the audit trail: who (`username`, `role`, `client` address) did `action` to `target`, when."""

    at_s: float
    username: str
    role: str
    client: str
    action: str
    target: str = ""
    detail: str = ""
    audit_id: int = 0  # given by the store


@dataclass(frozen=True)
class AuditFilter:
    """Which audit lines to read: every given field must match (`since_s` <= at_s < `until_s`)."""

    username: str | None = None
    action: str | None = None
    target: str | None = None
    since_s: float | None = None
    until_s: float | None = None


@dataclass(frozen=True)
class OutgoingMessage:
    """A sequenced hub message kept until the edge acknowledges its sequence."""

    edge_id: str
    sequence: int
    kind: str  # "gallery_delta" | "verdict" | "search_job"
    payload: bytes  # a serialized HubMessage without its sequence
    created_s: float


@dataclass(frozen=True)
class CompletedShortList:
    sequence: int  # of the Verdict message queued for the edge
    sighting_id: int | None
    alert_id: int | None


__all__ = [
    "UNCHANGED", "AlertRecord", "AuditFilter", "AuditRecord", "ClaimResult", "CompletedShortList", "Decision",
    "EdgeRecord", "GalleryEntry", "IdentityCounts", "IdentityRecord", "NewSighting", "OperatorRecord",
    "OperatorSessionRecord", "OutgoingMessage", "ReferenceCrop", "SearchJobRecord", "ShortListRecord",
    "ShortListSummary", "SightingRecord", "StoreError", "StoredSearchResult", "TokenRecord", "VerdictRecord",
]
