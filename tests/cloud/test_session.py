"""The EdgeHub session over real gRPC on 127.0.0.1, with the generated stub as the edge."""

from __future__ import annotations

import asyncio
import threading
import types
from collections.abc import AsyncIterator, Callable

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloud.hub import Hub
from cloud.server import RETRY_AFTER_KEY, SERVICE_NAME
from cloud.sessions import SessionLimits
from protos import codec
from protos.crossview.v1 import common_pb2, edge_to_hub_pb2, hub_to_edge_pb2, session_pb2

OK, DUPLICATE, REJECTED, RETRY = (common_pb2.ACK_STATUS_OK, common_pb2.ACK_STATUS_DUPLICATE,
                                  common_pb2.ACK_STATUS_REJECTED, common_pb2.ACK_STATUS_RETRY)
INVALID = common_pb2.ERROR_CODE_INVALID_ARGUMENT


def body(kind: str) -> Callable[[session_pb2.HubMessage], bool]:
    return lambda m: m.WhichOneof("body") == kind


def verdict_for(key: str) -> Callable[[session_pb2.HubMessage], bool]:
    return lambda m: m.WhichOneof("body") == "verdict" and m.verdict.idempotency_key == key


async def open_session(kit: types.SimpleNamespace, port: int, token: str, **hello: object) -> tuple:
    edge = kit.EdgeClient(port, token)
    await edge.send(kit.hello(**hello))
    welcome = await edge.recv()
    assert welcome.WhichOneof("body") == "welcome", welcome
    return edge, welcome.welcome


def test_hello_delta_short_lists_and_verdicts(make_hub: Callable[..., Hub], kit: types.SimpleNamespace) -> None:
    hub = make_hub()
    red = hub.gallery.enroll([kit.jpeg("red", seed=40)], display_name="Red", watchlist_threshold=0.3).identity_id
    blue = hub.gallery.enroll([kit.jpeg("blue", seed=40)]).identity_id
    token = hub.auth.create_token("edge-a").token

    async def run() -> None:
        port = await hub.start()
        edge, welcome = await open_session(kit, port, token)
        assert (welcome.accepted_model_fingerprint, welcome.resume_gallery_version) == (kit.FP, 0)
        assert welcome.max_message_bytes == hub.sessions.limits.max_message_bytes and welcome.hub_id == hub.hub_id
        delta_msg = await edge.recv_until(body("gallery_delta"))
        delta = delta_msg.gallery_delta
        assert delta.full_snapshot and delta.from_version == 0 and delta.to_version == hub.gallery.version()
        assert delta_msg.sequence == welcome.resume_hub_sequence
        upserts = {u.identity_id: u for u in delta.upserts}
        assert set(upserts) == {red, blue} and upserts[red].watchlist_threshold == pytest.approx(0.3)
        vectors = codec.vector_from_proto(upserts[red].vectors[0], kit.DIM, kit.FP)  # the edge's own model
        assert vectors.shape == (1, kit.DIM)
        await edge.send(session_pb2.EdgeMessage(ack=edge_to_hub_pb2.EdgeAck(
            hub_sequence=delta_msg.sequence, gallery_version=delta.to_version)))

        await edge.send(kit.short_list("k1", "red", [(blue, 0.3), (red, 0.32)]))
        assert (await edge.ack_key("k1")).ack.status == OK
        verdict = await edge.recv_until(verdict_for("k1"))
        assert verdict.sequence > delta_msg.sequence
        assert (verdict.verdict.decision, verdict.verdict.identity_id, verdict.verdict.tracklet_id) == (
            hub_to_edge_pb2.DECISION_CONFIRMED, red, "t-k1")
        await edge.send(kit.short_list("k1", "red", [(red, 0.32)]))  # a retry after a lost ack
        assert (await edge.ack_key("k1")).ack.status == DUPLICATE
        await edge.send(kit.short_list("k2", "blue", [(red, 0.6)]))
        assert (await edge.ack_key("k2")).ack.status == OK
        rejected = await edge.recv_until(verdict_for("k2"))
        assert rejected.verdict.decision == hub_to_edge_pb2.DECISION_REJECTED and rejected.sequence > verdict.sequence
        await edge.send(session_pb2.EdgeMessage(heartbeat=edge_to_hub_pb2.EdgeHeartbeat(outbox_depth=3)))
        await edge.send(session_pb2.EdgeMessage(ack=edge_to_hub_pb2.EdgeAck(hub_sequence=rejected.sequence)))
        await edge.call.done_writing()  # half-close: the hub finishes and ends the call with OK
        while (await edge.call.read()) is not grpc.aio.EOF:
            pass
        assert await edge.call.code() == grpc.StatusCode.OK
        await edge.close()
        assert hub.store.count_short_lists("edge-a") == 2
        assert [s.idempotency_key for s in hub.store.sightings(identity_id=red)] == ["k1"]
        assert len(hub.store.alerts()) == 1  # red is on the watchlist
        record = hub.store.get_edge("edge-a")
        assert record is not None and record.stats["outbox_depth"] == 3 and record.connected_hub_id is None
        assert hub.store.count_outgoing("edge-a") == 0  # everything was acknowledged
        await hub.stop()

    asyncio.run(run())


