"""The hub's durable state: one interface, SQLite by default, PostgreSQL for several replicas.

    >>> store = open_store("hub-data/hub.db")                         # doctest: +SKIP
    >>> store = open_store("postgresql://hub@db.example/crossview")   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from cloud.store.base import (
    UNCHANGED,
    AlertRecord,
    AuditFilter,
    AuditRecord,
    ClaimResult,
    CompletedShortList,
    Decision,
    EdgeRecord,
    GalleryEntry,
    HubStore,
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
from cloud.store.schema import SchemaVersionError


def open_store(database: str | Path, **kwargs: object) -> HubStore:
    """A PostgreSQL store for a ``postgresql://`` / ``postgres://`` URL, else a SQLite file path."""
    text = str(database)
    if text.startswith(("postgresql://", "postgres://")):
        from cloud.store.postgres import PostgresHubStore

        return PostgresHubStore(text, **kwargs)  # type: ignore[arg-type]
    from cloud.store.sqlite import SqliteHubStore

    return SqliteHubStore(Path(text), **kwargs)  # type: ignore[arg-type]


__all__ = [
    "UNCHANGED", "AlertRecord", "AuditFilter", "AuditRecord", "ClaimResult", "CompletedShortList", "Decision",
    "EdgeRecord", "GalleryEntry", "HubStore", "IdentityCounts", "IdentityRecord", "NewSighting", "OperatorRecord",
    "OperatorSessionRecord", "OutgoingMessage", "ReferenceCrop", "SchemaVersionError", "SearchJobRecord",
    "ShortListRecord", "ShortListSummary", "SightingRecord", "StoreError", "StoredSearchResult", "TokenRecord",
    "VerdictRecord", "open_store",
]
