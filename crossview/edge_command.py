"""`crossview edge replay FILE... [--camera NAME]` and `crossview edge run --config edge.yaml`.

Configuration (`ReplayConfig`, `EdgeConfig`: YAML file + `key=value` overrides) is read here and
nowhere else. The configs hold the library's own settings objects (`edge.settings`: ``tracklets.*``,
``uplink.*``, ``retention.*``), so each setting is defined and checked once. Both share
`PipelineConfig` (models, tracklets, recall, uplink, retention) and `HubConnectionConfig`
(``hub.target=HOST:PORT hub.token=...``; TLS files, face blur, timeouts; it becomes the link's
`HubLinkSettings`); `EdgeConfig` adds the cameras::

    edge_id: edge-1
    cameras:
      - {camera_id: gate, uri: "rtsp://10.0.0.5/live", target_fps: 10}
      - {camera_id: lobby, uri: recordings/lobby.mp4, stride: 2}
    hub: {target: "hub.example:7443", root_certificates: ca.pem}   # token: $CROSSVIEW_EDGE_TOKEN

Both run an `edge.node.EdgeNode`. Everything it writes lives in the work folder (default
``./crossview-edge/``): ``edge.db`` + ``edge.db.crops/`` (the tracklet store), ``outbox.db`` (short
lists waiting for the hub) and ``gallery.db`` (the gallery synced from the hub, `EdgeGallery`).
Running the same replay again resumes it: see `edge.replay`.

Serving (``serve_after_replay``; ``--serve``/``--no-serve`` on ``edge replay``, where it is off by
default; on by default for ``edge run``): once the files (or every camera) have ended, the edge keeps
its hub link up and answers search jobs from its store until SIGINT/SIGTERM, so the footage can be
searched from the hub afterwards. A replay prints its summary when the files end, then
``finished the files; serving searches ...``.

Logging goes to stderr at ``log_level`` (default INFO): one line per event, e.g. ``connected to hub
HOST:PORT, gallery v12 (6 identities)`` once the link is up and the gallery synced.

Gallery: the synced one in the work folder, or with ``gallery_dir=FOLDER`` an in-memory gallery built
from a folder of identities — one sub-folder per identity id holding its crops (.jpg/.png) — for
searching footage offline for known people.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from edge.settings import AttributeSettings, RetentionPolicy, TextImageSettings, TrackletSettings, UplinkSettings
from edge.uplink.settings import check_tls_pair
from models.errors import CrossviewError
from models.scores import DEFAULT_RECALL_P_SAME, check_p_same

log = logging.getLogger(__name__)

DEFAULT_WORKDIR = Path("crossview-edge")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
TOKEN_ENV = "CROSSVIEW_EDGE_TOKEN"
SERVING_NOTICE = "finished the files; serving searches"  # the line a serving replay prints when its files end


@dataclass
class PipelineConfig:
    """The settings live and replay share: work folder, models, tracklets, recall and uplink."""

    workdir: str = str(DEFAULT_WORKDIR)
    edge_id: str = "edge"
    # detection and tracking
    detector: str = "detect/yolov8n-int8-openvino"
    tracker: Literal["bytetrack", "botsort"] = "bytetrack"
    conf: float = 0.25
    imgsz: int = 640
    # tracklet building: tracklets.best_k=, tracklets.close_after_s=, tracklets.min_frames=, tracklets.min_quality=
    tracklets: TrackletSettings = field(default_factory=TrackletSettings)
    # embedding
    embedder: str = "reid/intel-0288"
    embed_runtime: str | None = None
    embed_threads: int = 1  # one thread: vectors independent of batching, no fight with the detector
    embed_batch_size: int = 32
    # recall and short lists
    gallery_dir: str | None = None
    top_k: int = 5
    # the stage-1 P(same) (0..1, calibrated: see README "Scores") a candidate needs to go up; low, for recall
    min_p_same: float = DEFAULT_RECALL_P_SAME
    # the edge model's P(same) calibration file (default: the zoo's, fitted on CUHK03 train; refit with
    # `crossview calibrate` on a site's own labels)
    calibration: str | None = None
    # also send tracklets nobody in the gallery matched (no candidates): a hub allowing new identities
    # gives each an automatic identity and a sighting, which an operator can then name (enrol from sighting)
    send_unmatched: bool = False
    # what of a tracklet goes up: uplink.crops=, uplink.max_height=, uplink.jpeg_quality=
    uplink: UplinkSettings = field(default_factory=UplinkSettings)
    # how long the store keeps tracklets (none: forever): retention.max_age_s=, .max_total_bytes=, .every_s=
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    # person attributes for search by description: attributes.enabled=, attributes.model=, attributes.batch_size=
    attributes: AttributeSettings = field(default_factory=AttributeSettings)
    # a registered text-image model for search by description: text_image.model=NAME, .weight=, .crops=
    text_image: TextImageSettings = field(default_factory=TextImageSettings)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"  # DEBUG also shows FFmpeg's and OpenCV's own lines

    def __post_init__(self) -> None:
        for name in ("imgsz", "embed_threads", "embed_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.top_k < 0:
            raise ValueError(f"top_k: expected >= 0, got {self.top_k}")
        check_p_same("min_p_same", self.min_p_same)


@dataclass
class HubConnectionConfig:
    """The hub this edge dials; no `target`: no hub (short lists wait in the outbox). Becomes the link's
    `HubLinkSettings` (which checks the TLS files go in pairs) once the token is known."""

    target: str | None = None  # host:port (or several, comma-separated: see `addresses`)
    # hub replicas sharing one database: host1:port,host2:port (or a YAML list), tried in turn when one
    # fails; or one gRPC target (dns:///hub.example:7443) resolving to several. Given, it replaces `target`.
    addresses: str | list[str] | None = None
    token: str | None = None  # default: $CROSSVIEW_EDGE_TOKEN
    root_certificates: str | None = None  # PEM files; any of them turns TLS on
    certificate_chain: str | None = None  # with private_key: mutual TLS
    private_key: str | None = None
    blur_faces: bool = False
    heartbeat_s: float = 10.0
    connect_timeout_s: float = 30.0  # how long to wait for a first session before starting (then go on anyway)
    wait_gallery_s: float = 0.0  # before starting, wait up to this long for a non-empty gallery from the hub
    drain_timeout_s: float = 60.0  # at the end, how long to wait for the hub to acknowledge the outbox

    def __post_init__(self) -> None:
        for name in ("heartbeat_s", "connect_timeout_s", "wait_gallery_s", "drain_timeout_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"hub.{name}: expected >= 0, got {getattr(self, name)}")
        if self.heartbeat_s == 0:
            raise ValueError("hub.heartbeat_s: expected > 0, got 0")
        check_tls_pair(self.certificate_chain, self.private_key)  # refused as the config is read
        if self.addresses is not None:
            from edge.uplink.replicas import split_targets

            items = [self.addresses] if isinstance(self.addresses, str) else self.addresses
            self.target = ",".join(t for item in items for t in split_targets(item))
            split_targets(self.target)  # distinct, none empty


@dataclass
class ReplayConfig(PipelineConfig):
    """Settings of `crossview edge replay` (every key can be overridden with key=value)."""

    stride: int = 1
    realtime: bool = False
    speed: float = 1.0
    max_frames: int | None = None
    progress: bool = True
    recorded_at: str | None = None  # when the footage started: ISO 8601 (2026-11-25T09:30:00Z) or Unix seconds
    serve_after_replay: bool = False  # after the files: keep answering the hub's searches until SIGINT/SIGTERM
    hub: HubConnectionConfig = field(default_factory=HubConnectionConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        _unix_seconds(self.recorded_at)  # a malformed time is refused when the settings are loaded
        if self.stride < 1:
            raise ValueError(f"stride: expected >= 1, got {self.stride}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames: expected >= 1 or null, got {self.max_frames}")
        if self.speed <= 0:
            raise ValueError(f"speed: expected > 0, got {self.speed}")

    @property
    def recorded_at_s(self) -> float | None:
        """`recorded_at` as Unix seconds (an ISO time without a zone is UTC); None when unset."""
        return _unix_seconds(self.recorded_at)


def _unix_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"recorded_at: expected an ISO 8601 time (2026-11-25T09:30:00Z) or Unix seconds, "
                             f"got {value!r}") from None
        return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()
    if not (seconds >= 0 and seconds < 1e11):
        raise ValueError(f"recorded_at: expected Unix seconds >= 0, got {value!r}")
    return seconds


@dataclass
class CameraConfig:
    """One camera of `crossview edge run` (see `edge.sources.cameras.CameraSpec` for the URIs)."""

    camera_id: str = ""
    uri: str = ""
    stride: int = 1
    target_fps: float | None = None
    tracker: Literal["bytetrack", "botsort"] | None = None  # None: the edge's `tracker`

    def __post_init__(self) -> None:
        if not self.camera_id.strip() or not self.uri.strip():
            raise ValueError(f"camera: expected a camera_id and a uri, got {self.camera_id!r} and {self.uri!r}")


@dataclass
class EdgeConfig(PipelineConfig):
    """Settings of `crossview edge run`: the cameras, the hub and the pipeline."""

    cameras: list[CameraConfig] = field(default_factory=list)
    serve_after_replay: bool = True  # once every camera has ended (files): keep answering the hub's searches
    no_frames_after_s: float = 2.0  # a camera without a frame this long (or 4 frame intervals) is "no frames"
    hub: HubConnectionConfig = field(default_factory=HubConnectionConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.no_frames_after_s <= 0:
            raise ValueError(f"no_frames_after_s: expected > 0, got {self.no_frames_after_s}")
        ids = [c.camera_id for c in self.cameras]
        if len(set(ids)) != len(ids):
            raise ValueError(f"cameras: expected unique camera ids, got {ids}")


def build_gallery_from_folder(folder: Path, embedder: Any) -> Any:
    """An in-memory gallery from `folder/<identity id>/*.jpg`: each crop one gallery vector."""
    import cv2

    from edge.gallery import MemoryGallery

    folder = Path(folder)
    if not folder.is_dir():
        raise CrossviewError(f"gallery_dir: {folder} is not a folder")
    gallery = MemoryGallery(embedder.fingerprint, embedder.dim)
    for identity in sorted(p for p in folder.iterdir() if p.is_dir()):
        crops = [cv2.imread(str(f)) for f in sorted(identity.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
        crops = [c for c in crops if c is not None]
        if crops:
            gallery.add(identity.name, embedder.embed(crops))
    if not gallery.size:
        raise CrossviewError(f"gallery_dir: {folder} holds no identity folders with images")
    return gallery


def replay_command(files: Sequence[Path], cameras: Sequence[str] | None = None, *, config: Path | None = None,
                   overrides: Sequence[str] = (), workdir: Path | None = None, progress: bool | None = None,
                   serve: bool | None = None, out: TextIO | None = None) -> int:
    """Replay `files` (cameras: one name per file, or None for the file stems); print a summary.

    With ``hub.target`` the replay also runs the hub link: it waits (``hub.connect_timeout_s``) for a
    session, optionally (``hub.wait_gallery_s``) for a gallery, and at the end up to
    ``hub.drain_timeout_s`` for the hub to acknowledge every short list in the outbox. With `serve`
    (default: ``serve_after_replay``) it then answers the hub's searches until SIGINT/SIGTERM.

    Exit code: 0 all files played (and, with a hub, everything acknowledged), 1 some file failed (the
    others played) or short lists are still unacknowledged (they stay in the outbox for the next run),
    2 bad configuration or a setup error (models, store), 130 interrupted while replaying (SIGINT/SIGTERM
    while serving is a normal stop).
    """
    from crossview.config import load_config

    out = out or sys.stdout
    try:
        cfg = load_config(ReplayConfig, config, [*overrides, *([f"serve_after_replay={serve}"] if serve is not None
                                                               else [])])
        configure_logging(cfg.log_level)
        if cameras is not None and len(cameras) == 1 and len(files) > 1:
            cameras = list(cameras) * len(files)  # one --camera for several files: one camera, files in turn
        return _run_replay([Path(f) for f in files], list(cameras) if cameras else None, cfg,
                           Path(workdir) if workdir is not None else Path(cfg.workdir),
                           cfg.progress if progress is None else progress, out)
    except CrossviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same replay again to resume it", file=sys.stderr)
        return 130


def run_command(config: Path | None, overrides: Sequence[str] = (), *, out: TextIO | None = None) -> int:
    """`crossview edge run`: the configured cameras through the pipeline, with the hub link, until every
    camera has ended or SIGINT/SIGTERM. Exit code: 0 clean, 1 some camera failed or short lists are
    still unacknowledged at exit, 2 bad configuration or a setup error."""
    from crossview.config import ConfigError, load_config
    from edge.sources.cameras import CameraSpec
    from edge.sources.files import without_camera

    out = out or sys.stdout
    try:
        cfg = load_config(EdgeConfig, config, list(overrides))
        configure_logging(cfg.log_level)
        if not cfg.cameras:
            raise ConfigError("cameras: expected at least one camera ({camera_id: ..., uri: ...})")
        specs = [CameraSpec(c.camera_id, c.uri, stride=c.stride, target_fps=c.target_fps,
                            tracker=c.tracker or cfg.tracker) for c in cfg.cameras]
        camera_trackers = {c.camera_id: c.tracker for c in cfg.cameras if c.tracker}
        node = _open_node(cfg, Path(cfg.workdir), [s.camera_id for s in specs], camera_trackers)
        with node.stop_on_signals():
            try:
                _connect(node, cfg.hub)
                status = node.run_cameras(specs, no_frames_after_s=cfg.no_frames_after_s)
                if cfg.serve_after_replay and node.link is not None and not node.stopping:
                    ended = ", ".join(f"{n} {state}" for state, n in
                                      sorted(Counter(st.state for st in status.values()).items()))
                    node.serve(f"every camera has ended ({ended}); serving searches from the store until "
                               "SIGINT/SIGTERM")
            except BaseException:
                node.close(flush=False)
                raise
            drained = node.close(drain_timeout_s=cfg.hub.drain_timeout_s if node.link is not None else 0.0)
    except CrossviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    failed = False
    for camera_id, st in status.items():
        failed |= st.state == "failed"
        error = f"  {without_camera(camera_id, st.last_error)}" if st.last_error else ""
        print(f"{camera_id:<16} {st.state:<9} {st.frames} frames, {st.dropped} dropped, {st.gaps} gaps{error}",
              file=out)
    _print_totals(node, node.stats(), node.outbox_depth_at_close, out)
    return 1 if failed or (node.link is not None and not drained) else 0


def configure_logging(level: str) -> None:
    """One line per event on stderr (the root logger's first configuration wins: a host program's stays)."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _runtime_kwargs(cfg: ReplayConfig | EdgeConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"batch_size": cfg.embed_batch_size}
    if (cfg.embed_runtime or "openvino") in ("openvino", "onnxruntime"):
        kwargs["num_threads"] = cfg.embed_threads
    return kwargs


