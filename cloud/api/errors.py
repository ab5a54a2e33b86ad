"""Every error the API returns is ``{"detail": "<one line>"}`` with a 4xx/5xx status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud.operators import OperatorAuthError
from cloud.store import StoreError
from models.errors import CrossviewError, InvalidInputError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with its HTTP status, raised by routes and helpers."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def one_line(text: object) -> str:
    return " ".join(str(text).split()) or "error"


def _error(status: int, detail: object, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": one_line(detail)}, status_code=status, headers=headers)


def validation_message(errors: list[Any]) -> tuple[int, str]:
    """One line for the first of pydantic's errors: 400 for a body that is not JSON, else 422."""
    if not errors:
        return 422, "invalid request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "")
        return 400, f"malformed JSON body{': ' + str(reason) if reason else ''}"
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    where = ".".join(loc) if loc else "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return 422, f"{where}: {first.get('msg', 'invalid')}{more}"


def status_of(exc: CrossviewError) -> int:
    if isinstance(exc, OperatorAuthError):
        return 401
    if isinstance(exc, StoreError):
        return 404 if str(exc).startswith("unknown ") else 409
    if isinstance(exc, InvalidInputError):
        return 400
    return 400


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into one JSON line."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.detail)

    @app.exception_handler(CrossviewError)
    async def crossview_error(_: Request, exc: CrossviewError) -> JSONResponse:
        return _error(status_of(exc), exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, detail = validation_message(list(exc.errors()))
        return _error(status, detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}); see the hub's log")
