"""The hub's side of the crossview.v1 wire: decoded inputs and encoded hub messages.

The one place in cloud/ that builds or reads protobuf messages besides the session, handshake and
server modules (docs/architecture.md §4, the wire): services hand it plain arguments and dataclasses
and get plain dataclasses back. Decoding goes through `protos.codec` (the wire's gatekeeper: wrong
fingerprint, shape or dtype, and empty, non-JPEG or oversized crops raise `InvalidInputError`). The
raw JPEG bytes of each crop are kept next to the decoded image so that the hub stores exactly what
the edge sent, without re-encoding. Acknowledgement statuses are plain strings (`AckStatus`) until
`hub_ack` puts them on the wire.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from cloud.store import GalleryEntry
from models.attributes.types import AttributeProfile, TextQuery
from models.errors import InvalidInputError
from protos import codec
from protos.crossview.v1 import common_pb2, edge_to_hub_pb2, hub_to_edge_pb2, session_pb2

if TYPE_CHECKING:
    from google.protobuf.timestamp_pb2 import Timestamp

if TYPE_CHECKING:
    from cloud.gallery import GalleryDeltaPart

AckStatus = Literal["ok", "duplicate", "rejected", "retry"]
_ACK_STATUS: dict[str, int] = {"ok": common_pb2.ACK_STATUS_OK, "duplicate": common_pb2.ACK_STATUS_DUPLICATE,
                               "rejected": common_pb2.ACK_STATUS_REJECTED, "retry": common_pb2.ACK_STATUS_RETRY}
_ACK_NAME = {value: name for name, value in _ACK_STATUS.items()}


@dataclass(frozen=True)
class ShortListInput:
    """A validated short list."""

    idempotency_key: str
    edge_id: str
    camera_id: str
    tracklet_id: str
    track_id: int
    start_s: float
    end_s: float
    crops: tuple[np.ndarray, ...]  # BGR uint8, best first: the first `decoded_crops` of `jpegs` only
    jpegs: tuple[bytes, ...]  # every crop as sent
    query_vector: np.ndarray  # (D,) float32
    model_fingerprint: str
    candidates: tuple[tuple[str, float], ...]  # (identity id, stage-1 distance), best first
    created_s: float
    gallery_version: int
    cosine_distances: dict[str, float] = field(default_factory=dict)  # identity id -> as the edge measured it
    attributes: AttributeProfile | None = None  # what the edge's attribute model read (None: not read)


MAX_ID_CHARS = 256
MAX_INT64 = 2**63 - 1


def check_id(name: str, value: str, *, required: bool = True) -> None:
    """An id that is stored and shown: at most MAX_ID_CHARS printable characters (no NUL, no newline)."""
    if not value:
        if required:
            raise InvalidInputError(f"{name}: expected a non-empty id, got none")
        return
    if len(value) > MAX_ID_CHARS or not value.isprintable():
        raise InvalidInputError(f"{name}: expected at most {MAX_ID_CHARS} printable characters, "
                                f"got {value[:40]!r}{'...' if len(value) > 40 else ''}")


def check_int64(name: str, value: int) -> None:
    if not 0 <= value <= MAX_INT64:
        raise InvalidInputError(f"{name}: expected 0..{MAX_INT64}, got {value}")


DEFAULT_MAX_CROP_PIXELS = 2048 * 2048
"""Largest crop the hub decodes or keeps (a person crop; read from the JPEG header before decoding)."""


@dataclass(frozen=True)
class WireBounds:
    """Bounds on the numbers an edge sends, checked once here while decoding (issue 12, finding 7).

    Points in time lie in [earliest_s, latest_s]: from 0 because a replay without a recording time
    stamps seconds into its video (`cloud.times`), up to the hub's clock plus the clock skew allowed
    (`SessionLimits.wire_bounds`; infinite by default, for decoding outside a session). A span lasts at
    most `max_span_s`; a crop has at most `max_crop_pixels` (from its JPEG header) and `max_crop_bytes`.
    """

    latest_s: float = math.inf
    earliest_s: float = 0.0
    max_span_s: float = 86_400.0
    max_crop_bytes: int = codec.DEFAULT_MAX_CROP_BYTES
    max_crop_pixels: int = DEFAULT_MAX_CROP_PIXELS

    def __post_init__(self) -> None:
        if not (math.isfinite(self.earliest_s) and self.earliest_s <= self.latest_s):
            raise ValueError(f"earliest_s: expected a finite time <= latest_s ({self.latest_s}), got {self.earliest_s}")
        if not self.max_span_s > 0:
            raise ValueError(f"max_span_s: expected > 0, got {self.max_span_s}")
        if self.max_crop_bytes <= 0 or self.max_crop_pixels <= 0:
            raise ValueError(f"max_crop_bytes, max_crop_pixels: expected > 0, got {self.max_crop_bytes}, "
                             f"{self.max_crop_pixels}")

    def time(self, name: str, ts: Timestamp) -> float:
        """Seconds of a Timestamp inside the bounds, or InvalidInputError naming the field."""
        seconds = codec.timestamp_to_seconds(ts)
        if not (0 <= ts.nanos < 1_000_000_000 and self.earliest_s <= seconds <= self.latest_s):
            raise InvalidInputError(f"{name}: expected a time in [{self.earliest_s:.0f}, {self.latest_s:.0f}] "
                                    f"Unix seconds, got {ts.seconds} s {ts.nanos} ns")
        return seconds

    def span(self, name: str, span: common_pb2.TimeRange) -> tuple[float, float]:
        start, end = self.time(f"{name} start", span.start), self.time(f"{name} end", span.end)
        if end < start:
            raise InvalidInputError(f"{name}: expected end >= start ({start}), got {end}")
        if end - start > self.max_span_s:
            raise InvalidInputError(f"{name}: expected at most {self.max_span_s:.0f} s from start to end, "
                                    f"got {end - start:.3f} s")
        return start, end

    def crop(self, name: str, crop: common_pb2.CropImage) -> tuple[int, int]:
        """(height, width) of a crop from its JPEG header (no decoding), checked as `jpeg_to_image` does."""
        try:
            size = codec.check_jpeg(crop.jpeg, self.max_crop_bytes, max_pixels=self.max_crop_pixels)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{name}: {exc}") from None
        if (crop.height, crop.width) not in ((0, 0), size):
            raise InvalidInputError(f"{name}: expected {crop.width}x{crop.height} pixels as declared, "
                                    f"got {size[1]}x{size[0]}")
        if crop.HasField("captured_at"):
            self.time(f"{name}: captured at", crop.captured_at)
        return size


NO_BOUNDS = WireBounds()


DECODED_CROPS = 4  # the most the hub looks at: the judge reads 3 query crops (`DecisionPolicy.max_query_crops`)


def check_short_list(msg: edge_to_hub_pb2.ShortList, *, edge_id: str, bounds: WireBounds = NO_BOUNDS,
                     max_crops: int = 16, max_candidates: int = 100, decoded_crops: int = DECODED_CROPS) -> int:
    """Every check of `decode_short_list` short of decoding images and vectors (cheap enough for the
    event loop); the bytes the decoded short list will hold (decoded crops' pixels and every JPEG)."""
    check_id("short list: idempotency key", msg.idempotency_key)
    check_id("short list: camera id", msg.camera_id)
    check_id("short list: tracklet id", msg.tracklet_id)
    check_int64("short list: gallery version", msg.gallery_version)
    check_int64("short list: track id", msg.track_id)
    for candidate in msg.candidates:
        check_id("short list: candidate identity id", candidate.identity_id)
        if candidate.HasField("cosine_distance") and not 0.0 <= candidate.cosine_distance <= 2.0:  # refuses NaN
            raise InvalidInputError(f"short list: candidate {candidate.identity_id!r}: expected a cosine "
                                    f"distance in [0, 2], got {candidate.cosine_distance}")
    if msg.edge_id and msg.edge_id != edge_id:
        raise InvalidInputError(f"short list: expected edge id {edge_id!r} (this session's), got {msg.edge_id!r}")
    if len(msg.query_crops) == 0:
        raise InvalidInputError("short list: expected at least one query crop, got none")
    if len(msg.query_crops) > max_crops:
        raise InvalidInputError(f"short list: expected at most {max_crops} query crops, got {len(msg.query_crops)}")
    if len(msg.candidates) > max_candidates:
        raise InvalidInputError(f"short list: expected at most {max_candidates} candidates, "
                                f"got {len(msg.candidates)}")
    bounds.span("short list: span", msg.span)
    if msg.HasField("created_at"):
        bounds.time("short list: created at", msg.created_at)
    cost = 0
    for i, crop in enumerate(msg.query_crops):
        height, width = bounds.crop(f"query crop {i}", crop)
        cost += len(crop.jpeg) + (height * width * 3 if i < decoded_crops else 0)
    return cost


def decode_short_list(msg: edge_to_hub_pb2.ShortList, *, edge_id: str, fingerprint: str, dim: int | None,
                      bounds: WireBounds = NO_BOUNDS, max_crops: int = 16, max_candidates: int = 100,
                      decoded_crops: int = DECODED_CROPS) -> ShortListInput:
    """Validate (`check_short_list`) and decode; InvalidInputError says what is wrong.

    Only the first `decoded_crops` crops are decoded into images; the others are kept as JPEG bytes."""
    check_short_list(msg, edge_id=edge_id, bounds=bounds, max_crops=max_crops, max_candidates=max_candidates,
                     decoded_crops=decoded_crops)
    cosine_distances = {c.identity_id: float(c.cosine_distance) for c in msg.candidates
                        if c.HasField("cosine_distance")}
    head = msg
    if len(msg.query_crops) > decoded_crops:
        head = edge_to_hub_pb2.ShortList()
        head.CopyFrom(msg)
        del head.query_crops[decoded_crops:]
    tracklet, candidates = codec.short_list_from_proto(head, expected_dim=dim, expected_fingerprint=fingerprint,
                                                       max_crop_bytes=bounds.max_crop_bytes)
    assert tracklet.embedding is not None
    return ShortListInput(
        idempotency_key=msg.idempotency_key, edge_id=edge_id, camera_id=msg.camera_id,
        tracklet_id=tracklet.tracklet_id, track_id=tracklet.track_id, start_s=tracklet.start_s,
        end_s=tracklet.end_s, crops=tuple(c.image for c in tracklet.crops),
        jpegs=tuple(bytes(c.jpeg) for c in msg.query_crops), query_vector=tracklet.embedding.vectors[0],
        model_fingerprint=fingerprint, candidates=tuple(candidates), cosine_distances=cosine_distances,
        created_s=codec.timestamp_to_seconds(msg.created_at), gallery_version=int(msg.gallery_version),
        attributes=_attributes("short list", msg))


def _attributes(where: str, msg: edge_to_hub_pb2.ShortList | edge_to_hub_pb2.SearchHit) -> AttributeProfile | None:
    if not msg.HasField("attributes"):
        return None
    try:
        return codec.attributes_from_proto(msg.attributes)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}: attributes: {exc}") from None


