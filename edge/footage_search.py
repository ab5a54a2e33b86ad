"""Search of the edge's own footage, "find this person in your footage": a hub search job from the store.

Ranking: every stored tracklet vector of the edge's model that passes the job's filters (cameras,
time range) is compared with every query vector; a tracklet's distance is its smallest distance to
any query, as squared Euclidean distance between L2-normalised vectors (2 − 2·cos, in [0, 4]). No
k-reciprocal re-ranking here: the candidate set changes with every job's filters, so there is no
gallery to prepare once, and the hub re-ranks what the edges send at stage 2. Queries of another
model are refused (``fingerprint_mismatch``), never compared. The answer: hits closest first, ties by
tracklet id, each with the tracklet's best crop and its vector; a tracklet without a readable crop is
left out (the hub refuses hits without one). A crop's size is read from its JPEG header: answering a
job decodes no image.

Plain data in and out (`FootageQuery`, `FootageHit`); `edge.uplink.messages` turns a SearchJob into a
query and the hits into SearchResult batches.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from edge.storage.store import FingerprintMismatchError, TrackletStore, UnknownIdError
from models.attributes.types import AttributeProfile
from models.errors import InvalidInputError
from models.rerank import unit_distances
from protos.codec import check_jpeg

log = logging.getLogger(__name__)

MAX_HITS = 1000

UNAVAILABLE, INVALID_ARGUMENT, FINGERPRINT_MISMATCH = "unavailable", "invalid_argument", "fingerprint_mismatch"


class SearchJobError(InvalidInputError):
    """A job this edge cannot answer; `reason` is one of UNAVAILABLE, INVALID_ARGUMENT, FINGERPRINT_MISMATCH."""

    def __init__(self, job_id: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.job_id, self.reason = job_id, reason


@dataclass(frozen=True)
class FootageQuery:
    """A search job as plain data: query vectors (N, D) of `model_fingerprint`, and the job's filters.

    `top_k` 0 means the edge's default; `max_distance` None means no limit.
    """

    job_id: str
    model_fingerprint: str
    queries: np.ndarray
    camera_ids: tuple[str, ...] = ()
    start_s: float | None = None
    end_s: float | None = None
    max_distance: float | None = None
    top_k: int = 0


@dataclass(frozen=True)
class FootageHit:
    """One stored tracklet that answers a query: its span, distance, vector and best crop (JPEG)."""

    tracklet_id: str
    camera_id: str
    start_s: float
    end_s: float
    distance: float
    vector: np.ndarray
    jpeg: bytes
    width: int
    height: int
    attributes: AttributeProfile | None = None  # the tracklet's stored attributes (text jobs)
    text_score: float | None = None  # text jobs: the description's score in [0, 1], higher is better


def rank(query: FootageQuery, store: TrackletStore | None, *, model_fingerprint: str, dim: int,
         default_top_k: int = 50) -> list[tuple[str, float, np.ndarray]]:
    """(tracklet id, distance, vector) of the query's hits, closest first; SearchJobError when unanswerable."""
    def fail(reason: str, message: str) -> SearchJobError:
        return SearchJobError(query.job_id, reason, message)

    if store is None:
        raise fail(UNAVAILABLE, "this edge keeps no local store")
    if query.model_fingerprint != model_fingerprint:
        raise fail(FINGERPRINT_MISMATCH, f"search job: expected queries of model {model_fingerprint!r}, "
                   f"got {query.model_fingerprint!r}")
    queries = np.asarray(query.queries, np.float32).reshape(-1, dim)
    if len(queries) == 0:
        raise fail(INVALID_ARGUMENT, "search job: expected at least one query vector")
    queries = _unit(queries)
    ids: list[str] = []
    blocks: list[np.ndarray] = []
    for camera in list(query.camera_ids) or [None]:
        try:
            tids, vectors = store.vectors(model_fingerprint, camera=camera, start_s=query.start_s,
                                          end_s=query.end_s)
        except UnknownIdError:
            continue  # a camera of another edge: the hub fans a job out to many
        except FingerprintMismatchError as exc:
            raise fail(FINGERPRINT_MISMATCH, str(exc)) from None
        if tids:
            ids += tids
            blocks.append(vectors)
    if not ids:
        return []
    vectors = np.concatenate(blocks).astype(np.float32)
    distances = unit_distances(queries, _unit(vectors)).min(axis=0)
    order = np.lexsort((np.array(ids), distances))
    limit = math.inf if query.max_distance is None else query.max_distance
    top_k = min(query.top_k if query.top_k > 0 else default_top_k, MAX_HITS)
    return [(ids[i], float(distances[i]), vectors[i]) for i in order if distances[i] <= limit][:top_k]


def find(query: FootageQuery, store: TrackletStore | None, *, model_fingerprint: str, dim: int,
         default_top_k: int = 50) -> list[FootageHit]:
    """The hits of `query` with their crops, closest first (see the module docstring)."""
    ranked = rank(query, store, model_fingerprint=model_fingerprint, dim=dim, default_top_k=default_top_k)
    assert store is not None  # rank refused a missing store
    return [h for h in (crop_of(store, tid, d, vector) for tid, d, vector in ranked) if h is not None]


def crop_of(store: TrackletStore, tracklet_id: str, distance: float, vector: np.ndarray) -> FootageHit | None:
    """The hit, or None when the tracklet has no readable crop (a hit without one is refused by the hub)."""
    record = store.get_tracklet(tracklet_id)
    if not record.crop_paths:
        return None
    try:
        data = record.crop_paths[0].read_bytes()
        height, width = check_jpeg(data)  # the header only: no decoding
    except (OSError, InvalidInputError) as exc:
        log.warning("search hit %s left out: its crop is unreadable: %s", tracklet_id, exc)
        return None
    return FootageHit(tracklet_id, record.camera_id, record.start_s, record.end_s, distance, vector, data,
                      width, height)


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)