def test_gallery_changes_reach_connected_edges(make_hub: Callable[..., Hub], kit: types.SimpleNamespace) -> None:
    hub = make_hub()
    token = hub.auth.create_token("edge-a").token

    async def run() -> None:
        port = await hub.start()
        edge, _ = await open_session(kit, port, token)
        green = (await asyncio.to_thread(hub.gallery.enroll, [kit.jpeg("green")], display_name="G")).identity_id
        first = (await edge.recv_until(body("gallery_delta"))).gallery_delta
        assert first.from_version == 0 and [u.identity_id for u in first.upserts] == [green]
        await asyncio.to_thread(hub.gallery.set_watchlist, green, 0.2)
        second = (await edge.recv_until(body("gallery_delta"))).gallery_delta
        assert second.from_version == first.to_version and second.upserts[0].watchlist_threshold == pytest.approx(0.2)
        await asyncio.to_thread(hub.gallery.remove, green)
        third = (await edge.recv_until(body("gallery_delta"))).gallery_delta
        assert third.from_version == second.to_version and list(third.removals) == [green]
        await edge.close()
        await hub.stop()

    asyncio.run(run())


def test_a_delta_the_edge_cannot_apply_is_resent_as_a_snapshot(make_hub: Callable[..., Hub],
                                                               kit: types.SimpleNamespace) -> None:
    hub = make_hub()
    token = hub.auth.create_token("edge-a").token

    async def run() -> None:
        port = await hub.start()
        edge, _ = await open_session(kit, port, token)
        red = (await asyncio.to_thread(hub.gallery.enroll, [kit.jpeg("red")])).identity_id
        first = await edge.recv_until(body("gallery_delta"))
        await edge.send(session_pb2.EdgeMessage(ack=edge_to_hub_pb2.EdgeAck(
            hub_sequence=first.sequence, status=REJECTED, error_message="edge: disk full")))
        snapshot = await edge.recv_until(body("gallery_delta"))
        assert snapshot.sequence > first.sequence and snapshot.gallery_delta.full_snapshot
        assert [u.identity_id for u in snapshot.gallery_delta.upserts] == [red]
        # a failed verdict is not a gallery problem: no snapshot follows it
        await edge.send(kit.short_list("k1", "red", [(red, 0.1)]))
        verdict = await edge.recv_until(verdict_for("k1"))
        await edge.send(session_pb2.EdgeMessage(ack=edge_to_hub_pb2.EdgeAck(hub_sequence=verdict.sequence,
                                                                            status=REJECTED)))
        await edge.send(kit.short_list("k2", "red", [(red, 0.1)]))
        following = await edge.recv_until(lambda m: m.sequence > verdict.sequence)
        assert following.WhichOneof("body") == "verdict" and following.verdict.idempotency_key == "k2"
        await edge.close()
        await hub.stop()

    asyncio.run(run())


