"""One edge's session: the crossview.v1 session protocol (session.proto), independent of gRPC.

One `EdgeSession` per open stream, run by `cloud.sessions.SessionManager`, which gives it the hub's
services and the replica's admission counter (`cloud.edge_session_types`). It reads raw EdgeMessage
bytes (so a malformed message is answered, not fatal to the stream) and writes HubMessages through a
`send` coroutine:

- **Hello first** (`cloud.handshake`: the edge's token and model). The hub then computes vectors of
  that model for any identity lacking them, queues gallery deltas from the edge's version, answers
  Welcome, re-sends unacknowledged sequenced messages and the new deltas.
- **Sequenced messages** (GalleryDelta, Verdict) live in the store's `outgoing` table until the edge
  acks their sequence; the writer streams them in sequence order from there, so their memory is
  bounded by a page, whatever the backlog, and replicas can queue messages for each other's edges
  (each writer polls the store every `poll_interval_s`).
- **Bad input is answered, not fatal**: an unparseable message or one without a body gets Error
  INVALID_ARGUMENT; an invalid short list (wrong fingerprint or shape, empty, oversized or non-JPEG
  crop, ...) gets Error INVALID_ARGUMENT plus HubAck REJECTED for its key, so the edge drops it from
  its outbox. The stream goes on. Messages over `max_message_bytes` are refused by gRPC itself
  (RESOURCE_EXHAUSTED, stream closed), before any of this code runs.
- **Decoding off the event loop, within a byte budget** (issue 12, finding 5). A short list's cheap
  checks (ids, times, counts, every crop's JPEG header: at most `max_crop_pixels`) run on the loop;
  its crops are decoded in a small thread pool shared by all sessions (`DECODE_WORKERS`), and search
  results' too. What a short list will hold decoded counts against its edge's `decode_budget_bytes`
  until its verdict: one more than fits is answered HubAck RETRY without decoding (REJECTED when it
  could never fit). Times and counts out of bounds (`SessionLimits.wire_bounds`) are INVALID_ARGUMENT.
- **Repeated errors are logged once per interval** per edge and kind (`cloud.log_limits`), with the
  count held back, so a misbehaving edge cannot fill the log.
- **Backpressure, in two steps.** (1) At most `max_inflight_per_edge` short lists per edge and
  `max_inflight_total` per hub are verified at a time; one more is answered HubAck RETRY with
  "retry after N ms", and the edge keeps it in its outbox. (2) Immediate replies (acks, errors) wait
  in a queue of `send_queue_size`; when the edge does not read them for `send_stall_s`, the session
  ends with RESOURCE_EXHAUSTED and trailing metadata ``retry-after-ms``. Memory per edge is bounded.
- **Liveness**: the hub sends HubHeartbeat every `heartbeat_interval_ms` (and asks the edge for the same
  in Welcome); an edge silent for `heartbeat_timeout_s` (default: `missed_heartbeats` intervals) is
  disconnected. Each edge heartbeat marks the edge connected to this replica in the store, and
  `SessionManager.sweep_silent_edges` marks disconnected those no replica has heard from within the
  timeout (a replica that died holding a session never says it ended).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError

from cloud import wire
from cloud.edge_session_types import Admission, Send, SessionAbort, SessionLimits, SessionServices
from cloud.handshake import HelloInput, fatal, handshake
from cloud.log_limits import RateLimitedLog
from cloud.waits import wait_event
from models.errors import InvalidInputError
from protos.crossview.v1 import common_pb2, edge_to_hub_pb2, session_pb2

if TYPE_CHECKING:
    from cloud.gallery import GalleryDeltaPart

log = logging.getLogger(__name__)
limited_log = RateLimitedLog(log, interval_s=10.0)

DECODE_WORKERS = min(4, os.cpu_count() or 1)
_decode_pool: ThreadPoolExecutor | None = None
_decode_pool_lock = threading.Lock()


def decode_pool() -> ThreadPoolExecutor:
    """The threads that decode edges' JPEG crops (bounded; shared by every session in the process)."""
    global _decode_pool
    with _decode_pool_lock:
        if _decode_pool is None:
            _decode_pool = ThreadPoolExecutor(DECODE_WORKERS, thread_name_prefix="crossview-decode")
        return _decode_pool

