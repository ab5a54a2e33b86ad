"""One edge process: cameras (live or recorded) through one `EdgePipeline`, and the link to the hub.

    >>> with EdgeNode("site-a/edge", "edge-1", ["gate", "lobby"], tracker=tracker, embedder=embedder,
    ...               hub=HubLinkSettings("hub.example:7443", token)) as node, node.stop_on_signals():
    ...     node.start()
    ...     node.run_cameras([CameraSpec("gate", "rtsp://10.0.0.5/live"), CameraSpec("lobby", "lobby.mp4")])

The work folder holds everything the node keeps: ``edge.db`` + ``edge.db.crops/`` (the
`TrackletStore`), ``outbox.db`` (short lists waiting for the hub, `Outbox`), ``outbox.link.db`` (the
link's resume state) and ``gallery.db`` (the gallery synced from the hub, `EdgeGallery`). The pipeline
and the `HubLink` share them: the pipeline's worker puts short lists in the outbox and wakes the link,
the link drains it, applies gallery deltas to the gallery the pipeline recalls against, and answers
search jobs from the store. Without a hub target the node only fills the outbox; a later run with a
hub sends what is there.

Heartbeats carry each camera's frame rate over the last 10 s (from the pipeline's stats), its state
(running, no frames, reconnecting, finished, ...) with when a gap began, and dropped frames (from the
camera runner), and the link adds the outbox depth. A camera that changes state triggers a heartbeat
at once, so the hub hears of a gap within a second or two.

Serving: once replayed files (or every camera) have ended, `serve()` keeps the hub link up and
answers search jobs from the store until `request_stop()`, so footage that has been played stays
searchable from the hub.

Shutdown: `request_stop()` (what SIGINT/SIGTERM do under `stop_on_signals`) ends live cameras; the
node's `close()` then closes their open tracklets, lets the embedding worker finish, optionally waits
for the hub to acknowledge the outbox, and stops the link. A replay is interrupted instead (its open
tracklets are dropped, not stored truncated, so a re-run resumes it whole; see `edge.replay`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from edge.embed_worker import CropEmbedder, Recaller, TrackletResult
from edge.gallery import EdgeGallery
from edge.pipeline import EdgePipeline, FrameTracker, PipelineStats
from edge.replay import ReplayReport, replay
from edge.settings import RetentionPolicy as RetentionPolicy  # re-exported: defined once, in edge.settings
from edge.sources.camera_health import NO_FRAMES_AFTER_S
from edge.sources.cameras import CameraRunner, CameraSpec, CameraStatus, open_source
from edge.sources.files import Source, without_camera
from edge.storage.store import TrackletStore
from edge.uplink.hub_link import CameraLoad, HubLink, LinkStats
from edge.uplink.outbox import Outbox
from edge.uplink.settings import HubLinkSettings
from models.errors import CrossviewError, InvalidInputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeStats:
    pipeline: PipelineStats
    link: LinkStats | None  # None: no hub
    outbox_depth: int
    cameras: dict[str, CameraStatus]  # of the live run, if any


class EdgeNode:
    """The edge's pipeline, store, outbox, gallery and hub link in one work folder; see the module docstring.

    Args:
        workdir: the work folder (created if missing).
        edge_id: this edge's id (short lists, Hello, tracklet-id namespaces).
        cameras: the camera ids announced to the hub and registered in the store.
        tracker, embedder: the detector + tracker and the stage-one Re-ID embedder.
        gallery: what closed tracklets are recalled against; None: the synced gallery in `workdir`.
        hub: how to reach the hub (`HubLinkSettings`: target, token, TLS, blur_faces, timings); None: no link.
        on_result: called on the worker thread with each closed tracklet's `TrackletResult`.
        **pipeline_options: more `EdgePipeline` keyword arguments (policy, tracklets, uplink, send_unmatched,
            attributes (an `AttributeRecognizer`: tracklets searchable by description), text_image (a
            `TextImageEncoder`: its image vectors stored and its text tower used by text jobs), ...).
    """

    def __init__(self, workdir: str | Path, edge_id: str, cameras: Sequence[str], *, tracker: FrameTracker,
                 embedder: CropEmbedder, gallery: Recaller | None = None, hub: HubLinkSettings | None = None,
                 on_result: Callable[[TrackletResult], None] | None = None,
                 retention: RetentionPolicy | None = None, **pipeline_options: Any) -> None:
        dim = getattr(embedder, "dim", None)
        if not isinstance(dim, int):
            raise InvalidInputError(f"embedder: expected one with an integer `dim`, got {type(embedder).__name__}")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.edge_id = edge_id
        self._on_result = on_result
        self._stop = threading.Event()
        self._runner: CameraRunner | None = None
        self._replaying = False
        self._serving = False
        self._closed = False
        self.outbox_depth_at_close: int | None = None  # unacknowledged outbox entries left by `close()`
        self._final_stats: NodeStats | None = None
        self.link: HubLink | None = None
        with contextlib.ExitStack() as opened:
            self.store = opened.enter_context(TrackletStore(self.workdir / "edge.db"))
            self.outbox = opened.enter_context(Outbox(self.workdir / "outbox.db"))
            self.gallery = opened.enter_context(EdgeGallery(self.workdir / "gallery.db", embedder.fingerprint, dim))
            self.pipeline = EdgePipeline(edge_id, cameras, tracker=tracker, embedder=embedder, store=self.store,
                                         outbox=self.outbox, gallery=gallery if gallery is not None else self.gallery,
                                         on_result=self._result, **pipeline_options)
            if hub is not None:
                uplink = pipeline_options.get("uplink")
                if uplink is not None and hub.blur_jpeg_quality is None:  # blurred crops: as the uplink encoded them
                    hub = dataclasses.replace(hub, blur_jpeg_quality=uplink.jpeg_quality)
                self.link = HubLink(hub, edge_id, list(cameras), embedder.fingerprint, self.gallery, self.outbox,
                                    self.store, camera_stats=self.camera_loads,
                                    text_image=pipeline_options.get("text_image"))
            opened.pop_all()
        self.retention = retention
        self._retention_thread: threading.Thread | None = None
        if retention is not None and retention.active:
            self._retention_thread = threading.Thread(target=self._retention_loop, name="edge-retention",
                                                      daemon=True)
            self._retention_thread.start()

    def apply_retention(self) -> None:
        """One pass of the retention policy (age counted from when a tracklet was written: replayed footage
        has stream times from the file's start)."""
        if self.retention is None or not self.retention.active:
            return
        report = self.store.apply_retention(self.retention.max_age_s, self.retention.max_total_bytes,
                                            age_by="stored")
        if report.tracklets_removed:
            log.info("retention removed %d tracklets (%d bytes)", report.tracklets_removed, report.bytes_freed)
        if report.over_budget:
            log.warning("retention: open tracklets alone exceed max_total_bytes (%d bytes kept)",
                        report.bytes_remaining)

    def _retention_loop(self) -> None:
        assert self.retention is not None
        while True:
            try:
                self.apply_retention()
            except Exception:
                log.exception("retention pass failed")
            if self._stop.wait(self.retention.every_s):
                return

    def __repr__(self) -> str:
        hub = self.link.target if self.link is not None else None
        return f"EdgeNode({self.edge_id!r}, workdir={str(self.workdir)!r}, hub={hub!r})"

    # -- running

    def start(self) -> None:
        """Start the hub link (nothing to start without a hub)."""
        if self.link is not None and not self.link.running:
            self.link.start()

    def wait_connected(self, timeout: float | None = None) -> bool:
        """True once the link has a session with the hub; False on timeout or without a hub."""
        return self.link is not None and self.link.wait_connected(timeout)

    def wait_gallery(self, timeout: float) -> bool:
        """Wait up to `timeout` s for a non-empty synced gallery (e.g. the hub's first delta); True if there is one."""
        deadline = time.monotonic() + timeout
        while self.gallery.size == 0:
            if time.monotonic() >= deadline or self._stop.is_set():
                return False
            time.sleep(0.05)
        return True

    def replay(self, files: Sequence[str | Path], cameras: Sequence[str] | None = None, **options: Any
               ) -> ReplayReport:
        """Play recorded `files` through the pipeline (`edge.replay.replay` options); returns once drained."""
        self._replaying = True
        try:
            return replay(files, cameras, pipeline=self.pipeline, **options)
        finally:
            self._replaying = False

    def run_cameras(self, cameras: Sequence[CameraSpec | Source], *, queue_size: int = 32,
                    opener: Callable[[CameraSpec], Source] = open_source,
                    no_frames_after_s: float = NO_FRAMES_AFTER_S) -> dict[str, CameraStatus]:
        """Run `cameras` until every one has ended or failed, or `request_stop()`; returns their status.

        A camera that fails is logged and reported; the others keep running. A frame the pipeline
        refuses is logged and skipped. A camera without frames for `no_frames_after_s` (or a few of
        its frame intervals, if longer) is reported as "no_frames".
        """
        runner = CameraRunner(cameras, queue_size=queue_size, opener=opener, no_frames_after_s=no_frames_after_s,
                              on_change=lambda _status: self.link.heartbeat_soon() if self.link else None)
        for camera_id in runner.camera_ids:
            self.pipeline.add_camera(camera_id)
        self._runner = runner
        try:
            if self._stop.is_set():
                return runner.status()
            for frame in runner:
                if self._stop.is_set():
                    break
                try:
                    self.pipeline.process(frame)
                except CrossviewError as exc:
                    log.error("camera %r: frame %d skipped: %s", frame.camera_id, frame.index,
                              without_camera(frame.camera_id, str(exc)))
        finally:
            runner.stop()
        return runner.status()

    def request_stop(self) -> None:
        """End live cameras soon (safe from a signal handler or any thread); `close()` does the rest."""
        self._stop.set()
        runner = self._runner
        if runner is not None:  # stop() joins camera threads: not on the caller's (maybe the main) thread
            threading.Thread(target=runner.stop, name="edge-node-stop", daemon=True).start()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def serve(self, notice: str | None = None, *, poll_s: float = 0.5) -> bool:
        """Keep the hub link up and answer search jobs from the store until `request_stop()` (SIGINT/SIGTERM
        under `stop_on_signals`); for after the files or cameras have ended. `notice` is logged (info) as
        serving begins. Returns False at once without a hub (nobody could ask), or when the link stops
        for good (the hub refused this edge); True when stopped."""
        if self.link is None or self._stop.is_set():
            return self.link is not None
        if notice:
            log.info("%s", notice)
        self.link.heartbeat_soon()  # the hub sees the cameras' final states now, not at the next interval
        self._serving = True
        try:
            while not self._stop.wait(poll_s):
                if self.link.error is not None or not self.link.running:
                    return False
            return True
        finally:
            self._serving = False

    @contextlib.contextmanager
    def stop_on_signals(self, signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
        """While inside: the first SIGINT/SIGTERM stops the node cleanly (a replay is interrupted with
        KeyboardInterrupt); a second one interrupts whatever is running. Main thread only."""
        def handler(signum: int, _frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            if self._stop.is_set() or self._replaying:
                log.warning("%s: interrupting", name)
                self._stop.set()
                raise KeyboardInterrupt(name)
            log.warning("%s: %s", name, "stopping" if self._serving
                        else "stopping the cameras; finishing the work in progress")
            self.request_stop()

        previous = {s: signal.signal(s, handler) for s in signals}
        try:
            yield
        finally:
            for s, old in previous.items():
                signal.signal(s, old)

    def _result(self, result: TrackletResult) -> None:
        if result.short_list_key is not None and self.link is not None:
            self.link.notify()
        if self._on_result is not None:
            self._on_result(result)

    # -- numbers

    def camera_loads(self) -> list[CameraLoad]:
        """Per camera, for heartbeats: frames processed per second over the last 10 s (pipeline stats), and
        state, gap start and frames dropped (from the camera runner of a live run; a replay's cameras are
        running while their stream is open, finished after)."""
        status = self._runner.status() if self._runner is not None else {}
        loads = []
        for cid, cam in self.pipeline.stats.cameras.items():
            st = status.get(cid)
            if st is not None:
                loads.append(CameraLoad(cid, cam.recent_fps, dropped_frames=st.dropped, state=st.state,
                                        gap_since=st.gap_since))
            else:
                state = "running" if cam.streaming else "finished" if cam.frames else "starting"
                loads.append(CameraLoad(cid, cam.recent_fps, state=state))
        return loads

    def stats(self) -> NodeStats:
        """Pipeline, link and camera numbers now (after `close()`: as they were when it closed)."""
        if self._final_stats is not None:
            return self._final_stats
        return NodeStats(self.pipeline.stats, self.link.stats() if self.link is not None else None,
                         self.outbox.depth(), self._runner.status() if self._runner is not None else {})

    def wait_outbox_drained(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the hub to acknowledge every outbox entry; False if some remain (or no
        hub, or the link stopped for good)."""
        if self.link is None:
            return self.outbox.depth() == 0
        deadline = time.monotonic() + timeout
        while self.outbox.depth() > 0:
            if time.monotonic() >= deadline or self.link.error is not None or not self.link.running:
                return False
            time.sleep(0.05)
        return True

    # -- shutdown

    def close(self, *, flush: bool = True, drain_timeout_s: float = 0.0) -> bool:
        """Close the pipeline (open tracklets closed, unless `flush=False`; the worker's queue finished), wait
        up to `drain_timeout_s` for the hub to acknowledge the outbox, stop the link, close the files.
        Returns whether the outbox was empty at the end."""
        if self._closed:
            return self.outbox_depth_at_close == 0
        self._stop.set()
        drained = False
        try:
            self.pipeline.close(flush=flush)
            drained = self.wait_outbox_drained(drain_timeout_s) if drain_timeout_s > 0 else self.outbox.depth() == 0
        finally:
            self._final_stats = self.stats()
            self.outbox_depth_at_close = self._final_stats.outbox_depth
            if self.link is not None:
                self.link.stop()
            if self._retention_thread is not None:
                self._retention_thread.join()
            for part in (self.gallery, self.outbox, self.store):
                part.close()
            self._closed = True
        return drained

    def __enter__(self) -> EdgeNode:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # after an error, open tracklets are truncated: keep them out so a re-run closes them whole
        self.close(flush=exc_type is None)
