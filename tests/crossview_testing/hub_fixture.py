"""A test hub: a real gRPC server on 127.0.0.1 speaking the crossview.v1 EdgeHub contract, test-only.

What it does: checks ``authorization: Bearer <token>`` (UNAUTHENTICATED otherwise), requires Hello
first and answers Welcome, decodes and records short lists and search results by idempotency key
(the first arrival is stored and acked OK, later arrivals DUPLICATE; every arrival is counted), and
records edge acks, hellos and heartbeats. `push_*` sends a sequenced GalleryDelta / SearchJob /
Verdict now or on the next session, and re-sends those after Hello.last_acked_hub_sequence on every
new session, as a hub must. `stop()` / `start()` take the server down and bring it back on the same
port; the recorded state survives, as a real hub's database would. Faults on demand: `hold_acks`
(record but never ack: a hub that dies before acking), `reject_keys`, `retry_once_keys`,
`overloaded_ms` (refuse every stream with RESOURCE_EXHAUSTED and a ``retry-after-ms`` trailer).

The real hub lives in cloud/; this one is deliberately small. Import it as
``from crossview_testing import hub_fixture`` (tests/ is on pytest's pythonpath).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc

from protos.codec import seconds_to_timestamp, short_list_from_proto
from protos.crossview.v1 import common_pb2, edge_to_hub_pb2, hub_to_edge_pb2, session_pb2, session_pb2_grpc

OK, DUPLICATE = common_pb2.ACK_STATUS_OK, common_pb2.ACK_STATUS_DUPLICATE
REJECTED, RETRY = common_pb2.ACK_STATUS_REJECTED, common_pb2.ACK_STATUS_RETRY


class HubFixture(session_pb2_grpc.EdgeHubServicer):
    """See the module docstring. Every attribute below is guarded by `cond`; read it via `wait_for`/`snapshot`."""

    def __init__(self, token: str = "test-token", *, hub_id: str = "test-hub", fingerprint: str | None = None,
                 heartbeat_interval_ms: int = 0, max_message_bytes: int = 0,
                 server_credentials: grpc.ServerCredentials | None = None) -> None:
        self.token, self.hub_id, self.fingerprint = token, hub_id, fingerprint
        self.server_credentials = server_credentials
        self.heartbeat_interval_ms, self.max_message_bytes = heartbeat_interval_ms, max_message_bytes
        self.cond = threading.Condition()
        self.short_lists: dict[str, edge_to_hub_pb2.ShortList] = {}
        self.accepted: list[str] = []  # keys stored, in order: a key twice here would be double processing
        self.deliveries: Counter[str] = Counter()  # every arrival, duplicates included
        self.search_results: dict[str, edge_to_hub_pb2.SearchResult] = {}
        self.edge_acks: list[edge_to_hub_pb2.EdgeAck] = []
        self.hellos: list[edge_to_hub_pb2.Hello] = []
        self.heartbeats: list[edge_to_hub_pb2.EdgeHeartbeat] = []
        self.auth_failures = 0
        self.hold_acks = False
        self.reject_keys: set[str] = set()
        self.retry_once_keys: set[str] = set()
        self.overloaded_ms: int | None = None
        self.overload_refusals = 0
        self._sequenced: list[session_pb2.HubMessage] = []
        self._out: queue.Queue[session_pb2.HubMessage | None] | None = None
        self._server: grpc.Server | None = None
        self.port = 0

    # -- server

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> HubFixture:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        session_pb2_grpc.add_EdgeHubServicer_to_server(self, server)
        address = f"127.0.0.1:{self.port}"
        if self.server_credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, self.server_credentials)
        if port == 0:
            raise RuntimeError(f"test hub: cannot bind 127.0.0.1:{self.port}")
        self.port = port
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Take the server down (active streams are cancelled); state is kept for `start()`."""
        if self._server is not None:
            self._server.stop(grace=None).wait(10)
            self._server = None
        with self.cond:
            if self._out is not None:
                self._out.put(None)
            self._out = None

    # -- control

    def push(self, **body: object) -> int:
        """Send one sequenced message (gallery_delta=..., search_job=... or verdict=...); returns its sequence."""
        with self.cond:
            msg = session_pb2.HubMessage(sequence=len(self._sequenced) + 1, **body)
            self._sequenced.append(msg)
            if self._out is not None:
                self._out.put(msg)
            return msg.sequence

    def send_raw(self, msg: session_pb2.HubMessage) -> None:
        """Put `msg` on the open stream as it is (e.g. an old sequence again, as a confused hub would)."""
        with self.cond:
            assert self._out is not None, "no open session"
            self._out.put(msg)

    def wait_for(self, predicate: Callable[[HubFixture], bool], timeout: float = 20.0, what: str = "") -> None:
        """Wait until `predicate(self)` holds (checked under the lock, on every change and every 50 ms)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"test hub: timed out waiting for {what or predicate}; "
                                         f"stored {sorted(self.short_lists)}, acks {list(self.edge_acks)}")
                self.cond.wait(min(left, 0.05))

    def acks_for(self, sequence: int) -> list[edge_to_hub_pb2.EdgeAck]:
        with self.cond:
            return [a for a in self.edge_acks if a.hub_sequence == sequence]

    # -- the service

    def Session(self, request_iterator: Iterator[session_pb2.EdgeMessage],
                context: grpc.ServicerContext) -> Iterator[session_pb2.HubMessage]:
        metadata = dict(context.invocation_metadata())
        if metadata.get("authorization") != f"Bearer {self.token}":
            with self.cond:
                self.auth_failures += 1
                self.cond.notify_all()
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        with self.cond:
            overloaded = self.overloaded_ms
            if overloaded is not None:
                self.overload_refusals += 1
                self.cond.notify_all()
        if overloaded is not None:
            context.set_trailing_metadata((("retry-after-ms", str(overloaded)),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "hub overloaded, retry later")
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("body") != "hello":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "expected Hello first")
        hello = first.hello
        if self.fingerprint is not None and hello.model_fingerprint != self.fingerprint:
            yield session_pb2.HubMessage(error=common_pb2.Error(
                code=common_pb2.ERROR_CODE_FINGERPRINT_MISMATCH, fatal=True,
                message=f"expected model {self.fingerprint!r}, got {hello.model_fingerprint!r}"))
            return
        out: queue.Queue[session_pb2.HubMessage | None] = queue.Queue()
        with self.cond:
            self.hellos.append(hello)
            if self._out is not None:
                self._out.put(None)  # one session per edge: the newest wins
            self._out = out
            for msg in self._sequenced:
                if msg.sequence > hello.last_acked_hub_sequence:
                    out.put(msg)
            self.cond.notify_all()
        yield session_pb2.HubMessage(welcome=hub_to_edge_pb2.Welcome(
            hub_id=self.hub_id, server_time=seconds_to_timestamp(time.time()),
            accepted_model_fingerprint=hello.model_fingerprint, resume_gallery_version=hello.gallery_version,
            resume_hub_sequence=hello.last_acked_hub_sequence + 1,
            heartbeat_interval_ms=self.heartbeat_interval_ms, max_message_bytes=self.max_message_bytes))
        reader = threading.Thread(target=self._read, args=(request_iterator, out, hello.model_fingerprint),
                                  daemon=True)
        reader.start()
        try:
            while context.is_active():
                try:
                    msg = out.get(timeout=0.05)
                except queue.Empty:
                    continue
                if msg is None:
                    break
                yield msg
        finally:
            with self.cond:
                if self._out is out:
                    self._out = None

    def _read(self, requests: Iterator[session_pb2.EdgeMessage], out: queue.Queue, fingerprint: str) -> None:
        try:
            for req in requests:
                reply = self._handle(req, fingerprint)
                if reply is not None:
                    out.put(session_pb2.HubMessage(ack=reply))
        except grpc.RpcError:
            pass  # the stream was cancelled
        finally:
            out.put(None)

    def _handle(self, req: session_pb2.EdgeMessage, fingerprint: str) -> hub_to_edge_pb2.HubAck | None:
        body = req.WhichOneof("body")
        with self.cond:
            try:
                if body == "short_list":
                    try:
                        short_list_from_proto(req.short_list, expected_fingerprint=fingerprint)
                    except ValueError as exc:
                        return hub_to_edge_pb2.HubAck(idempotency_key=req.short_list.idempotency_key,
                                                      status=REJECTED, error_message=str(exc))
                    return self._keyed(req.short_list, self.short_lists)
                if body == "search_result":
                    return self._keyed(req.search_result, self.search_results)
                if body == "ack":
                    self.edge_acks.append(req.ack)
                elif body == "heartbeat":
                    self.heartbeats.append(req.heartbeat)
                return None
            finally:
                self.cond.notify_all()

    def _keyed(self, msg: edge_to_hub_pb2.ShortList | edge_to_hub_pb2.SearchResult, table: dict
               ) -> hub_to_edge_pb2.HubAck | None:
        key = msg.idempotency_key
        self.deliveries[key] += 1
        if key in self.reject_keys:
            return hub_to_edge_pb2.HubAck(idempotency_key=key, status=REJECTED, error_message="rejected by test")
        if key in self.retry_once_keys:
            self.retry_once_keys.discard(key)
            return hub_to_edge_pb2.HubAck(idempotency_key=key, status=RETRY, error_message="busy, retry")
        status = DUPLICATE if key in table else OK
        if status == OK:
            table[key] = msg
            self.accepted.append(key)
        return None if self.hold_acks else hub_to_edge_pb2.HubAck(idempotency_key=key, status=status)


def make_hub(**kwargs: object) -> HubFixture:
    return HubFixture(**kwargs).start()
