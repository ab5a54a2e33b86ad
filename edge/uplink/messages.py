"""What the edge does with each crossview.v1 message, as plain functions; `edge.hub_link` moves them.

- Short lists (`build_short_list`): a tracklet and its ranked candidates, the worst crops dropped
  while the message is over the size limit. Key
  ``shortlist/<edge>/<tracklet>/g<gallery version>``: stable across retries, restarts and replays.
- Gallery deltas (`apply_gallery_delta`): `EdgeGallery.apply_delta`; a refusal is acked REJECTED with
  the gallery's version so the hub sends a full snapshot; a delta that ends at the version held
  (a re-send after a lost ack) is acked DUPLICATE.
- Verdicts (`record_verdict`): CONFIRMED and NEW_IDENTITY become a store sighting with source
  ``verdict:<key>``, which also makes a re-sent verdict a no-op.
- Search jobs (`answer_search_job`), "find this person in your footage", from the local store.
- Face blur (`blur_message_crops`): applied by the link to every outbound message just before it is
  sent, whoever put it in the outbox, so no crop leaves unblurred; the outbox keeps the originals.

Search ranking: every stored tracklet vector of the edge's model that passes the job's filters
(cameras, time range) is compared with every query vector; a tracklet's distance is its smallest
distance to any query, as squared Euclidean distance between L2-normalised vectors (2 − 2·cos, in
[0, 4]). No k-reciprocal re-ranking here: the candidate set changes with every job's filters, so
there is no gallery to prepare once, and the hub re-ranks what the edges send at stage 2. Queries of
another model are refused (FINGERPRINT_MISMATCH), never compared. The answer: hits closest first,
ties by tracklet id, each with the tracklet's best crop and its vector (a tracklet without a readable
crop is left out: the hub refuses hits without one), in
`SearchResult` batches that each fit the size limit; the last has ``done`` set. Keys:
``search/<edge>/<job>/<batch>``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from edge.gallery import EdgeGallery
from edge.hub_channel import CameraLoad
from edge.outbox import Entry
from edge.privacy import FaceBlurrer
from edge.shortlist import Candidate
from edge.store import FingerprintMismatchError, TrackletStore, UnknownIdError
from models.errors import InvalidInputError
from models.rerank import unit_distances
from models.types import Tracklet
from protos.codec import (
    jpeg_to_image,
    seconds_to_timestamp,
    short_list_to_proto,
    time_range_from_proto,
    time_range_to_proto,
    vector_from_proto,
    vector_to_proto,
)
from protos.crossview.v1 import common_pb2, edge_to_hub_pb2, hub_to_edge_pb2, session_pb2

log = logging.getLogger(__name__)

MAX_HITS = 1000
SHORT_LIST_KIND, SEARCH_RESULT_KIND = "short_list", "search_result"  # outbox kinds
_OK, _DUPLICATE, _REJECTED = common_pb2.ACK_STATUS_OK, common_pb2.ACK_STATUS_DUPLICATE, common_pb2.ACK_STATUS_REJECTED


def short_list_key(edge_id: str, tracklet_id: str, gallery_version: int) -> str:
    """The outbox idempotency key of a tracklet's short list against one gallery version."""
    return f"shortlist/{edge_id}/{tracklet_id}/g{int(gallery_version)}"


def build_short_list(tracklet: Tracklet, candidates: Sequence[Candidate | tuple[str, float]], *, edge_id: str,
                     model_fingerprint: str, gallery_version: int, created_s: float | None = None,
                     max_bytes: int = 4 * 1024 * 1024, jpeg_quality: int = 90) -> edge_to_hub_pb2.ShortList:
    """A tracklet's ShortList; `created_s` defaults to the tracklet's end, so a replay builds the same one.
    Crops are encoded as JPEG at `jpeg_quality`; the worst are dropped while the message is over `max_bytes`."""
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
    while msg.ByteSize() > max_bytes and len(msg.query_crops) > 1:
        del msg.query_crops[-1]
    return msg


def apply_gallery_delta(gallery: EdgeGallery, delta: hub_to_edge_pb2.GalleryDelta) -> edge_to_hub_pb2.EdgeAck:
    version = gallery.version
    if not delta.full_snapshot and delta.to_version == version and delta.from_version < version:
        return edge_to_hub_pb2.EdgeAck(gallery_version=version, status=_DUPLICATE)
    try:
        version = gallery.apply_delta(delta)
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


class SearchJobError(InvalidInputError):
    """A job this edge cannot answer; `result` is the SearchResult that says so to the hub."""

    def __init__(self, job_id: str, code: int, message: str) -> None:
        super().__init__(message)
        self.job_id, self.code = job_id, code

    def result(self, edge_id: str) -> edge_to_hub_pb2.SearchResult:
        return edge_to_hub_pb2.SearchResult(
            job_id=self.job_id, edge_id=edge_id, batch_index=0, done=True,
            error=common_pb2.Error(code=self.code, message=str(self)),
            idempotency_key=result_key(edge_id, self.job_id, 0))


