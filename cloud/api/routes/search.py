"""Search: the hub asks every connected edge, judges the hits and ranks them.

By photos, a sighting or an identity, or by description (issue 15): `text` (free English, e.g. "woman,
red top, black trousers, backpack") and/or the attribute filters the UI sends (`male`, `backpack`, ...,
`upper_colour`, `lower_colour`). Cameras, sites and a time range narrow any search.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool

from cloud.api.deps import MAX_ID, audit, hub_of, require_operator
from cloud.api.errors import ApiError
from cloud.api.routes.identities import live_identity
from cloud.api.schemas import SearchResponse
from cloud.api.uploads import read_photos
from cloud.api.views import search_view
from cloud.search import SearchQuery
from cloud.store import HubStore
from cloud.text_search import text_query
from models.errors import InvalidInputError

router = APIRouter(prefix="/api", tags=["search"], dependencies=[Depends(require_operator)])
MAX_DEADLINE_S = 60.0
MAX_TOP_K = 200
Flag = Annotated[bool | None, Form()]
Colour = Annotated[str | None, Form(description="a colour name (black, white, grey, red, orange, yellow, green, "
                                    "blue, purple, pink, brown) or a synonym such as gray or navy")]


def check_places(store: HubStore, camera_ids: list[str], sites: list[str]) -> None:
    """422 naming the first camera or site no edge has."""
    if not camera_ids and not sites:
        return
    edges = store.list_edges()
    known_sites = sorted({e.site for e in edges})
    known_cameras = sorted({str(c.get("camera_id")) for e in edges for c in e.cameras if isinstance(c, dict)})
    for site in sites:
        if site not in known_sites:
            raise ApiError(422, f"sites: unknown site {site!r}; known sites: {', '.join(known_sites) or 'none'}")
    for camera in camera_ids:
        if camera not in known_cameras:
            raise ApiError(422, f"camera_ids: unknown camera {camera!r}; known cameras: "
                                f"{', '.join(known_cameras) or 'none'}")


@router.post("/search", response_model=SearchResponse)
async def search(request: Request, photos: Annotated[list[UploadFile] | None, File()] = None,
                 sighting_id: Annotated[int | None, Form(ge=0, le=MAX_ID)] = None,
                 identity_id: Annotated[str | None, Form()] = None,
                 text: Annotated[str | None, Form(description="a description, e.g. 'woman, red top, backpack'")] = None,
                 male: Flag = None, bag: Flag = None, backpack: Flag = None, hat: Flag = None,
                 long_sleeves: Flag = None, long_trousers: Flag = None, long_hair: Flag = None,
                 coat_jacket: Flag = None, upper_colour: Colour = None, lower_colour: Colour = None,
                 camera_ids: Annotated[list[str] | None, Form()] = None,
                 sites: Annotated[list[str] | None, Form()] = None,
                 start_s: Annotated[float | None, Form()] = None, end_s: Annotated[float | None, Form()] = None,
                 top_k: Annotated[int, Form()] = 20, deadline_s: Annotated[float, Form()] = 10.0) -> dict[str, Any]:
    """Exactly one of `photos`, `sighting_id`, `identity_id`, or a description (`text` and/or attribute
    filters) (`SearchQuery`'s rule, answered 400); a bad description, colour, camera or site is a 422; waits
    for the edges up to `deadline_s`."""
    if not 1 <= top_k <= MAX_TOP_K:
        raise ApiError(422, f"top_k: expected 1..{MAX_TOP_K}, got {top_k}")
    if not 0.0 < deadline_s <= MAX_DEADLINE_S:
        raise ApiError(422, f"deadline_s: expected a number in (0, {MAX_DEADLINE_S:g}], got {deadline_s}")
    if (start_s is None) != (end_s is None) or (start_s is not None and end_s is not None and start_s > end_s):
        raise ApiError(422, f"start_s, end_s: expected both, with start_s <= end_s, got {start_s} and {end_s}")
    filters = {"male": male, "bag": bag, "backpack": backpack, "hat": hat, "long_sleeves": long_sleeves,
               "long_trousers": long_trousers, "long_hair": long_hair, "coat_jacket": coat_jacket,
               "upper_colour": upper_colour or None, "lower_colour": lower_colour or None}
    if text is None and "text" in await request.form():  # FastAPI reads an empty form field as absent
        text = ""
    described = text is not None or any(v is not None for v in filters.values())
    hub = hub_of(request)
    try:
        query_text = text_query(text, filters) if described else None
    except InvalidInputError as exc:
        raise ApiError(422, str(exc)) from None
    await run_in_threadpool(check_places, hub.store, camera_ids or [], sites or [])
    try:
        query = SearchQuery(photos=await read_photos(photos) if photos else (), sighting_id=sighting_id,
                            identity_id=identity_id, top_k=top_k, text=query_text, camera_ids=camera_ids or (),
                            sites=sites or (), time_range=None if start_s is None else (start_s, end_s))
    except InvalidInputError as exc:
        raise ApiError(400, str(exc)) from None
    if query.sighting_id is not None:
        if await run_in_threadpool(hub.store.get_sighting, query.sighting_id) is None:
            raise ApiError(404, f"unknown sighting {query.sighting_id}")
    elif query.identity_id:
        await run_in_threadpool(live_identity, hub.store, query.identity_id)
    outcome = await hub.search.search(query, deadline_s=deadline_s)
    await run_in_threadpool(audit, request, "search", outcome.job_id, f"{_searched_by(query, text)}; "
                            f"{len(outcome.hits)} hit(s), {len(outcome.sightings)} stored sighting(s)")
    return await run_in_threadpool(search_view, outcome, hub.store)


def _searched_by(query: SearchQuery, text: str | None) -> str:
    """What the audit line says was searched for."""
    if query.identity_id:
        return f"by identity {query.identity_id}"
    if query.sighting_id is not None:
        return f"by sighting {query.sighting_id}"
    if query.photos:
        return f"by {len(query.photos)} photo(s)"
    return f"by description {(text or '')[:200]!r}"
