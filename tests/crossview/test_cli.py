"""The `crossview` command as a user runs it: a real subprocess, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from crossview.demo_command import DemoConfig

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crossview.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


def test_models_list_resolves_every_model(models_dir: Path) -> None:
    result = _run("models", "list", env={"CROSSVIEW_MODELS": str(models_dir)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("model")
    from models.zoo import model_names

    assert len(lines) == 1 + len(model_names())
    assert all(" ok (env) " in line for line in lines[1:])


def test_models_list_without_models_fails_with_reasons(tmp_path: Path) -> None:
    result = _run("models", "list", env={"CROSSVIEW_MODELS": str(tmp_path), "CROSSVIEW_CACHE": str(tmp_path)})
    assert result.returncode == 1
    assert "missing" in result.stdout and "CROSSVIEW_MODELS" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "strid=2"], "error: unknown config key 'strid'; did you mean 'stride'?"),
        (["demo", "stride=0"], "stride: expected >= 1, got 0"),
        (["demo", "camera_b=cam-a"], "camera_b: expected a camera id other than camera_a's 'cam-a'"),
        (["detect", "--set", "detector=reid/intel-288"], "did you mean"),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], message: str, models_dir: Path, data_dir: Path) -> None:
    result = _run(*args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_detect_prints_detections_and_track_ids(models_dir: Path, data_dir: Path) -> None:
    result = _run("detect", "one-by-one-person-detection.mp4", "--set", "max_frames=60", "--set", "stride=2")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "1 person: #" in out  # a frame line with a track id
    assert "unique track ids" in out and "frames with people" in out


def test_demo_once_finds_the_person_enrolled_on_camera_a_on_camera_b(models_dir: Path, data_dir: Path,
                                                                      tmp_path: Path) -> None:
    """The whole demo: a hub, two edge processes, enrolment from camera A's sighting, the result table.
    Frames are limited to the part of each video where the man in the black T-shirt walks by (see
    crossview/demo_command.py) to keep it short."""
    result = _run("demo", "--once", "api_port=0", f"workdir={tmp_path}", "max_frames_a=450", "max_frames_b=130",
                  "admin_password=demo-secret")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    rows = [line.split() for line in out.splitlines()]
    header = next(i for i, r in enumerate(rows) if r[:2] == ["identity", "camera"])
    table = [r for r in rows[header + 1:] if r and r[0] == "person"]
    enrolled = [r for r in table if r[-2:] == ["<-", "enrolled"]]
    found = [r for r in table if r[-2:] == ["<-", "found"]]
    # columns: "person from cam-a" (3 words), camera, "video +START–END s" (3 words: no recorded_at),
    # P(same), stage-1 P(same), stage-2 P(same), mark
    assert [r[3] for r in enrolled] == ["cam-a"] and enrolled[0][4] == "video"
    assert enrolled[0][7:10] == ["-", "-", "-"]  # the identity was made from this sighting: nothing compared
    assert found and all(r[3] == "cam-b" and r[4] == "video" for r in found)
    assert DemoConfig.confirm_p_same <= float(found[0][7]) <= 1  # a confirmed verdict's fused P(same): the demo's line
    assert all(v == "-" or 0 <= float(v) <= 1 for v in found[0][8:10])
    assert "found 'person from cam-a' on cam-b" in out
    assert "web UI: http://127.0.0.1:" in out and "operator: admin  password: demo-secret" in out
    assert (tmp_path / "hub" / "hub.db").is_file() and (tmp_path / "edge-b" / "edge.db").is_file()
