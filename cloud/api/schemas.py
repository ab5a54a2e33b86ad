"""Request bodies and response shapes (pydantic), so /openapi.json documents the contract."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from models.scores import DEFAULT_WATCH_P_SAME

DisplayName = Field(default="", max_length=200)
_THRESHOLD_HELP = ("alert when a confirmed sighting's P(same) reaches this: a probability in [0, 1] "
                   f"(default {DEFAULT_WATCH_P_SAME}); P(same) 0.9 means about 9 in 10 such matches are the "
                   "same person")
PSame = Field(default=None, ge=0.0, le=1.0, description="P(same): the calibrated probability, in [0, 1], that it is "
              "the same person")


def _p_same(value: float) -> float:
    """The watch threshold's rule (`models.scores.check_p_same`), with its message as the 422's detail."""
    if not 0.0 <= value <= 1.0:
        raise PydanticCustomError("p_same", "expected a P(same) in [0, 1], got {value}", {"value": value})
    return value


WatchThreshold = Annotated[float, AfterValidator(_p_same),
                           Field(description=_THRESHOLD_HELP, json_schema_extra={"minimum": 0.0, "maximum": 1.0})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(_Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class LoginResponse(BaseModel):
    token: str
    username: str
    expires_s: float
    role: str = "operator"


class Me(BaseModel):
    username: str
    expires_s: float
    role: str = "operator"  # viewer | operator | admin


class Status(BaseModel):
    status: str


class Health(BaseModel):
    status: str
    hub_id: str


class FromSightingRequest(_Strict):
    sighting_id: int = Field(ge=0, le=2**63 - 1)  # a SQL BIGINT (cloud.api.deps.MAX_ID)
    display_name: str = DisplayName
    watchlist_threshold: WatchThreshold | None = None


class RenameRequest(_Strict):
    display_name: str = Field(max_length=200)


class WatchlistRequest(_Strict):
    threshold: WatchThreshold = DEFAULT_WATCH_P_SAME


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


class Times(BaseModel):
    """When a person was seen: `start_s`/`end_s` are Unix seconds for live cameras (and replays given
    `recorded_at`), else seconds into the video; `wall_clock` says which, `start_utc`/`end_utc` are the
    ISO 8601 times (null for video offsets) and `time_label` the span as the UI and CLI show it."""

    start_s: float
    end_s: float
    wall_clock: bool
    start_utc: str | None
    end_utc: str | None
    time_label: str


class Sighting(Times):
    sighting_id: int
    identity_id: str | None = Field(description="null: an unknown person (no candidate confirmed, no new identity)")
    display_name: str
    edge_id: str
    site: str
    camera_id: str
    tracklet_id: str
    p_same: float | None = PSame
    stage1_p_same: float | None = PSame
    stage2_p_same: float | None = PSame
    crop_url: str
    created_s: float


class Alert(BaseModel):
    alert_id: int
    identity_id: str
    display_name: str
    sighting_id: int
    edge_id: str
    camera_id: str
    p_same: float = Field(ge=0.0, le=1.0, description="the sighting's P(same), at or above the watch threshold")
    created_s: float
    start_s: float | None
    end_s: float | None
    time_label: str = Field(description="when the person was seen, as the UI and CLI show it")
    crop_url: str


class Camera(BaseModel):
    camera_id: str
    fps: float | None = Field(description="frames per second over the edge's last 10 s")
    status: str | None = Field(description="running, no_frames, reconnecting, starting, finished, failed, "
                               "stopped; offline when the edge is disconnected; null before its first heartbeat")
    since_s: float | None = Field(default=None, description="no_frames / reconnecting: when the gap began (Unix s)")


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


class ColourRead(BaseModel):
    name: str
    confidence: float = Field(ge=0.0, le=1.0)


class AttributesRead(BaseModel):
    """What the edge's attribute model read of a tracklet."""

    probabilities: dict[str, float] = Field(description="attribute -> probability in [0, 1]")
    upper: ColourRead | None
    lower: ColourRead | None
    crops: int


class MatchedConstraint(BaseModel):
    constraint: str = Field(description="e.g. 'upper red' or 'not backpack'")
    source: str = Field(description="the words of the description it was read from")
    probability: float = Field(ge=0.0, le=1.0, description="how likely it holds under the hit's attributes")
    matched: bool = Field(description="probability >= 0.5")


RawScore = Field(default=None, ge=0.0, le=1.0, description="text searches: a raw match score in [0, 1], higher is "
                 "better; not calibrated, not a P(same)")


class TextUnderstood(BaseModel):
    text: str = Field(description="the sentence the judge was asked about")
    constraints: list[str]
    ignored: list[str] = Field(description="words of the description the parser does not know: not searched")


class SearchHit(Times):
    rank: int
    edge_id: str
    site: str
    camera_id: str
    tracklet_id: str
    p_same: float | None = PSame
    stage1_p_same: float | None = PSame
    stage2_p_same: float | None = PSame
    verdict: Literal["same", "different", "unjudged"]
    crop: str
    identity_id: str | None
    display_name: str | None
    sighting_id: int | None
    text_score: float | None = RawScore
    judge_score: float | None = RawScore
    score: float | None = RawScore
    score_kind: str | None = None
    attributes: AttributesRead | None = None
    matched: list[MatchedConstraint] = Field(default_factory=list)


class SearchResponse(BaseModel):
    job_id: str
    complete: bool
    sightings: list[Sighting] = Field(description="searching by identity or sighting: the hub's stored sightings "
                                      "of that person, newest first, before what the edges answered")
    edges_asked: list[str] = Field(description="the edges connected when the search began; empty: none was")
    edges_answered: list[str]
    edges_partial: list[str]
    edges_failed: dict[str, str]
    edges_silent: list[str]
    hits: list[SearchHit]
    text: TextUnderstood | None = Field(default=None, description="a search by description: what was understood")
    notes: list[str] = Field(default_factory=list, description="the hub's and the edges' remarks, e.g. tracklets "
                             "not searched, a judge that cannot read")
