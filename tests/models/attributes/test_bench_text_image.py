"""tools/bench_text_image.py runs end to end with the tiny random CLIP (figures not checked)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from crossview_testing.tools import load_tool

pytest.importorskip("transformers")
pytest.importorskip("torch")



def test_bench_text_image_json_with_the_tiny_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CROSSVIEW_USER_MODELS", str(tmp_path / "untouched"))  # the tool sets its own; restored
    bench = load_tool("bench_text_image")
    assert bench.main(["--json", "--shape", "tiny", "--tracklets", "60", "--crops", "8", "--repeats", "1",
                       "--reid", ""]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["shape"] == "tiny" and report["tracklets"] == 60 and report["image_tower_crops_per_s"] > 0
    assert report["reid_crops_per_s"] is None and len(report["text_tower_ms"]) == 3
    assert report["text_query_ms"] > 0 and report["full_scan_ms"] > 0
