"""What the hub keeps: the one interface both backends implement (records: `cloud.store.records`).

Everything a hub replica must agree on with other replicas lives behind `HubStore`: gallery
versions come from a counter row and per-edge message sequences from the edge's row, both
incremented inside the writing transaction, so commit order equals number order and a reader that
sees version (or sequence) n committed has also seen every smaller one. Crops live on the
filesystem (`cloud.crops`); the store keeps their paths.
"""

from __future__ import annotations

from abc import abstractmethod

from cloud.store.interfaces import (
    AuditStore,
    EdgeStore,
    GalleryStore,
    OperatorStore,
    OutgoingStore,
    SearchStore,
    ShortListStore,
    SightingStore,
)
from cloud.store.records import (
    UNCHANGED,
    AlertRecord,
    AuditFilter,
    AuditRecord,
    ClaimResult,
    CompletedShortList,
    Decision,
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
    StoreError,
    TokenRecord,
    VerdictRecord,
)


class HubStore(EdgeStore, GalleryStore, ShortListStore, SightingStore, SearchStore, OperatorStore, AuditStore,
               OutgoingStore):
    """The hub's durable state: every domain's interface (`cloud.store.interfaces`). Every method is one
    transaction; all are thread-safe."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> HubStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "UNCHANGED", "AlertRecord", "AuditFilter", "AuditRecord", "AuditStore", "ClaimResult", "CompletedShortList",
    "Decision", "EdgeRecord", "EdgeStore",
    "GalleryEntry", "GalleryStore", "HubStore", "IdentityCounts", "IdentityRecord", "NewSighting",
    "OperatorRecord", "OperatorSessionRecord", "OperatorStore", "OutgoingMessage", "OutgoingStore",
    "ReferenceCrop", "SearchJobRecord", "SearchStore", "ShortListRecord", "ShortListStore",
    "ShortListSummary", "SightingRecord", "SightingStore", "StoreError", "StoredSearchResult",
    "TokenRecord", "VerdictRecord",
]