def test_resume_after_reconnect(make_hub: Callable[..., Hub], kit: types.SimpleNamespace) -> None:
    hub = make_hub()
    red = hub.gallery.enroll([kit.jpeg("red")]).identity_id
    token = hub.auth.create_token("edge-a").token

    async def run() -> None:
        port = await hub.start()
        edge, _ = await open_session(kit, port, token)
        delta = await edge.recv_until(body("gallery_delta"))
        await edge.send(kit.short_list("k1", "red", [(red, 0.2)]))
        verdict = await edge.recv_until(verdict_for("k1"))
        await edge.close()  # dropped before acking anything

        # the edge applied the delta but not the verdict: it resumes from there
        edge, welcome = await open_session(kit, port, token, gallery_version=delta.gallery_delta.to_version,
                                           last_acked=delta.sequence)
        assert welcome.resume_gallery_version == delta.gallery_delta.to_version
        assert welcome.resume_hub_sequence == verdict.sequence
        again = await edge.recv_until(lambda m: m.sequence > 0)
        assert again == verdict  # re-sent, same sequence; no new gallery delta (it is up to date)
        await edge.send(session_pb2.EdgeMessage(ack=edge_to_hub_pb2.EdgeAck(hub_sequence=verdict.sequence)))
        await edge.send(kit.short_list("k1", "red", [(red, 0.2)]))  # re-sent from its outbox too
        assert (await edge.ack_key("k1")).ack.status == DUPLICATE
        await edge.close()

        edge, welcome = await open_session(kit, port, token, gallery_version=delta.gallery_delta.to_version,
                                           last_acked=verdict.sequence)
        assert welcome.resume_hub_sequence == verdict.sequence + 1  # nothing left to re-send
        await edge.send(kit.short_list("k2", "red", [(red, 0.2)]))
        assert (await edge.recv_until(lambda m: m.sequence > 0)).verdict.idempotency_key == "k2"
        await edge.close()
        await hub.stop()

    asyncio.run(run())


def _short_list(kit: types.SimpleNamespace, key: str, change: Callable[[edge_to_hub_pb2.ShortList], None]) -> bytes:
    msg = kit.short_list(key, "red", [("id-x", 0.2)])
    change(msg.short_list)
    return msg.SerializeToString()


def _set_vector(shape: list[int], dtype: str = "float32", fp: str | None = None) -> Callable:
    def change(s: edge_to_hub_pb2.ShortList) -> None:
        data = np.ones(shape, np.float16 if dtype == "float16" else np.float32).tobytes() if dtype != "int8" else b"\1"
        s.query_vector.CopyFrom(common_pb2.Vector(data=data, dtype=dtype, shape=shape,
                                                  model_fingerprint=fp or s.query_vector.model_fingerprint))
    return change


def _set_crop(jpeg: bytes) -> Callable:
    def change(s: edge_to_hub_pb2.ShortList) -> None:
        s.query_crops[0].jpeg = jpeg
    return change


BAD_INPUTS: list[tuple[str, Callable[[types.SimpleNamespace], bytes], str, bool]] = [
    ("corrupt bytes", lambda kit: b"\x0a\xff", "malformed EdgeMessage", False),
    ("no body", lambda kit: b"", "exactly one body", False),
    ("wrong fingerprint", lambda kit: _short_list(kit, "b1", _set_vector([kit.DIM], fp=kit.OTHER_FP)),
     "fingerprint", True),
    ("wrong dimension", lambda kit: _short_list(kit, "b2", _set_vector([kit.DIM + 1])), "dimension", True),
    ("wrong shape", lambda kit: _short_list(kit, "b3", _set_vector([2, 3, kit.DIM])), "shape", True),
    ("two query vectors", lambda kit: _short_list(kit, "b4", _set_vector([2, kit.DIM])), "one query vector", True),
    ("wrong dtype", lambda kit: _short_list(kit, "b5", _set_vector([kit.DIM], dtype="int8")), "dtype", True),
    ("oversized crop", lambda kit: _short_list(kit, "b6", _set_crop(b"\xff\xd8" + b"\0" * 600_000 + b"\xff\xd9")),
     "at most", True),
    ("non-JPEG crop", lambda kit: _short_list(kit, "b7", _set_crop(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)),
     "expected a JPEG", True),
    ("empty crop", lambda kit: _short_list(kit, "b8", _set_crop(b"")), "empty crop", True),
    ("no crops", lambda kit: _short_list(kit, "b9", lambda s: s.ClearField("query_crops")), "query crop", True),
    ("no key", lambda kit: _short_list(kit, "", lambda s: None), "idempotency key", False),
    ("another edge's", lambda kit: _short_list(kit, "b10", lambda s: setattr(s, "edge_id", "edge-b")),
     "edge id", True),
    ("backwards time", lambda kit: _short_list(kit, "b11", lambda s: s.span.CopyFrom(
        codec.time_range_to_proto(5, 5)) or setattr(s.span.end, "seconds", 1)), "end >= start", True),
]


