"""tools/bench_judge.py runs end to end on the CPU with the tiny config (figures not checked)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

BENCH = Path(__file__).resolve().parents[3] / "tools" / "bench_judge.py"


def test_bench_judge_json_on_cpu_with_the_tiny_config(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_judge", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--json", "--model-config", "tiny", "--queries", "2", "--candidates", "3",
                       "--batch-size", "2", "--no-reid"]) == 0
    report = json.loads(capsys.readouterr().out)
    (row,) = report["rows"]
    assert row["judge"] == "transformers" and row["weights"] == "random" and row["queries"] == 2
    assert row["pairs_per_s"] > 0 and row["p50_ms_per_query"] > 0 and row["prompt_tokens"] > 100
