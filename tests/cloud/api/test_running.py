"""RunningHub: the hub and its API on a background loop; call(), tokens, a hub without the API, clean stops."""

from __future__ import annotations

import asyncio
import types
from pathlib import Path

import grpc
import pytest
from crossview_testing.hub_api import colour_hub_kwargs
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloud.running import RunningHub
from cloud.search import SearchQuery
from cloud.store import StoreError


async def _health(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        return reply.status


def test_a_hub_without_the_api(tmp_path: Path, kit: types.SimpleNamespace) -> None:
    running = RunningHub(data_dir=tmp_path / "hub", api_port=None, **colour_hub_kwargs())
    with running:
        assert running.grpc_address == f"127.0.0.1:{running.grpc_port}"
        assert asyncio.run(_health(running.grpc_address)) == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(RuntimeError, match="no REST API"):
            _ = running.api_url
        token = running.create_edge_token("edge-a", site="north")
        assert running.hub.auth.authenticate(token) == "edge-a"
        red = running.hub.gallery.enroll([kit.jpeg("red")]).identity_id
        outcome = running.call(running.hub.search.search(SearchQuery(identity_id=red), deadline_s=1), timeout=60)
        assert outcome.complete and outcome.edges_asked == []  # no edge is connected
        assert running.call(asyncio.sleep(0, result="on the hub's loop")) == "on the hub's loop"
        with pytest.raises(TimeoutError):
            running.call(asyncio.sleep(30), timeout=0.2)
    running.stop()  # again: nothing to do
    with pytest.raises(RuntimeError, match="not running"):
        running.call(asyncio.sleep(0))
    with pytest.raises(StoreError, match="closed"):
        running.hub.store.gallery_version()


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one of data_dir"):
        RunningHub()
    with RunningHub(data_dir=tmp_path / "hub", api_port=None, **colour_hub_kwargs()) as running:
        with pytest.raises(ValueError, match="existing hub"):
            RunningHub(hub=running.hub, judge="reid")
        with pytest.raises(RuntimeError, match="already started"):
            running.start()
    with pytest.raises(RuntimeError, match="runs once"):
        running.start()
