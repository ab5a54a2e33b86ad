"""tools/bench_hub.py end to end, briefly: 3 simulated edges against one hub, nothing lost.

Uses the stub verifier (no judge model) and the real edge Re-ID model for the query vectors;
no timing assertions.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from crossview_testing.tools import load_tool

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CROSSVIEW_DATA", ROOT / "data")) / "cuhk03_labeled" / "val"


def _load_bench():
    return load_tool("bench_hub")


@pytest.fixture(scope="module")
def bench():
    if not DATA.is_dir():
        pytest.skip(f"no CUHK03 crops in {DATA} (set CROSSVIEW_DATA)")
    module = _load_bench()
    try:
        work = module.build_workload(DATA, "reid/intel-0288", identities=4, candidates=3)
    except Exception as exc:  # the model is not in the zoo cache here
        pytest.skip(f"edge model unavailable: {exc}")
    return module, work


def test_three_edges_nothing_lost(bench, tmp_path: Path) -> None:
    module, work = bench
    result = asyncio.run(module.run_bench(edges=3, duration_s=3.0, judge=module.STUB_JUDGE, work=work,
                                          window=2, drain_s=60.0, data_dir=tmp_path))
    assert result["errors"] == 0, result["error_samples"]
    assert result["lost"] == 0
    assert result["edges"] == 3
    assert result["shortlists_ok"] > 0
    assert result["verdicts_not_received"] == 0
    assert result["peak_rss_mb"] > 0
    for key in ("shortlists_per_s", "p50_ms", "p99_ms", "judge"):
        assert key in result


def test_retry_hint_is_honoured(bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A window larger than the hub's per-edge limit makes the hub answer RETRY; still nothing lost."""
    module, work = bench
    from cloud import hub as hub_module
    from cloud.sessions import SessionLimits

    original = hub_module.Hub.create

    def tight(**kwargs):
        kwargs["limits"] = SessionLimits(max_inflight_per_edge=1, retry_after_ms=50, heartbeat_interval_ms=5_000)
        return original(**kwargs)

    monkeypatch.setattr(hub_module.Hub, "create", tight)
    result = asyncio.run(module.run_bench(edges=2, duration_s=2.0, judge=module.STUB_JUDGE, work=work,
                                          window=4, drain_s=60.0, data_dir=tmp_path))
    assert result["errors"] == 0, result["error_samples"]
    assert result["lost"] == 0
    assert result["retries"] > 0
