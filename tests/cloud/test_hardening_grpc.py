"""Issue 12, the gRPC side: keys bound to the edge (finding 4), decoding off the event loop within a
byte budget (5), times and counts bounded on the wire (7), no edge-id enumeration (10), rate-limited
logging of a misbehaving edge. Real hub, real gRPC on 127.0.0.1, the colour model of conftest."""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloud import edge_session, wire
from cloud.hub import Hub
from cloud.log_limits import RateLimitedLog
from cloud.sessions import SessionLimits
from cloud.store import HubStore, ShortListSummary
from cloud.store import schema as hub_schema
from cloud.store.sqlite import SqliteHubStore
from protos.crossview.v1 import common_pb2, edge_to_hub_pb2, session_pb2

OK, DUPLICATE, REJECTED, RETRY = (common_pb2.ACK_STATUS_OK, common_pb2.ACK_STATUS_DUPLICATE,
                                  common_pb2.ACK_STATUS_REJECTED, common_pb2.ACK_STATUS_RETRY)
INVALID = common_pb2.ERROR_CODE_INVALID_ARGUMENT
HUGE_S = 2**62


async def open_session(kit: types.SimpleNamespace, port: int, token: str, edge_id: str = "edge-a",
                       raw: bool = False) -> types.SimpleNamespace:
    edge = kit.EdgeClient(port, token, raw=raw)
    hello = kit.hello(edge_id)
    await edge.send(hello.SerializeToString() if raw else hello)
    assert (await edge.recv()).WhichOneof("body") == "welcome"
    return edge


async def health(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=20)
    return reply.status


def error_or_ack(key: str) -> Callable[[session_pb2.HubMessage], bool]:
    return lambda m: m.WhichOneof("body") == "error" or (m.WhichOneof("body") == "ack" and m.ack.idempotency_key == key)


# ------------------------------------------------------------------ finding 4: keys bound to the edge
def test_a_key_naming_another_edge_cannot_make_its_short_list_a_duplicate(
        make_hub: Callable[..., Hub], kit: types.SimpleNamespace, open_store: Callable[[], HubStore]) -> None:
    hub = make_hub(store=open_store())  # SQLite and PostgreSQL
    red = hub.gallery.enroll([kit.jpeg("red", seed=40)]).identity_id
    token_1, token_2 = hub.auth.create_token("edge-1").token, hub.auth.create_token("edge-2").token
    key = "shortlist/edge-2/t-7/g0"  # edge-2's own key, predictable

    async def run() -> None:
        port = await hub.start()
        edge_1 = await open_session(kit, port, token_1, "edge-1")
        await edge_1.send(kit.short_list(key, "blue", [(red, 0.6)], edge_id="edge-1"))
        assert (await edge_1.ack_key(key)).ack.status == OK  # namespaced: it is edge-1's key
        edge_2 = await open_session(kit, port, token_2, "edge-2")
        await edge_2.send(kit.short_list(key, "red", [(red, 0.2)], edge_id="edge-2"))
        assert (await edge_2.ack_key(key)).ack.status == OK  # not DUPLICATE: edge-2 keeps its short list
        await edge_2.send(kit.short_list(key, "red", [(red, 0.2)], edge_id="edge-2"))
        assert (await edge_2.ack_key(key)).ack.status == DUPLICATE  # its own retry still is
        await edge_1.close()
        await edge_2.close()
        assert hub.store.count_short_lists("edge-1") == hub.store.count_short_lists("edge-2") == 1
        one, two = hub.store.get_verdict(key, "edge-1"), hub.store.get_verdict(key, "edge-2")
        assert one is not None and two is not None
        assert (one.decision, two.decision, two.identity_id) == ("rejected", "confirmed", red)
        assert [s.edge_id for s in hub.store.sightings(identity_id=red)] == ["edge-2"]
        await hub.stop()

    asyncio.run(run())


