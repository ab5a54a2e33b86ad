"""Shared pieces of the hub tests: a colour "Re-ID model", crops, both store backends, a hub, an edge.

The colour embedder (tests/crossview_testing/colour_model.py) stands in for a Re-ID model. Tests here
are not a package: they reach the helpers through fixtures (`kit`).
"""

from __future__ import annotations

import asyncio
import os
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from crossview_testing.colour_model import (
    DIM,
    FP,
    JUDGE_CALIBRATION,
    OTHER_FP,
    ColourEmbedder,
    colour_factory,
    crop,
    jpeg,
)

from cloud.hub import Hub
from cloud.sessions import SessionLimits
from cloud.store import HubStore
from cloud.store.postgres import postgres_reachable
from cloud.store.sqlite import SqliteHubStore
from cloud.verification import DecisionPolicy, JudgeVerifier
from models.verify.reid_judge import ReidJudge
from protos import codec
from protos.crossview.v1 import common_pb2, edge_to_hub_pb2, session_pb2, session_pb2_grpc

POSTGRES_URL = os.environ.get("CROSSVIEW_TEST_POSTGRES", "host=127.0.0.1 port=5432 dbname=test user=postgres")


def vector(colour: str, fingerprint: str = FP) -> np.ndarray:
    return ColourEmbedder(fingerprint).embed([crop(colour)]).vectors[0]


def short_list(key: str, colour: str, candidates: list[tuple[str, float]], *, edge_id: str = "edge-a",
               camera_id: str = "cam-1", tracklet_id: str | None = None, fingerprint: str = FP,
               n_crops: int = 2) -> session_pb2.EdgeMessage:
    crops = [common_pb2.CropImage(jpeg=jpeg(colour, seed=i), camera_id=camera_id) for i in range(n_crops)]
    msg = edge_to_hub_pb2.ShortList(
        idempotency_key=key, edge_id=edge_id, camera_id=camera_id, tracklet_id=tracklet_id or f"t-{key}",
        track_id=7, span=codec.time_range_to_proto(100.0, 103.5), query_crops=crops,
        query_vector=codec.vector_to_proto(vector(colour, fingerprint), fingerprint),
        candidates=[edge_to_hub_pb2.Candidate(identity_id=i, stage1_distance=d, rank=r)
                    for r, (i, d) in enumerate(candidates)],
        created_at=codec.seconds_to_timestamp(104.0))
    return session_pb2.EdgeMessage(short_list=msg)


def hello(edge_id: str = "edge-a", *, fingerprint: str = FP, gallery_version: int = 0, last_acked: int = 0,
          dim: int = DIM, auth_token: str = "") -> session_pb2.EdgeMessage:
    return session_pb2.EdgeMessage(hello=edge_to_hub_pb2.Hello(
        edge_id=edge_id, site="site-1", model_fingerprint=fingerprint, gallery_version=gallery_version,
        last_acked_hub_sequence=last_acked, embedding_dim=dim, auth_token=auth_token,
        cameras=[edge_to_hub_pb2.CameraInfo(camera_id="cam-1", name="Lobby", fps=10.0)]))


