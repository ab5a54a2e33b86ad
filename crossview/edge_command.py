"""`crossview edge replay FILE... [--camera NAME]`: recorded footage through the edge pipeline.

Configuration (`ReplayConfig`: YAML file + `key=value` overrides) is read here and nowhere else; the
library classes get plain arguments. Everything the replay writes lives in the work folder
(default ``./crossview-edge/``): ``edge.db`` + ``edge.db.crops/`` (the tracklet store), ``outbox.db``
(short lists waiting for the hub) and ``gallery.db`` (the gallery synced from the hub, `EdgeGallery`).
Running the same replay again resumes it: see `edge.replay`.

Gallery: the synced one in the work folder, or with ``gallery_dir=FOLDER`` an in-memory gallery built
from a folder of identities — one sub-folder per identity id holding its crops (.jpg/.png) — for
searching footage offline for known people.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from models.errors import CrossviewError

log = logging.getLogger(__name__)

DEFAULT_WORKDIR = Path("crossview-edge")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class ReplayConfig:
    """Settings of `crossview edge replay` (every key can be overridden with key=value)."""

    workdir: str = str(DEFAULT_WORKDIR)
    edge_id: str = "edge"
    stride: int = 1
    realtime: bool = False
    speed: float = 1.0
    max_frames: int | None = None
    progress: bool = True
    # detection and tracking
    detector: str = "detect/yolov8n-int8-openvino"
    tracker: Literal["bytetrack", "botsort"] = "bytetrack"
    conf: float = 0.25
    imgsz: int = 640
    # tracklets
    best_k: int = 4
    close_after_s: float = 2.0
    min_frames: int = 3
    min_quality: float = 0.2
    # embedding
    embedder: str = "reid/intel-0288"
    embed_runtime: str | None = None
    embed_threads: int = 1  # one thread: vectors independent of batching, no fight with the detector
    embed_batch_size: int = 32
    # recall and short lists
    gallery_dir: str | None = None
    top_k: int = 5
    # k-reciprocal distance (0..1); gallery-relative, so calibrate it per site (see docs/benchmarks_edge.md)
    max_distance: float = 0.3
    uplink_crops: int = 1
    uplink_max_height: int = 192
    uplink_jpeg_quality: int = 75

    def __post_init__(self) -> None:
        for name in ("stride", "imgsz", "best_k", "min_frames", "embed_threads", "embed_batch_size",
                     "uplink_crops"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames: expected >= 1 or null, got {self.max_frames}")
        if self.speed <= 0:
            raise ValueError(f"speed: expected > 0, got {self.speed}")
        if self.top_k < 0:
            raise ValueError(f"top_k: expected >= 0, got {self.top_k}")


def build_gallery_from_folder(folder: Path, embedder: Any) -> Any:
    """An in-memory gallery from `folder/<identity id>/*.jpg`: each crop one gallery vector."""
    import cv2

    from edge.embed_worker import MemoryGallery

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


def open_synced_gallery(workdir: Path, embedder: Any) -> Any:
    """The gallery synced from the hub, kept in the work folder (empty, version 0, until a first sync)."""
    from edge.gallery import EdgeGallery

    gallery = EdgeGallery(workdir / "gallery.db", embedder.fingerprint, embedder.dim)
    if gallery.size == 0:
        log.warning("the synced gallery %s is empty (never synced with a hub): no short lists will be made; "
                    "pass gallery_dir=FOLDER to search for known people offline", gallery.path)
    return gallery


def replay_command(files: Sequence[Path], cameras: Sequence[str] | None = None, *, config: Path | None = None,
                   overrides: Sequence[str] = (), workdir: Path | None = None, progress: bool | None = None,
                   out: TextIO | None = None) -> int:
    """Replay `files` (cameras: one name per file, or None for the file stems); print a summary.

    Exit code: 0 all files played, 1 some file failed (the others played), 2 bad configuration or
    a setup error (models, store).
    """
    from crossview.config import load_config

    out = out or sys.stdout
    try:
        cfg = load_config(ReplayConfig, config, list(overrides))
        if cameras is not None and len(cameras) == 1 and len(files) > 1:
            cameras = list(cameras) * len(files)  # one --camera for several files: one camera, files in turn
        return _run_replay([Path(f) for f in files], list(cameras) if cameras else None, cfg,
                           Path(workdir) if workdir is not None else Path(cfg.workdir),
                           cfg.progress if progress is None else progress, out)
    except CrossviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run_replay(files: list[Path], cameras: list[str] | None, cfg: ReplayConfig, workdir: Path,
                progress: bool, out: TextIO) -> int:
    from edge.detect_track import PersonTracker
    from edge.embed_worker import UplinkSettings
    from edge.outbox import Outbox
    from edge.pipeline import EdgePipeline, TrackletSettings
    from edge.replay import camera_ids_for, replay
    from edge.shortlist import ShortListPolicy
    from edge.store import TrackletStore
    from models.embed import create_embedder

    # everything that can be refused is checked before the models load
    camera_ids = camera_ids_for(files, cameras)
    policy = ShortListPolicy(cfg.top_k, cfg.max_distance)
    tracklets = TrackletSettings(cfg.best_k, cfg.close_after_s, cfg.min_frames, cfg.min_quality)
    uplink = UplinkSettings(cfg.uplink_crops, cfg.uplink_max_height, cfg.uplink_jpeg_quality)
    runtime_kwargs: dict[str, Any] = {"batch_size": cfg.embed_batch_size}
    if (cfg.embed_runtime or "openvino") in ("openvino", "onnxruntime"):
        runtime_kwargs["num_threads"] = cfg.embed_threads
    embedder = create_embedder(cfg.embedder, cfg.embed_runtime, **runtime_kwargs)
    tracker = PersonTracker(cfg.detector, tracker=cfg.tracker, conf=cfg.conf, imgsz=cfg.imgsz)
    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        gallery = (build_gallery_from_folder(Path(cfg.gallery_dir), embedder) if cfg.gallery_dir
                   else stack.enter_context(open_synced_gallery(workdir, embedder)))
        store = stack.enter_context(TrackletStore(workdir / "edge.db"))
        outbox = stack.enter_context(Outbox(workdir / "outbox.db"))
        pipeline = EdgePipeline(cfg.edge_id, tracker=tracker, embedder=embedder, store=store, outbox=outbox,
                                gallery=gallery, policy=policy, tracklets=tracklets,
                                embed_batch_size=cfg.embed_batch_size, uplink=uplink)
        with pipeline:
            report = replay(files, camera_ids, pipeline=pipeline, stride=cfg.stride, realtime=cfg.realtime,
                            speed=cfg.speed, max_frames=cfg.max_frames, progress=progress)
        stats = pipeline.stats
        depth = outbox.depth()
    for f in report.files:
        status = "ok" if f.error is None else f"FAILED: {f.error}"
        print(f"{f.camera_id:<16} {f.path}  {f.frames} frames  {status}", file=out)
    w = stats.worker
    print(f"{report.frames} frames in {report.elapsed_s:.1f} s ({report.fps:.1f} fps), stride {cfg.stride}; "
          f"{stats.tracklets_closed} tracklets closed, {w.embedded} embedded, {w.reused} already stored, "
          f"{w.failed} failed", file=out)
    print(f"{w.short_lists} short lists ({w.uplink_bytes} bytes) queued; outbox {workdir / 'outbox.db'} "
          f"holds {depth} unsent; store {workdir / 'edge.db'}", file=out)
    return 0 if report.ok and not w.failed else 1
