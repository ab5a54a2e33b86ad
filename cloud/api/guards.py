"""`OriginCheck`: cross-site request forgery is refused before any handler runs (issue 12, finding 9).

A browser attaches the operator's session cookie to a request another site makes, and a multipart POST
needs no CORS preflight, so SameSite alone is too little. A state-changing request (POST, PUT, PATCH,
DELETE) that carries the session cookie and no ``Authorization: Bearer`` header must name, in its Origin
header (else its Referer), the hub's own origin (the host and port it was addressed to, its Host header)
or one of `allowed_origins` (for a hub behind a reverse proxy under another name). Otherwise: 403.

Bearer-token clients (the CLI's `HubClient`, scripts) are not affected: a browser never adds that header to
a cross-site request on its own, so such a request was not forged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from cloud.api.deps import SESSION_COOKIE

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def origin_key(origin: str) -> str | None:
    """``host:port`` (lower case, default port made explicit) of an origin or URL; None if it has none."""
    try:
        parts = urlsplit(origin.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or parts.scheme not in _DEFAULT_PORTS:
        return None
    return f"{host.lower()}:{port or _DEFAULT_PORTS[parts.scheme]}"


def host_key(host: str, scheme: str) -> str | None:
    """``host:port`` of a Host header for a request that arrived over `scheme`."""
    return origin_key(f"{scheme}://{host}") if host else None


def _has_session_cookie(cookie_header: str) -> bool:
    if SESSION_COOKIE not in cookie_header:
        return False
    try:
        return bool(SimpleCookie(cookie_header).get(SESSION_COOKIE))
    except CookieError:
        return True  # unparsable but names the cookie: treat as a cookie session


def forged_reason(method: str, headers: dict[str, str], scheme: str, allowed: frozenset[str]) -> str | None:
    """Why a request must be refused as possibly forged, or None."""
    if method.upper() in SAFE_METHODS or not _has_session_cookie(headers.get("cookie", "")):
        return None
    scheme_word, _, token = headers.get("authorization", "").strip().partition(" ")
    if scheme_word.lower() == "bearer" and token.strip():
        return None
    claimed = headers.get("origin") or headers.get("referer") or ""
    if not claimed:
        return ("cross-site request check: expected an Origin or Referer header on a state-changing request "
                "with a session cookie, got neither")
    key = origin_key(claimed)
    if key is not None and (key == host_key(headers.get("host", ""), scheme) or key in allowed):
        return None
    return f"cross-site request check: origin {claimed[:100]!r} is not this hub's"


class OriginCheck:
    """ASGI middleware: 403 ``{"detail": ...}`` for a request `forged_reason` refuses."""

    def __init__(self, app: ASGIApp, *, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        keys = {origin: origin_key(origin) for origin in allowed_origins}
        bad = [origin for origin, key in keys.items() if key is None]
        if bad:
            raise ValueError(f"allowed_origins: expected origins like https://hub.example:8443, got {bad[0]!r}")
        self.allowed = frozenset(key for key in keys.values() if key is not None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            reason = forged_reason(scope.get("method", "GET"), headers, scope.get("scheme", "http"), self.allowed)
            if reason is not None:
                body = json.dumps({"detail": reason}).encode()
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
