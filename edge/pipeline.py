"""The edge pipeline, one code path for live cameras and replay: frames in, short lists in the outbox.

Per frame (`EdgePipeline.process`): detection + tracking (`PersonTracker.update`, tracker state per
camera) → the camera's `TrackletBuilder` → tracklets it closes go to the `EmbedWorker`, which embeds,
stores, recalls and short-lists them on its own thread (see `edge.embed_worker`), so the frame loop
never waits for a model other than the detector.

    >>> with EdgePipeline("edge-1", ["lobby"], tracker=PersonTracker(), embedder=embedder,
    ...                   store=store, outbox=outbox, gallery=gallery) as pipeline:
    ...     pipeline.begin_stream("lobby", id_namespace="edge-1/lobby/2024-05-01T10:00")
    ...     for frame in VideoFileSource("lobby.mp4", "lobby"):
    ...         pipeline.process(frame)
    ...     pipeline.end_stream("lobby")

Streams: a camera's frames come in streams (a file, a connection to a camera). `begin_stream` starts a
fresh tracklet builder whose ids are namespaced by `id_namespace` and forgets the camera's tracks;
`end_stream` closes every open tracklet of the camera (end of file, or a dropped connection). Tracklet
ids hash (namespace, camera, track id, start time), so each stream whose clock restarts needs a
namespace of its own: replay passes one per recording; a frame of a camera with no open stream opens
one with a namespace unique to it, and a frame whose time goes back (a source that reconnected and
restarted its clock) ends the stream and begins the next with a derived namespace.

Determinism: the builder, the tracker and the embedder (one inference thread) depend only on their
input, so the same frames in the same order give the same tracklet ids, vectors and short lists, at
any pace; replay and live differ only in when `process` is called.

Threads: `process`, `begin_stream` and `end_stream` may be called from one thread per camera; one lock
serialises detection (a `PersonTracker` is not thread-safe), which costs nothing on a CPU the detector
already fills. The embedding worker runs at a lower priority (`embed_nice`), on the CPU time that
detection leaves idle; on the 2-core benchmark machine the whole pipeline keeps ~95-98 % of the
detector's frame rate (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from edge.embed_worker import (
    AttributeReader,
    CropEmbedder,
    EmbedWorker,
    Recaller,
    TextImageReader,
    TrackletResult,
    UplinkSettings,
    WorkerStats,
)
from edge.quality import CropQuality
from edge.settings import TrackletSettings as TrackletSettings  # re-exported: defined once, in edge.settings
from edge.shortlist import ShortListPolicy
from edge.sources.camera_health import FrameRateWindow
from edge.sources.frames import Frame
from edge.storage.store import TrackletStore
from edge.tracklets import ClosedTracklet, TrackletBuilder
from edge.uplink.outbox import Outbox
from models.errors import CrossviewError, InvalidInputError
from models.types import Detections

log = logging.getLogger(__name__)


class FrameTracker(Protocol):
    """`edge.detect_track.PersonTracker`, as far as the pipeline uses it."""

    def update(self, frame: Frame) -> Detections: ...

    def reset(self, camera_id: str | None = None) -> None: ...


@dataclass(frozen=True)
class FrameResult:
    """One processed frame: its tracked boxes and the tracklets it closed (handed to the worker)."""

    camera_id: str
    index: int
    detections: Detections
    closed: tuple[ClosedTracklet, ...]


@dataclass(frozen=True)
class CameraStats:
    camera_id: str
    frames: int
    detections: int
    tracklets_closed: int
    streams: int
    busy_s: float  # time in detection + tracking + tracklet building
    fps: float  # frames per second of wall time from the camera's first frame to its last
    recent_fps: float = 0.0  # frames per second over the last 10 s (0 once frames stop)
    streaming: bool = False  # a stream is open (frames may come); False before the first and after the last


@dataclass(frozen=True)
class PipelineStats:
    frames: int
    tracklets_closed: int
    worker: WorkerStats
    cameras: dict[str, CameraStats]

    @property
    def embedded(self) -> int:
        return self.worker.embedded

    @property
    def short_lists(self) -> int:
        return self.worker.short_lists


class PipelineClosedError(CrossviewError):
    """A frame or stream call on a pipeline that has been closed."""


class _Camera:
    def __init__(self, camera_id: str) -> None:
        self.camera_id = camera_id
        self.builder: TrackletBuilder | None = None
        self.namespace = ""  # of the current stream
        self.last_ts: float | None = None
        self.frames = 0
        self.detections = 0
        self.closed = 0
        self.streams = 0
        self.busy_s = 0.0
        self.first_wall: float | None = None
        self.last_wall = 0.0
        self.rate = FrameRateWindow()

    def stats(self) -> CameraStats:
        span = self.last_wall - self.first_wall if self.first_wall is not None else 0.0
        fps = (self.frames - 1) / span if self.frames > 1 and span > 0 else 0.0
        return CameraStats(self.camera_id, self.frames, self.detections, self.closed, self.streams,
                           self.busy_s, fps, self.rate.fps(), self.builder is not None)


class EdgePipeline:
    """Detect → track → tracklets per camera; embed → store → recall → short list on a worker thread.

    Args:
        edge_id: this edge's id, on every short list and the default tracklet-id namespace.
        cameras: camera ids registered in the store now (more can come with `begin_stream`).
        tracker: detector + tracker (a `PersonTracker`), state kept per camera.
        embedder: the stage-one Re-ID embedder (`create_embedder(...)`; build it with one
            inference thread for batch-independent vectors, see `edge.embed_worker`).
        store, outbox: where tracklets and short lists go.
        gallery: what closed tracklets are recalled against (`Recaller`).
        policy: top-K / distance threshold (the gallery's watchlist thresholds are added to it).
        tracklets: builder settings; `quality`: the crop scorer (default `CropQuality()`).
        embed_batch_size, embed_max_wait_s: crops per embedding call, and how long the worker waits
            to fill a batch after the first closed tracklet arrives.
        embed_queue_size: closed tracklets waiting before `process` blocks (back-pressure, no drops).
        embed_nice: how much the worker thread lowers its priority (Linux; None: not at all).
        uplink: which crops go up in a short list, and how small.
        clock: `created_at` of short lists; None: the tracklet's end time (deterministic, as the hub
            link's own short lists).
        on_result: called on the worker thread with each tracklet's `TrackletResult`.
        send_unmatched: also send tracklets no gallery identity passed the policy for, as short lists
            without candidates (a hub allowing new identities gives them automatic identities).
        attributes: the attribute recognizer the worker runs on each tracklet's crops (issue 15); None: off.
    """

    def __init__(self, edge_id: str, cameras: Sequence[str] = (), *, tracker: FrameTracker,
                 embedder: CropEmbedder, store: TrackletStore, outbox: Outbox, gallery: Recaller,
                 policy: ShortListPolicy | None = None, tracklets: TrackletSettings | None = None,
                 quality: CropQuality | None = None, embed_batch_size: int = 32, embed_max_wait_s: float = 0.05,
                 embed_queue_size: int = 256, embed_nice: int | None = 10, uplink: UplinkSettings | None = None,
                 clock: Callable[[], float] | None = None,
                 on_result: Callable[[TrackletResult], None] | None = None, send_unmatched: bool = False,
                 attributes: AttributeReader | None = None, text_image: TextImageReader | None = None) -> None:
        if not isinstance(edge_id, str) or not edge_id.strip():
            raise InvalidInputError(f"edge_id: expected a non-empty string, got {edge_id!r}")
        self.edge_id = edge_id
        self.tracker = tracker
        self.store = store
        self.outbox = outbox
        self.gallery = gallery
        self.tracklet_settings = tracklets if tracklets is not None else TrackletSettings()
        self.quality = quality if quality is not None else CropQuality()
        TrackletBuilder("check", **vars(self.tracklet_settings))  # validate the settings now, not per camera
        self._lock = threading.RLock()
        self._cameras: dict[str, _Camera] = {}
        self._closed = False
        for camera_id in cameras:
            self.add_camera(camera_id)
        self.worker = EmbedWorker(
            edge_id=edge_id, embedder=embedder, store=store, outbox=outbox, gallery=gallery, policy=policy,
            batch_size=embed_batch_size, max_wait_s=embed_max_wait_s, queue_size=embed_queue_size,
            nice=embed_nice, uplink=uplink, clock=clock, on_result=on_result, send_unmatched=send_unmatched,
            attributes=attributes, text_image=text_image,
        )

    def __repr__(self) -> str:
        return f"EdgePipeline({self.edge_id!r}, cameras={sorted(self._cameras)})"

    @property
    def cameras(self) -> list[str]:
        with self._lock:
            return sorted(self._cameras)

    def add_camera(self, camera_id: str, *, name: str | None = None, source: str = "") -> None:
        """Register a camera here and in the store (harmless when it already is)."""
        if not isinstance(camera_id, str) or not camera_id.strip():
            raise InvalidInputError(f"camera_id: expected a non-empty string, got {camera_id!r}")
        with self._lock:
            self._check_open()
            if camera_id not in self._cameras or source or name:
                self.store.add_camera(camera_id, name=name, source=source)
            self._cameras.setdefault(camera_id, _Camera(camera_id))

    def begin_stream(self, camera_id: str, *, id_namespace: str | None = None, source: str = "") -> None:
        """Start a new stream of `camera_id`: its open tracklets are closed first, its tracks forgotten.

        `id_namespace` goes into every tracklet id of the stream; give one for reproducible ids (replay
        does). None makes one unique to this stream (edge, camera and the wall-clock start), as a live
        connection needs: its timestamps and track ids restart with every connection.
        """
        with self._lock:
            self.add_camera(camera_id, source=source)
            camera = self._cameras[camera_id]
            if camera.builder is not None:
                self.end_stream(camera_id)
            self.tracker.reset(camera_id)
            namespace = f"{self.edge_id}/{camera_id}/{time.time():.6f}" if id_namespace is None else id_namespace
            camera.builder = TrackletBuilder(camera_id, scorer=self.quality, id_namespace=namespace,
                                             **vars(self.tracklet_settings))
            camera.namespace = namespace
            camera.last_ts = None
            camera.streams += 1

    def end_stream(self, camera_id: str, *, flush: bool = True) -> int:
        """End the camera's stream: close its open tracklets (sent to the worker; with `flush=False`
        dropped, e.g. on an abort, so a later complete run is not pre-empted by truncated tracklets)
        and forget its tracks. Returns how many tracklets were closed."""
        with self._lock:
            camera = self._cameras.get(camera_id)
            if camera is None or camera.builder is None:
                return 0
            closed = camera.builder.flush() if flush else []
            camera.builder = None
            self.tracker.reset(camera_id)
            self._submit(camera, closed)
            return len(closed)

    def process(self, frame: Frame) -> FrameResult:
        """Detect, track and build tracklets on one frame; closed tracklets go to the embedding worker."""
        if not isinstance(frame, Frame):
            raise InvalidInputError(f"frame: expected an edge.sources.frames.Frame, got {type(frame).__name__}")
        with self._lock:
            self._check_open()
            camera = self._cameras.get(frame.camera_id)
            if camera is None or camera.builder is None:
                self.begin_stream(frame.camera_id)
                camera = self._cameras[frame.camera_id]
            elif camera.last_ts is not None and frame.timestamp_s < camera.last_ts:
                # a source that reconnected restarts its clock (and the tracker its ids): a new stream
                log.info("camera %r: time went back from %.3f s to %.3f s; starting a new stream", frame.camera_id,
                         camera.last_ts, frame.timestamp_s)
                self.begin_stream(frame.camera_id, id_namespace=f"{camera.namespace}+{camera.streams}")
            assert camera.builder is not None
            camera.last_ts = frame.timestamp_s
            start = time.perf_counter()
            detections = self.tracker.update(frame)
            closed = camera.builder.update(frame.timestamp_s, frame.image, detections)
            now = time.perf_counter()
            camera.busy_s += now - start
            camera.frames += 1
            camera.rate.tick()
            camera.detections += len(detections)
            if camera.first_wall is None:
                camera.first_wall = start
            camera.last_wall = now
            self._submit(camera, closed)
            return FrameResult(frame.camera_id, frame.index, detections, tuple(closed))

    def _submit(self, camera: _Camera, closed: list[ClosedTracklet]) -> None:
        camera.closed += len(closed)
        for tracklet in closed:
            self.worker.submit(tracklet)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every closed tracklet so far is stored and short-listed; False on timeout."""
        return self.worker.drain(timeout)

    @property
    def stats(self) -> PipelineStats:
        with self._lock:
            cameras = {cid: cam.stats() for cid, cam in sorted(self._cameras.items())}
        return PipelineStats(
            frames=sum(c.frames for c in cameras.values()),
            tracklets_closed=sum(c.tracklets_closed for c in cameras.values()),
            worker=self.worker.stats,
            cameras=cameras,
        )

    def close(self, *, flush: bool = True, timeout: float | None = None) -> None:
        """End every stream (closing open tracklets unless `flush=False`), finish the worker's queue and stop
        it. The store and outbox stay open: they belong to the caller."""
        with self._lock:
            if self._closed:
                return
            for camera_id in list(self._cameras):
                self.end_stream(camera_id, flush=flush)
            self._closed = True
        if not self.worker.close(timeout):
            log.warning("edge pipeline %s: the embedding worker did not finish within %s s", self.edge_id, timeout)

    def _check_open(self) -> None:
        if self._closed:
            raise PipelineClosedError(f"edge pipeline {self.edge_id!r} is closed")

    def __enter__(self) -> EdgePipeline:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # after an error, open tracklets are truncated: keep them out so a re-run closes them whole
        self.close(flush=exc_type is None)
