"""What routes share: the hub and operator auth from the app's state, and the logged-in operator."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

from cloud.operators import OperatorAuth, OperatorSession

if TYPE_CHECKING:
    from cloud.hub import Hub

SESSION_COOKIE = "crossview_session"
MAX_ID = 2**63 - 1  # ids are SQL BIGINTs: a larger number is an unknown id, not an OverflowError (a 500)


def hub_of(request: Request) -> Hub:
    return request.app.state.hub


def operators_of(request: Request) -> OperatorAuth:
    return request.app.state.operators


def session_token(request: Request) -> str | None:
    """The bearer token of the Authorization header, else the session cookie, else None."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.cookies.get(SESSION_COOKIE) or None


def require_operator(request: Request) -> OperatorSession:
    """Dependency of every protected route (a plain function: FastAPI runs it in its thread pool)."""
    session = operators_of(request).check(session_token(request))
    request.state.operator = session
    return session
