"""Fuzz: 10,000 random and mutated EdgeMessages on one session; the hub answers, survives, stays bounded.
Then the hostile short-list shapes of issue 12 one by one: huge declared JPEG dimensions, 16 large crops,
+-2^62 s spans, keys naming other edges, over-long integers; each refused with the stream alive."""

from __future__ import annotations

import asyncio
import functools
import random
import types
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloud.hub import Hub
from cloud.store import HubStore
from protos.crossview.v1 import common_pb2, edge_to_hub_pb2, session_pb2

MESSAGES = 10_000
RSS_GROWTH_LIMIT_MB = 64
HUGE_S = 2**62


def declaring(data: bytes, height: int, width: int) -> bytes:
    """JPEG bytes whose start-of-frame header claims height x width (the image data is unchanged)."""
    at = data.index(b"\xff\xc0") + 5
    return data[:at] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[at + 4:]


@functools.cache
def big_jpeg(side: int = 4096) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((side, side, 3), (40, 90, 200), np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def seeds(kit: types.SimpleNamespace, identity: str) -> list[session_pb2.EdgeMessage]:
    result = session_pb2.EdgeMessage(search_result=edge_to_hub_pb2.SearchResult(
        job_id="job", edge_id="edge-a", idempotency_key="job/0", done=True,
        hits=[edge_to_hub_pb2.SearchHit(tracklet_id="t", camera_id="cam-1", crop=common_pb2.CropImage(
            jpeg=kit.jpeg("red")), vector=kit.short_list("x", "red", []).short_list.query_vector)]))
    return [
        kit.short_list("seed-1", "red", [(identity, 0.2), ("id-unknown", 0.4)]),
        kit.short_list("seed-2", "blue", [(identity, 0.7)], n_crops=1),
        session_pb2.EdgeMessage(ack=edge_to_hub_pb2.EdgeAck(hub_sequence=1, gallery_version=1)),
        session_pb2.EdgeMessage(heartbeat=edge_to_hub_pb2.EdgeHeartbeat(
            outbox_depth=4, cameras=[edge_to_hub_pb2.CameraStats(camera_id="cam-1", fps=9.5)])),
        kit.hello(),
        result,
    ]


def field_mutation(rng: random.Random, seed: session_pb2.EdgeMessage) -> bytes:
    """A well-formed message with one field set to something odd."""
    msg = session_pb2.EdgeMessage()
    msg.CopyFrom(seed)
    if msg.WhichOneof("body") != "short_list":
        return msg.SerializeToString()
    s = msg.short_list
    s.idempotency_key = f"fz-{rng.getrandbits(40):x}"
    choice = rng.randrange(13)
    if choice == 0:
        s.query_vector.shape[:] = [rng.randrange(-2, 40) for _ in range(rng.randrange(0, 4))]
    elif choice == 1:
        s.query_vector.dtype = rng.choice(["float64", "int8", "", "float16", "bfloat16"])
    elif choice == 2:
        s.query_vector.data = rng.randbytes(rng.randrange(0, 100))
    elif choice == 3:
        s.query_crops[0].jpeg = rng.randbytes(rng.randrange(0, 64))
    elif choice == 4:
        s.query_crops[0].width, s.query_crops[0].height = rng.randrange(-5, 9999), rng.randrange(-5, 9999)
    elif choice == 5:
        s.candidates.add(identity_id=rng.choice(["", "\x00", "x" * 300, "id-?"]), stage1_distance=float("nan"))
    elif choice == 6:
        s.camera_id = rng.choice(["", "\x00cam", "c" * 1000, "cam-2"])
    elif choice == 7:
        s.span.end.seconds = rng.randrange(-(2**40), 2**40)
    elif choice == 8:
        s.gallery_version = rng.randrange(-(2**63), 2**63)
    elif choice == 9:  # issue 12: a header declaring a huge image
        s.query_crops[0].jpeg = declaring(s.query_crops[0].jpeg, rng.randrange(2049, 65536), rng.randrange(1, 65536))
    elif choice == 10:
        getattr(s.span, rng.choice(["start", "end"])).seconds = rng.choice([HUGE_S, -HUGE_S, 2**40])
    elif choice == 11:
        s.idempotency_key = f"shortlist/edge-b/t-{rng.randrange(4)}/g0"  # another edge's key
    else:
        s.track_id = rng.choice([-1, -(2**63)])
        s.created_at.seconds = rng.choice([HUGE_S, -HUGE_S, -1])
    return msg.SerializeToString()


def byte_mutation(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    choice = rng.randrange(5)
    if choice == 0 and data:  # flip bits
        for _ in range(rng.randrange(1, 9)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif choice == 1:  # truncate
        data = data[: rng.randrange(len(data) + 1)]
    elif choice == 2:  # insert junk
        at = rng.randrange(len(data) + 1)
        data[at:at] = rng.randbytes(rng.randrange(1, 32))
    elif choice == 3 and data:  # repeat a slice
        a = rng.randrange(len(data))
        data[a:a] = data[a: a + rng.randrange(1, 64)]
    else:  # pure noise
        data = bytearray(rng.randbytes(rng.randrange(0, 256)))
    return bytes(data)


def test_fuzzed_session_survives(make_hub: Callable[..., Hub], kit: types.SimpleNamespace,
                                 open_store: Callable[[], HubStore]) -> None:
    hub = make_hub(store=open_store())  # on SQLite and on PostgreSQL
    identity = hub.gallery.enroll([kit.jpeg("red", seed=60)]).identity_id
    token = hub.auth.create_token("edge-a").token
    rng = random.Random(20240601)
    pool = seeds(kit, identity)
    raw_pool = [m.SerializeToString() for m in pool]

    async def run() -> None:
        port = await hub.start()
        edge = kit.EdgeClient(port, token, raw=True)
        await edge.send(kit.hello().SerializeToString())
        assert (await edge.recv()).WhichOneof("body") == "welcome"
        replies: Counter[str] = Counter()
        final_acks: asyncio.Queue[edge_to_hub_pb2.EdgeAck] = asyncio.Queue()

        async def read() -> None:
            while True:
                message = await edge.call.read()
                if message is grpc.aio.EOF:
                    return
                replies[message.WhichOneof("body")] += 1
                if message.WhichOneof("body") == "ack" and message.ack.idempotency_key == "final":
                    final_acks.put_nowait(message.ack)

        reader = asyncio.create_task(read())
        baseline = 0.0
        for n in range(MESSAGES):
            if n == MESSAGES // 10:
                await asyncio.sleep(0.2)
                baseline = rss_mb()  # after warm-up: caches, pools and the first database pages exist
            seed = rng.randrange(len(pool))
            payload = field_mutation(rng, pool[seed]) if rng.random() < 0.3 else byte_mutation(rng, raw_pool[seed])
            await edge.send(payload)
            if n % 500 == 0:
                await asyncio.sleep(0)
        # the session is still there and still works
        for _ in range(200):
            await edge.send(kit.short_list("final", "red", [(identity, 0.2)]).SerializeToString())
            ack = await asyncio.wait_for(final_acks.get(), 60)
            if ack.status in (common_pb2.ACK_STATUS_OK, common_pb2.ACK_STATUS_DUPLICATE):
                break
            await asyncio.sleep(0.05)  # RETRY: the hub is still verifying the fuzzed short lists
        assert ack.status in (common_pb2.ACK_STATUS_OK, common_pb2.ACK_STATUS_DUPLICATE)
        growth = rss_mb() - baseline
        assert growth < RSS_GROWTH_LIMIT_MB, f"RSS grew {growth:.0f} MB over {MESSAGES} messages"
        assert replies["error"] > MESSAGES // 4 and replies["welcome"] == 0  # bad input was answered
        assert hub.sessions.connected_edges() == ["edge-a"]
        session = hub.sessions.sessions["edge-a"]
        assert len(session._immediate) <= hub.sessions.limits.send_queue_size
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        reader.cancel()
        await edge.close()
        await hub.stop()

    asyncio.run(run())


def hostile_short_lists(kit: types.SimpleNamespace, identity: str) -> list[tuple[str, bytes, str]]:
    """(name, message bytes, what the refusal says) for the short-list shapes of issue 12."""
    def shaped(key: str, change: Callable[[edge_to_hub_pb2.ShortList], None]) -> bytes:
        msg = kit.short_list(key, "red", [(identity, 0.2)])
        change(msg.short_list)
        return msg.SerializeToString()

    def big_crops(s: edge_to_hub_pb2.ShortList) -> None:
        del s.query_crops[:]
        s.query_crops.extend(common_pb2.CropImage(jpeg=big_jpeg(), camera_id="cam-1") for _ in range(16))

    def declared(s: edge_to_hub_pb2.ShortList) -> None:
        s.query_crops[0].jpeg = declaring(s.query_crops[0].jpeg, 60000, 60000)

    def far_span(seconds: int) -> Callable[[edge_to_hub_pb2.ShortList], None]:
        def change(s: edge_to_hub_pb2.ShortList) -> None:
            (s.span.end if seconds > 0 else s.span.start).seconds = seconds
        return change

    def overlong_int(key: str) -> bytes:  # track_id (field 5) as an 11-byte varint: 2^70, more than 64 bits
        inner = kit.short_list(key, "red", []).short_list.SerializeToString() + b"\x28" + b"\x80" * 10 + b"\x01"
        return b"\x12" + _varint(len(inner)) + inner  # EdgeMessage.short_list (field 2)

    cases = [(f"16 crops of 4096x4096 #{n}", shaped(f"big-{n}", big_crops), "4096x4096") for n in range(8)]
    cases += [
        ("a header declaring 60000x60000", shaped("declared", declared), "60000x60000"),
        ("a span ending at 2^62 s", shaped("late", far_span(HUGE_S)), "span end: expected a time"),
        ("a span starting at -2^62 s", shaped("early", far_span(-HUGE_S)), "span start: expected a time"),
        ("a track id of -1", shaped("negative", lambda s: setattr(s, "track_id", -1)), "track id"),
        ("a track id of 2^70", overlong_int("overlong"), "malformed"),
    ]
    return cases


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def test_hostile_short_list_shapes_are_refused_with_the_stream_alive(make_hub: Callable[..., Hub],
                                                                     kit: types.SimpleNamespace) -> None:
    hub = make_hub()
    identity = hub.gallery.enroll([kit.jpeg("red", seed=60)]).identity_id
    token_a, token_b = hub.auth.create_token("edge-a").token, hub.auth.create_token("edge-b").token

    async def run() -> None:
        port = await hub.start()
        edge = kit.EdgeClient(port, token_a, raw=True)
        await edge.send(kit.hello().SerializeToString())
        assert (await edge.recv()).WhichOneof("body") == "welcome"
        for name, payload, detail in hostile_short_lists(kit, identity):
            await edge.send(payload)
            error = await edge.recv_until(lambda m: m.WhichOneof("body") == "error")
            assert error.error.code == common_pb2.ERROR_CODE_INVALID_ARGUMENT and not error.error.fatal, name
            assert detail in error.error.message, (name, error.error.message)
        # edge-a takes keys naming edge-b: they are edge-a's own, and edge-b's real short lists still count
        for n in range(3):
            key = f"shortlist/edge-b/t-{n}/g0"
            await edge.send(kit.short_list(key, "red", [(identity, 0.2)]).SerializeToString())
            assert (await edge.ack_key(key)).ack.status == common_pb2.ACK_STATUS_OK
        other = kit.EdgeClient(port, token_b)
        await other.send(kit.hello("edge-b"))
        assert (await other.recv()).WhichOneof("body") == "welcome"
        for n in range(3):
            key = f"shortlist/edge-b/t-{n}/g0"
            await other.send(kit.short_list(key, "red", [(identity, 0.2)], edge_id="edge-b"))
            assert (await other.ack_key(key)).ack.status == common_pb2.ACK_STATUS_OK, key
        await edge.send(kit.short_list("final", "red", [(identity, 0.2)]).SerializeToString())
        assert (await edge.ack_key("final")).ack.status == common_pb2.ACK_STATUS_OK
        assert sorted(hub.sessions.connected_edges()) == ["edge-a", "edge-b"]
        assert hub.store.count_short_lists("edge-a") == 4 and hub.store.count_short_lists("edge-b") == 3
        await other.close()
        await edge.close()
        await hub.stop()

    asyncio.run(run())
