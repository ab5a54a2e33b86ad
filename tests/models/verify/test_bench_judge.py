"""tools/bench_judge.py runs end to end on the CPU with the tiny config: plain, fast and streamed rows
(figures not checked)."""

from __future__ import annotations

import json

import pytest
from crossview_testing.tools import load_tool

pytest.importorskip("transformers")



def test_bench_judge_json_on_cpu_with_the_tiny_config(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_tool("bench_judge")
    assert bench.main(["--json", "--model-config", "tiny", "--queries", "2", "--candidates", "3",
                       "--batch-size", "2", "--no-reid", "--streams", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    plain, fast, batched = report["rows"]
    assert plain["judge"] == "transformers" and plain["weights"] == "random" and plain["queries"] == 2
    assert plain["pairs_per_s"] > 0 and plain["p50_ms_per_query"] > 0 and plain["prompt_tokens"] > 100
    assert plain["ratio_vs_plain"] == 1.0
    assert fast["judge"] == "transformers-fast" and fast["ratio_vs_plain"] > 0 and 0 <= fast["cache_hit_rate"] <= 1
    assert batched["judge"] == "transformers-fast+batcher" and batched["streams"] == 3
    assert batched["queries"] == 3 * 2 and batched["p50_ms_per_query"] > 0 and batched["ratio_vs_plain"] > 0