class EdgeSession:
    """One edge's stream; created and run by `SessionManager.serve`."""

    def __init__(self, services: SessionServices, admission: Admission, limits: SessionLimits,
                 token_edge_id: str | None, peer: str) -> None:
        self.services, self.admission, self.limits = services, admission, limits
        self.token_edge_id = token_edge_id
        self.peer = peer
        self.edge_id = ""
        self.fingerprint = ""
        self.dim: int | None = None
        self._loop = asyncio.get_running_loop()
        self._immediate: collections.deque[session_pb2.HubMessage] = collections.deque()
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._last_sent = 0  # highest sequence written to the stream
        self._gallery_version = 0  # version the edge holds once it applies what was queued
        self._gallery_dirty = False
        self._outgoing_dirty = True
        self._inflight: set[asyncio.Task[None]] = set()
        self._closing: SessionAbort | None = None
        self._resume_gallery_version = 0
        self._reader_done = False
        self._writer: asyncio.Task[None] | None = None
        self._writer_killed = False
        self._sending = False
        self._resync_floor = 0  # failed gallery deltas up to this sequence are already being resynced
        self._last_heard = self._loop.time()
        self._decode_bytes = 0  # decode budget taken by this edge's short lists in flight

    # ------------------------------------------------------------------ thread-safe notifications
    def gallery_changed(self) -> None:
        self._loop.call_soon_threadsafe(self._mark, "_gallery_dirty")

    def outgoing_queued(self) -> None:
        self._loop.call_soon_threadsafe(self._mark, "_outgoing_dirty")

    def close(self, abort: SessionAbort) -> None:
        """End the session (call on the loop's thread): the writer tells the edge why in a fatal
        Error, unless it is stuck sending to an edge that does not read (then it is cancelled: at once
        for a stall, after `send_stall_s` otherwise)."""
        if self._closing is None:
            self._closing = abort
        self._wake.set()
        if abort.status == "resource_exhausted":
            self._kill_stuck_writer()
        self._loop.call_later(self.limits.send_stall_s, self._kill_stuck_writer)

    def _kill_stuck_writer(self) -> None:
        if self._sending and self._writer is not None and not self._writer.done():
            self._writer_killed = True
            self._writer.cancel()

    async def _write(self, send: Send, message: session_pb2.HubMessage) -> None:
        self._sending = True
        try:
            await send(message)
        finally:
            self._sending = False

    def silent_for(self) -> float:
        """Seconds since the edge's last message (on the loop's clock)."""
        return self._loop.time() - self._last_heard

    def _mark(self, flag: str) -> None:
        setattr(self, flag, True)
        self._wake.set()

    # ------------------------------------------------------------------ running
    async def run(self, requests: AsyncIterator[bytes], send: Send) -> None:
        """Serve the stream until the edge closes it (returns) or it must end (raises SessionAbort)."""
        welcome = await self._hello(requests, send)
        await send(welcome)
        reader = asyncio.create_task(self._read_loop(requests))
        self._writer = asyncio.create_task(self._write_loop(send))
        try:
            await self._writer
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._writer_killed and self._closing is not None and not (current and current.cancelling()):
                raise self._closing from None
            raise
        finally:
            reader.cancel()
            for task in list(self._inflight):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _hello(self, requests: AsyncIterator[bytes], send: Send) -> session_pb2.HubMessage:
        services = self.services
        hello = await handshake(requests, send, services=services, limits=self.limits,
                                token_edge_id=self.token_edge_id, peer=self.peer)
        self.edge_id, self.fingerprint, self.dim = hello.edge_id, hello.fingerprint, hello.dim
        services.register(self)
        await asyncio.to_thread(self._start, hello)
        log.debug("edge %s: session open, resuming at gallery version %d", self.edge_id,
                  self._resume_gallery_version)
        pending = await asyncio.to_thread(services.store.outgoing_after, self.edge_id, self._last_sent, limit=1)
        edge = await asyncio.to_thread(services.store.get_edge, self.edge_id)
        resume_sequence = pending[0].sequence if pending else (edge.last_sequence if edge else 0) + 1
        return wire.welcome(hub_id=services.hub_id, now_s=services.clock(), fingerprint=self.fingerprint,
                            resume_gallery_version=self._resume_gallery_version, resume_hub_sequence=resume_sequence,
                            heartbeat_interval_ms=self.limits.heartbeat_interval_ms,
                            max_message_bytes=self.limits.max_message_bytes)

    def _start(self, hello: HelloInput) -> None:
        """(worker thread) Record Hello, fill missing vectors, queue the first gallery deltas."""
        services = self.services
        services.store.record_hello(self.edge_id, site=hello.site, model_fingerprint=self.fingerprint,
                                    embedding_dim=self.dim or 0, cameras=hello.cameras,
                                    gallery_version=hello.gallery_version, acked_sequence=hello.last_acked_sequence,
                                    hub_id=services.hub_id, now=services.clock())
        self._last_sent = hello.last_acked_sequence
        services.gallery.ensure_fingerprint(self.fingerprint)
        self._gallery_version = hello.gallery_version
        deltas = self._queue_deltas()
        self._resume_gallery_version = deltas[0].from_version if deltas else hello.gallery_version

    def _queue_deltas(self) -> list[GalleryDeltaPart]:
        """(worker thread) Queue deltas from the version the edge will hold to the current one."""
        deltas = self.services.gallery.delta_since(self._gallery_version, self.fingerprint)
        if deltas:
            payloads = [wire.gallery_delta_payload(d, self.fingerprint) for d in deltas]
            self.services.store.enqueue_outgoing(self.edge_id, "gallery_delta", payloads, now=self.services.clock())
            self._gallery_version = deltas[-1].to_version
        return deltas

    async def _send_immediate(self, message: session_pb2.HubMessage) -> None:
        """Queue an ack or error; when the edge stops reading, end the session instead of growing."""
        while len(self._immediate) >= self.limits.send_queue_size and self._closing is None:
            self._space.clear()
            if not await wait_event(self._space, self.limits.send_stall_s):
                self.close(SessionAbort(
                    "resource_exhausted", f"edge {self.edge_id} did not read {len(self._immediate)} pending "
                    f"replies for {self.limits.send_stall_s:g} s; reconnect and retry later",
                    retry_after_ms=self.limits.retry_after_ms))
        if self._closing is None:
            self._immediate.append(message)
            self._wake.set()

    async def _write_loop(self, send: Send) -> None:
        limits = self.limits
        interval_s = limits.heartbeat_interval_ms / 1000
        next_heartbeat = self._loop.time() + interval_s
        next_poll = self._loop.time() + limits.poll_interval_s
        while True:
            while self._immediate and self._closing is None:
                message = self._immediate.popleft()
                self._space.set()
                await self._write(send, message)
            if self._closing is not None:
                with contextlib.suppress(Exception):
                    code = (common_pb2.ERROR_CODE_RESOURCE_EXHAUSTED if self._closing.status == "resource_exhausted"
                            else common_pb2.ERROR_CODE_UNAVAILABLE)
                    await self._write(send, wire.error(code, self._closing.message, fatal=True))
                raise self._closing
            now = self._loop.time()
            if now - self._last_heard > limits.silence_timeout_s:
                raise await fatal(send, common_pb2.ERROR_CODE_DEADLINE_EXCEEDED,
                                        f"no message from edge {self.edge_id} for {now - self._last_heard:.0f} s")
            if now >= next_heartbeat:
                next_heartbeat = now + interval_s
                await self._write(send, wire.hub_heartbeat(self.services.clock()))
            if now >= next_poll:
                next_poll = now + limits.poll_interval_s
                self._outgoing_dirty = True
                if await asyncio.to_thread(self.services.store.gallery_version) > self._gallery_version:
                    self._gallery_dirty = True
            if self._gallery_dirty:
                self._gallery_dirty = False
                await asyncio.to_thread(self._queue_deltas)
                self._outgoing_dirty = True
            if self._outgoing_dirty:
                self._outgoing_dirty = False
                rows = await asyncio.to_thread(self.services.store.outgoing_after, self.edge_id, self._last_sent,
                                               limit=limits.outgoing_page)
                for row in rows:
                    await self._write(send, wire.with_sequence(row.payload, row.sequence))
                    self._last_sent = row.sequence
                if len(rows) == limits.outgoing_page:
                    self._outgoing_dirty = True
                    continue
            if self._reader_done and not self._inflight and not self._immediate:
                return  # the edge half-closed and everything it is owed has been written
            if self._immediate or self._gallery_dirty or self._outgoing_dirty:
                continue
            self._wake.clear()
            timeout = max(0.0, min(next_heartbeat, next_poll, self._last_heard + limits.silence_timeout_s)
                          - self._loop.time())
            await wait_event(self._wake, timeout)

    # ------------------------------------------------------------------ reading
    async def _read_loop(self, requests: AsyncIterator[bytes]) -> None:
        try:
            async for raw in requests:
                self._last_heard = self._loop.time()
                try:
                    msg = session_pb2.EdgeMessage.FromString(raw)
                except DecodeError as exc:
                    await self._invalid(f"malformed EdgeMessage: {exc}")
                    continue
                body = msg.WhichOneof("body")
                if body == "short_list":
                    await self._on_short_list(msg.short_list)
                elif body == "ack":
                    await self._on_ack(msg.ack)
                elif body == "heartbeat":
                    await self._on_heartbeat(msg.heartbeat)
                elif body == "search_result":
                    await self._on_search_result(msg.search_result)
                elif body == "hello":
                    await self._send_immediate(wire.error(common_pb2.ERROR_CODE_FAILED_PRECONDITION,
                                                          "Hello: already received on this stream"))
                else:
                    await self._invalid("EdgeMessage: expected exactly one body, got none")
            if self._inflight:
                await asyncio.gather(*self._inflight, return_exceptions=True)
        except Exception as exc:  # a store failure, say: end the session, the edge reconnects
            log.exception("session of edge %s failed", self.edge_id)
            self.close(SessionAbort("unavailable", f"hub error ({type(exc).__name__}); reconnect later",
                                    retry_after_ms=self.limits.retry_after_ms))
        finally:
            self._reader_done = True
            self._wake.set()

    async def _invalid(self, message: str, kind: str = "message") -> None:
        limited_log.warning(f"{self.edge_id}/invalid {kind}", "edge %s sent an invalid %s: %s", self.edge_id,
                            kind, message)
        await self._send_immediate(wire.error(common_pb2.ERROR_CODE_INVALID_ARGUMENT, message))

    def _bounds(self) -> wire.WireBounds:
        return self.limits.wire_bounds(self.services.clock())

    async def _on_heartbeat(self, msg: edge_to_hub_pb2.EdgeHeartbeat) -> None:
        try:
            stats = wire.heartbeat_stats(msg, self._bounds())
        except InvalidInputError as exc:
            await self._invalid(str(exc), "heartbeat")
            return
        await asyncio.to_thread(self.services.store.touch_edge, self.edge_id, now=self.services.clock(),
                                stats=stats, hub_id=self.services.hub_id)

    async def _on_short_list(self, msg: edge_to_hub_pb2.ShortList) -> None:
        key = msg.idempotency_key
        limits = self.limits
        bounds = self._bounds()
        try:
            cost = wire.check_short_list(msg, edge_id=self.edge_id, bounds=bounds)
            if cost > limits.decode_budget_bytes:
                raise InvalidInputError(f"short list: expected at most {limits.decode_budget_bytes} bytes "
                                        f"decoded, got {cost}")
        except InvalidInputError as exc:
            await self._reject(key, exc)
            return
        if (len(self._inflight) >= limits.max_inflight_per_edge
                or self._decode_bytes + cost > limits.decode_budget_bytes or not self.admission.try_enter()):
            await self._send_immediate(wire.hub_ack(
                key, "retry", f"hub busy: {len(self._inflight)} short lists ({self._decode_bytes} bytes decoded) of "
                f"this edge and {self.admission.count} in all being verified; retry after {limits.retry_after_ms} ms"))
            return
        self._decode_bytes += cost
        task = asyncio.create_task(self._process(msg, bounds))
        self._inflight.add(task)
        task.add_done_callback(lambda t: self._task_done(t, cost))

    async def _reject(self, key: str, exc: InvalidInputError) -> None:
        await self._invalid(f"short list {key!r}: {exc}", "short list")
        if key:
            await self._send_immediate(wire.hub_ack(key, "rejected", f"invalid argument: {exc}"))

    def _task_done(self, task: asyncio.Task[None], cost: int) -> None:
        self._inflight.discard(task)
        self._decode_bytes -= cost
        self.admission.leave()
        self._wake.set()

    async def _process(self, msg: edge_to_hub_pb2.ShortList, bounds: wire.WireBounds) -> None:
        key = msg.idempotency_key
        try:
            item = await self._loop.run_in_executor(decode_pool(), lambda: wire.decode_short_list(
                msg, edge_id=self.edge_id, fingerprint=self.fingerprint, dim=self.dim, bounds=bounds))
        except InvalidInputError as exc:
            await self._reject(key, exc)
            return
        try:
            outcome = await self._loop.run_in_executor(self.services.executor, self.services.shortlists.process, item)
        except Exception as exc:
            limited_log.error(f"{self.edge_id}/short list failed", "short list %s of edge %s failed", key,
                              self.edge_id, exc_info=exc)
            await self._send_immediate(wire.hub_ack(key, "retry", f"internal error ({type(exc).__name__}); "
                                                    f"retry after {self.limits.retry_after_ms} ms"))
            return
        if outcome.status == "ok":
            self._outgoing_dirty = True
        await self._send_immediate(wire.hub_ack(key, outcome.status, outcome.message))

    async def _on_ack(self, msg: edge_to_hub_pb2.EdgeAck) -> None:
        try:
            ack = wire.decode_edge_ack(msg)
        except InvalidInputError as exc:
            await self._invalid(str(exc), "ack")
            return
        if ack.failed:
            limited_log.warning(f"{self.edge_id}/failed ack", "edge %s could not apply hub message %d (%s): %s",
                                self.edge_id, ack.hub_sequence, ack.status, ack.error_message)
        if (ack.failed and not ack.idempotency_key and ack.hub_sequence > self._resync_floor
                and await self._was_gallery_delta(ack.hub_sequence)):
            # resync from what the edge holds (0: a snapshot); deltas sent before now fail too: ignore them
            edge = await asyncio.to_thread(self.services.store.get_edge, self.edge_id)
            self._resync_floor = edge.last_sequence if edge else ack.hub_sequence
            self._gallery_version = ack.gallery_version
            self._gallery_dirty = True
            self._wake.set()
        if ack.hub_sequence:
            await asyncio.to_thread(self.services.store.ack_outgoing, self.edge_id, ack.hub_sequence)
        if ack.gallery_version:
            await asyncio.to_thread(self.services.store.touch_edge, self.edge_id, now=self.services.clock(),
                                    gallery_version=ack.gallery_version)

    async def _was_gallery_delta(self, sequence: int) -> bool:
        if not sequence:
            return True  # an edge that names no message: resyncing the gallery is the safe answer
        rows = await asyncio.to_thread(self.services.store.outgoing_after, self.edge_id, sequence - 1, limit=1)
        return bool(rows) and rows[0].sequence == sequence and rows[0].kind == "gallery_delta"

    async def _on_search_result(self, msg: edge_to_hub_pb2.SearchResult) -> None:
        key = msg.idempotency_key or f"{msg.job_id}/{msg.batch_index}"
        bounds = self._bounds()
        try:
            result = await self._loop.run_in_executor(decode_pool(), lambda: wire.decode_search_result(
                msg, dim=self.dim, fingerprint=self.fingerprint, bounds=bounds))
        except InvalidInputError as exc:
            await self._invalid(f"search result {key!r}: {exc}", "search result")
            await self._send_immediate(wire.hub_ack(key, "rejected", f"invalid argument: {exc}"))
            return
        handler = self.services.search_results
        if handler is None:
            await self._send_immediate(wire.hub_ack(key, "rejected", f"no search job {msg.job_id!r} on this hub"))
            return
        status, message = await asyncio.to_thread(handler, self.edge_id, result)
        await self._send_immediate(wire.hub_ack(key, status, message))