def _open_node(cfg: ReplayConfig | EdgeConfig, workdir: Path, camera_ids: list[str],
               camera_trackers: dict[str, str] | None = None) -> Any:
    """The `EdgeNode` for `cfg`: everything that can be refused is checked before the models load."""
    from edge.detect_track import PersonTracker
    from edge.node import EdgeNode
    from edge.shortlist import ShortListPolicy
    from models.calibration import calibration_for
    from models.embed import create_embedder
    from models.zoo import get_spec

    hub = cfg.hub
    hub_options = _hub_options(hub)
    # a file given here is checked against the model before it loads; without one the embedding worker
    # takes the zoo's calibration for the model it really runs
    spec = get_spec(cfg.embedder)
    if spec.task != "reid":
        raise CrossviewError(f"embedder: expected a Re-ID model, got {cfg.embedder!r} ({spec.task}); "
                             "a text-image model is named with text_image.model=")
    calibration = (calibration_for(spec.fingerprint, "cosine_distance", Path(cfg.calibration).expanduser())
                   if cfg.calibration else None)
    attributes = attribute_recognizer(cfg.attributes)
    if cfg.text_image.model and attributes is None:  # said before the text-image model loads
        raise CrossviewError("text_image.model: text search ranks tracklets by their attributes first, and this "
                             "edge reads none (attributes.enabled=false, or the attribute model is missing)")
    text_image = text_image_encoder(cfg.text_image)
    policy = ShortListPolicy(cfg.top_k, cfg.min_p_same, calibration=calibration)
    embedder = create_embedder(cfg.embedder, cfg.embed_runtime, **_runtime_kwargs(cfg))
    tracker = PersonTracker(cfg.detector, tracker=cfg.tracker, conf=cfg.conf, imgsz=cfg.imgsz,
                            camera_trackers=camera_trackers)
    gallery = build_gallery_from_folder(Path(cfg.gallery_dir), embedder) if cfg.gallery_dir else None
    node = EdgeNode(workdir, cfg.edge_id, camera_ids, tracker=tracker, embedder=embedder, gallery=gallery,
                    policy=policy, tracklets=cfg.tracklets, embed_batch_size=cfg.embed_batch_size,
                    uplink=cfg.uplink, retention=cfg.retention, send_unmatched=cfg.send_unmatched,
                    attributes=attributes, text_image=text_image, **hub_options)
    # with a hub the gallery comes from it (the "connected to hub" line says how large it is)
    if gallery is None and node.link is None and node.gallery.size == 0 and not cfg.send_unmatched:
        log.info("no gallery (never synced with a hub): nobody will be short-listed; pass gallery_dir=FOLDER to "
                 "search for known people offline")
    return node