def test_schema_5_short_lists_migrate_to_keys_per_edge(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    with sqlite3.connect(path) as conn:  # a hub database as schema version 5 left it
        conn.execute(hub_schema.SCHEMA_VERSION_DDL)
        for steps in hub_schema.MIGRATIONS[:5]:
            for ddl in steps:
                if isinstance(ddl, hub_schema.Only):
                    if ddl.dialect != "sqlite":
                        continue
                    ddl = ddl.ddl
                conn.execute(hub_schema.SQLITE.render(ddl))
        conn.execute("INSERT INTO short_lists VALUES ('k1', 'edge-a', 'cam-1', 't1', 3, 10.0, 12.5, 2, '[]', "
                     "'fp@1', 4, 100.0, 'done', 100.0, 100.0)")
        conn.execute("INSERT INTO verdicts VALUES ('k1', 'confirmed', 'id-1', 0.7, 'reid', '{}', 101.0)")
        conn.execute("INSERT INTO schema_version (component, version) VALUES ('hub', 5)")
    store = SqliteHubStore(path)
    try:
        record, verdict = store.get_short_list("k1", "edge-a"), store.get_verdict("k1", "edge-a")
        assert record is not None and record.status == "done" and record.summary.track_id == 3
        assert verdict is not None and verdict.identity_id == "id-1" and verdict.p_same == 0.7
        store.register_edge("edge-b", now=200.0)
        other = ShortListSummary("k1", "edge-b", "cam-1", "t1", 3, 10.0, 12.5, 2, (), "fp@1", 4, 200.0)
        assert store.claim_short_list(other, now=200.0, lease_s=60) == "new"
        assert store.get_short_list("k1", "edge-a").status == "done"  # type: ignore[union-attr]
    finally:
        store.close()


# ------------------------------------------------------------------ finding 5: decoding off the loop
@functools.cache
def big_jpeg(side: int = 4096) -> bytes:
    """A legal JPEG of side x side pixels (flat, so small on the wire: about 260 KB for 4096)."""
    ok, buf = cv2.imencode(".jpg", np.full((side, side, 3), (40, 90, 200), np.uint8),
                           [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


class DecodeGate:
    """Stands in the decode path (patched into `cloud.wire`): counts calls, and holds each until opened."""

    def __init__(self, decode: Callable[..., wire.ShortListInput], *, hold: bool) -> None:
        self.decode, self.hold = decode, hold
        self.calls = 0
        self.entered, self.released = threading.Event(), threading.Event()

    def __call__(self, *args: object, **kwargs: object) -> wire.ShortListInput:
        self.calls += 1
        if self.hold:
            self.entered.set()
            assert self.released.wait(30), "the decode was never released (the event loop is blocked?)"
        return self.decode(*args, **kwargs)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[DecodeGate]:
    held = DecodeGate(wire.decode_short_list, hold=True)
    monkeypatch.setattr(wire, "decode_short_list", held)
    yield held
    held.released.set()


def test_crops_are_decoded_off_the_event_loop(make_hub: Callable[..., Hub], kit: types.SimpleNamespace,
                                             gate: DecodeGate) -> None:
    hub = make_hub()
    red = hub.gallery.enroll([kit.jpeg("red", seed=40)]).identity_id
    token = hub.auth.create_token("edge-a").token

    async def run() -> None:
        port = await hub.start()
        edge = await open_session(kit, port, token)
        await edge.send(kit.short_list("k1", "red", [(red, 0.2)]))
        assert await asyncio.to_thread(gate.entered.wait, 20)
        # the decode is blocked in its pool: the loop still answers health checks and other edges
        assert await health(port) == health_pb2.HealthCheckResponse.SERVING
        await edge.send(session_pb2.EdgeMessage(heartbeat=edge_to_hub_pb2.EdgeHeartbeat(outbox_depth=5)))
        gate.released.set()
        assert (await edge.ack_key("k1")).ack.status == OK
        await edge.close()
        assert hub.store.get_edge("edge-a").stats["outbox_depth"] == 5  # type: ignore[union-attr]
        await hub.stop()

    asyncio.run(run())


def test_an_edge_s_decode_budget_answers_retry_without_decoding(make_hub: Callable[..., Hub],
                                                                 kit: types.SimpleNamespace, gate: DecodeGate) -> None:
    one = wire.check_short_list(kit.short_list("k", "red", []).short_list, edge_id="edge-a")
    hub = make_hub(limits=SessionLimits(decode_budget_bytes=one + one // 2, heartbeat_interval_ms=60_000))
    red = hub.gallery.enroll([kit.jpeg("red", seed=40)]).identity_id
    token = hub.auth.create_token("edge-a").token

    async def run() -> None:
        port = await hub.start()
        edge = await open_session(kit, port, token)
        await edge.send(kit.short_list("k1", "red", [(red, 0.2)]))
        assert await asyncio.to_thread(gate.entered.wait, 20)
        await edge.send(kit.short_list("k2", "red", [(red, 0.2)]))  # would take the edge over its budget
        busy = (await edge.ack_key("k2")).ack
        assert busy.status == RETRY and "bytes decoded" in busy.error_message and gate.calls == 1
        huge = kit.short_list("k3", "red", [(red, 0.2)], n_crops=4)  # could never fit: refused for good
        await edge.send(huge)
        refused = (await edge.ack_key("k3")).ack
        assert refused.status == REJECTED and "bytes decoded" in refused.error_message
        gate.released.set()
        assert (await edge.ack_key("k1")).ack.status == OK
        await edge.send(kit.short_list("k2", "red", [(red, 0.2)]))  # the budget is back
        assert (await edge.ack_key("k2")).ack.status == OK
        await edge.close()
        await hub.stop()

    asyncio.run(run())


def big_short_list(kit: types.SimpleNamespace, key: str, n_crops: int = 16) -> session_pb2.EdgeMessage:
    msg = kit.short_list(key, "red", [])
    del msg.short_list.query_crops[:]
    for _ in range(n_crops):
        msg.short_list.query_crops.add(jpeg=big_jpeg(), camera_id="cam-1")
    return msg


def test_huge_crops_are_refused_from_their_header_and_the_hub_stays_responsive(
        make_hub: Callable[..., Hub], kit: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    counted = DecodeGate(wire.decode_short_list, hold=False)
    monkeypatch.setattr(wire, "decode_short_list", counted)
    hub = make_hub()
    red = hub.gallery.enroll([kit.jpeg("red", seed=40)]).identity_id
    token = hub.auth.create_token("edge-a").token

    async def run() -> None:
        port = await hub.start()
        edge = await open_session(kit, port, token)
        for n in range(8):  # 8 short lists of 16 legal 4096x4096 JPEGs (4.2 MB each)
            await edge.send(big_short_list(kit, f"big-{n}"))
        for n in range(8):
            ack = (await edge.ack_key(f"big-{n}")).ack
            assert ack.status == REJECTED and "expected at most 4194304 pixels, got 4096x4096" in ack.error_message
        assert counted.calls == 0  # refused from the JPEG headers, nothing decoded
        assert await health(port) == health_pb2.HealthCheckResponse.SERVING
        await edge.send(kit.short_list("good", "red", [(red, 0.2)]))  # the stream is alive
        assert (await edge.ack_key("good")).ack.status == OK
        await edge.close()
        await hub.stop()

    asyncio.run(run())


# ------------------------------------------------------------------ finding 7: times and counts bounded
def _short_list_with(kit: types.SimpleNamespace, key: str, change: Callable[[edge_to_hub_pb2.ShortList], None]
                     ) -> session_pb2.EdgeMessage:
    msg = kit.short_list(key, "red", [])
    change(msg.short_list)
    return msg


def _set(path: str, value: int) -> Callable[[edge_to_hub_pb2.ShortList], None]:
    def change(s: edge_to_hub_pb2.ShortList) -> None:
        *parents, name = path.split(".")
        target = s
        for part in parents:
            target = target.query_crops[0] if part == "crop0" else getattr(target, part)
        setattr(target, name, value)
    return change


BAD_TIMES = [  # (short list change, what the error names)
    (_set("span.end.seconds", HUGE_S), "span end: expected a time in [0, "),
    (_set("span.start.seconds", -HUGE_S), "span start: expected a time in [0, "),
    (_set("created_at.seconds", HUGE_S), "created at: expected a time"),
    (_set("crop0.captured_at.seconds", -5), "query crop 0: captured at: expected a time"),
    (_set("span.end.seconds", 3 * 86_400), "expected at most 86400 s from start to end"),
    (_set("track_id", -1), "track id: expected 0.."),
]


def test_times_and_counts_out_of_bounds_are_refused_naming_the_field(make_hub: Callable[..., Hub],
                                                                      kit: types.SimpleNamespace) -> None:
    hub = make_hub()
    red = hub.gallery.enroll([kit.jpeg("red", seed=40)]).identity_id
    token = hub.auth.create_token("edge-a").token

    async def run() -> None:
        port = await hub.start()
        edge = await open_session(kit, port, token)
        for n, (change, detail) in enumerate(BAD_TIMES):
            await edge.send(_short_list_with(kit, f"bad-{n}", change))
            error = await edge.recv_until(lambda m: m.WhichOneof("body") == "error")
            assert error.error.code == INVALID and detail in error.error.message, (n, error.error.message)
            assert (await edge.ack_key(f"bad-{n}")).ack.status == REJECTED
        heartbeats = [
            (edge_to_hub_pb2.EdgeHeartbeat(sent_at={"seconds": HUGE_S}), "heartbeat: sent at"),
            (edge_to_hub_pb2.EdgeHeartbeat(outbox_depth=-3), "heartbeat: outbox depth"),
            (edge_to_hub_pb2.EdgeHeartbeat(cameras=[edge_to_hub_pb2.CameraStats(
                camera_id="cam-1", gap_since={"seconds": -HUGE_S})]), "gap since"),
            (edge_to_hub_pb2.EdgeHeartbeat(cameras=[edge_to_hub_pb2.CameraStats(
                camera_id="cam-1", dropped_frames=-1)]), "dropped frames"),
        ]
        for heartbeat, detail in heartbeats:
            await edge.send(session_pb2.EdgeMessage(heartbeat=heartbeat))
            error = await edge.recv_until(lambda m: m.WhichOneof("body") == "error")
            assert error.error.code == INVALID and detail in error.error.message, error.error.message
        await edge.send(session_pb2.EdgeMessage(ack=edge_to_hub_pb2.EdgeAck(hub_sequence=2**64 - 1)))
        error = await edge.recv_until(lambda m: m.WhichOneof("body") == "error")
        assert "hub sequence" in error.error.message
        await edge.send(kit.short_list("good", "red", [(red, 0.2)]))  # the stream is alive
        assert (await edge.ack_key("good")).ack.status == OK
        await edge.close()
        assert [s.idempotency_key for s in hub.store.sightings()] == ["good"]  # no sighting at 2^62 s
        assert "outbox_depth" not in hub.store.get_edge("edge-a").stats  # type: ignore[union-attr]
        await hub.stop()

    asyncio.run(run())


def test_wire_bounds_follow_the_hub_clock() -> None:
    bounds = SessionLimits(max_clock_skew_s=60.0).wire_bounds(1_700_000_000.0)
    ts = common_pb2.TimeRange(start={"seconds": 1_700_000_000}, end={"seconds": 1_700_000_059}).end
    assert bounds.time("t", ts) == 1_700_000_059.0
    ts.seconds += 2
    with pytest.raises(wire.InvalidInputError, match=r"t: expected a time in \[0, 1700000060\]"):
        bounds.time("t", ts)
    with pytest.raises(ValueError, match="earliest_s"):
        SessionLimits(earliest_time_s=float("nan"))


# ------------------------------------------------------------------ finding 10: no edge-id enumeration
def _status(port: int, kit: types.SimpleNamespace, token: str | None, hello_edge: str) -> tuple[grpc.StatusCode, str]:
    async def run() -> tuple[grpc.StatusCode, str]:
        edge = kit.EdgeClient(port, token)
        try:
            await edge.send(kit.hello(hello_edge))
            while True:
                await edge.recv()
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
        finally:
            await edge.close()
    return asyncio.run(run())


def test_unknown_and_known_edges_are_refused_alike(make_hub: Callable[..., Hub], kit: types.SimpleNamespace,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    hub = make_hub()
    good = hub.auth.create_token("edge-a").token
    other = hub.auth.create_token("edge-b").token

    async def run() -> list[tuple[grpc.StatusCode, str]]:
        port = await hub.start()
        cases = [(good, "edge-nobody"),  # an unknown edge
                 (other, "edge-a"),  # a known edge, another edge's token
                 (good[:-3] + "zzz", "edge-a"),  # a known edge, a wrong secret
                 ("cvt_0123456789abcdef_" + "x" * 40, "edge-nobody")]  # nothing known at all
        got = [await asyncio.to_thread(_status, port, kit, token, edge_id) for token, edge_id in cases]
        await hub.stop()
        return got

    with caplog.at_level(logging.WARNING, logger="cloud.handshake"):
        got = asyncio.run(run())
    assert set(got) == {(grpc.StatusCode.UNAUTHENTICATED, "edge credentials refused")}
    logged = caplog.text  # the hub's log says why (once per interval per address)
    assert "edge credentials from" in logged and "unknown edge 'edge-nobody'" in logged


# ------------------------------------------------------------------ rate-limited logging
def test_a_misbehaving_edge_does_not_fill_the_log(make_hub: Callable[..., Hub], kit: types.SimpleNamespace,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(edge_session, "limited_log", RateLimitedLog(edge_session.log, interval_s=10.0,
                                                                    clock=lambda: 0.0))  # time stands still
    hub = make_hub()
    token = hub.auth.create_token("edge-a").token

    async def run() -> None:
        port = await hub.start()
        edge = await open_session(kit, port, token, raw=True)
        for n in range(200):
            await edge.send(b"\x0a\xff" + bytes([n]))
        for _ in range(200):
            await edge.recv_until(lambda m: m.WhichOneof("body") == "error")
        await edge.close()
        await hub.stop()

    with caplog.at_level(logging.WARNING, logger="cloud.edge_session"):
        asyncio.run(run())
    lines = [r for r in caplog.records if "sent an invalid message" in r.getMessage()]
    assert len(lines) == 1  # 200 errors answered, one line logged
