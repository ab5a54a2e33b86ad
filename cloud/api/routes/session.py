"""Health, log-in, log-out, who am I."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from cloud.api.deps import SESSION_COOKIE, hub_of, operators_of, require_operator, session_token
from cloud.api.schemas import Health, LoginRequest, LoginResponse, Me, Status
from cloud.operators import OperatorSession

router = APIRouter(prefix="/api", tags=["session"])
LoggedIn = Annotated[OperatorSession, Depends(require_operator)]


@router.get("/health", response_model=Health)
def health(request: Request) -> dict[str, str]:
    """No log-in needed."""
    return {"status": "ok", "hub_id": hub_of(request).hub_id}


@router.post("/login", response_model=LoginResponse)
def login(body: LoginRequest, request: Request, response: Response) -> dict[str, object]:
    """A session token, also set as the HttpOnly cookie `crossview_session`; 401 on a wrong password."""
    auth = operators_of(request)
    session = auth.login(body.username, body.password)
    response.set_cookie(SESSION_COOKIE, session.token, max_age=int(auth.session_ttl_s), path="/", httponly=True,
                        samesite="strict")
    return {"token": session.token, "username": session.username, "expires_s": session.expires_s}


@router.post("/logout", response_model=Status)
def logout(request: Request, response: Response, _: LoggedIn) -> dict[str, str]:
    operators_of(request).logout(session_token(request))
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return {"status": "logged out"}


@router.get("/me", response_model=Me)
def me(session: LoggedIn) -> dict[str, object]:
    return {"username": session.username, "expires_s": session.expires_s}
