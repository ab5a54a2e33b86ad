"""Person detection and tracking on each camera's frames: Ultralytics YOLO + ByteTrack / BoT-SORT.

    >>> tracker = PersonTracker("detect/yolov8n-int8-openvino", tracker="bytetrack")
    >>> for frame in VideoFileSource("lobby.mp4", camera_id="lobby"):
    ...     detections = tracker.update(frame)   # Detections with int64 track ids (-1: untracked)

One detector is shared by all cameras; each camera has its own tracker state (see `PersonTracker`).
Ultralytics is imported lazily and kept offline: it never downloads weights, tracker models or
packages, and sends no analytics. Models come from the crossview zoo or a local path.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edge.sources.frames import Frame
from models.errors import CrossviewError, InvalidInputError, MissingDependencyError, ModelNotFoundError, require
from models.types import Detections
from models.zoo import get_spec, model_names, resolve_model

logger = logging.getLogger(__name__)

DEFAULT_DETECTOR = "detect/yolov8n-int8-openvino"
PERSON_CLASS = 0  # COCO class 0
# Tracker types whose whole state lives in the tracker object, so it can be kept per camera.
SUPPORTED_TRACKERS = ("bytetrack", "botsort")
# File formats Ultralytics' YOLO opens; folders (OpenVINO, TF SavedModel, NCNN, ...) are passed as-is.
_MODEL_SUFFIXES = {".pt", ".onnx", ".engine", ".torchscript", ".tflite", ".pb", ".mlpackage", ".mnn"}


class DetectorError(CrossviewError):
    """The detector or tracker could not be set up or failed on a frame."""


def configure_ultralytics_offline() -> None:
    """Keep Ultralytics from reaching the network: no DNS probe, analytics, or pip auto-installs.

    The environment variables only act if set before Ultralytics is first imported, so this runs
    before the lazy import; if something imported it earlier, the analytics switch is turned off
    directly. Weights are never fetched because only existing local paths are handed to YOLO.
    """
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    events_module = sys.modules.get("ultralytics.utils.events")
    events = getattr(events_module, "events", None)
    if events is not None:
        events.enabled = False


def _import_ultralytics() -> Any:
    configure_ultralytics_offline()
    ultralytics = require("ultralytics")
    configure_ultralytics_offline()  # the analytics object exists now
    try:
        import lap  # noqa: F401  (Ultralytics' trackers need it and would try to pip-install it)
    except ImportError as exc:
        raise MissingDependencyError(
            f"lap is not installed ({exc}); install it with: pip install 'crossview[detect]'"
        ) from exc
    return ultralytics


@contextlib.contextmanager
def _quiet_ultralytics() -> Iterator[None]:
    """Hide Ultralytics' info lines ("Loading ... for OpenVINO inference") while loading; keep warnings."""
    ul_logger = logging.getLogger("ultralytics")
    level = ul_logger.level
    ul_logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        ul_logger.setLevel(level)


def resolve_detector(model: str | Path) -> Path:
    """A zoo name ("detect/yolov8n-int8-openvino") or an existing local path → the path YOLO opens."""
    if isinstance(model, str) and model in model_names():
        spec = get_spec(model)
        if spec.task != "detect" or not spec.format.startswith("ultralytics"):
            ultra = [n for n in model_names() if get_spec(n).format.startswith("ultralytics")]
            raise InvalidInputError(
                f"model {model!r} is a {spec.format} {spec.task} model, not an Ultralytics YOLO detector; "
                f"use one of: {', '.join(ultra)}, or a path to a .pt/.onnx/.engine file or an export folder"
            )
        return resolve_model(model).path
    path = Path(model).expanduser()
    if not path.exists():
        close = difflib.get_close_matches(str(model), model_names(), n=1)
        hint = f"; did you mean the zoo model {close[0]!r}?" if close else ""
        raise ModelNotFoundError(
            f"detector {str(model)!r} is neither a zoo model name nor an existing file or folder{hint}"
        )
    if path.is_file() and path.suffix.lower() not in _MODEL_SUFFIXES:
        raise InvalidInputError(
            f"detector {path}: expected a {', '.join(sorted(_MODEL_SUFFIXES))} file or an Ultralytics "
            f"export folder (e.g. yolov8n_openvino_model/), got a {path.suffix or 'suffix-less'} file"
        )
    return path