_DECISIONS = {
    "confirmed": hub_to_edge_pb2.DECISION_CONFIRMED,
    "rejected": hub_to_edge_pb2.DECISION_REJECTED,
    "new_identity": hub_to_edge_pb2.DECISION_NEW_IDENTITY,
}


def verdict_payload(idempotency_key: str, decision: str, identity_id: str | None, stage2_score: float,
                    tracklet_id: str) -> bytes:
    """A serialized HubMessage carrying the Verdict (its sequence is set when it is sent)."""
    verdict = hub_to_edge_pb2.Verdict(idempotency_key=idempotency_key, decision=_DECISIONS[decision],
                                      identity_id=identity_id or "", stage2_score=float(stage2_score),
                                      tracklet_id=tracklet_id)
    return session_pb2.HubMessage(verdict=verdict).SerializeToString()


def identity_upsert(entry: GalleryEntry, fingerprint: str) -> hub_to_edge_pb2.IdentityUpsert:
    identity = entry.identity
    upsert = hub_to_edge_pb2.IdentityUpsert(identity_id=identity.identity_id, display_name=identity.display_name)
    if identity.watchlist_threshold is not None:
        upsert.watchlist_threshold = identity.watchlist_threshold
    if entry.vectors is not None and len(entry.vectors):
        upsert.vectors.append(codec.vector_to_proto(entry.vectors, fingerprint))
    return upsert


