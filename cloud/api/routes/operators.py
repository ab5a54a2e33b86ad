"""Operator accounts, for admins: list, add, disable, enable, reset a password, change a role.

Every change is audited. Disabling or a new password ends the operator's sessions; the last enabled
admin cannot be disabled or demoted (409). A non-admin gets 403.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from cloud.api.deps import audit, operators_of, require_admin
from cloud.store import OperatorRecord

router = APIRouter(prefix="/api", tags=["operators"], dependencies=[Depends(require_admin)])
Username = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")]
Role = Literal["viewer", "operator", "admin"]


class Operator(BaseModel):
    username: str
    role: Role
    disabled: bool
    created_s: float


class NewOperator(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    role: Role = "operator"


class NewPassword(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=1, max_length=1024)


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role


def _view(record: OperatorRecord) -> dict[str, Any]:
    return {"username": record.username, "role": record.role, "disabled": record.disabled,
            "created_s": record.created_s}


@router.get("/operators", response_model=list[Operator])
def list_operators(request: Request) -> list[dict[str, Any]]:
    return [_view(r) for r in operators_of(request).list_operators()]


@router.post("/operators", response_model=Operator, status_code=201)
async def add_operator(body: NewOperator, request: Request) -> dict[str, Any]:
    """409 when the name is taken."""
    record = await run_in_threadpool(operators_of(request).add_operator, body.username, body.password, body.role)
    await run_in_threadpool(audit, request, "operator_created", record.username, f"role {record.role}")
    return _view(record)


@router.post("/operators/{username}/disable", response_model=Operator)
def disable(username: Username, request: Request) -> dict[str, Any]:
    record = operators_of(request).set_disabled(username, True)
    audit(request, "operator_disabled", username)
    return _view(record)


@router.post("/operators/{username}/enable", response_model=Operator)
def enable(username: Username, request: Request) -> dict[str, Any]:
    record = operators_of(request).set_disabled(username, False)
    audit(request, "operator_enabled", username)
    return _view(record)


@router.put("/operators/{username}/password", response_model=Operator)
async def reset_password(username: Username, body: NewPassword, request: Request) -> dict[str, Any]:
    record = await run_in_threadpool(operators_of(request).reset_password, username, body.password)
    await run_in_threadpool(audit, request, "operator_password_reset", username)
    return _view(record)


@router.put("/operators/{username}/role", response_model=Operator)
def set_role(username: Username, body: RoleChange, request: Request) -> dict[str, Any]:
    record = operators_of(request).set_role(username, body.role)
    audit(request, "operator_role_changed", username, f"role {body.role}")
    return _view(record)
