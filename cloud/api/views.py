"""Store records as the JSON the API contract promises (see cloud.api.schemas for the shapes)."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cloud.store import AlertRecord, EdgeRecord, HubStore, IdentityCounts, IdentityRecord, SightingRecord
from cloud.text_search import SCORE_KIND
from cloud.times import format_span, format_time, time_fields
from models.attributes.types import AttributeProfile, TextQuery

if TYPE_CHECKING:
    from cloud.search import SearchHit, SearchOutcome


def identity_view(record: IdentityRecord, counts: IdentityCounts | None) -> dict[str, Any]:
    counts = counts or IdentityCounts(0, 0, None)
    return {
        "identity_id": record.identity_id, "display_name": record.display_name, "source": record.source,
        "watchlist_threshold": record.watchlist_threshold, "crop_count": counts.crop_count,
        "crop_urls": [f"/api/identities/{record.identity_id}/crops/{i}" for i in range(counts.crop_count)],
        "created_s": record.created_s, "last_seen_s": counts.last_seen_s, "sighting_count": counts.sighting_count,
    }


class Names:
    """Display names of identities and sites of edges, each looked up once per request (`load` a
    page's identities first: one query for all of them)."""

    def __init__(self, store: HubStore) -> None:
        self._store = store
        self._names: dict[str, str] = {}
        self._sites: dict[str, str] | None = None

    def load(self, identity_ids: Iterable[str | None]) -> Names:
        """Look up the names of `identity_ids` not yet known, in one store call."""
        wanted = {i for i in identity_ids if i is not None and i not in self._names}
        if wanted:
            found = self._store.get_identities(wanted)
            self._names.update((i, found[i].display_name if i in found else "") for i in wanted)
        return self

    def name(self, identity_id: str | None) -> str:
        if identity_id is None:
            return ""
        if identity_id not in self._names:
            self.load([identity_id])
        return self._names[identity_id]

    def site(self, edge_id: str) -> str:
        if self._sites is None:
            self._sites = {e.edge_id: e.site for e in self._store.list_edges()}
        return self._sites.get(edge_id, "")


def sighting_view(s: SightingRecord, names: Names) -> dict[str, Any]:
    return {
        "sighting_id": s.sighting_id, "identity_id": s.identity_id, "display_name": names.name(s.identity_id),
        "edge_id": s.edge_id, "site": names.site(s.edge_id), "camera_id": s.camera_id, "tracklet_id": s.tracklet_id,
        **time_fields(s.start_s, s.end_s), "p_same": s.p_same, "stage1_p_same": s.stage1_p_same,
        "stage2_p_same": s.stage2_p_same, "crop_url": f"/api/sightings/{s.sighting_id}/crop", "created_s": s.created_s,
    }


def alert_view(a: AlertRecord, names: Names) -> dict[str, Any]:
    seen = format_span(a.start_s, a.end_s) if a.start_s is not None and a.end_s is not None else format_time(None)
    return {
        "alert_id": a.alert_id, "identity_id": a.identity_id, "display_name": names.name(a.identity_id),
        "sighting_id": a.sighting_id, "edge_id": a.edge_id, "camera_id": a.camera_id, "p_same": a.p_same,
        "created_s": a.created_s, "start_s": a.start_s, "end_s": a.end_s, "time_label": seen,
        "crop_url": f"/api/sightings/{a.sighting_id}/crop",
    }


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def edge_view(e: EdgeRecord) -> dict[str, Any]:
    """Cameras from Hello; fps (over the edge's last 10 s), status and since when a gap began from the last
    heartbeat that reported the camera. Status: the edge's own state ("running", "no_frames",
    "reconnecting", "starting", "finished", "failed", "stopped"), "idle"/"running" by fps from an edge that
    reports no state, "offline" when the edge is disconnected."""
    connected = e.connected_hub_id is not None
    beats = {str(c.get("camera_id")): c for c in _dicts(e.stats.get("cameras"))}
    cameras = []
    for camera in _dicts(e.cameras):
        camera_id = str(camera.get("camera_id", ""))
        beat = beats.get(camera_id)
        fps = _number(beat.get("fps")) if beat is not None else _number(camera.get("fps"))
        since = None
        if not connected:
            status: str | None = "offline"
        elif beat is None:
            status = None
        elif isinstance(beat.get("state"), str):
            status, since = str(beat["state"]), _number(beat.get("gap_since_s"))
        else:
            status = "running" if (fps or 0.0) > 0 else "idle"
        cameras.append({"camera_id": camera_id, "fps": fps, "status": status, "since_s": since})
    outbox = e.stats.get("outbox_depth")
    return {
        "edge_id": e.edge_id, "site": e.site, "connected": connected, "connected_hub_id": e.connected_hub_id,
        "last_seen_s": e.last_seen_s, "model_fingerprint": e.model_fingerprint, "gallery_version": e.gallery_version,
        "outbox_depth": int(outbox) if isinstance(outbox, int | float) and not isinstance(outbox, bool) else None,
        "cameras": cameras,
    }


def _dicts(value: object) -> Iterable[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list | tuple) else []


def verdict_of(same: bool | None) -> str:
    if same is None:
        return "unjudged"
    return "same" if same else "different"


def attributes_view(profile: AttributeProfile | None) -> dict[str, Any] | None:
    return None if profile is None else profile.to_dict()


def text_hit_fields(hit: SearchHit, text: TextQuery | None) -> dict[str, Any]:
    """A text search's fields of a hit: raw scores, what each constraint scored and the colours read."""
    if text is None:
        return {}
    return {
        "text_score": hit.text_score, "judge_score": hit.judge_score, "score": hit.score, "score_kind": SCORE_KIND,
        "attributes": attributes_view(hit.attributes),
        "matched": [{"constraint": c.describe(), "source": c.source, "probability": p, "matched": p >= 0.5}
                    for c, p in hit.matched],
    }


def text_view(text: TextQuery | None) -> dict[str, Any] | None:
    if text is None:
        return None
    return {"text": text.text, "constraints": [c.describe() for c in text.constraints],
            "ignored": list(text.ignored)}


def hit_view(rank: int, hit: SearchHit, sighting: SightingRecord | None, names: Names,
             text: TextQuery | None = None) -> dict[str, Any]:
    identity_id = sighting.identity_id if sighting else None
    return {
        "rank": rank, "edge_id": hit.edge_id, "site": names.site(hit.edge_id), "camera_id": hit.camera_id,
        "tracklet_id": hit.tracklet_id, **time_fields(hit.start_s, hit.end_s), "p_same": hit.p_same,
        "stage1_p_same": hit.stage1_p_same, "stage2_p_same": hit.stage2_p_same, "verdict": verdict_of(hit.same),
        "crop": "data:image/jpeg;base64," + base64.b64encode(hit.jpeg).decode("ascii"),
        "identity_id": identity_id, "display_name": names.name(identity_id) if sighting else None,
        "sighting_id": sighting.sighting_id if sighting else None, **text_hit_fields(hit, text),
    }


def search_view(outcome: SearchOutcome, store: HubStore) -> dict[str, Any]:
    names = Names(store)
    sightings = store.sightings_of_tracklets([(h.edge_id, h.tracklet_id) for h in outcome.hits])
    names.load([s.identity_id for s in outcome.sightings] + [s.identity_id for s in sightings.values()])
    return {
        "job_id": outcome.job_id, "complete": outcome.complete,
        "sightings": [sighting_view(s, names) for s in outcome.sightings], "edges_asked": outcome.edges_asked,
        "edges_answered": outcome.edges_answered, "edges_partial": outcome.edges_partial,
        "edges_failed": outcome.edges_failed, "edges_silent": outcome.edges_silent,
        "hits": [hit_view(rank, hit, sightings.get((hit.edge_id, hit.tracklet_id)), names, outcome.text)
                 for rank, hit in enumerate(outcome.hits, start=1)],
        "text": text_view(outcome.text), "notes": outcome.notes,
    }
