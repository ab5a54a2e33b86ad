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

A text query (search by description, issue 15) goes out the same way as a text job; its hits are
ranked by raw, uncalibrated match scores, not P(same) (see `cloud.text_search`), and the outcome
carries the edges' notes (e.g. tracklets recorded before attributes were on, not searched).

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

from cloud import wire
from cloud.crops import CropFiles
from cloud.gallery import Gallery, Photo
from cloud.sessions import SessionManager
from cloud.store import HubStore, SearchJobRecord, SightingRecord, StoreError
from cloud.text_search import finite_or_none, judge_descriptions, matched_view
from cloud.verification import PairJudge
from cloud.waits import wait_event
from cloud.wire import AckStatus, SearchHitInput, SearchResultInput
from models.attributes.types import AttributeProfile, Constraint, TextQuery
from models.calibration import Calibration, calibration_for, fuse_p_same
from models.errors import InvalidInputError
from models.scores import DEFAULT_CONFIRM_P_SAME, check_p_same
from protos import codec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchQuery:
    """Exactly one of `photos`, `sighting_id`, `identity_id`, `text` (the one rule, checked here:
    InvalidInputError otherwise); the rest narrows the search (`sites`: only the edges of these sites)."""

    photos: Sequence[Photo] = ()
    sighting_id: int | None = None
    identity_id: str | None = None
    top_k: int = 20  # per edge
    max_distance: float | None = None
    time_range: tuple[float, float] | None = None
    camera_ids: Sequence[str] = ()
    text: TextQuery | None = None  # a search by description (`cloud.text_search.text_query` builds it)
    sites: Sequence[str] = ()

    def __post_init__(self) -> None:
        given = sum((bool(self.photos), self.sighting_id is not None, bool(self.identity_id), self.text is not None))
        if given != 1:
            raise InvalidInputError("search: expected exactly one of photos, sighting_id or identity_id (or a "
                                    f"description: text), got {given}")
        if self.text is not None and not isinstance(self.text, TextQuery):
            raise InvalidInputError(f"search: text: expected a TextQuery, got {type(self.text).__name__}")
        if self.time_range is not None and not self.time_range[0] <= self.time_range[1]:
            raise InvalidInputError(f"search: expected a time range with start <= end, got {self.time_range}")
        if self.top_k < 1:
            raise InvalidInputError(f"search: expected top_k >= 1, got {self.top_k}")


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
    # text searches only (raw scores in [0, 1], not calibrated; p_same and the stages' P(same) stay None)
    text_score: float | None = None  # the edge's stage-one description score
    judge_score: float | None = None  # 1 - the judge's μ; None when the judge cannot read or is absent
    score: float | None = None  # the two fused: what text hits are ranked by
    attributes: AttributeProfile | None = None  # what the edge read of the tracklet
    matched: tuple[tuple[Constraint, float], ...] = ()  # each constraint and its probability under `attributes`


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
    text: TextQuery | None = None  # a search by description: what was understood and ignored
    notes: list[str] = field(default_factory=list)  # the hub's and the edges' ("edge-1: ...") remarks

    @property
    def complete(self) -> bool:
        return set(self.edges_answered) | set(self.edges_failed) == set(self.edges_asked)


@dataclass
class _Job:
    edges: dict[str, str]  # edge id -> model fingerprint
    loop: asyncio.AbstractEventLoop
    finished: asyncio.Event
    max_hits: int
    hits: dict[str, list[SearchHitInput]] = field(default_factory=lambda: collections.defaultdict(list))
    batches: set[tuple[str, str]] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    errors: dict[str, str] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=lambda: collections.defaultdict(list))