def resolve_tracker_config(tracker: str | Path, detector: Path) -> Path:
    """"bytetrack" / "botsort" → Ultralytics' packaged YAML; or a local YAML file, validated."""
    if isinstance(tracker, str) and tracker.removesuffix(".yaml") in SUPPORTED_TRACKERS:
        ultralytics = _import_ultralytics()
        path = Path(ultralytics.__file__).parent / "cfg" / "trackers" / f"{tracker.removesuffix('.yaml')}.yaml"
    else:
        path = Path(tracker).expanduser()
        if not path.is_file():
            raise InvalidInputError(
                f"tracker {str(tracker)!r}: expected one of {', '.join(SUPPORTED_TRACKERS)} or a path to a "
                "tracker YAML file"
            )
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"tracker config {path}: cannot read it ({exc})") from exc
    if not isinstance(cfg, dict):
        raise InvalidInputError(f"tracker config {path}: expected a YAML mapping, got {type(cfg).__name__}")
    kind = cfg.get("tracker_type")
    if kind not in SUPPORTED_TRACKERS:
        raise InvalidInputError(
            f"tracker config {path}: expected tracker_type one of {', '.join(SUPPORTED_TRACKERS)}, got {kind!r}"
        )
    if cfg.get("with_reid"):
        reid_model = str(cfg.get("model", "auto"))
        # "auto" reuses a PyTorch detector's features; for any other detector Ultralytics would
        # download a classifier, so insist on a local ReID model file instead.
        if reid_model == "auto" and detector.suffix != ".pt":
            raise InvalidInputError(
                f"tracker config {path}: with_reid with `model: auto` needs a .pt detector "
                f"(got {detector.name}); set `model:` to a local ReID model file"
            )
        if reid_model != "auto" and not Path(reid_model).expanduser().is_file():
            raise InvalidInputError(f"tracker config {path}: ReID model {reid_model!r} is not a local file")
    return path


def _to_detections(result: Any) -> Detections:
    boxes = result.boxes
    if boxes is None or len(boxes) == 0:
        return Detections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                          np.zeros((0,), np.int64), np.zeros((0,), np.int64))
    xyxy = boxes.xyxy.cpu().numpy().astype(np.float32).reshape(-1, 4)
    confidence = boxes.conf.cpu().numpy().astype(np.float32).reshape(-1)
    class_id = boxes.cls.cpu().numpy().astype(np.int64).reshape(-1)
    ids = boxes.id
    track_id = (np.full(len(xyxy), -1, np.int64) if ids is None
                else ids.cpu().numpy().astype(np.int64).reshape(-1))
    keep = class_id == PERSON_CLASS
    if not keep.all():
        xyxy, confidence, class_id, track_id = xyxy[keep], confidence[keep], class_id[keep], track_id[keep]
    return Detections(xyxy, confidence, track_id, class_id)