def attribute_recognizer(settings: AttributeSettings) -> Any:
    """The edge's `AttributeRecognizer`, or None (off, or its model cannot be found: said in the log)."""
    if not settings.enabled:
        log.info("attributes off (attributes.enabled=false): tracklets cannot be searched by description")
        return None
    from models.attributes.recognizer import AttributeRecognizer
    from models.errors import ModelNotFoundError

    try:
        return AttributeRecognizer(settings.model, device="CPU", batch_size=settings.batch_size)
    except ModelNotFoundError as exc:
        log.warning("attributes off: %s; tracklets cannot be searched by description", exc)
        return None


def text_image_encoder(settings: TextImageSettings) -> Any:
    """The edge's `TextImageEncoder`, or None when no text-image model is named."""
    if not settings.model:
        return None
    from models.attributes.text_image import TextImageEncoder

    encoder = TextImageEncoder(settings.model, weight=settings.weight, crops=settings.crops)
    log.info("text-image model %s: text jobs mix its cosine (weight %.2f) into the attribute score",
             encoder.fingerprint, encoder.weight)
    return encoder


def _hub_options(hub: HubConnectionConfig) -> dict[str, Any]:
    if not hub.target:
        return {}
    token = hub.token or os.environ.get(TOKEN_ENV)
    if not token:
        raise CrossviewError(f"hub.token: expected the edge's token (or ${TOKEN_ENV}) with hub.target={hub.target}")
    files = {name: getattr(hub, name) for name in ("root_certificates", "certificate_chain", "private_key")}
    for name, value in files.items():
        if value is not None and not Path(value).is_file():
            raise CrossviewError(f"hub.{name}: {value} is not a file")
    from edge.uplink.settings import HubLinkSettings

    tls = {name: Path(value) for name, value in files.items() if value is not None}
    return {"hub": HubLinkSettings(hub.target, token, blur_faces=hub.blur_faces, heartbeat_s=hub.heartbeat_s, **tls)}


