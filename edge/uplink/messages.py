"""The edge's wire: every crossview.v1 message the edge builds or reads, built or read here.

Other edge modules hand plain values (tracklets, `GalleryChange`, `FootageQuery`/`FootageHit`, ...)
to and from these functions; only `edge.uplink` imports ``protos.crossview.v1``. What the edge does
with each message, as plain functions; `edge.uplink.hub_link` moves them.

- Short lists (`build_short_list`, `short_list_payload`): a tracklet and its ranked candidates, the worst crops dropped
  while the message is over the size limit. Key
  ``shortlist/<edge>/<tracklet>/g<gallery version>``: stable across retries, restarts and replays.
- Gallery deltas (`apply_gallery_delta`): `EdgeGallery.apply_delta`; a refusal is acked REJECTED with
  the gallery's version so the hub sends a full snapshot; a delta that ends at the version held
  (a re-send after a lost ack) is acked DUPLICATE.
- Verdicts (`record_verdict`): CONFIRMED and NEW_IDENTITY become a store sighting with source
  ``verdict:<key>``, which also makes a re-sent verdict a no-op.
- Search jobs (`answer_search_job`), "find this person in your footage": the job read into a
  `FootageQuery`, answered by `edge.footage_search`, the hits sent in `SearchResult` batches that each
  fit the size limit (the last has ``done`` set). Keys ``search/<edge>/<job>/<batch>``.
- Face blur (`blur_message_crops`): applied by the link to every outbound message just before it is
  sent, whoever put it in the outbox, so no crop leaves unblurred; the outbox keeps the originals.
- The session (`read_hub_message`, `hello_message`, `heartbeat_message`, `edge_ack`, the envelopes):
  what `HubLink` reads (Welcome, HubAck, Error as `WelcomeInfo`, `HubAckInfo`, `HubErrorInfo`) and sends.
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.footage_search import (
    FINGERPRINT_MISMATCH,
    INVALID_ARGUMENT,
    UNAVAILABLE,
    FootageHit,
    FootageQuery,
    SearchJobError,
    find,
)
from edge.gallery import EdgeGallery, GalleryChange, GalleryDeltaError, Identity
from edge.privacy import FaceBlurrer
from edge.shortlist import Candidate
from edge.storage.store import TrackletStore, UnknownIdError
from edge.text_search import TextEncoder, TextJob, find_text
from edge.uplink.hub_channel import CameraLoad
from edge.uplink.outbox import Entry
from models.attributes.types import AttributeProfile
from models.errors import InvalidInputError
from models.types import Tracklet
from protos.codec import (
    attributes_to_proto,
    seconds_to_timestamp,
    short_list_to_proto,
    text_search_from_proto,
    time_range_from_proto,
    time_range_to_proto,
    timestamp_to_seconds,
    vector_from_proto,
    vector_to_proto,
)
from protos.crossview.v1 import common_pb2, edge_to_hub_pb2, hub_to_edge_pb2, session_pb2

log = logging.getLogger(__name__)

SHORT_LIST_KIND, SEARCH_RESULT_KIND = "short_list", "search_result"  # outbox kinds
_OK, _DUPLICATE, _REJECTED = common_pb2.ACK_STATUS_OK, common_pb2.ACK_STATUS_DUPLICATE, common_pb2.ACK_STATUS_REJECTED


def short_list_key(edge_id: str, tracklet_id: str, gallery_version: int) -> str:
    """The outbox idempotency key of a tracklet's short list against one gallery version."""
    return f"shortlist/{edge_id}/{tracklet_id}/g{int(gallery_version)}"


