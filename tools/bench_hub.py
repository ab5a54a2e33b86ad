"""Load test of one hub: N simulated edges send short lists for a while; latency, throughput, loss.

    python tools/bench_hub.py --edges 20 --duration 60 --judge reid [--json]
    python tools/bench_hub.py --edges 20 --duration 60 --judge reid --reference-duration 20

One in-process `cloud.hub.Hub` (SQLite in a temporary folder) serves 127.0.0.1. A few identities are
enrolled from real crops (CUHK03 val, ``$CROSSVIEW_DATA/cuhk03_labeled/val``). Each simulated edge is
a real gRPC client on its own channel using the generated stub: Hello (bearer token) -> Welcome ->
apply and ack the gallery deltas -> send ShortList messages (real crops, query vector of the edge
model `--edge-model`, candidates ranked by that vector against the gallery, unique idempotency keys)
and handle every HubAck: OK/DUPLICATE done, RETRY re-sent after the hint, REJECTED counted as an error.
Verdicts are acked (hub sequence + key), heartbeats sent every few seconds.

Rate: closed loop by default -- each edge keeps at most `--window` short lists unacknowledged (1:
the next goes out when the previous is acked), so queues stay bounded whatever the judge's speed;
`--rate-per-edge R` additionally paces each edge to at most R new short lists per second (open-loop
schedule, still capped by the window).

After `--duration` s no new short list is sent; the bench waits for the outstanding ones (and their
verdicts) and reports:

- ``shortlists_per_s``: short lists acked OK during the run / wall time from first send to last OK
- ``p50_ms``/``p99_ms``: first ShortList send -> HubAck OK (retries included)
- ``errors``: Error messages, REJECTED acks, broken streams, undeliverable deltas, anything raised
- ``lost``: keys sent but never acked OK/DUPLICATE, plus keys acked OK with no verdict in the hub store
- ``peak_rss_mb``: VmHWM of this process (hub + edges + models), read from /proc/self/status

``--judge none`` replaces the judge with a stub verifier (first candidate confirmed, no model run):
a transport/store ceiling, NOT a stage-two figure. ``--reference-duration S`` runs that stub as a
second, clearly labelled run in the same process after the main one (key ``reference``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import sys
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc

from cloud.hub import Hub
from cloud.sessions import SessionLimits
from cloud.verification import VerifyRequest, VerifyResult
from protos import codec
from protos.crossview.v1 import common_pb2, edge_to_hub_pb2, session_pb2, session_pb2_grpc

log = logging.getLogger("bench_hub")

OK, DUPLICATE, REJECTED, RETRY = (common_pb2.ACK_STATUS_OK, common_pb2.ACK_STATUS_DUPLICATE,
                                  common_pb2.ACK_STATUS_REJECTED, common_pb2.ACK_STATUS_RETRY)
_RETRY_HINT = re.compile(r"retry after (\d+) ms")
STUB_JUDGE = "none"


class StubVerifier:
    """No judge at all: the first candidate is confirmed. For the transport ceiling only."""

    name = "none (stub verifier, no model)"
    thread_safe = True

    def verify(self, request: VerifyRequest) -> VerifyResult:
        if not request.candidates:
            return VerifyResult("rejected", None)
        first = request.candidates[0].identity_id
        return VerifyResult("confirmed", first, p_same=1.0, scores={first: 1.0})


def peak_rss_mb() -> float:
    """Peak resident set size of this process (VmHWM), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ----------------------------------------------------------------------------------------- workload
@dataclass
class Workload:
    """Real crops: identities to enroll (their photos) and query tracklets (crops + edge vector)."""

    fingerprint: str
    dim: int
    enroll: list[tuple[str, list[bytes]]]  # (identity id, JPEGs)
    queries: list[tuple[list[bytes], np.ndarray, list[tuple[str, float]]]]  # crops, vector, candidates


