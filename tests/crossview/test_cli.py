"""The `crossview` command as a user runs it: a real subprocess, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
        (["demo", "detector=reid/intel-288"], "did you mean"),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], message: str, models_dir: Path, data_dir: Path) -> None:
    result = _run(*args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_prints_detections_and_track_ids(models_dir: Path, data_dir: Path) -> None:
    result = _run("demo", "max_frames=60", "stride=2")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "1 person: #" in out  # a frame line with a track id
    assert "unique track ids" in out and "frames with people" in out