def build_short_list(tracklet: Tracklet, candidates: Sequence[Candidate | tuple[str, float]], *, edge_id: str,
                     model_fingerprint: str, gallery_version: int, created_s: float | None = None,
                     max_bytes: int = 4 * 1024 * 1024, jpeg_quality: int = 90,
                     attributes: AttributeProfile | None = None) -> edge_to_hub_pb2.ShortList:
    """A tracklet's ShortList (with its `attributes` when read); `created_s` defaults to the tracklet's end,
    so a replay builds the same one. Crops are encoded as JPEG at `jpeg_quality`; the worst are dropped
    while the message is over `max_bytes`."""
    if tracklet.embedding is None or tracklet.embedding.model_fingerprint != model_fingerprint:
        got = None if tracklet.embedding is None else tracklet.embedding.model_fingerprint
        raise InvalidInputError(f"short list: expected a tracklet embedding of model {model_fingerprint!r}, "
                                f"got {got!r}")
    pairs = [(c.identity_id, c.distance, c.cosine_distance) if isinstance(c, Candidate) and c.cosine_distance
             is not None else (c.identity_id, c.distance) if isinstance(c, Candidate) else tuple(c)
             for c in candidates]
    msg = short_list_to_proto(tracklet, pairs, idempotency_key=short_list_key(edge_id, tracklet.tracklet_id,
                                                                              gallery_version),
                              edge_id=edge_id, created_s=tracklet.end_s if created_s is None else created_s,
                              gallery_version=gallery_version, jpeg_quality=jpeg_quality)
    if attributes is not None:
        msg.attributes.CopyFrom(attributes_to_proto(attributes))
    while msg.ByteSize() > max_bytes and len(msg.query_crops) > 1:
        del msg.query_crops[-1]
    return msg


def short_list_payload(tracklet: Tracklet, candidates: Sequence[Candidate | tuple[str, float]], *, edge_id: str,
                       model_fingerprint: str, gallery_version: int, created_s: float | None = None,
                       max_bytes: int = 4 * 1024 * 1024, jpeg_quality: int = 90,
                       attributes: AttributeProfile | None = None) -> tuple[str, bytes]:
    """(idempotency key, serialized ShortList) of `build_short_list`: what the outbox holds.

    Serialized deterministically: map fields (the attribute probabilities) otherwise come out in an order
    that varies between processes, and a short list rebuilt after a restart must be the same bytes."""
    msg = build_short_list(tracklet, candidates, edge_id=edge_id, model_fingerprint=model_fingerprint,
                           gallery_version=gallery_version, created_s=created_s, max_bytes=max_bytes,
                           jpeg_quality=jpeg_quality, attributes=attributes)
    return msg.idempotency_key, msg.SerializeToString(deterministic=True)


def decode_delta(msg: hub_to_edge_pb2.GalleryDelta, model_fingerprint: str, dim: int) -> GalleryChange:
    """Decode and check a wire delta; every vector must be of `model_fingerprint` with dimension `dim`."""
    if not isinstance(msg, hub_to_edge_pb2.GalleryDelta):
        raise GalleryDeltaError(f"delta: expected a crossview.v1.GalleryDelta, got {type(msg).__name__}")
    upserts = []
    for u in msg.upserts:
        try:
            parts = [vector_from_proto(v, dim, model_fingerprint).reshape(-1, dim) for v in u.vectors]
        except InvalidInputError as exc:
            raise GalleryDeltaError(f"identity {u.identity_id!r}: {exc}") from None
        vectors = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
        threshold = float(u.watchlist_threshold) if u.HasField("watchlist_threshold") else None
        upserts.append(Identity(u.identity_id, vectors, u.display_name, threshold))
    return GalleryChange(int(msg.from_version), int(msg.to_version), model_fingerprint, tuple(upserts),
                         tuple(msg.removals), bool(msg.full_snapshot))


def apply_gallery_delta(gallery: EdgeGallery, delta: hub_to_edge_pb2.GalleryDelta) -> edge_to_hub_pb2.EdgeAck:
    version = gallery.version
    if not delta.full_snapshot and delta.to_version == version and delta.from_version < version:
        return edge_to_hub_pb2.EdgeAck(gallery_version=version, status=_DUPLICATE)
    try:
        version = gallery.apply_delta(decode_delta(delta, gallery.model_fingerprint, gallery.dim))
    except InvalidInputError as exc:
        log.warning("gallery delta refused: %s", exc)
        return edge_to_hub_pb2.EdgeAck(gallery_version=gallery.version, status=_REJECTED, error_message=str(exc))
    return edge_to_hub_pb2.EdgeAck(gallery_version=version, status=_OK)