def _unique(jpeg: bytes, n: int, edge_id: str) -> bytes:
    """`jpeg` with its top-left 2x2 pixels set from (edge, n): new content, the same person."""
    import cv2

    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    seed = zlib.crc32(f"{edge_id}:{n}".encode())
    image[:2, :2] = np.frombuffer(seed.to_bytes(4, "little") * 3, np.uint8).reshape(2, 2, 3)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def build_workload(data_dir: Path, edge_model: str, *, identities: int, candidates: int,
                   enroll_per_id: int = 2, query_crops: int = 2) -> Workload:
    import cv2

    from models.embed import create_embedder

    files = sorted(data_dir.glob("*.jpg"))
    if not files:
        raise SystemExit(f"no crops in {data_dir} (set CROSSVIEW_DATA)")
    by_person: dict[str, list[Path]] = {}
    for path in files:
        by_person.setdefault(path.stem.split("_")[0], []).append(path)
    people = [p for p, paths in sorted(by_person.items()) if len(paths) >= enroll_per_id + query_crops][:identities]
    embedder = create_embedder(edge_model)
    enroll, refs, ids = [], [], []
    query_sets: list[list[bytes]] = []
    for person in people:
        paths = by_person[person]
        identity = f"person-{person}"
        jpegs = [p.read_bytes() for p in paths[:enroll_per_id]]
        enroll.append((identity, jpegs))
        ids.append(identity)
        refs.append(embedder.embed([cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR)
                                    for j in jpegs]).vectors.mean(axis=0))
        rest = paths[enroll_per_id:]
        for i in range(0, len(rest) - query_crops + 1, query_crops):
            query_sets.append([p.read_bytes() for p in rest[i:i + query_crops]])
    gallery = np.asarray(refs, np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    queries = []
    for jpegs in query_sets:
        images = [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in jpegs]
        vector = embedder.embed(images).vectors.mean(axis=0)
        vector = (vector / np.linalg.norm(vector)).astype(np.float32)
        distances = 1.0 - gallery @ vector
        order = np.argsort(distances)[:candidates]
        queries.append((jpegs, vector, [(ids[i], float(distances[i])) for i in order]))
    return Workload(embedder.fingerprint, int(embedder.dim), enroll, queries)


# -------------------------------------------------------------------------------------------- edges
@dataclass
class Stats:
    sent: dict[str, float] = field(default_factory=dict)  # key -> first send time
    acked: dict[str, int] = field(default_factory=dict)  # key -> OK / DUPLICATE
    latencies_ms: list[float] = field(default_factory=list)
    verdicts: set[str] = field(default_factory=set)
    retries: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    first_send: float | None = None
    last_ok: float | None = None

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(what)
        log.warning("%s", what)


class SimEdge:
    """One simulated edge: its own channel, one session stream, a window of outstanding short lists."""

    def __init__(self, edge_id: str, token: str, port: int, work: Workload, stats: Stats, *, run_id: str,
                 window: int, rate: float | None, offset: int) -> None:
        self.edge_id, self.token, self.port, self.work, self.stats = edge_id, token, port, work, stats
        self.run_id, self.window, self.rate, self.offset = run_id, window, rate, offset
        self.gallery_version = 0
        self.pending: dict[str, asyncio.Future[int]] = {}
        self.free = asyncio.Semaphore(window)
        self.gallery_ready = asyncio.Event()
        self.target_version = 0
        self._write_lock = asyncio.Lock()
        self.call: Any = None
        self.outstanding: set[asyncio.Task[None]] = set()

    async def _write(self, message: session_pb2.EdgeMessage) -> None:
        async with self._write_lock:
            await self.call.write(message)

    def _short_list(self, n: int) -> tuple[str, session_pb2.EdgeMessage]:
        """Short list `n`: a query set of the workload (cycled) with pixels made unique to this message, as
        every real tracklet's crops are (the judge may cache vectors by content: only references repeat)."""
        jpegs, vector, candidates = self.work.queries[(self.offset + n) % len(self.work.queries)]
        key = f"{self.run_id}:{self.edge_id}:{n}"
        now = time.time()
        msg = edge_to_hub_pb2.ShortList(
            idempotency_key=key, edge_id=self.edge_id, camera_id="cam-1", tracklet_id=f"t-{self.edge_id}-{n}",
            track_id=n, span=codec.time_range_to_proto(now - 2.0, now),
            query_crops=[common_pb2.CropImage(jpeg=_unique(j, n, self.edge_id), camera_id="cam-1") for j in jpegs],
            query_vector=codec.vector_to_proto(vector, self.work.fingerprint),
            candidates=[edge_to_hub_pb2.Candidate(identity_id=i, stage1_distance=d, rank=r)
                        for r, (i, d) in enumerate(candidates)],
            created_at=codec.seconds_to_timestamp(now), gallery_version=self.gallery_version)
        return key, session_pb2.EdgeMessage(short_list=msg)

    async def run(self, stop_at: float, drain_s: float) -> None:
        loop = asyncio.get_running_loop()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            self.call = session_pb2_grpc.EdgeHubStub(channel).Session(
                metadata=(("authorization", f"Bearer {self.token}"),))
            await self._write(session_pb2.EdgeMessage(hello=edge_to_hub_pb2.Hello(
                edge_id=self.edge_id, site="bench", model_fingerprint=self.work.fingerprint,
                embedding_dim=self.work.dim, software_version="bench_hub",
                cameras=[edge_to_hub_pb2.CameraInfo(camera_id="cam-1", name="bench", fps=10.0)])))
            if self.target_version == 0:
                self.gallery_ready.set()
            first = await self.call.read()
            if first is grpc.aio.EOF or first.WhichOneof("body") != "welcome":
                self.stats.error(f"{self.edge_id}: expected Welcome, got {first}")
                return
            reader = asyncio.create_task(self._read_loop())
            beats = asyncio.create_task(self._heartbeats())
            try:
                with contextlib.suppress(TimeoutError):  # deltas follow Welcome; short lists rank against them
                    await asyncio.wait_for(self.gallery_ready.wait(), 30.0)
                await self._send_loop(stop_at)
                deadline = loop.time() + drain_s
                while self.outstanding and loop.time() < deadline:
                    await asyncio.wait(set(self.outstanding), timeout=max(0.1, deadline - loop.time()))
                # verdicts are queued before the OK ack; give the writer a moment to deliver the last ones
                while loop.time() < deadline and any(k not in self.stats.verdicts for k in self._my_ok()):
                    await asyncio.sleep(0.05)
            finally:
                for task in self.outstanding:
                    task.cancel()
                beats.cancel()
                with contextlib.suppress(Exception):
                    await self.call.done_writing()
                with contextlib.suppress(asyncio.TimeoutError, Exception):
                    await asyncio.wait_for(reader, 5.0)
                reader.cancel()

    def _my_ok(self) -> list[str]:
        prefix = f"{self.run_id}:{self.edge_id}:"
        return [k for k, s in list(self.stats.acked.items()) if s == OK and k.startswith(prefix)]

    async def _send_loop(self, stop_at: float) -> None:
        n = 0
        # paced edges start spread over one period, so the schedule has no initial burst
        next_at = time.monotonic() + ((self.offset * 0.618) % 1.0) / self.rate if self.rate else 0.0
        while time.monotonic() < stop_at:
            if self.rate:
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_at = max(next_at + 1.0 / self.rate, time.monotonic() - 1.0)
            await self.free.acquire()
            if time.monotonic() >= stop_at:
                self.free.release()
                break
            key, message = self._short_list(n)
            n += 1
            task = asyncio.create_task(self._deliver(key, message))
            self.outstanding.add(task)
            task.add_done_callback(self.outstanding.discard)

    async def _deliver(self, key: str, message: session_pb2.EdgeMessage) -> None:
        """Send until the hub answers OK or DUPLICATE (RETRY: wait the hint and re-send the same key)."""
        loop = asyncio.get_running_loop()
        stats = self.stats
        try:
            while True:
                future: asyncio.Future[int] = loop.create_future()
                self.pending[key] = future
                sent = time.perf_counter()
                stats.sent.setdefault(key, sent)
                if stats.first_send is None:
                    stats.first_send = sent
                await self._write(message)
                status, text = await future
                if status in (OK, DUPLICATE):
                    stats.acked[key] = status
                    if status == OK:
                        now = time.perf_counter()
                        stats.latencies_ms.append((now - stats.sent[key]) * 1000)
                        stats.last_ok = now
                    return
                if status == RETRY:
                    stats.retries += 1
                    hint = _RETRY_HINT.search(text)
                    await asyncio.sleep(int(hint.group(1)) / 1000 if hint else 1.0)
                    continue
                stats.error(f"{self.edge_id}: short list {key} answered {common_pb2.AckStatus.Name(status)}: {text}")
                return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stats.error(f"{self.edge_id}: short list {key}: {type(exc).__name__}: {exc}")
        finally:
            self.pending.pop(key, None)
            self.free.release()

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(3.0)
            with contextlib.suppress(Exception):
                await self._write(session_pb2.EdgeMessage(heartbeat=edge_to_hub_pb2.EdgeHeartbeat(
                    sent_at=codec.seconds_to_timestamp(time.time()), outbox_depth=len(self.pending),
                    gallery_version=self.gallery_version)))

    async def _read_loop(self) -> None:
        stats = self.stats
        try:
            while True:
                msg = await self.call.read()
                if msg is grpc.aio.EOF:
                    break
                body = msg.WhichOneof("body")
                if body == "ack":
                    future = self.pending.get(msg.ack.idempotency_key)
                    if future is not None and not future.done():
                        future.set_result((msg.ack.status, msg.ack.error_message))
                    elif msg.ack.status not in (OK, DUPLICATE):
                        stats.error(f"{self.edge_id}: unexpected ack {msg.ack}")
                elif body == "gallery_delta":
                    delta = msg.gallery_delta
                    if delta.full_snapshot or delta.from_version == self.gallery_version:
                        self.gallery_version = delta.to_version
                        await self._write(session_pb2.EdgeMessage(ack=edge_to_hub_pb2.EdgeAck(
                            hub_sequence=msg.sequence, gallery_version=self.gallery_version, status=OK)))
                    else:
                        stats.error(f"{self.edge_id}: delta from {delta.from_version}, "
                                    f"edge holds {self.gallery_version}")
                    if self.gallery_version >= self.target_version:
                        self.gallery_ready.set()
                elif body == "verdict":
                    stats.verdicts.add(msg.verdict.idempotency_key)
                    await self._write(session_pb2.EdgeMessage(ack=edge_to_hub_pb2.EdgeAck(
                        hub_sequence=msg.sequence, idempotency_key=msg.verdict.idempotency_key, status=OK)))
                elif body == "error":
                    stats.error(f"{self.edge_id}: hub error {common_pb2.ErrorCode.Name(msg.error.code)}: "
                                f"{msg.error.message}")
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                stats.error(f"{self.edge_id}: stream ended {exc.code().name}: {exc.details()}")
        except Exception as exc:
            stats.error(f"{self.edge_id}: reader: {type(exc).__name__}: {exc}")
        finally:
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("the stream ended"))


