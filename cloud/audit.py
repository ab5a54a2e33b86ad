"""The audit trail: who searched for, enrolled, watched, renamed, deleted or viewed which person or crop,
when and from where; and who logged in, failed to, was locked out, or managed operators.

    >>> audit = AuditLog(store, retention_days=365)                                      # doctest: +SKIP
    >>> audit.record(username="alice", role="operator", client="10.0.0.7", action="rename",
    ...              target="id-3", detail="name 'Bob'")                                 # doctest: +SKIP
    >>> audit.export(AuditFilter(action="search"), "csv")                                # doctest: +SKIP

Lines are appended to the hub store (`cloud.store.sql_audit`), never changed; `sweep()` deletes the
ones older than `retention_days`, the only way a line leaves. The hub's housekeeping loop calls
`sweep_if_due()` (at most once an hour). CSV cells that a spreadsheet would run as a formula
(starting with = + - @) are prefixed with a quote.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Literal

from cloud.store import AuditFilter, AuditRecord, HubStore
from models.errors import InvalidInputError

ACTIONS = frozenset({
    "search", "enrol", "watch", "unwatch", "rename", "delete", "view_identity", "view_crop", "view_sighting",
    "login", "login_failed", "lockout", "logout", "password_changed", "operator_created", "operator_disabled",
    "operator_enabled", "operator_role_changed", "operator_password_reset", "audit_viewed", "audit_exported",
})
ExportFormat = Literal["csv", "jsonl"]
EXPORT_FORMATS: tuple[str, ...] = ("csv", "jsonl")
DEFAULT_RETENTION_DAYS = 365.0
SWEEP_EVERY_S = 3600.0
_TARGET_MAX, _DETAIL_MAX, _NAME_MAX = 200, 500, 64
_CSV_COLUMNS = ("audit_id", "time_utc", "at_s", "username", "role", "client", "action", "target", "detail")
_PAGE = 1000


def _clip(text: str, size: int) -> str:
    text = " ".join(str(text).split())  # one line: no newline can forge a second entry in an export
    return text if len(text) <= size else text[: size - 1] + "…"


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def check_filter(username: str | None = None, action: str | None = None, target: str | None = None,
                 since_s: float | None = None, until_s: float | None = None) -> AuditFilter:
    """The filter, or InvalidInputError for an unknown action or an empty time range."""
    if action is not None and action not in ACTIONS:
        raise InvalidInputError(f"action: expected one of {', '.join(sorted(ACTIONS))}, got {action!r}")
    if since_s is not None and until_s is not None and until_s <= since_s:
        raise InvalidInputError(f"time range: expected since_s < until_s, got {since_s} >= {until_s}")
    return AuditFilter(username=username or None, action=action, target=target or None, since_s=since_s,
                       until_s=until_s)


def entry_json(entry: AuditRecord) -> dict[str, object]:
    return {"audit_id": entry.audit_id, "time_utc": _utc(entry.at_s), "at_s": entry.at_s, "username": entry.username,
            "role": entry.role, "client": entry.client, "action": entry.action, "target": entry.target,
            "detail": entry.detail}


def _csv_cell(value: object) -> object:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


class AuditLog:
    """Writes and reads the audit trail of `store` (thread-safe: the store is)."""

    def __init__(self, store: HubStore, *, retention_days: float | None = DEFAULT_RETENTION_DAYS,
                 clock: Callable[[], float] = time.time) -> None:
        if retention_days is not None and not retention_days > 0:
            raise InvalidInputError(f"audit_retention_days: expected > 0 (or none: keep forever), got {retention_days}")
        self._store = store
        self._clock = clock
        self.retention_days = retention_days
        self._last_sweep = -float("inf")
        self._sweep_lock = threading.Lock()

    def record(self, *, username: str, role: str, client: str, action: str, target: object = "",
               detail: str = "") -> int:
        """Append one line; its id. InvalidInputError for an action not in ACTIONS (a programming error)."""
        if action not in ACTIONS:
            raise InvalidInputError(f"audit action: expected one of {', '.join(sorted(ACTIONS))}, got {action!r}")
        return self._store.append_audit(AuditRecord(
            at_s=self._clock(), username=_clip(username, _NAME_MAX) or "-", role=role or "-", client=client or "-",
            action=action, target=_clip(str(target), _TARGET_MAX), detail=_clip(detail, _DETAIL_MAX)))

    def entries(self, where: AuditFilter | None = None, *, before_id: int | None = None,
                limit: int = 100) -> list[AuditRecord]:
        """Newest first, ids below `before_id` (the previous page's last id)."""
        return self._store.audit_entries(where, before_id=before_id, limit=limit)

    def iter_entries(self, where: AuditFilter | None = None) -> Iterator[AuditRecord]:
        """Every matching line, oldest first, read a page at a time."""
        after = 0
        while True:
            page = self._store.audit_entries(where, after_id=after, limit=_PAGE)
            yield from page
            if len(page) < _PAGE:
                return
            after = page[-1].audit_id

    def export(self, where: AuditFilter | None, fmt: str) -> Iterator[str]:
        """The matching lines as CSV (with a header) or JSON Lines, in chunks, oldest first."""
        if fmt not in EXPORT_FORMATS:
            raise InvalidInputError(f"format: expected one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
        if fmt == "jsonl":
            for entry in self.iter_entries(where):
                yield json.dumps(entry_json(entry), ensure_ascii=False, separators=(",", ":")) + "\n"
            return
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(_CSV_COLUMNS)
        for entry in self.iter_entries(where):
            row = entry_json(entry)
            writer.writerow([_csv_cell(row[column]) for column in _CSV_COLUMNS])
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    def sweep(self, now: float | None = None) -> int:
        """Delete the lines older than the retention; how many (0 when kept forever)."""
        if self.retention_days is None:
            return 0
        now = self._clock() if now is None else now
        return self._store.delete_audit_before(now - self.retention_days * 86400.0)

    def sweep_if_due(self, every_s: float = SWEEP_EVERY_S) -> int:
        """`sweep()` when the last one was `every_s` ago or more (housekeeping calls this often)."""
        now = self._clock()
        with self._sweep_lock:
            if now - self._last_sweep < every_s:
                return 0
            self._last_sweep = now
        return self.sweep(now)


__all__ = ["ACTIONS", "DEFAULT_RETENTION_DAYS", "EXPORT_FORMATS", "AuditLog", "check_filter", "entry_json"]