def record_verdict(store: TrackletStore | None, verdict: hub_to_edge_pb2.Verdict
                   ) -> tuple[edge_to_hub_pb2.EdgeAck, bool]:
    """(the ack, whether the verdict is new: False when its sighting was recorded before)."""
    ack = edge_to_hub_pb2.EdgeAck(idempotency_key=verdict.idempotency_key, status=_OK)
    assigns = verdict.decision in (hub_to_edge_pb2.DECISION_CONFIRMED, hub_to_edge_pb2.DECISION_NEW_IDENTITY)
    if not assigns or store is None:
        return ack, True
    if not verdict.tracklet_id or not verdict.identity_id:
        ack.status, ack.error_message = _REJECTED, "verdict without tracklet or identity"
        return ack, False
    source = f"verdict:{verdict.idempotency_key}"
    try:
        if any(s.source == source for s in store.sightings(tracklet_id=verdict.tracklet_id)):
            return ack, False
        score = min(max(float(verdict.stage2_score), 0.0), 1.0)
        store.add_sighting(verdict.tracklet_id, verdict.identity_id, 1.0 - score, source=source)
    except UnknownIdError as exc:  # e.g. removed by retention meanwhile
        ack.status, ack.error_message = _REJECTED, str(exc)
        return ack, False
    return ack, True


_SEARCH_ERROR_CODES = {UNAVAILABLE: common_pb2.ERROR_CODE_UNAVAILABLE,
                       INVALID_ARGUMENT: common_pb2.ERROR_CODE_INVALID_ARGUMENT,
                       FINGERPRINT_MISMATCH: common_pb2.ERROR_CODE_FINGERPRINT_MISMATCH}


def result_key(edge_id: str, job_id: str, batch_index: int) -> str:
    return f"search/{edge_id}/{job_id}/{batch_index}"


def search_query(job: hub_to_edge_pb2.SearchJob, *, model_fingerprint: str, dim: int) -> FootageQuery:
    """The job as a `FootageQuery`; SearchJobError for a job whose queries or filters cannot be read."""
    def fail(reason: str, message: str) -> SearchJobError:
        return SearchJobError(job.job_id, reason, message)

    if not job.queries:
        raise fail(INVALID_ARGUMENT, "search job: expected at least one query vector")
    parts = []
    for q in job.queries:
        if q.model_fingerprint != model_fingerprint:
            raise fail(FINGERPRINT_MISMATCH, f"search job: expected queries of model "
                       f"{model_fingerprint!r}, got {q.model_fingerprint!r}")
        try:
            parts.append(vector_from_proto(q, dim, model_fingerprint).reshape(-1, dim))
        except InvalidInputError as exc:
            raise fail(INVALID_ARGUMENT, f"search job: {exc}") from None
    start_s = end_s = None
    if job.HasField("time_range"):
        try:
            start_s, end_s = time_range_from_proto(job.time_range)
        except InvalidInputError as exc:
            raise fail(INVALID_ARGUMENT, f"search job: {exc}") from None
    return FootageQuery(job.job_id, model_fingerprint, np.concatenate(parts), tuple(job.camera_ids), start_s, end_s,
                        float(job.max_distance) if job.HasField("max_distance") else None, int(job.top_k))


def text_job(job: hub_to_edge_pb2.SearchJob) -> TextJob:
    """A text job (``job.text`` set) as a `TextJob`; SearchJobError for a description or filter that cannot
    be read (an unknown attribute or colour name, no constraint, a bad time range)."""
    try:
        query = text_search_from_proto(job.text)
        start_s, end_s = time_range_from_proto(job.time_range) if job.HasField("time_range") else (None, None)
    except InvalidInputError as exc:
        raise SearchJobError(job.job_id, INVALID_ARGUMENT, f"text search job: {exc}") from None
    return TextJob(job.job_id, query, tuple(job.camera_ids), start_s, end_s, int(job.top_k))