def upsert_size(entry: GalleryEntry, fingerprint: str) -> int:
    """Bytes the identity takes in a GalleryDelta (what `Gallery.delta_since` splits on)."""
    return identity_upsert(entry, fingerprint).ByteSize()


def gallery_delta_payload(part: GalleryDeltaPart, fingerprint: str) -> bytes:
    """A serialized HubMessage carrying the delta (its sequence is set when it is sent)."""
    delta = hub_to_edge_pb2.GalleryDelta(from_version=part.from_version, to_version=part.to_version,
                                         full_snapshot=part.full_snapshot, removals=list(part.removals))
    delta.upserts.extend(identity_upsert(entry, fingerprint) for entry in part.upserts)
    return session_pb2.HubMessage(gallery_delta=delta).SerializeToString()


def search_job_payload(job_id: str, vectors: np.ndarray | None, fingerprint: str, *, top_k: int,
                       camera_ids: Sequence[str], deadline_s: float, max_distance: float | None = None,
                       time_range: tuple[float, float] | None = None, text: TextQuery | None = None) -> bytes:
    """A serialized HubMessage carrying a SearchJob: the query `vectors` of model `fingerprint`, or with
    `text` a text job (search by description; `vectors` None, no queries on the wire)."""
    if (text is None) == (vectors is None):
        raise InvalidInputError("search job: expected query vectors or a text query, got "
                                f"{'both' if text is not None else 'neither'}")
    queries = [] if vectors is None else [codec.vector_to_proto(vectors, fingerprint)]
    job = hub_to_edge_pb2.SearchJob(job_id=job_id, queries=queries, top_k=top_k, camera_ids=list(camera_ids),
                                    deadline=codec.seconds_to_timestamp(deadline_s))
    if text is not None:
        job.text.CopyFrom(codec.text_search_to_proto(text))
    if max_distance is not None:
        job.max_distance = max_distance
    if time_range is not None:
        job.time_range.CopyFrom(codec.time_range_to_proto(*time_range))
    return session_pb2.HubMessage(search_job=job).SerializeToString()


