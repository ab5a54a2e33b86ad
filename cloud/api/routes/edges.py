"""Edges as the store knows them (every replica's sessions)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from cloud.api.deps import hub_of, require_operator
from cloud.api.schemas import Edge
from cloud.api.views import edge_view

router = APIRouter(prefix="/api", tags=["edges"], dependencies=[Depends(require_operator)])


@router.get("/edges", response_model=list[Edge])
def list_edges(request: Request) -> list[dict[str, Any]]:
    return [edge_view(e) for e in hub_of(request).store.list_edges()]