class EdgeClient:
    """One edge stream through the generated stub (`raw=True`: requests are bytes, for malformed ones)."""

    def __init__(self, port: int, token: str | None, *, raw: bool = False, channel: grpc.aio.Channel | None = None,
                 options: list[tuple[str, Any]] | None = None) -> None:
        self.channel = channel or grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options or [])
        metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
        if raw:
            session = self.channel.stream_stream("/crossview.v1.EdgeHub/Session", request_serializer=None,
                                                 response_deserializer=session_pb2.HubMessage.FromString)
            self.call = session(metadata=metadata)
        else:
            self.call = session_pb2_grpc.EdgeHubStub(self.channel).Session(metadata=metadata)
        self.received: list[session_pb2.HubMessage] = []  # everything read, in order
        self._pending: list[session_pb2.HubMessage] = []  # read but not yet returned

    async def send(self, message: session_pb2.EdgeMessage | bytes) -> None:
        await self.call.write(message)

    async def _read(self, timeout: float) -> session_pb2.HubMessage:
        message = await asyncio.wait_for(self.call.read(), timeout)
        if message is grpc.aio.EOF:
            raise EOFError("the hub ended the stream")
        self.received.append(message)
        return message

    async def recv(self, timeout: float = 20.0) -> session_pb2.HubMessage:
        """The next message not yet returned (order is the hub's)."""
        return self._pending.pop(0) if self._pending else await self._read(timeout)

    async def recv_until(self, predicate: Callable[[session_pb2.HubMessage], bool],
                         timeout: float = 20.0) -> session_pb2.HubMessage:
        """The first message, not yet returned, for which `predicate` holds; others are kept for later
        calls (acks, verdicts and errors of concurrent work may arrive in any order)."""
        for i, message in enumerate(self._pending):
            if predicate(message):
                return self._pending.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            message = await self._read(max(0.1, deadline - loop.time()))
            if predicate(message):
                return message
            self._pending.append(message)

    async def ack_key(self, key: str, timeout: float = 20.0) -> session_pb2.HubMessage:
        return await self.recv_until(lambda m: m.WhichOneof("body") == "ack" and m.ack.idempotency_key == key,
                                     timeout)

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close()


@pytest.fixture
def kit() -> types.SimpleNamespace:
    """The helpers above, for test modules (which are not importable as a package)."""
    return types.SimpleNamespace(
        FP=FP, OTHER_FP=OTHER_FP, DIM=DIM, ColourEmbedder=ColourEmbedder, colour_factory=colour_factory,
        crop=crop, jpeg=jpeg, vector=vector, short_list=short_list, hello=hello, EdgeClient=EdgeClient)


def colour_verifier(**policy: Any) -> JudgeVerifier:
    judge = ReidJudge(embedders=[ColourEmbedder()])
    return JudgeVerifier(judge, DecisionPolicy(**policy), name="reid", calibration=JUDGE_CALIBRATION)


@pytest.fixture
def make_hub(tmp_path: Path) -> Iterator[Callable[..., Hub]]:
    """`make_hub(**Hub.create kwargs)`: a hub on SQLite in tmp_path with the colour model and judge."""
    made: list[Hub] = []

    def make(**kwargs: Any) -> Hub:
        kwargs.setdefault("data_dir", tmp_path / f"hub-{len(made)}")
        kwargs.setdefault("verifier", colour_verifier(allow_new_identities=kwargs.pop("allow_new", False)))
        kwargs.setdefault("embedder_factory", colour_factory)
        kwargs.setdefault("limits", SessionLimits(heartbeat_interval_ms=60_000, poll_interval_s=0.5))
        hub = Hub.create(**kwargs)
        made.append(hub)
        return hub

    yield make
    for hub in made:
        if hub.server is None:
            hub.store.close()
            hub.executor.shutdown(wait=False)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres" and (reason := postgres_reachable(POSTGRES_URL)):
        pytest.skip(reason)
    return request.param


@pytest.fixture
def open_store(backend: str, tmp_path: Path) -> Iterator[Callable[[], HubStore]]:
    """Opens stores on one database of `backend` (several replicas = several opens)."""
    schema = f"cv_test_{uuid.uuid4().hex[:12]}"
    opened: list[HubStore] = []

    def open_() -> HubStore:
        if backend == "sqlite":
            store: HubStore = SqliteHubStore(tmp_path / "hub.db")
        else:
            from cloud.store.postgres import PostgresHubStore

            store = PostgresHubStore(POSTGRES_URL, schema=schema, pool_size=2)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()
    if backend == "postgres":
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def store(open_store: Callable[[], HubStore]) -> HubStore:
    return open_store()
