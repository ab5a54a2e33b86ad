"""Sightings and their crops."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from cloud.api.deps import MAX_ID, audit, hub_of, require_operator
from cloud.api.errors import ApiError
from cloud.api.schemas import Sighting
from cloud.api.views import Names, sighting_view
from cloud.store import SightingRecord

router = APIRouter(prefix="/api", tags=["sightings"], dependencies=[Depends(require_operator)])
SightingId = Annotated[int, Path(ge=0, le=MAX_ID)]


def _sighting(request: Request, sighting_id: int) -> SightingRecord:
    record = hub_of(request).store.get_sighting(sighting_id)
    if record is None:
        raise ApiError(404, f"unknown sighting {sighting_id}")
    return record


@router.get("/sightings", response_model=list[Sighting])
def list_sightings(request: Request, identity_id: str | None = None, edge_id: str | None = None,
                   camera_id: str | None = None, unknown: bool = False,
                   limit: Annotated[int, Query(ge=1, le=5000)] = 100) -> list[dict[str, Any]]:
    """Newest first. `unknown=true`: only the people nobody knew (no candidate confirmed, no new
    identity); promote one with ``POST /api/identities/from-sighting``."""
    store = hub_of(request).store
    rows = store.sightings(identity_id=identity_id or None, edge_id=edge_id or None, camera_id=camera_id or None,
                           unknown=unknown, limit=limit)
    names = Names(store).load(s.identity_id for s in rows)
    audit(request, "view_sighting", identity_id or "", f"list: {len(rows)} sighting(s); edge {edge_id or '*'}, "
          f"camera {camera_id or '*'}{', unknown only' if unknown else ''}")
    return [sighting_view(s, names) for s in rows]


@router.get("/sightings/{sighting_id}", response_model=Sighting)
def get_sighting(sighting_id: SightingId, request: Request) -> dict[str, Any]:
    view = sighting_view(_sighting(request, sighting_id), Names(hub_of(request).store))
    audit(request, "view_sighting", sighting_id)
    return view


@router.get("/sightings/{sighting_id}/crop", response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
def sighting_crop(sighting_id: SightingId, request: Request) -> Response:
    record = _sighting(request, sighting_id)
    try:
        data = hub_of(request).crops.read(record.crop_path)
    except FileNotFoundError:
        raise ApiError(404, f"the crop of sighting {sighting_id} is missing on disk") from None
    audit(request, "view_crop", f"sighting {sighting_id}")
    return Response(data, media_type="image/jpeg", headers={"cache-control": "private, max-age=86400"})