def test_bad_input_is_answered_and_the_session_survives(make_hub: Callable[..., Hub],
                                                        kit: types.SimpleNamespace) -> None:
    hub = make_hub()
    red = hub.gallery.enroll([kit.jpeg("red")]).identity_id
    token = hub.auth.create_token("edge-a").token

    async def run() -> None:
        port = await hub.start()
        edge = kit.EdgeClient(port, token, raw=True)
        await edge.send(kit.hello().SerializeToString())
        assert (await edge.recv()).WhichOneof("body") == "welcome"
        for n, (name, make, detail, keyed) in enumerate(BAD_INPUTS):
            payload = make(kit)
            await edge.send(payload)
            error = await edge.recv_until(body("error"))
            assert error.error.code == INVALID and detail in error.error.message and not error.error.fatal, name
            if keyed:
                key = session_pb2.EdgeMessage.FromString(payload).short_list.idempotency_key
                ack = await edge.ack_key(key)
                assert ack.ack.status == REJECTED and detail in ack.ack.error_message, name
            # ... and the session goes on: a good short list still gets its verdict
            await edge.send(kit.short_list(f"good-{n}", "red", [(red, 0.2)]).SerializeToString())
            assert (await edge.ack_key(f"good-{n}")).ack.status == OK, name
        await edge.send(kit.hello().SerializeToString())  # Hello twice: refused, not fatal
        error = await edge.recv_until(body("error"))
        assert error.error.code == common_pb2.ERROR_CODE_FAILED_PRECONDITION and not error.error.fatal
        assert hub.store.count_short_lists() == len(BAD_INPUTS)  # only the good ones were recorded
        await edge.close()
        await hub.stop()

    asyncio.run(run())


async def _final_status(edge: types.SimpleNamespace) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        while True:
            await edge.recv()
    return ended.value


@pytest.mark.parametrize(("hello_kwargs", "first", "code", "error_code", "detail"), [
    ({"fingerprint": "reid/unknown@000000000000"}, None, grpc.StatusCode.FAILED_PRECONDITION,
     common_pb2.ERROR_CODE_FINGERPRINT_MISMATCH, "cannot accept vectors"),
    ({"dim": 99}, None, grpc.StatusCode.INVALID_ARGUMENT, INVALID, "embedding dimension 12"),
    ({"fingerprint": ""}, None, grpc.StatusCode.INVALID_ARGUMENT, INVALID, "expected a model fingerprint"),
    ({}, b"", grpc.StatusCode.FAILED_PRECONDITION, common_pb2.ERROR_CODE_FAILED_PRECONDITION, "Hello first"),
    ({}, b"\x0a\xff", grpc.StatusCode.INVALID_ARGUMENT, INVALID, "malformed"),
])
def test_bad_hello_ends_the_session(make_hub: Callable[..., Hub], kit: types.SimpleNamespace, hello_kwargs: dict,
                                    first: bytes | None, code: grpc.StatusCode, error_code: int, detail: str) -> None:
    hub = make_hub()
    token = hub.auth.create_token("edge-a").token

    async def run() -> None:
        port = await hub.start()
        edge = kit.EdgeClient(port, token, raw=True)
        await edge.send(first if first is not None else kit.hello(**hello_kwargs).SerializeToString())
        status = await _final_status(edge)
        assert status.code() == code and detail in (status.details() or "")
        (error,) = edge.received
        assert error.error.code == error_code and error.error.fatal
        await edge.close()
        await hub.stop()

    asyncio.run(run())