def _connect(node: Any, hub: HubConnectionConfig) -> None:
    """Start the link; wait (bounded) for a session and, if asked, for a gallery. Never fatal but for a
    refusal (credentials, model): without a hub the work goes on and the outbox keeps the short lists."""
    if node.link is None:
        return
    node.start()
    if not node.wait_connected(hub.connect_timeout_s):
        log.warning("no session with the hub %s after %.0f s: going on; short lists wait in the outbox",
                    hub.target, hub.connect_timeout_s)
    if hub.wait_gallery_s > 0 and not node.wait_gallery(hub.wait_gallery_s):
        log.warning("no gallery from the hub after %.0f s: going on", hub.wait_gallery_s)


def _run_replay(files: list[Path], cameras: list[str] | None, cfg: ReplayConfig, workdir: Path,
                progress: bool, out: TextIO) -> int:
    from edge.replay import camera_ids_for

    camera_ids = camera_ids_for(files, cameras)
    node = _open_node(cfg, workdir, list(dict.fromkeys(camera_ids)))
    serve = cfg.serve_after_replay
    if serve and node.link is None:
        log.warning("serve_after_replay: no hub.target, so no search can reach this edge; exiting after the files")
        serve = False
    drain_s = cfg.hub.drain_timeout_s if node.link is not None else 0.0
    with node.stop_on_signals():
        try:
            _connect(node, cfg.hub)
            report = node.replay(files, camera_ids, stride=cfg.stride, realtime=cfg.realtime, speed=cfg.speed,
                                 max_frames=cfg.max_frames, progress=progress, recorded_at=cfg.recorded_at_s)
        except BaseException:
            node.close(flush=False)  # open tracklets are dropped, not stored truncated: a re-run resumes
            raise
        if serve:  # the summary now, with what the hub has acknowledged so far; then serve until stopped
            node.wait_outbox_drained(drain_s)
            _print_replay_summary(report, node, node.stats(), node.outbox.depth(), cfg.stride, out)
            print(f"{SERVING_NOTICE} from the store until SIGINT/SIGTERM", file=out, flush=True)
            node.serve()
        drained = node.close(drain_timeout_s=drain_s)
    if serve:
        print(f"stopped; outbox holds {node.outbox_depth_at_close} unsent", file=out)
    else:
        _print_replay_summary(report, node, node.stats(), node.outbox_depth_at_close, cfg.stride, out)
    w = node.pipeline.stats.worker
    return 0 if report.ok and not w.failed and (node.link is None or drained) else 1


