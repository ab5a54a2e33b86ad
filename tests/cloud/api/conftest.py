"""The REST API tests: a RunningHub on the colour model (tests/cloud/conftest.py) with a logged-in client,
and a real gRPC edge that sends short lists (so sightings and alerts come the way they do in production)."""

from __future__ import annotations

import types
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from crossview_testing.hub_api import HubApi, start_hub_api

from cloud.hub import Hub
from cloud.running import RunningHub
from protos.crossview.v1 import hub_to_edge_pb2, session_pb2


@pytest.fixture
def api(make_hub: Callable[..., Hub], tmp_path: Path) -> Iterator[HubApi]:
    """A running hub (colour model, reid judge, new identities allowed) and a logged-in httpx client."""
    with start_hub_api(tmp_path, hub=make_hub(allow_new=True)) as running_api:
        yield running_api


async def run_edge(kit: types.SimpleNamespace, running: RunningHub, short_lists: Sequence[session_pb2.EdgeMessage],
                   *, edge_id: str = "edge-a",
                   during: Callable[[Any], Awaitable[None]] | None = None) -> list[hub_to_edge_pb2.Verdict]:
    """Connect an edge over gRPC, send `short_lists` one by one (each acked and judged), run `during(edge)`,
    disconnect; the verdicts."""
    edge = kit.EdgeClient(running.grpc_port, running.create_edge_token(edge_id))
    try:
        await edge.send(kit.hello(edge_id))
        assert (await edge.recv()).WhichOneof("body") == "welcome"
        verdicts = []
        for message in short_lists:
            key = message.short_list.idempotency_key
            await edge.send(message)
            await edge.ack_key(key)
            reply = await edge.recv_until(
                lambda m, key=key: m.WhichOneof("body") == "verdict" and m.verdict.idempotency_key == key)
            verdicts.append(reply.verdict)
        if during is not None:
            await during(edge)
        return verdicts
    finally:
        await edge.close()


@pytest.fixture
def edge_runner() -> Callable[..., Awaitable[list[hub_to_edge_pb2.Verdict]]]:
    return run_edge