def test_oversized_message_is_refused_and_the_hub_stays_up(make_hub: Callable[..., Hub],
                                                           kit: types.SimpleNamespace) -> None:
    hub = make_hub(limits=SessionLimits(max_message_bytes=64 * 1024, heartbeat_interval_ms=60_000))
    token = hub.auth.create_token("edge-a").token

    async def run() -> None:
        port = await hub.start()
        edge, welcome = await open_session(kit, port, token)
        assert welcome.max_message_bytes == 64 * 1024
        big = kit.short_list("big", "red", [])
        big.short_list.tracklet_id = "t" * 100_000
        await edge.send(big)
        assert (await _final_status(edge)).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await edge.close()
        edge, _ = await open_session(kit, port, token)  # a new session works
        await edge.send(kit.short_list("small", "red", []))
        assert (await edge.ack_key("small")).ack.status == OK
        await edge.close()
        await hub.stop()

    asyncio.run(run())


class Gate:
    def __init__(self, inner: object) -> None:
        self.inner, self.name = inner, "gated"
        self.open = threading.Event()

    def verify(self, request: object) -> object:
        assert self.open.wait(30)
        return self.inner.verify(request)  # type: ignore[attr-defined]


def test_backpressure_answers_retry(make_hub: Callable[..., Hub], kit: types.SimpleNamespace) -> None:
    hub = make_hub(limits=SessionLimits(max_inflight_per_edge=2, retry_after_ms=750, heartbeat_interval_ms=60_000))
    gate = Gate(hub.shortlists.verifier)
    hub.shortlists.verifier = gate  # type: ignore[assignment]
    token = hub.auth.create_token("edge-a").token

    async def run() -> None:
        port = await hub.start()
        edge, _ = await open_session(kit, port, token)
        for key in ("k1", "k2", "k3", "k4"):
            await edge.send(kit.short_list(key, "red", []))
        for key in ("k3", "k4"):  # two are being verified: the rest must wait in the edge's outbox
            ack = (await edge.ack_key(key)).ack
            assert ack.status == RETRY and "retry after 750 ms" in ack.error_message
        gate.open.set()
        for key in ("k1", "k2"):
            assert (await edge.ack_key(key)).ack.status == OK
        await edge.send(kit.short_list("k3", "red", []))
        assert (await edge.ack_key("k3")).ack.status == OK
        assert hub.sessions.inflight == 0
        await edge.close()
        await hub.stop()

    asyncio.run(run())


def test_an_edge_that_stops_reading_is_disconnected(make_hub: Callable[..., Hub], kit: types.SimpleNamespace) -> None:
    """Transport-independent: `send` never completes (the edge reads nothing), the edge keeps sending.
    Over a socket gRPC buffers megabytes first, which no test should have to fill."""
    hub = make_hub(limits=SessionLimits(send_queue_size=3, send_stall_s=0.2, retry_after_ms=5000,
                                        heartbeat_interval_ms=60_000))
    hub.auth.create_token("edge-a")

    async def run() -> None:
        sent: list[session_pb2.HubMessage] = []
        stuck = asyncio.Event()

        async def send(message: session_pb2.HubMessage) -> None:
            sent.append(message)
            if message.WhichOneof("body") != "welcome":
                await stuck.wait()  # never set

        async def requests() -> AsyncIterator[bytes]:
            yield kit.hello().SerializeToString()
            for _ in range(50):
                yield b""  # each is answered with an Error the edge never reads
                await asyncio.sleep(0)
            await asyncio.Event().wait()  # the edge keeps the stream open

        from cloud.sessions import SessionAbort

        with pytest.raises(SessionAbort) as ended:
            await asyncio.wait_for(hub.sessions.serve("edge-a", requests(), send), 30)
        assert ended.value.status == "resource_exhausted" and ended.value.retry_after_ms == 5000
        assert len(sent) <= 2  # welcome, then the one write that never finished: nothing piled up
        assert hub.sessions.sessions == {}
        hub.sessions.close()
        hub.executor.shutdown()
        hub.store.close()

    asyncio.run(run())