def _print_replay_summary(report: Any, node: Any, stats: Any, unsent: int | None, stride: int, out: TextIO) -> None:
    for f in report.files:
        status = "ok" if f.error is None else f"FAILED: {f.error}"
        print(f"{f.camera_id:<16} {f.path}  {f.frames} frames  {status}", file=out)
    print(f"{report.frames} frames in {report.elapsed_s:.1f} s ({report.fps:.1f} fps), stride {stride}; ",
          end="", file=out)
    _print_totals(node, stats, unsent, out)


def _print_totals(node: Any, final: Any, unsent: int | None, out: TextIO) -> None:
    """Counts that can be compared: short lists this run put in the outbox; of the outbox, what the link
    sent (first sends, by kind; resends apart), what the hub acknowledged, what is left."""
    stats = final.pipeline
    w = stats.worker
    print(f"{stats.tracklets_closed} tracklets closed, {w.embedded} embedded, {w.reused} already stored, "
          f"{w.failed} failed", file=out)
    print(f"{w.short_lists} short lists ({w.uplink_bytes} bytes) queued this run; outbox "
          f"{node.workdir / 'outbox.db'} holds {unsent} unsent; store {node.workdir / 'edge.db'}", file=out)
    if node.link is not None and final.link is not None:
        link = final.link
        error = f"; stopped: {node.link.error}" if node.link.error is not None else ""
        moved = f" (moved {link.moves} time(s) between hub replicas)" if link.moves else ""
        print(f"hub {node.link.target}{moved}: {link.sessions} session(s); sent {link.short_lists_sent} short lists "
              f"and {link.sent - link.short_lists_sent} search results from the outbox ({link.resent} resent), "
              f"{link.acked} acknowledged; gallery v{link.gallery_version} ({link.gallery_identities} identities)"
              f"{error}", file=out)
