"""Fuzz: 10,000 random and mutated EdgeMessages on one session; the hub answers, survives, stays bounded."""

from __future__ import annotations

import asyncio
import random
import types
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloud.hub import Hub
from cloud.store import HubStore
from protos.crossview.v1 import common_pb2, edge_to_hub_pb2, session_pb2

MESSAGES = 10_000
RSS_GROWTH_LIMIT_MB = 64


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
    choice = rng.randrange(9)
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
    else:
        s.gallery_version = rng.randrange(-(2**63), 2**63)
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