@dataclass(frozen=True)
class SearchHitInput:
    """One tracklet an edge found for a search job."""

    camera_id: str
    tracklet_id: str
    start_s: float
    end_s: float
    stage1_distance: float  # the edge's cosine distance (NaN: none); text jobs: 1 - text_score
    jpeg: bytes  # its best crop, as sent
    attributes: AttributeProfile | None = None  # what the edge's attribute model read (None: not read)
    text_score: float | None = None  # text jobs: the description's stage-one score in [0, 1], higher is better


@dataclass(frozen=True)
class SearchResultInput:
    """One SearchResult batch of an edge; `payload` is the message as received (kept for other replicas)."""

    job_id: str
    batch_index: int
    idempotency_key: str
    done: bool
    error: str
    hits: tuple[SearchHitInput, ...]
    payload: bytes
    notes: tuple[str, ...] = ()  # the edge's lines about what it did not search (e.g. tracklets without attributes)

    @property
    def key(self) -> str:
        return self.idempotency_key or f"{self.job_id}/{self.batch_index}"


def decode_search_result(msg: edge_to_hub_pb2.SearchResult | bytes, *, dim: int | None = None,
                         fingerprint: str | None = None, bounds: WireBounds = NO_BOUNDS,
                         check: bool = True) -> SearchResultInput:
    """Validate (each hit's vector of `fingerprint`, its crop, ids and times within `bounds`) and decode;
    InvalidInputError says what is wrong. `check=False`: a payload this hub or a replica validated."""
    if isinstance(msg, bytes):
        msg = edge_to_hub_pb2.SearchResult.FromString(msg)
    if check and msg.batch_index < 0:
        raise InvalidInputError(f"search result: expected a batch index >= 0, got {msg.batch_index}")
    hits = []
    for i, hit in enumerate(msg.hits):
        if check:
            codec.vector_from_proto(hit.vector, dim, fingerprint)
            bounds.crop(f"hit {i}: crop", hit.crop)
            codec.jpeg_to_image(hit.crop.jpeg, bounds.max_crop_bytes, max_pixels=bounds.max_crop_pixels)
            check_id(f"hit {i}: tracklet id", hit.tracklet_id)
            check_id(f"hit {i}: camera id", hit.camera_id, required=False)
            if hit.HasField("span"):
                bounds.span(f"hit {i}: span", hit.span)
        text_score = float(hit.text_score) if hit.HasField("text_score") else None
        if text_score is not None and not 0.0 <= text_score <= 1.0:  # also refuses NaN
            raise InvalidInputError(f"hit {i}: expected a text score in [0, 1], got {text_score}")
        start, end = codec.time_range_from_proto(hit.span) if hit.HasField("span") else (0.0, 0.0)
        hits.append(SearchHitInput(hit.camera_id, hit.tracklet_id, start, end, float(hit.stage1_distance),
                                   bytes(hit.crop.jpeg), _attributes(f"hit {i}", hit), text_score))
    if len(msg.notes) > MAX_NOTES or any(len(n) > MAX_NOTE_CHARS for n in msg.notes):
        raise InvalidInputError(f"search result: expected at most {MAX_NOTES} notes of at most {MAX_NOTE_CHARS} "
                                f"characters, got {len(msg.notes)} of up to {max(map(len, msg.notes))}")
    error = msg.error.message if msg.HasField("error") else ""
    return SearchResultInput(msg.job_id, int(msg.batch_index), msg.idempotency_key, bool(msg.done), error,
                             tuple(hits), msg.SerializeToString(), tuple(msg.notes))


