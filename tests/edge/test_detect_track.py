"""edge.detect_track + crossview.run_detect on the real YOLOv8n INT8 OpenVINO detector and sample videos."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crossview.run_detect import FrameRecord, format_summary, summarise_video
from edge.detect_track import PersonTracker, resolve_detector, resolve_tracker_config
from edge.sources.files import VideoFileSource
from edge.sources.frames import Frame
from models.errors import InvalidInputError, MissingDependencyError, ModelNotFoundError
from models.types import Detections

ONE_BY_ONE = "video/one-by-one-person-detection.mp4"  # one person in view from frame ~70 to ~190
ROOM_264 = "video/people-detection.264"  # two to four people around frames 180-240


def _video(data_dir: Path, relpath: str) -> Path:
    path = data_dir / relpath
    if not path.is_file():
        pytest.skip(f"{relpath} is not in CROSSVIEW_DATA ({data_dir})")
    return path


@pytest.fixture(scope="module")
def tracker(models_dir: Path) -> PersonTracker:
    try:
        return PersonTracker("detect/yolov8n-int8-openvino", tracker="bytetrack")
    except ModelNotFoundError as exc:
        pytest.skip(f"detector not available: {exc}")
    except MissingDependencyError as exc:
        pytest.skip(f"detector runtime not installed: {exc}")


def _run(tracker: PersonTracker, path: Path, camera_id: str, **kwargs: int) -> list[tuple[Frame, Detections]]:
    return [(frame, tracker.update(frame)) for frame in VideoFileSource(path, camera_id, **kwargs)]


def test_one_person_keeps_one_track_id(tracker: PersonTracker, data_dir: Path) -> None:
    runs = _run(tracker, _video(data_dir, ONE_BY_ONE), "lobby", start_frame=80, stride=2, max_frames=40)
    assert len(runs) == 40
    for frame, det in runs:
        assert len(det) == 1, f"frame {frame.index}: expected the one person, got {len(det)} boxes"
        assert det.track_id is not None and det.class_id is not None
        assert det.track_id.dtype == np.int64 and det.class_id.tolist() == [0]
        x1, y1, x2, y2 = det.xyxy[0]
        assert 0 <= x1 < x2 <= frame.width and 0 <= y1 < y2 <= frame.height
        assert 0.25 <= det.confidence[0] <= 1.0
    ids = [int(det.track_id[0]) for _, det in runs]
    assert ids[0] >= 0
    assert ids == [ids[0]] * len(ids), f"the track id changed between consecutive frames: {ids}"


def test_several_people_distinct_ids_person_class_only(tracker: PersonTracker, data_dir: Path) -> None:
    runs = _run(tracker, _video(data_dir, ROOM_264), "room", start_frame=186, stride=2, max_frames=20)
    assert max(len(det) for _, det in runs) >= 2
    for frame, det in runs:
        assert det.class_id is not None and set(det.class_id.tolist()) <= {0}, "only the person class"
        tracked = [i for i in det.track_id.tolist() if i >= 0]
        assert len(tracked) == len(set(tracked)), f"frame {frame.index}: a track id used twice: {tracked}"
    # the same people stay tracked: most frames' ids were already seen in the previous frame
    kept = sum(set(a[1].track_id.tolist()) & set(b[1].track_id.tolist()) != set()
               for a, b in itertools.pairwise(runs))
    assert kept >= len(runs) - 3


def test_cameras_keep_separate_tracker_state(tracker: PersonTracker, data_dir: Path) -> None:
    lobby = list(VideoFileSource(_video(data_dir, ONE_BY_ONE), "cam-a", start_frame=60, stride=3, max_frames=15))
    room = list(VideoFileSource(_video(data_dir, ROOM_264), "cam-b", start_frame=186, stride=2, max_frames=15))
    tracker.reset()
    alone = [tracker.update(f) for f in lobby]
    tracker.reset()
    interleaved = []
    for a, b in zip(lobby, room, strict=True):
        interleaved.append(tracker.update(a))
        tracker.update(b)
    assert tracker.cameras == ["cam-a", "cam-b"]
    for x, y in zip(alone, interleaved, strict=True):  # camera b never disturbed camera a's tracks
        assert x.track_id.tolist() == y.track_id.tolist()
        np.testing.assert_allclose(x.xyxy, y.xyxy, atol=1e-3)
    tracker.reset("cam-b")
    assert tracker.cameras == ["cam-a"]


PER_CAMERA_SCRIPT = """
import sys
from edge.detect_track import PersonTracker
from edge.sources.frames import Frame
from edge.sources.files import VideoFileSource
tracker = PersonTracker("detect/yolov8n-int8-openvino", tracker="bytetrack", camera_trackers={"cam-b": "botsort"})
for frame in VideoFileSource(sys.argv[1], "cam-a", start_frame=80, stride=3, max_frames=6):
    a = tracker.update(frame)
    b = tracker.update(Frame("cam-b", frame.index, frame.timestamp_s, frame.image))
