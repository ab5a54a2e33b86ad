"""Chaos test of hub replicas (issue 12): two hub replicas (child processes) on one fresh PostgreSQL database,
5 real edge processes (``crossview edge replay --serve``, real detector and Re-ID model) replaying a short
clip with both addresses, replica A SIGKILLed once it has stored a short list. Every short list the edges
produced is stored exactly once (counted in the shared store against the edges' outboxes), and every edge
says it moved to replica B, as the hub's edge table does.

The drill itself is tools/bench_failover.py (which also prints the figure). Skipped, with the reason, when
PostgreSQL is not reachable ($CROSSVIEW_TEST_POSTGRES, default 127.0.0.1:5432 database ``test``) or the
models and data are absent. No timing assertions: every wait is on a condition with a generous deadline.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import bench_failover

from cloud.store.postgres import postgres_reachable


@pytest.fixture(scope="module")
def postgres() -> str:
    if (why := postgres_reachable(bench_failover.DEFAULT_POSTGRES)) is not None:
        pytest.skip(why)
    return bench_failover.DEFAULT_POSTGRES


@pytest.fixture(scope="module")
def video(models_dir: Path, data_dir: Path) -> Path:
    path = data_dir / "video" / bench_failover.DEFAULT_VIDEO
    if not path.is_file():
        pytest.skip(f"sample video {path} is absent")
    return path


def test_replica_sigkill_loses_and_doubles_nothing(postgres: str, video: Path, tmp_path: Path) -> None:
    settings = bench_failover.DrillSettings(video, edges=5, frames=10, imgsz=320, kill=True, kill_after=1,
                                            lease_s=10.0, deadline_s=600.0, postgres=postgres)
    report: Any = bench_failover.run_drill(settings, tmp_path)
    assert report.sent > 0
    assert (report.lost, report.duplicates, report.unexpected, report.pending) == (0, 0, 0, 0), report
    assert report.stored == report.sent
    assert report.stored_by_survivor > 0, "the kill came after every short list had arrived: not mid-run"
    edges = {f"edge-{i + 1}" for i in range(5)}
    survivor = report.replicas["b"]
    assert report.moved_to == dict.fromkeys(edges, survivor)  # each edge's own log: "moved to hub replica B"
    assert report.connected_hub_ids == dict.fromkeys(edges, survivor)  # the hub's view (REST "connected_hub_id")
