"""Search fan-out: "find this person everywhere" across the edges' local footage.

A query is photos, a sighting or an identity. By identity or sighting, the hub's own stored
sightings of that person come first (`SearchOutcome.sightings`; an unknown sighting is its own only
one), then the edges are asked. The hub makes query vectors with each connected
edge's own model, sends each edge a sequenced SearchJob (durable like a verdict: re-sent after a
reconnect until acked), gathers the SearchResult batches until every edge said `done` or the
deadline passed, has the judge score each hit against the query images, and ranks all hits together.

Scores are P(same) in [0, 1] (`models.scores`): `stage1_p_same` is the edge model's cosine distance
between the query and the hit through that model's calibration, `stage2_p_same` the judge's μ (the
smallest over the query images) through the judge's, and `p_same` the two fused
(`models.calibration.fuse_p_same`); hits are ranked by `p_same`, so hits of edges with different
models compare on one scale. The outcome says which edges answered fully, partly, with an error, or
not at all: a partial answer is still an answer; no edge connected means only the stored sightings.

Several replicas: the job is asked of every edge connected to *any* replica (the store says which
edges are connected and with which model). Jobs go out through the store's per-edge outgoing queue,
which the replica holding each edge's session drains; the job itself is recorded in the store
(`HubStore.create_search_job`), so a replica that receives a result batch for a job it did not start
keeps it there (`add_search_result`), and the replica that asked polls them every `poll_s` while it
waits. Batches for this replica's own jobs are taken directly, without the store. Results arriving
after the deadline are acknowledged and dropped; jobs are forgotten an hour after their deadline.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from cloud.crops import CropFiles
from cloud.gallery import Gallery, Photo
from cloud.sessions import SessionManager
from cloud.store import HubStore, SearchJobRecord, SightingRecord, StoreError
from cloud.verification import PairJudge
from models.calibration import Calibration, calibration_for, fuse_p_same
from models.errors import InvalidInputError
from models.scores import DEFAULT_CONFIRM_P_SAME, check_p_same
from protos import codec
from protos.crossview.v1 import common_pb2, edge_to_hub_pb2, hub_to_edge_pb2, session_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchQuery:
    """Exactly one of `photos`, `sighting_id`, `identity_id`; the rest narrows the search."""

    photos: Sequence[Photo] = ()
    sighting_id: int | None = None
    identity_id: str | None = None
    top_k: int = 20  # per edge
    max_distance: float | None = None
    time_range: tuple[float, float] | None = None
    camera_ids: Sequence[str] = ()


@dataclass(frozen=True)
class SearchHit:
    edge_id: str
    camera_id: str
    tracklet_id: str
    start_s: float
    end_s: float
    p_same: float | None  # the stages fused: what hits are ranked by
    stage1_p_same: float | None  # the edge model's
    stage2_p_same: float | None  # the judge's; None without one
    jpeg: bytes
    same: bool | None = None  # p_same >= the service's `same_above`; None without a judge


@dataclass(frozen=True)
class SearchOutcome:
    job_id: str
    hits: list[SearchHit]  # best first
    edges_asked: list[str]  # connected when the search began; empty: no edge was
    edges_answered: list[str]  # sent their last batch
    edges_partial: list[str]  # sent some batches, not the last, before the deadline
    edges_failed: dict[str, str]  # edge -> its error
    edges_silent: list[str]  # nothing before the deadline
    sightings: list[SightingRecord] = field(default_factory=list)  # stored at the hub, newest first

    @property
    def complete(self) -> bool:
        return set(self.edges_answered) | set(self.edges_failed) == set(self.edges_asked)


@dataclass
class _Job:
    edges: dict[str, str]  # edge id -> model fingerprint
    loop: asyncio.AbstractEventLoop
    finished: asyncio.Event
    max_hits: int
    hits: dict[str, list[edge_to_hub_pb2.SearchHit]] = field(default_factory=lambda: collections.defaultdict(list))
    batches: set[tuple[str, str]] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    errors: dict[str, str] = field(default_factory=dict)


class SearchService:
    def __init__(self, store: HubStore, gallery: Gallery, crops: CropFiles, sessions: SessionManager,
                 judge: PairJudge | None = None, *, max_query_images: int = 4,
                 same_above: float = DEFAULT_CONFIRM_P_SAME, max_stored_sightings: int = 200, poll_s: float = 0.25,
                 keep_jobs_s: float = 3600.0, calibrations: Callable[[str, str], Calibration] = calibration_for,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.gallery, self.crops, self.sessions, self.judge = store, gallery, crops, sessions, judge
        self.max_query_images, self.max_stored_sightings = max_query_images, max_stored_sightings
        self.poll_s, self.keep_jobs_s = poll_s, keep_jobs_s
        self.same_above = check_p_same("same_above", same_above)  # a hit is the same person at this P(same)
        self._calibrations = functools.cache(calibrations)  # (fingerprint, score kind) -> Calibration
        self._clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._finished: collections.deque[str] = collections.deque(maxlen=1000)
        sessions.search_results = self.on_result

    # ------------------------------------------------------------------ the query
    def _query_images(self, query: SearchQuery) -> list[np.ndarray]:
        given = sum((bool(query.photos), query.sighting_id is not None, query.identity_id is not None))
        if given != 1:
            raise InvalidInputError("search: expected exactly one of photos, sighting_id or identity_id")
        if query.top_k < 1:
            raise InvalidInputError(f"search: expected top_k >= 1, got {query.top_k}")
        if query.photos:
            return [p if isinstance(p, np.ndarray) else codec.jpeg_to_image(p, self.gallery.max_photo_bytes)
                    for p in query.photos[: self.max_query_images]]
        if query.sighting_id is not None:
            sighting = self.store.get_sighting(query.sighting_id)
            if sighting is None:
                raise StoreError(f"unknown sighting {query.sighting_id}")
            return [codec.jpeg_to_image(self.crops.read(sighting.crop_path), self.gallery.max_photo_bytes)]
        images = self.gallery.reference_images(str(query.identity_id), self.max_query_images)
        if not images:
            raise StoreError(f"identity {query.identity_id!r} has no reference crops")
        return images

    def _stored_sightings(self, query: SearchQuery) -> list[SightingRecord]:
        """(worker thread) The hub's sightings of the person asked for by identity or sighting."""
        identity_id = query.identity_id
        if query.sighting_id is not None:
            sighting = self.store.get_sighting(query.sighting_id)
            if sighting is None:
                return []
            if sighting.identity_id is None:  # an unknown person: this is all the hub has of them
                return [sighting]
            identity_id = sighting.identity_id
        if identity_id is None:
            return []
        return self.store.sightings(identity_id=identity_id, limit=self.max_stored_sightings)

    def _job_payload(self, job_id: str, query: SearchQuery, vectors: np.ndarray, fingerprint: str,
                     deadline: float) -> bytes:
        job = hub_to_edge_pb2.SearchJob(job_id=job_id, queries=[codec.vector_to_proto(vectors, fingerprint)],
                                        top_k=query.top_k, camera_ids=list(query.camera_ids),
                                        deadline=codec.seconds_to_timestamp(deadline))
        if query.max_distance is not None:
            job.max_distance = query.max_distance
        if query.time_range is not None:
            job.time_range.CopyFrom(codec.time_range_to_proto(*query.time_range))
        return session_pb2.HubMessage(search_job=job).SerializeToString()

    def _send_jobs(self, job_id: str, query: SearchQuery, images: list[np.ndarray], deadline: float,
                   edges: dict[str, str]) -> list[str]:
        """(worker thread) Queue the job for each edge; the edges it was sent to."""
        vectors: dict[str, np.ndarray] = {}
        sent = []
        for edge_id, fingerprint in edges.items():
            if fingerprint not in vectors:
                stored = (self.store.get_embeddings(query.identity_id, fingerprint)
                          if query.identity_id is not None else None)
                vectors[fingerprint] = stored if stored is not None else self.gallery.embedders.embed(fingerprint,
                                                                                                      images)
            payload = self._job_payload(job_id, query, vectors[fingerprint], fingerprint, deadline)
            self.store.enqueue_outgoing(edge_id, "search_job", [payload], now=self._clock())
            sent.append(edge_id)
        return sent

    # ------------------------------------------------------------------ running a search
    def _edges(self) -> dict[str, str]:
        """Edge id -> model fingerprint of every edge connected to any replica (this one's sessions first)."""
        edges = {edge_id: s.fingerprint for edge_id, s in list(self.sessions.sessions.items())}
        for record in self.store.list_edges():
            if record.connected_hub_id is not None and record.model_fingerprint and record.edge_id not in edges:
                edges[record.edge_id] = record.model_fingerprint
        return edges

    async def search(self, query: SearchQuery, *, deadline_s: float = 10.0) -> SearchOutcome:
        """Ask every connected edge (on any replica); wait for them all or `deadline_s`."""
        images = await asyncio.to_thread(self._query_images, query)
        stored = await asyncio.to_thread(self._stored_sightings, query)
        job_id = f"job-{uuid.uuid4().hex[:16]}"
        edges = await asyncio.to_thread(self._edges)
        job = _Job(dict(edges), asyncio.get_running_loop(), asyncio.Event(), max_hits=2 * query.top_k)
        with self._lock:
            self._jobs[job_id] = job
        try:
            now = self._clock()
            deadline = now + deadline_s
            if edges:
                record = SearchJobRecord(job_id, self.sessions.hub_id, tuple(sorted(edges)), deadline, now)
                await asyncio.to_thread(self.store.create_search_job, record)
            await asyncio.to_thread(self._send_jobs, job_id, query, images, deadline, edges)
            for edge_id in edges:
                self.sessions.notify_outgoing(edge_id)
            if edges:
                await self._gather(job_id, job, deadline_s)
        finally:
            with self._lock:
                self._jobs.pop(job_id, None)
                self._finished.append(job_id)
        with contextlib.suppress(StoreError):
            await asyncio.to_thread(self.store.delete_search_jobs, deadline_before_s=self._clock() - self.keep_jobs_s)
        hits = await asyncio.to_thread(self._rank, images, job)
        answered = sorted(job.done - set(job.errors))
        partial = sorted(e for e in job.hits if e not in job.done)
        silent = sorted(set(job.edges) - job.done - set(job.hits))
        return SearchOutcome(job_id, hits, sorted(edges), answered, partial, dict(job.errors), silent, stored)

    async def _gather(self, job_id: str, job: _Job, deadline_s: float) -> None:
        """Until every edge is done or the deadline: this replica's batches arrive through `on_result`,
        other replicas' through the store, polled every `poll_s`. A partial answer is an answer."""
        end = asyncio.get_running_loop().time() + deadline_s
        after_id = 0
        while not job.finished.is_set():
            left = end - asyncio.get_running_loop().time()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.finished.wait(), min(left, self.poll_s))
            try:
                stored = await asyncio.to_thread(self.store.search_results_after, job_id, after_id)
            except StoreError as exc:
                log.warning("search %s: reading other replicas' results failed: %s", job_id, exc)
                continue
            for row in stored:
                after_id = row.result_id
                try:
                    msg = edge_to_hub_pb2.SearchResult.FromString(row.payload)
                except Exception:  # written by a replica from a message it had parsed: should not happen
                    log.warning("search %s: unreadable stored result %d dropped", job_id, row.result_id)
                    continue
                with self._lock:
                    self._accept(job, row.edge_id, msg)

    def on_result(self, edge_id: str, msg: edge_to_hub_pb2.SearchResult) -> tuple[int, str]:
        """A SearchResult batch from an edge (the session's handler, on a worker thread)."""
        with self._lock:
            job = self._jobs.get(msg.job_id)
            if job is not None:
                return self._accept(job, edge_id, msg)
            finished_here = msg.job_id in self._finished
        if finished_here:
            return common_pb2.ACK_STATUS_OK, "the job had finished; results dropped"
        return self._keep_for_other_replica(edge_id, msg)

    def _keep_for_other_replica(self, edge_id: str, msg: edge_to_hub_pb2.SearchResult) -> tuple[int, str]:
        record = self.store.get_search_job(msg.job_id)
        if record is None:
            return common_pb2.ACK_STATUS_REJECTED, f"no search job {msg.job_id!r} on this hub"
        if edge_id not in record.edge_ids:
            return common_pb2.ACK_STATUS_REJECTED, f"search job {msg.job_id!r} was not sent to {edge_id!r}"
        if self._clock() > record.deadline_s:
            return common_pb2.ACK_STATUS_OK, "the job had finished; results dropped"
        key = msg.idempotency_key or f"{msg.job_id}/{msg.batch_index}"
        fresh = self.store.add_search_result(msg.job_id, edge_id, key, msg.SerializeToString(), now=self._clock())
        return (common_pb2.ACK_STATUS_OK, "") if fresh else (common_pb2.ACK_STATUS_DUPLICATE, "")

    @staticmethod
    def _accept(job: _Job, edge_id: str, msg: edge_to_hub_pb2.SearchResult) -> tuple[int, str]:
        """Take one batch into a job of this replica (caller holds the lock)."""
        key = msg.idempotency_key or f"{msg.job_id}/{msg.batch_index}"
        if edge_id not in job.edges:
            return common_pb2.ACK_STATUS_REJECTED, f"search job {msg.job_id!r} was not sent to {edge_id!r}"
        if (edge_id, key) in job.batches:  # keys ("<job>/<batch>") are unique per edge only
            return common_pb2.ACK_STATUS_DUPLICATE, ""
        job.batches.add((edge_id, key))
        room = job.max_hits - len(job.hits[edge_id])
        job.hits[edge_id].extend(list(msg.hits)[: max(room, 0)])
        if msg.HasField("error") and msg.error.message:
            job.errors[edge_id] = msg.error.message
        if msg.done or edge_id in job.errors:
            job.done.add(edge_id)
        if job.done >= set(job.edges):
            job.loop.call_soon_threadsafe(job.finished.set)
        return common_pb2.ACK_STATUS_OK, ""

    def _p_same(self, fingerprint: str, score: str, values: Sequence[float]) -> list[float]:
        return self._calibrations(fingerprint, score).p_same(np.asarray(values, np.float64)).tolist()

    def _rank(self, images: list[np.ndarray], job: _Job) -> list[SearchHit]:
        entries = []
        for edge_id, hits in job.hits.items():
            for hit in hits:
                start, end = codec.time_range_from_proto(hit.span) if hit.HasField("span") else (0.0, 0.0)
                image = codec.jpeg_to_image(hit.crop.jpeg) if self.judge is not None else None  # for the judge only
                entries.append((edge_id, hit, start, end, image))
        # stage 1: the edge's cosine distance through its model's calibration
        stage1 = [math.nan] * len(entries)
        by_model: dict[str, list[int]] = collections.defaultdict(list)
        for i, (edge_id, hit, *_) in enumerate(entries):
            if math.isfinite(hit.stage1_distance) and job.edges.get(edge_id):
                by_model[job.edges[edge_id]].append(i)
        for fingerprint, rows in by_model.items():
            for i, p in zip(rows, self._p_same(fingerprint, "cosine_distance",
                                               [entries[i][1].stage1_distance for i in rows]), strict=True):
                stage1[i] = p
        # stage 2: the judge's μ (best over the query images) through the judge's calibration
        stage2 = [math.nan] * len(entries)
        if self.judge is not None and entries:
            pairs = [(q, e[4]) for e in entries for q in images]
            mu = np.asarray(self.judge.score_pairs(pairs), np.float64).reshape(len(entries), len(images)).min(axis=1)
            judge_fingerprint = str(getattr(self.judge, "fingerprint", "") or getattr(self.judge, "name", "judge"))
            stage2 = self._p_same(judge_fingerprint, "judge_mu", mu.tolist())
        ranked = []
        for (edge_id, hit, start, end, _), p1, p2 in zip(entries, stage1, stage2, strict=True):
            s1 = None if math.isnan(p1) else p1
            s2 = None if math.isnan(p2) else p2
            fused = fuse_p_same(s1, s2)
            ranked.append(SearchHit(edge_id, hit.camera_id, hit.tracklet_id, start, end, fused, s1, s2,
                                    bytes(hit.crop.jpeg),
                                    None if s2 is None or fused is None else fused >= self.same_above))
        ranked.sort(key=lambda h: (-(h.p_same if h.p_same is not None else -1.0), h.edge_id, h.tracklet_id))
        return ranked
