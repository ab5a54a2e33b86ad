"""Plumbing of the edge's hub link: the stream's send queue, the gRPC channel, reconnect delays.

Kept apart from `edge.uplink.hub_link` (the protocol) so each reads on its own. Nothing here knows about
outboxes or galleries.
"""

from __future__ import annotations

import ipaddress
import math
import queue
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from protos.crossview.v1 import session_pb2

RETRY_AFTER_KEY = "retry-after-ms"
"""Trailing metadata key of the hub's retry hint (sent with RESOURCE_EXHAUSTED and UNAVAILABLE)."""
MAX_RETRY_HINT_S = 300.0  # a hint beyond this is capped: a broken hub must not silence an edge for hours


@dataclass(frozen=True)
class CameraLoad:
    """One camera's numbers for a heartbeat: frame rate over a recent window, state (an
    `edge.sources.camera_health.CAMERA_STATES` name; "" when unknown) and when its current gap began."""

    camera_id: str
    fps: float
    active_tracks: int = 0
    dropped_frames: int = 0
    state: str = ""
    gap_since: float | None = None  # epoch seconds


@dataclass(frozen=True)
class LinkStats:
    connected: bool
    sessions: int  # streams that got a Welcome
    reconnects: int  # attempts after the first
    sent: int  # outbox entries sent for the first time (short lists and search results)
    acked: int  # outbox entries acked OK or DUPLICATE
    dead_letters: int  # outbox entries the hub REJECTED (this run)
    outbox_depth: int
    gallery_version: int
    last_hub_sequence: int
    last_error: str | None
    hub_id: str
    retry_hint_s: float | None = None  # the last `retry-after-ms` hint the hub sent, in seconds
    short_lists_sent: int = 0  # of `sent`, short lists (the rest are search results)
    resent: int = 0  # sends of entries sent before: the hub asked to retry, a dropped stream, an earlier run
    gallery_identities: int = 0  # identities in the synced gallery
    hub_address: str = ""  # the address in use (or tried next), one of the configured replicas
    moves: int = 0  # sessions opened with another hub replica than the session before


class StreamSession:
    """State of one stream; gone when the stream is."""

    def __init__(self, max_bytes: int, heartbeat_s: float) -> None:
        self.send_q: queue.Queue[session_pb2.EdgeMessage | None] = queue.Queue()
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.inflight: set[str] = set()
        self.retry_at: dict[str, float] = {}
        self.skipped: set[str] = set()
        self.max_bytes = max_bytes
        self.heartbeat_s = heartbeat_s
        self.announce_at: float | None = None  # monotonic time to log "connected" (once the gallery settles)

    def send(self, msg: session_pb2.EdgeMessage) -> None:
        if not self.done.is_set():
            self.send_q.put(msg)

    def requests(self) -> Iterator[session_pb2.EdgeMessage]:
        while (msg := self.send_q.get()) is not None:
            yield msg


def reconnect_delay(attempt: int, *, initial_s: float, max_s: float, rng: random.Random,
                    hint_s: float | None = None) -> float:
    """Seconds to wait before reconnect `attempt` (0 = right after a long session).

    Exponential backoff with jitter, ``min(max_s, initial_s·2^attempt) × U(0.5, 1)``; a hub's retry
    hint is a floor (capped at `MAX_RETRY_HINT_S`), so an overloaded hub is not hammered early.
    """
    delay = min(max_s, initial_s * 2 ** min(max(attempt, 0), 30)) * rng.uniform(0.5, 1.0)
    if hint_s is not None and math.isfinite(hint_s) and hint_s > 0:
        delay = max(delay, min(hint_s, MAX_RETRY_HINT_S))
    return delay


def retry_hint_s(error: grpc.RpcError) -> float | None:
    """The hub's ``retry-after-ms`` trailer of a failed stream, in seconds; None if absent or malformed."""
    trailers = getattr(error, "trailing_metadata", None)
    try:
        items = trailers() if callable(trailers) else None
    except Exception:
        return None
    for key, value in items or ():
        if key == RETRY_AFTER_KEY:
            try:
                ms = float(value.decode() if isinstance(value, bytes) else value)
            except ValueError:
                return None
            return ms / 1000 if math.isfinite(ms) and ms >= 0 else None
    return None


def make_channel(target: str, *, tls: tuple[bytes | None, bytes | None, bytes | None], max_send_bytes: int,
                 max_receive_bytes: int, keepalive_s: float | None) -> grpc.Channel:
    """A fresh channel (so gRPC's own reconnect backoff never delays a hub that is back).
    `tls` = (root certificates, private key, certificate chain); any of them turns TLS on."""
    options = [("grpc.max_send_message_length", max_send_bytes),
               ("grpc.max_receive_message_length", max_receive_bytes),
               ("grpc.use_local_subchannel_pool", 1)]
    if keepalive_s:
        options += [("grpc.keepalive_time_ms", int(keepalive_s * 1000)),
                    ("grpc.keepalive_timeout_ms", int(max(keepalive_s, 10) * 1000)),
                    ("grpc.http2.max_pings_without_data", 0)]
    if any(tls):
        root, key, chain = tls
        return grpc.secure_channel(target, grpc.ssl_channel_credentials(root, key, chain), options)
    return grpc.insecure_channel(target, options)


def read_pem(value: bytes | str | Path | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


def is_loopback(target: str) -> bool:
    host = target.rsplit(":", 1)[0].strip("[]") if ":" in target else target
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
