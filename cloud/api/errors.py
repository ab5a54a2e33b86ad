"""Every error the API returns is ``{"detail": "<one line>"}`` with a 4xx/5xx status.

An unexpected exception is a 500 naming a request id (also in the ``x-request-id`` header) and ONE log line
with that id, rate limited per exception type and route (`cloud.log_limits`); the traceback goes to DEBUG.
It is caught by `ErrorGuard`, not by an ``Exception`` handler: Starlette re-raises after calling such a
handler, and uvicorn then logs the whole traceback again.
"""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.log_limits import RateLimitedLog
from cloud.operators import OperatorAuthError
from cloud.store import StoreError
from models.errors import CrossviewError, InvalidInputError

log = logging.getLogger(__name__)
_limited = RateLimitedLog(log, interval_s=10.0)


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


def _where(exc: BaseException) -> str:
    """file:line of the innermost frame, for the one log line."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else "?"


def log_unexpected(method: str, path: str, request_id: str, exc: BaseException) -> None:
    """One ERROR line (rate limited per exception type and path) and the traceback at DEBUG."""
    _limited.error(f"{type(exc).__name__} {method} {path}", "%s %s failed [request %s]: %s at %s: %s",
                   method, path, request_id, type(exc).__name__, _where(exc), one_line(exc)[:300])
    log.debug("request %s traceback", request_id, exc_info=exc)


class ErrorGuard:
    """ASGI middleware (outermost of the app's own): any exception a route lets through becomes a 500
    ``{"detail": "internal error (<type>, request <id>); see the hub's log"}``, logged once, never re-raised.
    After the response started (a stream) the connection is just ended."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            request_id = uuid.uuid4().hex[:12]
            log_unexpected(scope.get("method", "?"), scope.get("path", "?"), request_id, exc)
            if started:
                return
            body = json.dumps({"detail": f"internal error ({type(exc).__name__}, request {request_id}); "
                                         "see the hub's log"}).encode()
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()),
                                    (b"x-request-id", request_id.encode())]})
            await send({"type": "http.response.body", "body": body})
