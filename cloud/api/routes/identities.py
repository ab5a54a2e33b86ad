"""Identities (the gallery) and the watchlist."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool

from cloud.api.deps import audit, hub_of, require_operator, require_writer
from cloud.api.errors import ApiError
from cloud.api.schemas import FromSightingRequest, Identity, RenameRequest, Sighting, WatchlistRequest
from cloud.api.uploads import read_photos
from cloud.api.views import Names, identity_view, sighting_view
from cloud.gallery import check_watchlist_threshold
from cloud.store import HubStore, IdentityRecord
from models.errors import InvalidInputError

router = APIRouter(prefix="/api", tags=["identities"], dependencies=[Depends(require_operator)])
Writer = [Depends(require_writer)]  # viewers read; enrol, rename, delete and watch need the operator role


def live_identity(store: HubStore, identity_id: str) -> IdentityRecord:
    record = store.get_identity(identity_id)
    if record is None or record.deleted:
        raise ApiError(404, f"unknown identity {identity_id!r}")
    return record


def identity_json(store: HubStore, identity_id: str) -> dict[str, Any]:
    record = live_identity(store, identity_id)
    return identity_view(record, store.identity_counts(identity_id).get(identity_id))


def _check_threshold(value: float | None) -> None:
    """The gallery's rule (`cloud.gallery.check_watchlist_threshold`), as a 422 before the photos are read."""
    try:
        check_watchlist_threshold(value)
    except InvalidInputError as exc:
        raise ApiError(422, str(exc)) from None


@router.get("/identities", response_model=list[Identity])
def list_identities(request: Request) -> list[dict[str, Any]]:
    store = hub_of(request).store
    counts = store.identity_counts()
    return [identity_view(r, counts.get(r.identity_id)) for r in store.list_identities()]


@router.post("/identities", response_model=Identity, status_code=201, dependencies=Writer)
async def enroll(request: Request, photos: Annotated[list[UploadFile] | None, File()] = None,
                 display_name: Annotated[str, Form(max_length=200)] = "",
                 watchlist_threshold: Annotated[float | None, Form()] = None) -> dict[str, Any]:
    """Enrol a person from 1..16 JPEG or PNG photos (each at most 8 MiB)."""
    _check_threshold(watchlist_threshold)
    images = await read_photos(photos)
    hub = hub_of(request)
    record = await run_in_threadpool(hub.gallery.enroll, images, display_name=display_name,
                                     watchlist_threshold=watchlist_threshold)
    await run_in_threadpool(audit, request, "enrol", record.identity_id, f"{len(images)} photo(s)")
    return await run_in_threadpool(identity_json, hub.store, record.identity_id)


@router.post("/identities/from-sighting", response_model=Identity, status_code=201, dependencies=Writer)
def enroll_from_sighting(body: FromSightingRequest, request: Request) -> dict[str, Any]:
    """Enrol the person of a sighting; a sighting of an automatic identity promotes that identity, and an
    unknown sighting becomes the new identity's."""
    hub = hub_of(request)
    record = hub.gallery.enroll_from_sighting(body.sighting_id, display_name=body.display_name,
                                              watchlist_threshold=body.watchlist_threshold)
    audit(request, "enrol", record.identity_id, f"from sighting {body.sighting_id}")
    return identity_json(hub.store, record.identity_id)


@router.get("/identities/{identity_id}", response_model=Identity)
def get_identity(identity_id: str, request: Request) -> dict[str, Any]:
    view = identity_json(hub_of(request).store, identity_id)
    audit(request, "view_identity", identity_id)
    return view


@router.patch("/identities/{identity_id}", response_model=Identity, dependencies=Writer)
def rename(identity_id: str, body: RenameRequest, request: Request) -> dict[str, Any]:
    hub = hub_of(request)
    live_identity(hub.store, identity_id)
    hub.gallery.rename(identity_id, body.display_name)
    audit(request, "rename", identity_id, f"name {body.display_name!r}")
    return identity_json(hub.store, identity_id)


@router.delete("/identities/{identity_id}", status_code=204, dependencies=Writer)
def remove(identity_id: str, request: Request) -> Response:
    hub = hub_of(request)
    live_identity(hub.store, identity_id)
    hub.gallery.remove(identity_id)
    audit(request, "delete", identity_id)
    return Response(status_code=204)


@router.get("/identities/{identity_id}/crops/{index}", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}})
def reference_crop(identity_id: str, index: int, request: Request) -> Response:
    hub = hub_of(request)
    live_identity(hub.store, identity_id)
    crops = hub.store.reference_crops(identity_id)
    if not 0 <= index < len(crops):
        raise ApiError(404, f"identity {identity_id!r} has no reference crop {index} (it has {len(crops)})")
    try:
        data = hub.crops.read(crops[index].path)
    except FileNotFoundError:
        raise ApiError(404, f"reference crop {index} of {identity_id!r} is missing on disk") from None
    audit(request, "view_crop", f"{identity_id}/{index}", "reference crop")
    return Response(data, media_type="image/jpeg", headers={"cache-control": "private, max-age=3600"})


@router.get("/identities/{identity_id}/sightings", response_model=list[Sighting])
def identity_sightings(identity_id: str, request: Request,
                       limit: Annotated[int, Query(ge=1, le=5000)] = 200) -> list[dict[str, Any]]:
    """The identity's latest `limit` sightings, oldest first."""
    store = hub_of(request).store
    live_identity(store, identity_id)
    rows = store.sightings(identity_id=identity_id, limit=limit)
    names = Names(store).load([identity_id])
    audit(request, "view_identity", identity_id, f"{len(rows)} sighting(s)")
    return [sighting_view(s, names) for s in reversed(rows)]


@router.get("/identities/{identity_id}/timeline.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
def timeline(identity_id: str, request: Request, limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> Response:
    """The identity's sightings over time, one row per (edge, camera)."""
    from cloud.api.timeline import render_timeline

    store = hub_of(request).store
    record = live_identity(store, identity_id)
    sightings = list(reversed(store.sightings(identity_id=identity_id, limit=limit)))
    png = render_timeline(sightings, title=record.display_name or identity_id)
    audit(request, "view_identity", identity_id, "timeline")
    return Response(png, media_type="image/png", headers={"cache-control": "no-store"})


@router.get("/watchlist", response_model=list[Identity], tags=["watchlist"])
def watchlist(request: Request) -> list[dict[str, Any]]:
    store = hub_of(request).store
    counts = store.identity_counts()
    return [identity_view(r, counts.get(r.identity_id)) for r in store.list_identities()
            if r.watchlist_threshold is not None]


@router.put("/watchlist/{identity_id}", response_model=Identity, tags=["watchlist"], dependencies=Writer)
def watch(identity_id: str, body: WatchlistRequest, request: Request) -> dict[str, Any]:
    hub = hub_of(request)
    live_identity(hub.store, identity_id)
    hub.gallery.set_watchlist(identity_id, body.threshold)
    audit(request, "watch", identity_id, f"threshold {body.threshold}")
    return identity_json(hub.store, identity_id)


@router.delete("/watchlist/{identity_id}", response_model=Identity, tags=["watchlist"], dependencies=Writer)
def unwatch(identity_id: str, request: Request) -> dict[str, Any]:
    hub = hub_of(request)
    live_identity(hub.store, identity_id)
    hub.gallery.set_watchlist(identity_id, None)
    audit(request, "unwatch", identity_id)
    return identity_json(hub.store, identity_id)
