"""What uvicorn lacks against idle connections: a request-header deadline and a connection cap.

`guarded_h11(...)` returns a subclass of uvicorn's h11 protocol (one instance per connection). It
closes a connection that has not sent a whole request header `header_timeout_s` after connecting or
after its previous response (answering 408 when part of a header came), and keeps at most
`max_connections` open: a new connection past the cap closes the one waiting longest for a header
(none waiting: the new one is refused with a 503), so a flood of idle sockets cannot lock out a
real client for longer than one of its requests takes. A request whose header arrived is not timed
here (a slow upload is bounded by `BodyLimit` and the client's own patience).

The cap's default, `cloud.file_limits.default_max_connections()`, leaves three quarters of the
process's files to the gRPC server, the store and the models.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from cloud.log_limits import RateLimitedLog

log = logging.getLogger(__name__)
_limited = RateLimitedLog(log, interval_s=10.0)
_408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_503 = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


def guarded_h11(*, header_timeout_s: float, max_connections: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a header deadline and a connection cap (see the module docstring)."""
    if not header_timeout_s > 0 or max_connections < 1:
        raise ValueError(f"expected header_timeout_s > 0 and max_connections >= 1, got {header_timeout_s} "
                         f"and {max_connections}")

    class GuardedH11(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._header_timer: asyncio.TimerHandle | None = None
            self._waiting_since: float | None = None  # None: a request is in progress
            self._partial = False  # bytes of the awaited header have come
            self._seen_cycle: object = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._await_header()
            if len(self.connections) > max_connections:
                self._make_room()

        def _make_room(self) -> None:
            waiting = [c for c in self.connections if c is not self and getattr(c, "_waiting_since", None) is not None
                       and not c.transport.is_closing()]
            _limited.warning("cap", "REST API: %d open connections, the cap: closing the one idle longest",
                             len(self.connections) - 1)
            if waiting:
                min(waiting, key=lambda c: c._waiting_since)._close(None)
            else:
                self._close(_503)

        def _await_header(self) -> None:
            self._cancel_header_timer()
            self._waiting_since, self._partial = self.loop.time(), False
            self._header_timer = self.loop.call_later(header_timeout_s, self._header_timed_out)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timed_out(self) -> None:
            self._header_timer = None
            if self._waiting_since is not None:
                self._close(_408 if self._partial else None)

        def _close(self, reply: bytes | None) -> None:
            self._cancel_header_timer()
            self._waiting_since = None
            if not self.transport.is_closing():
                if reply is not None:
                    self.transport.write(reply)
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            self._partial = self._partial or bool(data)
            super().data_received(data)

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and self.cycle is not self._seen_cycle:  # a header arrived
                self._seen_cycle = self.cycle
                self._cancel_header_timer()
                self._waiting_since = None

        def on_response_complete(self) -> None:
            self._await_header()  # before super(): a pipelined request starts a new cycle in there
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            self._waiting_since = None
            super().connection_lost(exc)

    return GuardedH11
