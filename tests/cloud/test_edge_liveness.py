"""The hub marks an edge disconnected when no heartbeat arrived within its heartbeat timeout (issue #10),
also when the replica that held the edge's session died without saying so. Real edge processes killed or
stopped are in tests/integration/test_edge_serving.py. No timing assertions: waits poll a state.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from crossview_testing.colour_model import ColourEmbedder, colour_factory

from cloud.running import RunningHub
from cloud.sessions import SessionLimits
from cloud.store import HubStore
from cloud.verification import JudgeVerifier
from crossview.config import ConfigError, load_config
from crossview.hub_command import HubConfig
from models.verify.reid_judge import ReidJudge

NOW = 1_700_000_000.0


def hello(store: HubStore, edge_id: str, hub_id: str, now: float) -> None:
    store.register_edge(edge_id, now=now)
    store.record_hello(edge_id, site="", model_fingerprint="fp@1", embedding_dim=4, cameras=[], gallery_version=0,
                       acked_sequence=0, hub_id=hub_id, now=now)


def test_silent_edges_are_disconnected_and_a_heartbeat_connects_them_again(store: HubStore) -> None:
    hello(store, "edge-a", "hub-1", NOW)
    hello(store, "edge-b", "hub-2", NOW)  # hub-2 dies holding this session
    hello(store, "edge-c", "hub-1", NOW)
    store.record_disconnect("edge-c", hub_id="hub-1", now=NOW + 1)
    store.touch_edge("edge-a", now=NOW + 20, stats={"outbox_depth": 0})
    assert store.disconnect_silent_edges(silent_since=NOW + 10) == ["edge-b"]
    edges = {e.edge_id: e for e in store.list_edges()}
    assert (edges["edge-a"].connected_hub_id, edges["edge-b"].connected_hub_id) == ("hub-1", None)
    assert edges["edge-b"].last_seen_s == NOW  # when it was last heard from, not when it was given up
    assert store.disconnect_silent_edges(silent_since=NOW + 10) == []
    store.touch_edge("edge-b", now=NOW + 30, hub_id="hub-1")  # it speaks again, through hub-1
    assert store.get_edge("edge-b").connected_hub_id == "hub-1"  # type: ignore[union-attr]


def test_the_hub_sweeps_an_edge_whose_replica_died(tmp_path: Path) -> None:
    limits = SessionLimits(heartbeat_interval_ms=200, heartbeat_timeout_s=1.0)
    verifier = JudgeVerifier(ReidJudge(embedders=[ColourEmbedder()]), name="reid")
    with RunningHub(data_dir=tmp_path / "hub", api_port=None, limits=limits, verifier=verifier,
                    embedder_factory=colour_factory) as running:
        store = running.hub.store
        hello(store, "edge-z", "a-replica-that-died", time.time())
        deadline = time.monotonic() + 60
        while store.get_edge("edge-z").connected_hub_id is not None:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the silent edge was never marked disconnected"
            time.sleep(0.05)


@pytest.mark.parametrize(("overrides", "message"), [
    (["heartbeat_timeout_s=0"], "heartbeat_timeout_s: expected > 0, got 0"),
    (["heartbeat_timeout_s=-5"], "heartbeat_timeout_s: expected > 0, got -5"),
])
def test_a_bad_heartbeat_timeout_is_refused(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(HubConfig, None, overrides)
    with pytest.raises(ValueError, match="heartbeat_timeout_s: expected > 0 or None"):
        SessionLimits(heartbeat_timeout_s=0)


def test_the_default_timeout_is_three_heartbeat_intervals() -> None:
    assert SessionLimits().silence_timeout_s == 30.0 == load_config(HubConfig, None, []).heartbeat_timeout_s
    assert SessionLimits(heartbeat_interval_ms=500).silence_timeout_s == 1.5