def search_results(job_id: str, edge_id: str, hits: Sequence[FootageHit], *, model_fingerprint: str,
                   max_bytes: int = 4 * 1024 * 1024, notes: Sequence[str] = ()) -> list[edge_to_hub_pb2.SearchResult]:
    """The hits as SearchResult batches that each fit `max_bytes`; the last has ``done`` set and the `notes`."""
    batches: list[list[edge_to_hub_pb2.SearchHit]] = [[]]
    size = 0
    for hit in hits:
        message = search_hit(hit, model_fingerprint)
        n = message.ByteSize() + 8
        if batches[-1] and size + n > max_bytes:
            batches.append([])
            size = 0
        batches[-1].append(message)
        size += n
    last = len(batches) - 1
    return [edge_to_hub_pb2.SearchResult(job_id=job_id, edge_id=edge_id, hits=batch, batch_index=i,
                                         done=i == last, idempotency_key=result_key(edge_id, job_id, i),
                                         notes=list(notes) if i == last else [])
            for i, batch in enumerate(batches)]


def search_hit(hit: FootageHit, model_fingerprint: str) -> edge_to_hub_pb2.SearchHit:
    msg = edge_to_hub_pb2.SearchHit(
        tracklet_id=hit.tracklet_id, camera_id=hit.camera_id, span=time_range_to_proto(hit.start_s, hit.end_s),
        stage1_distance=hit.distance, vector=vector_to_proto(hit.vector, model_fingerprint),
        crop=common_pb2.CropImage(jpeg=hit.jpeg, width=hit.width, height=hit.height, camera_id=hit.camera_id),
        text_score=hit.text_score)
    if hit.attributes is not None:
        msg.attributes.CopyFrom(attributes_to_proto(hit.attributes))
    return msg


def search_error_result(error: SearchJobError, edge_id: str) -> edge_to_hub_pb2.SearchResult:
    """The one SearchResult that tells the hub why a job cannot be answered."""
    return edge_to_hub_pb2.SearchResult(
        job_id=error.job_id, edge_id=edge_id, batch_index=0, done=True,
        error=common_pb2.Error(code=_SEARCH_ERROR_CODES[error.reason], message=str(error)),
        idempotency_key=result_key(edge_id, error.job_id, 0))


def answer_search_job(job: hub_to_edge_pb2.SearchJob, store: TrackletStore | None, *, edge_id: str,
                      model_fingerprint: str, dim: int, default_top_k: int = 50, max_bytes: int = 4 * 1024 * 1024,
                      text_image: TextEncoder | None = None) -> list[edge_to_hub_pb2.SearchResult]:
    """The SearchResult batches that answer `job` (`edge.footage_search`; a text job `edge.text_search`,
    with the edge's text-image model when it has one), or the one that says why not."""
    try:
        if store is None:  # said before anything of the job is read
            raise SearchJobError(job.job_id, UNAVAILABLE, "this edge keeps no local store")
        notes: list[str] = []
        if job.HasField("text"):
            hits, notes = find_text(text_job(job), store, model_fingerprint=model_fingerprint,
                                    default_top_k=default_top_k, text_image=text_image)
        else:
            query = search_query(job, model_fingerprint=model_fingerprint, dim=dim)
            hits = find(query, store, model_fingerprint=model_fingerprint, dim=dim, default_top_k=default_top_k)
    except SearchJobError as exc:
        return [search_error_result(exc, edge_id)]
    return search_results(job.job_id, edge_id, hits, model_fingerprint=model_fingerprint, max_bytes=max_bytes,
                          notes=notes)


def blur_message_crops(msg: session_pb2.EdgeMessage, blurrer: FaceBlurrer, *, quality: int = 75) -> None:
    """Blur every crop of a ShortList or SearchResult in place, re-encoded at `quality` (the uplink's, so a
    blurred crop is no larger than it was); a crop that cannot be decoded is removed (with its hit), so
    nothing leaves unblurred."""
    body = msg.WhichOneof("body")
    if body == "short_list":
        crops = msg.short_list.query_crops
        keep = [c for c in crops if _blur_crop(c, blurrer, quality)]
        del crops[:]
        crops.extend(keep)
    elif body == "search_result":
        hits = msg.search_result.hits
        keep = [h for h in hits if h.HasField("crop") and _blur_crop(h.crop, blurrer, quality)]
        del hits[:]
        hits.extend(keep)


