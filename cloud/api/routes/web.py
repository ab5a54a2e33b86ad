"""The web UI's page and static files (cloud.web)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from cloud.api.errors import ApiError
from cloud.web import INDEX_HTML, STATIC_DIR

router = APIRouter(tags=["web"])
__all__ = ["STATIC_DIR", "router"]


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    if not INDEX_HTML.is_file():
        raise ApiError(404, f"the web UI is not installed ({INDEX_HTML} is missing)")
    return FileResponse(INDEX_HTML, media_type="text/html", headers={"cache-control": "no-cache"})