class PersonTracker:
    """Detects people (class 0 only) and tracks them, per camera.

    Args:
        model: a zoo detector name or a local path YOLO opens (.pt, .onnx, .engine, an OpenVINO
            export folder, ...).
        tracker: "bytetrack", "botsort", or a path to an Ultralytics tracker YAML of either type.
        conf: minimum detection confidence. Boxes below it never reach the tracker, so ByteTrack's
            second, low-score association (track_low_thresh 0.1) sees nothing below `conf`; pass
            conf=0.1 to get Ultralytics' own tracking default.
        imgsz: inference size (static exports such as the zoo's OpenVINO model need 640).
        device: passed to Ultralytics as is (None: its default, the CPU here).

    Tracker state per camera: one YOLO model is loaded and shared, and each camera id keeps its
    own list of Ultralytics tracker objects, swapped onto the predictor before each `update()`.
    A ByteTrack/BoT-SORT tracker object holds all of a stream's state (tracks, Kalman filters,
    frame counter, BoT-SORT's motion compensation), so cameras never see each other's tracks and
    track ids are unique within a camera only. Not thread-safe: use one `PersonTracker` per thread.
    """

    def __init__(self, model: str | Path = DEFAULT_DETECTOR, tracker: str | Path = "bytetrack",
                 conf: float = 0.25, imgsz: int = 640, device: str | None = None,
                 camera_trackers: Mapping[str, str | Path] | None = None) -> None:
        if isinstance(conf, bool) or not isinstance(conf, int | float) or not 0.0 < conf <= 1.0:
            raise InvalidInputError(f"conf: expected a number in (0, 1], got {conf!r}")
        if isinstance(imgsz, bool) or not isinstance(imgsz, int) or imgsz < 32:
            raise InvalidInputError(f"imgsz: expected an integer >= 32, got {imgsz!r}")
        self.model_path = resolve_detector(model)
        self.model_name = str(model)
        self.tracker_config = resolve_tracker_config(tracker, self.model_path)
        # per-camera tracker choice (ByteTrack on one camera, BoT-SORT on another); others use `tracker`
        self.camera_tracker_configs = {camera: resolve_tracker_config(t, self.model_path)
                                       for camera, t in (camera_trackers or {}).items()}
        self.conf = float(conf)
        self.imgsz = imgsz
        self.device = device
        self._states: dict[str, list[Any]] = {}
        ultralytics = _import_ultralytics()
        try:
            with _quiet_ultralytics():
                self._yolo = ultralytics.YOLO(str(self.model_path), task="detect")
                # Load, compile and warm the model now so the first real frame is not slow;
                # the warm-up's tracker is dropped so every camera starts from a clean state.
                self._track(np.zeros((imgsz, imgsz, 3), np.uint8), [])
        except CrossviewError:
            raise
        except Exception as exc:
            raise DetectorError(f"cannot load detector {self.model_path}: {type(exc).__name__}: {exc}") from exc
        names = self._yolo.names
        if names.get(PERSON_CLASS) != "person":
            raise InvalidInputError(
                f"detector {self.model_path}: expected class {PERSON_CLASS} to be 'person' (COCO), "
                f"got {names.get(PERSON_CLASS)!r}"
            )

    def __repr__(self) -> str:
        return (f"PersonTracker(model={self.model_name!r}, tracker={self.tracker_config.stem!r}, "
                f"conf={self.conf}, imgsz={self.imgsz}, cameras={sorted(self._states)})")

    @property
    def cameras(self) -> list[str]:
        """Camera ids with tracker state."""
        return sorted(self._states)

    def set_camera_tracker(self, camera_id: str, tracker: str | Path | None) -> None:
        """Choose the tracker of one camera (None: back to the default); its current tracks are dropped."""
        if tracker is None:
            self.camera_tracker_configs.pop(camera_id, None)
        else:
            self.camera_tracker_configs[camera_id] = resolve_tracker_config(tracker, self.model_path)
        self._states.pop(camera_id, None)

    def tracker_config_for(self, camera_id: str) -> Path:
        """The tracker YAML a camera's tracks are made with."""
        return self.camera_tracker_configs.get(camera_id, self.tracker_config)

    def _track(self, image: np.ndarray, state: list[Any], tracker_config: Path | None = None) -> tuple[Any, list[Any]]:
        predictor = self._yolo.predictor
        if predictor is not None:
            predictor.trackers = state
        kwargs: dict[str, Any] = {"device": self.device} if self.device is not None else {}
        config = tracker_config or self.tracker_config
        results = self._yolo.track(image, persist=True, tracker=str(config),
                                   classes=[PERSON_CLASS], conf=self.conf, imgsz=self.imgsz,
                                   verbose=False, **kwargs)
        return results[0], self._yolo.predictor.trackers

    def update(self, frame: Frame) -> Detections:
        """Detect and track the people in one frame of `frame.camera_id`.

        Returns boxes in frame pixels, confidences, class ids (all 0) and int64 track ids; -1
        marks a box that no track holds (rare: Ultralytics leaves unmatched boxes out once
        any track exists).
        """
        if not isinstance(frame, Frame):
            raise InvalidInputError(f"frame: expected an edge.sources.frames.Frame, got {type(frame).__name__}")
        try:
            result, state = self._track(frame.image, self._states.get(frame.camera_id, []),
                                        self.tracker_config_for(frame.camera_id))
        except CrossviewError:
            raise
        except Exception as exc:
            raise DetectorError(
                f"camera {frame.camera_id!r}: detection/tracking failed on frame {frame.index}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self._states[frame.camera_id] = state
        return _to_detections(result)

    def reset(self, camera_id: str | None = None) -> None:
        """Forget the tracks of one camera (e.g. after its stream reconnects), or of all cameras."""
        if camera_id is None:
            self._states.clear()
        else:
            self._states.pop(camera_id, None)
