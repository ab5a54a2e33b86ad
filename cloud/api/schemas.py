"""Request bodies and response shapes (pydantic), so /openapi.json documents the contract."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cloud.gallery import MAX_WATCHLIST_THRESHOLD

DisplayName = Field(default="", max_length=200)
Threshold = Field(default=None, gt=0.0, le=MAX_WATCHLIST_THRESHOLD, description="stage-1 distance threshold, in (0, 2]")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(_Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class LoginResponse(BaseModel):
    token: str
    username: str
    expires_s: float


class Me(BaseModel):
    username: str
    expires_s: float


class Status(BaseModel):
    status: str


class Health(BaseModel):
    status: str
    hub_id: str


class FromSightingRequest(_Strict):
    sighting_id: int
    display_name: str = DisplayName
    watchlist_threshold: float | None = Threshold


class RenameRequest(_Strict):
    display_name: str = Field(max_length=200)


class WatchlistRequest(_Strict):
    threshold: float = Field(gt=0.0, le=MAX_WATCHLIST_THRESHOLD, description="stage-1 distance threshold, in (0, 2]")


class Identity(BaseModel):
    identity_id: str
    display_name: str
    source: str
    watchlist_threshold: float | None
    crop_count: int
    crop_urls: list[str]
    created_s: float
    last_seen_s: float | None
    sighting_count: int


class Sighting(BaseModel):
    sighting_id: int
    identity_id: str
    display_name: str
    edge_id: str
    site: str
    camera_id: str
    tracklet_id: str
    start_s: float
    end_s: float
    stage1_distance: float | None
    stage2_score: float
    crop_url: str
    created_s: float


class Alert(BaseModel):
    alert_id: int
    identity_id: str
    display_name: str
    sighting_id: int
    edge_id: str
    camera_id: str
    stage2_score: float
    created_s: float
    crop_url: str


class Camera(BaseModel):
    camera_id: str
    fps: float | None
    status: str | None


class Edge(BaseModel):
    edge_id: str
    site: str
    connected: bool
    connected_hub_id: str | None
    last_seen_s: float | None
    model_fingerprint: str
    gallery_version: int
    outbox_depth: int | None
    cameras: list[Camera]


class SearchHit(BaseModel):
    rank: int
    edge_id: str
    site: str
    camera_id: str
    tracklet_id: str
    start_s: float
    end_s: float
    stage1_distance: float
    stage2_score: float | None
    verdict: Literal["same", "different", "unjudged"]
    score: float
    crop: str
    identity_id: str | None
    display_name: str | None
    sighting_id: int | None


class SearchResponse(BaseModel):
    job_id: str
    complete: bool
    edges_asked: list[str]
    edges_answered: list[str]
    edges_partial: list[str]
    edges_failed: dict[str, str]
    edges_silent: list[str]
    hits: list[SearchHit]