def _blur_crop(crop: common_pb2.CropImage, blurrer: FaceBlurrer, quality: int) -> bool:
    try:
        crop.jpeg = blurrer.blur_jpeg(crop.jpeg, quality=quality)
    except InvalidInputError as exc:
        log.warning("crop left out: it cannot be blurred: %s", exc)
        return False
    return True


def entry_message(entry: Entry) -> session_pb2.EdgeMessage:
    """The EdgeMessage that carries an outbox entry; InvalidInputError for one that cannot be sent."""
    if entry.kind == SHORT_LIST_KIND:
        msg = session_pb2.EdgeMessage(short_list=edge_to_hub_pb2.ShortList.FromString(entry.payload))
        key = msg.short_list.idempotency_key
    elif entry.kind == SEARCH_RESULT_KIND:
        msg = session_pb2.EdgeMessage(search_result=edge_to_hub_pb2.SearchResult.FromString(entry.payload))
        key = msg.search_result.idempotency_key
    else:
        raise InvalidInputError(f"unknown outbox kind {entry.kind!r}")
    if key != entry.key:
        raise InvalidInputError(f"message key {key!r} differs from its outbox key {entry.key!r}")
    return msg


def camera_stats_message(load: CameraLoad) -> edge_to_hub_pb2.CameraStats:
    """One camera's heartbeat numbers on the wire (state and gap start only when known)."""
    stats = edge_to_hub_pb2.CameraStats(camera_id=load.camera_id, fps=load.fps, active_tracks=load.active_tracks,
                                        dropped_frames=load.dropped_frames)
    if load.state:
        stats.state = edge_to_hub_pb2.CameraState.Value(f"CAMERA_STATE_{load.state.upper()}")
    if load.gap_since is not None:
        stats.gap_since.CopyFrom(seconds_to_timestamp(load.gap_since))
    return stats


def camera_infos(cameras: Sequence[str | edge_to_hub_pb2.CameraInfo]) -> list[edge_to_hub_pb2.CameraInfo]:
    """Hello's cameras: a camera id becomes a CameraInfo named after it."""
    return [c if isinstance(c, edge_to_hub_pb2.CameraInfo) else edge_to_hub_pb2.CameraInfo(camera_id=c, name=c)
            for c in cameras]


def hello_message(edge_id: str, site: str, cameras: Sequence[edge_to_hub_pb2.CameraInfo], model_fingerprint: str,
                  gallery_version: int, last_hub_sequence: int, dim: int) -> edge_to_hub_pb2.Hello:
    """The Hello that opens a session (the software version from the installed package)."""
    try:
        software = importlib.metadata.version("crossview")
    except importlib.metadata.PackageNotFoundError:
        software = "unknown"
    return edge_to_hub_pb2.Hello(
        edge_id=edge_id, site=site, cameras=list(cameras), model_fingerprint=model_fingerprint,
        gallery_version=gallery_version, last_acked_hub_sequence=last_hub_sequence, embedding_dim=dim,
        software_version=software)


def heartbeat_message(cameras: Sequence[CameraLoad], outbox_depth: int, gallery_version: int
                      ) -> edge_to_hub_pb2.EdgeHeartbeat:
    """A heartbeat now, with each camera's numbers."""
    return edge_to_hub_pb2.EdgeHeartbeat(sent_at=seconds_to_timestamp(time.time()),
                                         cameras=[camera_stats_message(c) for c in cameras],
                                         outbox_depth=outbox_depth, gallery_version=gallery_version)


# -- the session: what the link reads from the hub and the envelopes it sends

ACK_OK, ACK_REJECTED, ACK_RETRY = "ok", "rejected", "retry"
_REFUSING_ERRORS = frozenset({common_pb2.ERROR_CODE_UNAUTHENTICATED, common_pb2.ERROR_CODE_PERMISSION_DENIED,
                              common_pb2.ERROR_CODE_FINGERPRINT_MISMATCH})


