"""Health, log-in, log-out, who am I, change my password.

Log-in is rate limited (`cloud.login_limits`: 429 with Retry-After) and hashes the password on the
operators' own small thread pool, never on the event loop nor in the pool other requests run in.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from cloud.api.deps import (
    SESSION_COOKIE,
    audit,
    client_address,
    hub_of,
    operators_of,
    require_operator,
    session_token,
)
from cloud.api.schemas import Health, LoginRequest, LoginResponse, Me, Status
from cloud.operators import LoginThrottled, OperatorSession

router = APIRouter(prefix="/api", tags=["session"])
LoggedIn = Annotated[OperatorSession, Depends(require_operator)]


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    old_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


@router.get("/health", response_model=Health)
def health(request: Request) -> dict[str, str]:
    """No log-in needed."""
    return {"status": "ok", "hub_id": hub_of(request).hub_id}


@router.post("/login", response_model=LoginResponse, responses={429: {"description": "too many log-in attempts"}})
async def login(body: LoginRequest, request: Request, response: Response) -> dict[str, object]:
    """A session token, also set as the HttpOnly cookie `crossview_session`; 401 on a wrong password, 429 (with
    Retry-After) when the account is locked or the client address tries too often."""
    auth = operators_of(request)
    try:
        session = await auth.login_async(body.username, body.password, client_address(request))
    except LoginThrottled as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from None
    response.set_cookie(SESSION_COOKIE, session.token, max_age=int(auth.session_ttl_s), path="/", httponly=True,
                        samesite="strict")
    return {"token": session.token, "username": session.username, "expires_s": session.expires_s,
            "role": session.role}


@router.post("/logout", response_model=Status)
def logout(request: Request, response: Response, _: LoggedIn) -> dict[str, str]:
    operators_of(request).logout(session_token(request))
    audit(request, "logout")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return {"status": "logged out"}


@router.get("/me", response_model=Me)
def me(session: LoggedIn) -> dict[str, object]:
    return {"username": session.username, "expires_s": session.expires_s, "role": session.role}


@router.put("/me/password", response_model=Status)
async def change_password(body: PasswordChange, request: Request, response: Response,
                          session: LoggedIn) -> dict[str, str]:
    """Every session of this operator ends, this one too: log in again with the new password."""
    auth = operators_of(request)
    await run_in_threadpool(auth.change_password, session.username, body.old_password, body.new_password)
    await run_in_threadpool(audit, request, "password_changed", session.username)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return {"status": "password changed; log in again"}
