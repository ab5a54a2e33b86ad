"""What routes share: the hub and operator auth from the app's state, the logged-in operator, role checks
(`require_role`: viewer < operator < admin, 403 below it) and the audit line a route writes (`audit`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import Request

from cloud.api.errors import ApiError
from cloud.audit import AuditLog
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


def require_role(role: str) -> Callable[[Request], OperatorSession]:
    """A dependency admitting operators whose role includes `role`'s rights; 403 with the reason otherwise."""

    def dependency(request: Request) -> OperatorSession:
        session = require_operator(request)
        if not session.may(role):
            article = "an" if session.role[0] in "aeiou" else "a"
            raise ApiError(403, f"forbidden: {session.username!r} is {article} {session.role}; this needs the {role} "
                                "role")
        return session

    dependency.__name__ = f"require_{role}"
    return dependency


require_writer = require_role("operator")  # enrol, watch, rename, delete
require_admin = require_role("admin")  # operators and the audit trail


def audit_of(request: Request) -> AuditLog:
    return operators_of(request).audit


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def audit(request: Request, action: str, target: object = "", detail: str = "") -> None:
    """Append the audit line of this request, by its logged-in operator (blocking: call from a thread)."""
    session: OperatorSession | None = getattr(request.state, "operator", None)
    audit_of(request).record(username=session.username if session else "-", role=session.role if session else "-",
                             client=client_address(request), action=action, target=target, detail=detail)