# ------------------------------------------------------------------------------------------ one run
async def run_bench(*, edges: int, duration_s: float, judge: str, work: Workload, window: int = 1,
                    rate_per_edge: float | None = None, drain_s: float = 180.0,
                    data_dir: Path | None = None) -> dict[str, Any]:
    """One hub, `edges` simulated edges for `duration_s`; the result fields of the module doc."""
    with tempfile.TemporaryDirectory(prefix="bench-hub-") as tmp:
        root = Path(data_dir or tmp)
        kwargs: dict[str, Any] = {}
        if judge == STUB_JUDGE:
            kwargs["verifier"] = StubVerifier()
        hub = Hub.create(data_dir=root / "hub", judge=judge, accepted_fingerprints=[work.fingerprint],
                         limits=SessionLimits(heartbeat_interval_ms=5_000, poll_interval_s=1.0), **kwargs)
        try:
            for identity, jpegs in work.enroll:
                await asyncio.to_thread(hub.gallery.enroll, jpegs, identity_id=identity, display_name=identity)
            tokens = [hub.auth.create_token(f"bench-edge-{i:02d}").token for i in range(edges)]
            port = await hub.start(port=0, host="127.0.0.1")
            stats = Stats()
            run_id = uuid.uuid4().hex[:8]
            target = hub.gallery.version()
            sims = []
            for i, token in enumerate(tokens):
                sim = SimEdge(f"bench-edge-{i:02d}", token, port, work, stats, run_id=run_id, window=window,
                              rate=rate_per_edge, offset=i * 7)
                sim.target_version = target
                sims.append(sim)
            t0 = time.monotonic()
            stop_at = t0 + duration_s
            results = await asyncio.gather(*(s.run(stop_at, drain_s) for s in sims), return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    stats.error(f"edge task: {type(r).__name__}: {r}")
            wall = time.monotonic() - t0
            not_acked = [k for k in stats.sent if k not in stats.acked]
            ok_keys = [k for k, s in stats.acked.items() if s == OK]
            missing = [k for k in ok_keys if await asyncio.to_thread(hub.store.get_verdict, k) is None]
            no_verdict = [k for k in ok_keys if k not in stats.verdicts]
        finally:
            await hub.stop()
    lat = np.asarray(stats.latencies_ms) if stats.latencies_ms else np.zeros(1)
    busy = (stats.last_ok - stats.first_send) if stats.last_ok and stats.first_send else 0.0
    return {
        "judge": (StubVerifier.name if judge == STUB_JUDGE else judge),
        "edges": edges,
        "duration_s": duration_s,
        "window": window,
        "rate_per_edge": rate_per_edge,
        "shortlists_ok": len(ok_keys),
        "shortlists_per_s": round(len(ok_keys) / busy, 3) if busy > 0 else 0.0,
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "max_ms": round(float(lat.max()), 1),
        "retries": stats.retries,
        "verdicts_received": len(stats.verdicts),
        "verdicts_not_received": len(no_verdict),
        "errors": stats.errors,
        "lost": len(not_acked) + len(missing),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "wall_s": round(wall, 1),
        "error_samples": stats.error_samples,
    }


def format_table(result: dict[str, Any]) -> str:
    keys = ["judge", "edges", "duration_s", "window", "rate_per_edge", "shortlists_ok", "shortlists_per_s",
            "p50_ms", "p99_ms", "max_ms", "retries", "verdicts_received", "errors", "lost", "peak_rss_mb"]
    lines = ["| field | value |", "|---|---|"] + [f"| {k} | {result[k]} |" for k in keys]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edges", type=int, default=20)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of sending")
    parser.add_argument("--judge", default="reid", help=f"models.verify judge, or {STUB_JUDGE!r} (stub verifier)")
    parser.add_argument("--rate-per-edge", type=float, default=None, help="new short lists/s per edge (paced)")
    parser.add_argument("--window", type=int, default=1, help="unacknowledged short lists per edge (closed loop)")
    parser.add_argument("--reference-duration", type=float, default=0.0,
                        help="then run the stub verifier this long as a labelled transport reference (0: no)")
    parser.add_argument("--edge-model", default="reid/intel-0288", help="the edges' Re-ID model (zoo name)")
    parser.add_argument("--identities", type=int, default=8, help="identities enrolled from real crops")
    parser.add_argument("--candidates", type=int, default=5, help="candidates per short list")
    parser.add_argument("--drain", type=float, default=180.0, help="seconds to wait for outstanding short lists")
    parser.add_argument("--data", type=Path, default=None, help="crops folder (default CUHK03 labeled val)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data = args.data or Path(os.environ.get("CROSSVIEW_DATA", "data")) / "cuhk03_labeled" / "val"
    work = build_workload(data, args.edge_model, identities=args.identities, candidates=args.candidates)
    result = asyncio.run(run_bench(edges=args.edges, duration_s=args.duration, judge=args.judge, work=work,
                                   window=args.window, rate_per_edge=args.rate_per_edge, drain_s=args.drain))
    if args.reference_duration > 0 and args.judge != STUB_JUDGE:
        result["reference"] = asyncio.run(run_bench(
            edges=args.edges, duration_s=args.reference_duration, judge=STUB_JUDGE, work=work,
            window=args.window, rate_per_edge=args.rate_per_edge, drain_s=args.drain))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
        if "reference" in result:
            print("\nreference (transport ceiling, stub verifier -- NOT stage two):")
            print(format_table(result["reference"]))
    failed = result["errors"] or result["lost"] or result.get("reference", {}).get("errors", 0) \
        or result.get("reference", {}).get("lost", 0)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
