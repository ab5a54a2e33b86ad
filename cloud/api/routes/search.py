"""Search: the hub asks every connected edge, judges the hits and ranks them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool

from cloud.api.deps import hub_of, require_operator
from cloud.api.errors import ApiError
from cloud.api.routes.identities import live_identity
from cloud.api.schemas import SearchResponse
from cloud.api.uploads import read_photos
from cloud.api.views import search_view
from cloud.search import SearchQuery
from models.errors import InvalidInputError

router = APIRouter(prefix="/api", tags=["search"], dependencies=[Depends(require_operator)])
MAX_DEADLINE_S = 60.0
MAX_TOP_K = 200


@router.post("/search", response_model=SearchResponse)
async def search(request: Request, photos: Annotated[list[UploadFile] | None, File()] = None,
                 sighting_id: Annotated[int | None, Form()] = None, identity_id: Annotated[str | None, Form()] = None,
                 top_k: Annotated[int, Form()] = 20, deadline_s: Annotated[float, Form()] = 10.0) -> dict[str, Any]:
    """Exactly one of `photos`, `sighting_id`, `identity_id` (`SearchQuery`'s rule, answered 400); waits for
    the edges up to `deadline_s`."""
    if not 1 <= top_k <= MAX_TOP_K:
        raise ApiError(422, f"top_k: expected 1..{MAX_TOP_K}, got {top_k}")
    if not 0.0 < deadline_s <= MAX_DEADLINE_S:
        raise ApiError(422, f"deadline_s: expected a number in (0, {MAX_DEADLINE_S:g}], got {deadline_s}")
    hub = hub_of(request)
    try:
        query = SearchQuery(photos=await read_photos(photos) if photos else (), sighting_id=sighting_id,
                            identity_id=identity_id, top_k=top_k)
    except InvalidInputError as exc:
        raise ApiError(400, str(exc)) from None
    if query.sighting_id is not None:
        if await run_in_threadpool(hub.store.get_sighting, query.sighting_id) is None:
            raise ApiError(404, f"unknown sighting {query.sighting_id}")
    elif query.identity_id:
        await run_in_threadpool(live_identity, hub.store, query.identity_id)
    outcome = await hub.search.search(query, deadline_s=deadline_s)
    return await run_in_threadpool(search_view, outcome, hub.store)
