"""The audit trail, for admins: a filtered, paged list (newest first) and an export (CSV or JSON Lines)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from cloud.api.deps import MAX_ID, audit, audit_of, require_admin
from cloud.audit import check_filter, entry_json
from cloud.store import AuditFilter

router = APIRouter(prefix="/api", tags=["audit"], dependencies=[Depends(require_admin)])
_Text = Annotated[str | None, Query(max_length=200)]
_Time = Annotated[float | None, Query(ge=0, le=1e11)]


class AuditEntry(BaseModel):
    audit_id: int
    time_utc: str
    at_s: float
    username: str
    role: str
    client: str
    action: str
    target: str
    detail: str


def _filter(username: str | None, action: str | None, target: str | None, since_s: float | None,
            until_s: float | None) -> AuditFilter:
    return check_filter(username, action, target, since_s, until_s)


def _describe(where: AuditFilter) -> str:
    return " ".join(f"{k}={v}" for k, v in vars(where).items() if v is not None)


@router.get("/audit", response_model=list[AuditEntry])
def list_audit(request: Request, username: _Text = None, action: _Text = None, target: _Text = None,
               since_s: _Time = None, until_s: _Time = None,
               before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    """Newest first; the next page: `before_id` = the last `audit_id` of this one."""
    where = _filter(username, action, target, since_s, until_s)
    rows = audit_of(request).entries(where, before_id=before_id, limit=limit)
    audit(request, "audit_viewed", "", _describe(where))
    return [entry_json(r) for r in rows]


@router.get("/audit/export", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}})
def export_audit(request: Request, format: Literal["csv", "jsonl"] = "csv", username: _Text = None,
                 action: _Text = None, target: _Text = None, since_s: _Time = None,
                 until_s: _Time = None) -> StreamingResponse:
    """Every matching line, oldest first: CSV with a header, or one JSON object per line."""
    where = _filter(username, action, target, since_s, until_s)
    audit(request, "audit_exported", format, _describe(where))
    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    return StreamingResponse(audit_of(request).export(where, format), media_type=media,
                             headers={"content-disposition": f'attachment; filename="crossview-audit.{format}"'})
