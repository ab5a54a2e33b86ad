"""What one edge session is given: its limits, the hub's services, and the replica's admission counter.

`cloud.sessions.SessionManager` builds one `SessionServices` and one `Admission` per replica and hands
both to every `cloud.edge_session.EdgeSession`; a session never sees the manager itself.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cloud import wire
from protos import codec

if TYPE_CHECKING:
    from cloud.auth import EdgeAuth
    from cloud.gallery import Gallery
    from cloud.shortlists import ShortListService
    from cloud.store import HubStore
    from cloud.wire import AckStatus, SearchResultInput
    from protos.crossview.v1 import session_pb2

Send = Callable[["session_pb2.HubMessage"], Awaitable[None]]
SearchResultHandler = Callable[[str, "SearchResultInput"], "tuple[AckStatus, str]"]
"""(edge id, result batch) -> (ack status, message); called on a worker thread."""


@dataclass(frozen=True)
class SessionLimits:
    max_message_bytes: int = 8 * 1024 * 1024
    max_crop_bytes: int = codec.DEFAULT_MAX_CROP_BYTES
    max_inflight_per_edge: int = 8
    max_inflight_total: int = 64
    send_queue_size: int = 256
    send_stall_s: float = 10.0
    retry_after_ms: int = 1000
    heartbeat_interval_ms: int = 10_000
    missed_heartbeats: int = 3
    heartbeat_timeout_s: float | None = None  # None: missed_heartbeats intervals
    poll_interval_s: float = 2.0
    hello_timeout_s: float = 30.0
    outgoing_page: int = 32
    # issue 12, findings 5 and 7: what an edge may make the hub decode, and the times it may send
    max_crop_pixels: int = wire.DEFAULT_MAX_CROP_PIXELS
    decode_budget_bytes: int = 256 * 1024 * 1024  # per edge: decoded pixels and JPEGs of short lists in flight
    max_clock_skew_s: float = 86_400.0  # how far past the hub's clock an edge's times may lie
    earliest_time_s: float = 0.0  # 0: replays stamp seconds into their video (cloud.times)
    max_span_s: float = 86_400.0

    def __post_init__(self) -> None:
        if self.heartbeat_interval_ms <= 0:
            raise ValueError(f"heartbeat_interval_ms: expected > 0, got {self.heartbeat_interval_ms}")
        if self.heartbeat_timeout_s is not None and not self.heartbeat_timeout_s > 0:
            raise ValueError(f"heartbeat_timeout_s: expected > 0 or None, got {self.heartbeat_timeout_s}")
        if self.decode_budget_bytes <= 0:
            raise ValueError(f"decode_budget_bytes: expected > 0, got {self.decode_budget_bytes}")
        if not self.max_clock_skew_s >= 0:
            raise ValueError(f"max_clock_skew_s: expected >= 0, got {self.max_clock_skew_s}")
        self.wire_bounds(self.earliest_time_s)  # checks the rest

    def wire_bounds(self, now_s: float) -> wire.WireBounds:
        """The bounds an edge's message is decoded with at the hub's time `now_s`."""
        return wire.WireBounds(latest_s=now_s + self.max_clock_skew_s, earliest_s=self.earliest_time_s,
                               max_span_s=self.max_span_s, max_crop_bytes=self.max_crop_bytes,
                               max_crop_pixels=self.max_crop_pixels)

    @property
    def silence_timeout_s(self) -> float:
        """How long an edge may stay silent before it counts as disconnected."""
        if self.heartbeat_timeout_s is not None:
            return float(self.heartbeat_timeout_s)
        return self.heartbeat_interval_ms / 1000 * self.missed_heartbeats


class SessionAbort(Exception):
    """Ends the stream with a status (a gRPC status code name in lower case) and one-line details."""

    def __init__(self, status: str, message: str, *, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after_ms = status, message, retry_after_ms


@dataclass(frozen=True)
class SessionServices:
    """The hub's services a session calls, and who it tells that it is open (`register`)."""

    store: HubStore
    auth: EdgeAuth
    gallery: Gallery
    shortlists: ShortListService
    executor: Executor  # runs short lists (blocking)
    hub_id: str
    register: Callable[[Any], None]  # (the session) -> None, once its edge is known
    accepted_fingerprints: frozenset[str] | None = None  # None: any model the gallery can run
    search_results: SearchResultHandler | None = None
    clock: Callable[[], float] = field(default=time.time)


class Admission:
    """Short lists being verified on this replica, all edges together: at most `limit` at a time.
    Used on the event loop's thread only."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def try_enter(self) -> bool:
        if self.count >= self.limit:
            return False
        self.count += 1
        return True

    def leave(self) -> None:
        self.count -= 1