@dataclass(frozen=True)
class HubAckInfo:
    """A HubAck for one outbox entry: `status` ACK_OK (OK or DUPLICATE), ACK_REJECTED or ACK_RETRY."""

    key: str
    status: str
    error_message: str = ""


@dataclass(frozen=True)
class HubErrorInfo:
    """A hub Error: its code's name, whether the hub closes the stream, whether it refuses this edge for good."""

    name: str
    message: str
    closing: bool
    refuses_edge: bool


@dataclass(frozen=True)
class WelcomeInfo:
    hub_id: str
    accepted_model_fingerprint: str
    resume_hub_sequence: int
    max_message_bytes: int  # 0: not said
    heartbeat_interval_s: float  # 0: not said
    server_time_s: float | None


@dataclass(frozen=True)
class HubMessageInfo:
    """One hub message: its `kind` (the body's name, None when empty), `sequence` (0: none) and `body`,
    read into `HubAckInfo`, `HubErrorInfo` or `WelcomeInfo` for those kinds, else the wire message (a
    GalleryDelta, SearchJob or Verdict, handled by the functions above)."""

    kind: str | None
    sequence: int
    body: object


def read_hub_message(msg: session_pb2.HubMessage) -> HubMessageInfo:
    kind = msg.WhichOneof("body")
    body: object = getattr(msg, kind) if kind else None
    if kind == "ack":
        ack = msg.ack
        status = ACK_OK if ack.status in (_OK, _DUPLICATE) else ACK_REJECTED if ack.status == _REJECTED else ACK_RETRY
        body = HubAckInfo(ack.idempotency_key, status, ack.error_message)
    elif kind == "error":
        error = msg.error
        name = common_pb2.ErrorCode.Name(error.code) if error.code in common_pb2.ErrorCode.values() else str(error.code)
        body = HubErrorInfo(name, error.message, bool(error.fatal), error.code in _REFUSING_ERRORS)
    elif kind == "welcome":
        w = msg.welcome
        body = WelcomeInfo(w.hub_id, w.accepted_model_fingerprint, int(w.resume_hub_sequence), int(w.max_message_bytes),
                           w.heartbeat_interval_ms / 1000, timestamp_to_seconds(w.server_time)
                           if w.HasField("server_time") else None)
    return HubMessageInfo(kind, int(msg.sequence), body)


def edge_ack(*, rejected: str | None = None, hub_sequence: int = 0) -> edge_to_hub_pb2.EdgeAck:
    """An EdgeAck: OK, or REJECTED with the reason `rejected`."""
    if rejected is None:
        return edge_to_hub_pb2.EdgeAck(hub_sequence=hub_sequence, status=_OK)
    return edge_to_hub_pb2.EdgeAck(hub_sequence=hub_sequence, status=_REJECTED, error_message=rejected)


def ack_envelope(ack: edge_to_hub_pb2.EdgeAck, hub_sequence: int = 0) -> session_pb2.EdgeMessage:
    """The EdgeMessage that carries `ack`, for hub message `hub_sequence` when it has one."""
    if hub_sequence:
        ack.hub_sequence = hub_sequence
    return session_pb2.EdgeMessage(ack=ack)


def hello_envelope(hello: edge_to_hub_pb2.Hello) -> session_pb2.EdgeMessage:
    return session_pb2.EdgeMessage(hello=hello)


def heartbeat_envelope(heartbeat: edge_to_hub_pb2.EdgeHeartbeat) -> session_pb2.EdgeMessage:
    return session_pb2.EdgeMessage(heartbeat=heartbeat)


def wire_size(msg: session_pb2.EdgeMessage) -> int:
    return msg.ByteSize()


def search_result_entry(result: edge_to_hub_pb2.SearchResult) -> tuple[str, bytes]:
    """(outbox key, payload) of a SearchResult (deterministic bytes, as `short_list_payload`)."""
    return result.idempotency_key, result.SerializeToString(deterministic=True)