def test_health_and_graceful_shutdown(make_hub: Callable[..., Hub], kit: types.SimpleNamespace) -> None:
    hub = make_hub()
    token = hub.auth.create_token("edge-a").token

    async def run() -> None:
        port = await hub.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        edge, _ = await open_session(kit, port, token)

        stopping = asyncio.create_task(hub.stop(grace_s=2))
        assert (await asyncio.wait_for(watch.read(), 10)).status == health_pb2.HealthCheckResponse.NOT_SERVING
        status = await _final_status(edge)
        assert status.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in (status.details() or "")
        assert dict(status.trailing_metadata() or ())[RETRY_AFTER_KEY] == str(hub.sessions.limits.retry_after_ms)
        assert edge.received[-1].error.fatal and edge.received[-1].error.code == common_pb2.ERROR_CODE_UNAVAILABLE
        await stopping
        await edge.close()
        await channel.close()

    asyncio.run(run())


def test_a_newer_session_replaces_the_old_one(make_hub: Callable[..., Hub], kit: types.SimpleNamespace) -> None:
    hub = make_hub()
    token = hub.auth.create_token("edge-a").token

    async def run() -> None:
        port = await hub.start()
        old, _ = await open_session(kit, port, token)
        new, _ = await open_session(kit, port, token)
        status = await _final_status(old)
        assert status.code() == grpc.StatusCode.UNAVAILABLE and "replaced" in (status.details() or "")
        await new.send(kit.short_list("k1", "red", []))
        assert (await new.ack_key("k1")).ack.status == OK
        assert hub.sessions.connected_edges() == ["edge-a"]
        await old.close()
        await new.close()
        await hub.stop()

    asyncio.run(run())


def test_silent_edges_are_disconnected(make_hub: Callable[..., Hub], kit: types.SimpleNamespace) -> None:
    hub = make_hub(limits=SessionLimits(heartbeat_interval_ms=100, missed_heartbeats=3, poll_interval_s=0.05))
    token = hub.auth.create_token("edge-a").token

    async def run() -> None:
        port = await hub.start()
        edge, welcome = await open_session(kit, port, token)
        assert welcome.heartbeat_interval_ms == 100
        status = await _final_status(edge)
        assert status.code() == grpc.StatusCode.UNAVAILABLE and "no message from edge" in (status.details() or "")
        assert any(body("heartbeat")(m) for m in edge.received)  # the hub sent its own heartbeats
        assert edge.received[-1].error.code == common_pb2.ERROR_CODE_DEADLINE_EXCEEDED
        await edge.close()
        await hub.stop()

    asyncio.run(run())


def test_replicas_share_the_database(make_hub: Callable[..., Hub], kit: types.SimpleNamespace,
                                     tmp_path: object) -> None:
    """Two hubs on one database: a change made on one reaches an edge connected to the other."""
    database = f"{tmp_path}/shared.db"
    limits = SessionLimits(poll_interval_s=0.1, heartbeat_interval_ms=60_000)
    a = make_hub(database=database, limits=limits)
    b = make_hub(database=database, limits=limits)
    token = a.auth.create_token("edge-a").token

    async def run() -> None:
        port = await a.start()
        edge, _ = await open_session(kit, port, token)
        green = (await asyncio.to_thread(b.gallery.enroll, [kit.jpeg("green")])).identity_id  # on replica b
        delta = (await edge.recv_until(body("gallery_delta"))).gallery_delta
        assert [u.identity_id for u in delta.upserts] == [green]
        payload = session_pb2.HubMessage(verdict=hub_to_edge_pb2.Verdict(idempotency_key="from-b")).SerializeToString()
        (sequence,) = await asyncio.to_thread(b.store.enqueue_outgoing, "edge-a", "verdict", [payload], now=0.0)
        message = await edge.recv_until(verdict_for("from-b"))
        assert message.sequence == sequence
        await edge.close()
        await a.stop()

    asyncio.run(run())