def result_key(edge_id: str, job_id: str, batch_index: int) -> str:
    return f"search/{edge_id}/{job_id}/{batch_index}"


def answer_search_job(job: hub_to_edge_pb2.SearchJob, store: TrackletStore | None, *, edge_id: str,
                      model_fingerprint: str, dim: int, default_top_k: int = 50, max_bytes: int = 4 * 1024 * 1024
                      ) -> list[edge_to_hub_pb2.SearchResult]:
    """The SearchResult batches that answer `job`; raises SearchJobError for a job that cannot be answered."""
    ranked = rank(job, store, model_fingerprint=model_fingerprint, dim=dim, default_top_k=default_top_k)
    hits = [h for h in (_hit(store, tid, d, vector, model_fingerprint) for tid, d, vector in ranked) if h]
    batches: list[list[edge_to_hub_pb2.SearchHit]] = [[]]
    size = 0
    for hit in hits:
        n = hit.ByteSize() + 8
        if batches[-1] and size + n > max_bytes:
            batches.append([])
            size = 0
        batches[-1].append(hit)
        size += n
    return [edge_to_hub_pb2.SearchResult(job_id=job.job_id, edge_id=edge_id, hits=batch, batch_index=i,
                                         done=i == len(batches) - 1,
                                         idempotency_key=result_key(edge_id, job.job_id, i))
            for i, batch in enumerate(batches)]


def rank(job: hub_to_edge_pb2.SearchJob, store: TrackletStore | None, *, model_fingerprint: str, dim: int,
         default_top_k: int = 50) -> list[tuple[str, float, np.ndarray]]:
    """(tracklet id, distance, vector) of the job's hits, closest first."""
    def fail(code: int, message: str) -> SearchJobError:
        return SearchJobError(job.job_id, code, message)

    if store is None:
        raise fail(common_pb2.ERROR_CODE_UNAVAILABLE, "this edge keeps no local store")
    if not job.queries:
        raise fail(common_pb2.ERROR_CODE_INVALID_ARGUMENT, "search job: expected at least one query vector")
    parts = []
    for q in job.queries:
        if q.model_fingerprint != model_fingerprint:
            raise fail(common_pb2.ERROR_CODE_FINGERPRINT_MISMATCH, f"search job: expected queries of model "
                       f"{model_fingerprint!r}, got {q.model_fingerprint!r}")
        try:
            parts.append(vector_from_proto(q, dim, model_fingerprint).reshape(-1, dim))
        except InvalidInputError as exc:
            raise fail(common_pb2.ERROR_CODE_INVALID_ARGUMENT, f"search job: {exc}") from None
    queries = _unit(np.concatenate(parts))
    start_s = end_s = None
    if job.HasField("time_range"):
        try:
            start_s, end_s = time_range_from_proto(job.time_range)
        except InvalidInputError as exc:
            raise fail(common_pb2.ERROR_CODE_INVALID_ARGUMENT, f"search job: {exc}") from None
    ids: list[str] = []
    blocks: list[np.ndarray] = []
    for camera in list(job.camera_ids) or [None]:
        try:
            tids, vectors = store.vectors(model_fingerprint, camera=camera, start_s=start_s, end_s=end_s)
        except UnknownIdError:
            continue  # a camera of another edge: the hub fans a job out to many
        except FingerprintMismatchError as exc:
            raise fail(common_pb2.ERROR_CODE_FINGERPRINT_MISMATCH, str(exc)) from None
        if tids:
            ids += tids
            blocks.append(vectors)
    if not ids:
        return []
    vectors = np.concatenate(blocks).astype(np.float32)
    distances = unit_distances(queries, _unit(vectors)).min(axis=0)
    order = np.lexsort((np.array(ids), distances))
    limit = job.max_distance if job.HasField("max_distance") else math.inf
    top_k = min(job.top_k if job.top_k > 0 else default_top_k, MAX_HITS)
    return [(ids[i], float(distances[i]), vectors[i]) for i in order if distances[i] <= limit][:top_k]


def _hit(store: TrackletStore, tracklet_id: str, distance: float, vector: np.ndarray, model_fingerprint: str
         ) -> edge_to_hub_pb2.SearchHit | None:
    """The hit, or None when the tracklet has no readable crop (a hit without one is refused by the hub)."""
    record = store.get_tracklet(tracklet_id)
    if not record.crop_paths:
        return None
    try:
        data = record.crop_paths[0].read_bytes()
        image = jpeg_to_image(data)
    except (OSError, InvalidInputError) as exc:
        log.warning("search hit %s left out: its crop is unreadable: %s", tracklet_id, exc)
        return None
    return edge_to_hub_pb2.SearchHit(
        tracklet_id=tracklet_id, camera_id=record.camera_id, span=time_range_to_proto(record.start_s, record.end_s),
        stage1_distance=distance, vector=vector_to_proto(vector, model_fingerprint),
        crop=common_pb2.CropImage(jpeg=data, width=image.shape[1], height=image.shape[0], camera_id=record.camera_id))


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


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


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