class SearchJobs:
    """The search jobs this replica is running, and where edges' result batches go: `on_result` is the
    session manager's search-result handler (given to it when the hub is built)."""

    def __init__(self, store: HubStore, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._finished: collections.deque[str] = collections.deque(maxlen=1000)

    def open(self, job_id: str, job: _Job) -> None:
        with self._lock:
            self._jobs[job_id] = job

    def close(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)
            self._finished.append(job_id)

    def accept_stored(self, job: _Job, edge_id: str, msg: SearchResultInput) -> None:
        """A batch another replica kept in the store for a job of this one."""
        with self._lock:
            self._accept(job, edge_id, msg)

    def on_result(self, edge_id: str, msg: SearchResultInput) -> tuple[AckStatus, str]:
        """A SearchResult batch from an edge (the session's handler, on a worker thread)."""
        with self._lock:
            job = self._jobs.get(msg.job_id)
            if job is not None:
                return self._accept(job, edge_id, msg)
            finished_here = msg.job_id in self._finished
        if finished_here:
            return "ok", "the job had finished; results dropped"
        return self._keep_for_other_replica(edge_id, msg)

    def _keep_for_other_replica(self, edge_id: str, msg: SearchResultInput) -> tuple[AckStatus, str]:
        record = self.store.get_search_job(msg.job_id)
        if record is None:
            return "rejected", f"no search job {msg.job_id!r} on this hub"
        if edge_id not in record.edge_ids:
            return "rejected", f"search job {msg.job_id!r} was not sent to {edge_id!r}"
        if self._clock() > record.deadline_s:
            return "ok", "the job had finished; results dropped"
        fresh = self.store.add_search_result(msg.job_id, edge_id, msg.key, msg.payload, now=self._clock())
        return ("ok", "") if fresh else ("duplicate", "")

    @staticmethod
    def _accept(job: _Job, edge_id: str, msg: SearchResultInput) -> tuple[AckStatus, str]:
        """Take one batch into a job of this replica (caller holds the lock)."""
        if edge_id not in job.edges:
            return "rejected", f"search job {msg.job_id!r} was not sent to {edge_id!r}"
        if (edge_id, msg.key) in job.batches:  # keys ("<job>/<batch>") are unique per edge only
            return "duplicate", ""
        job.batches.add((edge_id, msg.key))
        room = job.max_hits - len(job.hits[edge_id])
        job.hits[edge_id].extend(msg.hits[: max(room, 0)])
        job.notes[edge_id].extend(n for n in msg.notes if n not in job.notes[edge_id])
        if msg.error:
            job.errors[edge_id] = msg.error
        if msg.done or edge_id in job.errors:
            job.done.add(edge_id)
        if job.done >= set(job.edges):
            job.loop.call_soon_threadsafe(job.finished.set)
        return "ok", ""


class SearchService:
    def __init__(self, store: HubStore, gallery: Gallery, crops: CropFiles, sessions: SessionManager, jobs: SearchJobs,
                 judge: PairJudge | None = None, *, max_query_images: int = 4,
                 same_above: float = DEFAULT_CONFIRM_P_SAME, stage1_weight: float = 0.2,
                 max_stored_sightings: int = 200, poll_s: float = 0.25, keep_jobs_s: float = 3600.0,
                 calibrations: Callable[[str, str], Calibration] = calibration_for,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.gallery, self.crops, self.sessions, self.judge = store, gallery, crops, sessions, judge
        self.jobs = jobs
        self.max_query_images, self.max_stored_sightings = max_query_images, max_stored_sightings
        self.poll_s, self.keep_jobs_s = poll_s, keep_jobs_s
        self.same_above = check_p_same("same_above", same_above)  # a hit is the same person at this P(same)
        self.stage1_weight = check_p_same("stage1_weight", stage1_weight)
        self._calibrations = functools.cache(calibrations)  # (fingerprint, score kind) -> Calibration
        self._clock = clock

    # ------------------------------------------------------------------ the query
    def _query_images(self, query: SearchQuery) -> list[np.ndarray]:
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

    def _send_jobs(self, job_id: str, query: SearchQuery, images: list[np.ndarray], deadline: float,
                   edges: dict[str, str]) -> list[str]:
        """(worker thread) Queue the job for each edge; the edges it was sent to."""
        vectors: dict[str, np.ndarray] = {}
        sent = []
        for edge_id, fingerprint in edges.items():
            if query.text is not None:
                payload = wire.search_job_payload(job_id, None, fingerprint, top_k=query.top_k,
                                                  camera_ids=query.camera_ids, deadline_s=deadline,
                                                  time_range=query.time_range, text=query.text)
                self.store.enqueue_outgoing(edge_id, "search_job", [payload], now=self._clock())
                sent.append(edge_id)
                continue
            if fingerprint not in vectors:
                stored = (self.store.get_embeddings(query.identity_id, fingerprint)
                          if query.identity_id is not None else None)
                vectors[fingerprint] = stored if stored is not None else self.gallery.embedders.embed(fingerprint,
                                                                                                      images)
            payload = wire.search_job_payload(job_id, vectors[fingerprint], fingerprint, top_k=query.top_k,
                                              camera_ids=query.camera_ids, deadline_s=deadline,
                                              max_distance=query.max_distance, time_range=query.time_range)
            self.store.enqueue_outgoing(edge_id, "search_job", [payload], now=self._clock())
            sent.append(edge_id)
        return sent

    # ------------------------------------------------------------------ running a search
    def _edges(self, sites: Sequence[str] = ()) -> dict[str, str]:
        """Edge id -> model fingerprint of every edge connected to any replica (this one's sessions first),
        only those of `sites` when given."""
        edges = self.sessions.connected()
        records = self.store.list_edges()
        for record in records:
            if record.connected_hub_id is not None and record.model_fingerprint and record.edge_id not in edges:
                edges[record.edge_id] = record.model_fingerprint
        if sites:
            at_sites = {r.edge_id for r in records if r.site in set(sites)}
            edges = {e: f for e, f in edges.items() if e in at_sites}
        return edges

    async def search(self, query: SearchQuery, *, deadline_s: float = 10.0) -> SearchOutcome:
        """Ask every connected edge (on any replica); wait for them all or `deadline_s`."""
        images = await asyncio.to_thread(self._query_images, query) if query.text is None else []
        stored = await asyncio.to_thread(self._stored_sightings, query)
        job_id = f"job-{uuid.uuid4().hex[:16]}"
        edges = await asyncio.to_thread(self._edges, query.sites)
        job = _Job(dict(edges), asyncio.get_running_loop(), asyncio.Event(), max_hits=2 * query.top_k)
        self.jobs.open(job_id, job)
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
            self.jobs.close(job_id)
        with contextlib.suppress(StoreError):
            await asyncio.to_thread(self.store.delete_search_jobs, deadline_before_s=self._clock() - self.keep_jobs_s)
        notes: list[str] = []
        if query.text is not None:
            hits, notes = await asyncio.to_thread(self._rank_text, query.text, job)
        else:
            hits = await asyncio.to_thread(self._rank, images, job)
        notes += [f"{edge_id}: {note}" for edge_id in sorted(job.notes) for note in job.notes[edge_id]]
        answered = sorted(job.done - set(job.errors))
        partial = sorted(e for e in job.hits if e not in job.done)
        silent = sorted(set(job.edges) - job.done - set(job.hits))
        return SearchOutcome(job_id, hits, sorted(edges), answered, partial, dict(job.errors), silent, stored,
                             query.text, notes)

    async def _gather(self, job_id: str, job: _Job, deadline_s: float) -> None:
        """Until every edge is done or the deadline: this replica's batches arrive through `on_result`,
        other replicas' through the store, polled every `poll_s`. A partial answer is an answer."""
        end = asyncio.get_running_loop().time() + deadline_s
        after_id = 0
        while not job.finished.is_set():
            left = end - asyncio.get_running_loop().time()
            if left <= 0:
                break
            await wait_event(job.finished, min(left, self.poll_s))
            try:
                stored = await asyncio.to_thread(self.store.search_results_after, job_id, after_id)
            except StoreError as exc:
                log.warning("search %s: reading other replicas' results failed: %s", job_id, exc)
                continue
            for row in stored:
                after_id = row.result_id
                try:
                    msg = wire.decode_search_result(row.payload, check=False)
                except Exception:  # written by a replica from a message it had parsed: should not happen
                    log.warning("search %s: unreadable stored result %d dropped", job_id, row.result_id)
                    continue
                self.jobs.accept_stored(job, row.edge_id, msg)

    def _rank_text(self, text: TextQuery, job: _Job) -> tuple[list[SearchHit], list[str]]:
        """(worker thread) Text hits ranked by the fused raw score (`cloud.text_search`); the hub's notes."""
        entries = [(edge_id, hit) for edge_id, hits in job.hits.items() for hit in hits]
        text_scores = [finite_or_none(hit.text_score) for _, hit in entries]
        judged = judge_descriptions(self.judge, text, [hit.jpeg for _, hit in entries], text_scores,
                                    self.stage1_weight)
        ranked = [SearchHit(edge_id, hit.camera_id, hit.tracklet_id, hit.start_s, hit.end_s, None, None, None,
                            hit.jpeg, None, s1, s2, fused, hit.attributes, matched_view(text, hit.attributes))
                  for (edge_id, hit), s1, s2, fused in zip(entries, text_scores, judged.judge_scores, judged.scores,
                                                           strict=True)]
        ranked.sort(key=lambda h: (-(h.score if h.score is not None else -1.0), h.edge_id, h.tracklet_id))
        return ranked, judged.notes

    def _p_same(self, fingerprint: str, score: str, values: Sequence[float]) -> list[float]:
        return self._calibrations(fingerprint, score).p_same(np.asarray(values, np.float64)).tolist()

    def _rank(self, images: list[np.ndarray], job: _Job) -> list[SearchHit]:
        entries = []
        for edge_id, hits in job.hits.items():
            for hit in hits:
                image = codec.jpeg_to_image(hit.jpeg) if self.judge is not None else None  # for the judge only
                entries.append((edge_id, hit, image))
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
            pairs = [(q, e[2]) for e in entries for q in images]
            mu = np.asarray(self.judge.score_pairs(pairs), np.float64).reshape(len(entries), len(images)).min(axis=1)
            judge_fingerprint = str(getattr(self.judge, "fingerprint", "") or getattr(self.judge, "name", "judge"))
            stage2 = self._p_same(judge_fingerprint, "judge_mu", mu.tolist())
        ranked = []
        for (edge_id, hit, _), p1, p2 in zip(entries, stage1, stage2, strict=True):
            s1 = None if math.isnan(p1) else p1
            s2 = None if math.isnan(p2) else p2
            fused = fuse_p_same(s1, s2, self.stage1_weight)
            ranked.append(SearchHit(edge_id, hit.camera_id, hit.tracklet_id, hit.start_s, hit.end_s, fused, s1, s2,
                                    hit.jpeg,
                                    None if s2 is None or fused is None else fused >= self.same_above))
        ranked.sort(key=lambda h: (-(h.p_same if h.p_same is not None else -1.0), h.edge_id, h.tracklet_id))
        return ranked