kinds = {cam: sorted({type(t).__name__ for t in state}) for cam, state in sorted(tracker._states.items())}
print(len(a), len(b), kinds, tracker.tracker_config_for("cam-a").stem, tracker.tracker_config_for("cam-b").stem)
"""


def test_tracker_type_is_chosen_per_camera(models_dir: Path, data_dir: Path) -> None:
    # In a child process: once BoT-SORT has run, a later test in the same process that stops live
    # cameras with SIGTERM crashed (SIGSEGV, cause not found yet; see the closing note of stop 7).
    result = subprocess.run([sys.executable, "-c", PER_CAMERA_SCRIPT, str(_video(data_dir, ONE_BY_ONE))],
                            capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == (
        "1 1 {'cam-a': ['BYTETracker'], 'cam-b': ['BOTSORT']} bytetrack botsort")


def test_update_needs_a_frame(tracker: PersonTracker) -> None:
    with pytest.raises(InvalidInputError, match=r"expected an edge\.sources\.frames\.Frame, got ndarray"):
        tracker.update(np.zeros((32, 32, 3), np.uint8))  # type: ignore[arg-type]


def test_summarise_video(tracker: PersonTracker, data_dir: Path) -> None:
    seen: list[FrameRecord] = []
    summary = summarise_video(_video(data_dir, ONE_BY_ONE), "lobby", max_frames=12, stride=10, start_frame=40,
                              tracker=tracker, progress=False, on_frame=seen.append)
    assert summary.frames_processed == 12 == len(seen)
    assert [r.index for r in summary.frames] == list(range(40, 160, 10))
    assert 0 < summary.frames_with_people < 12  # nobody before frame ~70
    assert summary.unique_track_ids >= 1
    track = summary.tracks[0]
    assert 7.0 <= track.first_seen_s <= track.last_seen_s <= 16.0 and track.frames >= 5
    assert summary.fps > 0 and summary.detect_track_fps >= summary.fps
    text = format_summary(summary)
    assert "frame     40  t=    4.00s  -" in text
    assert f"#{track.track_id} [" in text and "unique track ids" in text and "detector + tracker" in text


# --- configuration errors (no model needed) ------------------------------------------------------

@pytest.mark.parametrize(("model", "error", "message"), [
    ("detect/yolov8n-int8-openvin", ModelNotFoundError, "did you mean the zoo model 'detect/yolov8n-int8"),
    ("reid/intel-0288", InvalidInputError, "not an Ultralytics YOLO detector"),
    ("yolov8n.pt", ModelNotFoundError, "neither a zoo model name nor an existing file"),
])
def test_detector_name_errors(model: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        resolve_detector(model)


def test_detector_file_of_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\0")
    with pytest.raises(InvalidInputError, match="Ultralytics export folder"):
        resolve_detector(path)


@pytest.mark.parametrize(("yaml_text", "message"), [
    (None, "expected one of bytetrack, botsort or a path"),
    ("tracker_type: ocsort\n", "expected tracker_type one of bytetrack, botsort, got 'ocsort'"),
    ("- a list\n", "expected a YAML mapping"),
    ("tracker_type: botsort\nwith_reid: true\nmodel: auto\n", "with_reid with `model: auto` needs a .pt"),
    ("tracker_type: botsort\nwith_reid: true\nmodel: reid.pt\n", "is not a local file"),
])
def test_tracker_config_errors(tmp_path: Path, yaml_text: str | None, message: str) -> None:
    config = tmp_path / "tracker.yaml"
    if yaml_text is not None:
        config.write_text(yaml_text)
    with pytest.raises(InvalidInputError, match=message):
        resolve_tracker_config(config if yaml_text is not None else "sort", Path("model_openvino_model"))


def test_packaged_tracker_configs_resolve() -> None:
    pytest.importorskip("ultralytics")
    for name in ("bytetrack", "botsort"):
        assert resolve_tracker_config(name, Path("m_openvino_model")).name == f"{name}.yaml"