MAX_NOTES, MAX_NOTE_CHARS = 16, 1000


@dataclass(frozen=True)
class EdgeAckInput:
    """An edge's acknowledgement of a sequenced hub message (a delta, a verdict, a search job)."""

    hub_sequence: int
    gallery_version: int
    status: AckStatus | None  # None: unspecified
    idempotency_key: str
    error_message: str

    @property
    def failed(self) -> bool:
        return self.status in ("rejected", "retry")


def decode_edge_ack(ack: edge_to_hub_pb2.EdgeAck) -> EdgeAckInput:
    check_int64("ack: hub sequence", ack.hub_sequence)
    check_int64("ack: gallery version", ack.gallery_version)
    return EdgeAckInput(int(ack.hub_sequence), int(ack.gallery_version), _ACK_NAME.get(ack.status),  # type: ignore[arg-type]
                        ack.idempotency_key, ack.error_message)


def with_sequence(payload: bytes, sequence: int) -> session_pb2.HubMessage:
    message = session_pb2.HubMessage.FromString(payload)
    message.sequence = sequence
    return message


def hub_ack(idempotency_key: str, status: AckStatus, error_message: str = "") -> session_pb2.HubMessage:
    return session_pb2.HubMessage(ack=hub_to_edge_pb2.HubAck(
        idempotency_key=idempotency_key, status=_ACK_STATUS[status], error_message=error_message))  # type: ignore[arg-type]


def hub_heartbeat(now_s: float) -> session_pb2.HubMessage:
    return session_pb2.HubMessage(heartbeat=hub_to_edge_pb2.HubHeartbeat(sent_at=codec.seconds_to_timestamp(now_s)))


def welcome(*, hub_id: str, now_s: float, fingerprint: str, resume_gallery_version: int, resume_hub_sequence: int,
            heartbeat_interval_ms: int, max_message_bytes: int) -> session_pb2.HubMessage:
    return session_pb2.HubMessage(welcome=hub_to_edge_pb2.Welcome(
        hub_id=hub_id, server_time=codec.seconds_to_timestamp(now_s), accepted_model_fingerprint=fingerprint,
        resume_gallery_version=resume_gallery_version, resume_hub_sequence=resume_hub_sequence,
        heartbeat_interval_ms=heartbeat_interval_ms, max_message_bytes=max_message_bytes))


def error(code: int, message: str, *, fatal: bool = False) -> session_pb2.HubMessage:
    return session_pb2.HubMessage(error=common_pb2.Error(code=code, message=message[:500], fatal=fatal))


def cameras(hello: edge_to_hub_pb2.Hello) -> list[dict[str, object]]:
    return [{"camera_id": c.camera_id, "name": c.name, "description": c.description, "fps": c.fps}
            for c in hello.cameras]


def heartbeat_stats(heartbeat: edge_to_hub_pb2.EdgeHeartbeat, bounds: WireBounds = NO_BOUNDS) -> dict[str, object]:
    """What the store keeps of a heartbeat; InvalidInputError for a time, count or id out of bounds."""
    if heartbeat.HasField("sent_at"):
        bounds.time("heartbeat: sent at", heartbeat.sent_at)
    check_int64("heartbeat: outbox depth", heartbeat.outbox_depth)
    check_int64("heartbeat: gallery version", heartbeat.gallery_version)
    if len(heartbeat.cameras) > MAX_CAMERAS:
        raise InvalidInputError(f"heartbeat: expected at most {MAX_CAMERAS} cameras, got {len(heartbeat.cameras)}")
    for c in heartbeat.cameras:
        check_id("heartbeat: camera id", c.camera_id)
        check_int64("heartbeat: dropped frames", c.dropped_frames)
        if c.active_tracks < 0 or not 0.0 <= c.fps <= MAX_FPS:  # also refuses NaN
            raise InvalidInputError(f"heartbeat: camera {c.camera_id!r}: expected fps in [0, {MAX_FPS:g}] and "
                                    f"active tracks >= 0, got {c.fps} and {c.active_tracks}")
        if c.HasField("gap_since"):
            bounds.time(f"heartbeat: camera {c.camera_id!r}: gap since", c.gap_since)
    return {
        "sent_at_s": codec.timestamp_to_seconds(heartbeat.sent_at),
        "outbox_depth": int(heartbeat.outbox_depth),
        "gallery_version": int(heartbeat.gallery_version),
        "cameras": [_camera_stats(c) for c in heartbeat.cameras],
    }


MAX_CAMERAS, MAX_FPS = 1024, 1000.0


def _camera_stats(c: edge_to_hub_pb2.CameraStats) -> dict[str, object]:
    """A camera of a heartbeat; "state" (e.g. "no_frames") and "gap_since_s" only when the edge said."""
    stats: dict[str, object] = {"camera_id": c.camera_id, "fps": c.fps, "active_tracks": c.active_tracks,
                                "dropped_frames": int(c.dropped_frames)}
    if c.state != edge_to_hub_pb2.CAMERA_STATE_UNSPECIFIED and c.state in edge_to_hub_pb2.CameraState.values():
        stats["state"] = edge_to_hub_pb2.CameraState.Name(c.state).removeprefix("CAMERA_STATE_").lower()
    if c.HasField("gap_since"):
        stats["gap_since_s"] = codec.timestamp_to_seconds(c.gap_since)
    return stats

