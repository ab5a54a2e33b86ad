"""`ApiServer`: uvicorn on a socket bound here (so port 0 works), on the caller's asyncio loop.

Idle connections cannot take the hub down (issue 12, finding 1). uvicorn times out only the idle gap
*between* requests (``timeout_keep_alive``), and its ``limit_concurrency`` answers 503 to requests but
still holds every connection open, so a client that connects and sends nothing (or half a header) kept
a file descriptor forever: ~1,000 of them exhausted the process's files, starving the gRPC server on
the same process. `cloud.api.connections` adds what is missing: a deadline for each request's header
and a cap on open connections. And `ApiServer.start` makes the loop log "accept() out of system
resource" once per 10 s instead of a traceback per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from cloud.api.connections import guarded_h11
from cloud.file_limits import default_max_connections, raise_open_file_limit
from cloud.log_limits import RateLimitedLog
from models.errors import CrossviewError

log = logging.getLogger(__name__)
_accept_log = RateLimitedLog(log, interval_s=10.0)
HEADER_TIMEOUT_S = 10.0  # from connecting (or the previous response) to a whole request header
# an idle keep-alive connection is closed after this: longer than httpx's default reuse (5 s), so its
# clients never send on a connection the hub is closing; shorter than HEADER_TIMEOUT_S, which would close it
KEEP_ALIVE_S = 8
BACKLOG = 1024


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: whoever runs the loop decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (0: a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if host not in ("", "0.0.0.0", "::") and not host.replace(".", "").isdigit() and ":" not in host:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _exception_handler(previous: Any) -> Any:
    """A loop exception handler: accept() failures rate limited to one line, the rest to `previous`."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if message.startswith("socket.accept() out of system resource"):
            _accept_log.error("accept", "REST API: %s: %s (open connections are capped; is the file limit "
                              "too low?)", message, context.get("exception"))
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handle.crossview_accept_guard = True  # type: ignore[attr-defined]
    return handle


class ApiServer:
    """Serves `app` on host:port; `start()` returns the bound port, `stop()` ends open streams too.

    `header_timeout_s`: a connection that has not sent a whole request header this long after connecting
    (or after its previous response) is closed. `max_connections`: open connections at most (default
    from the process's file limit, `cloud.file_limits.default_max_connections`); past it the connection idle
    the longest is closed. `keep_alive_s`: uvicorn's idle timeout between requests.
    """

    def __init__(self, app: FastAPI, *, host: str = "127.0.0.1", port: int = 0, graceful_s: float = 3.0,
                 header_timeout_s: float = HEADER_TIMEOUT_S, max_connections: int | None = None,
                 keep_alive_s: int = KEEP_ALIVE_S) -> None:
        if not header_timeout_s > 0:
            raise ValueError(f"header_timeout_s: expected > 0, got {header_timeout_s}")
        if max_connections is not None and max_connections < 1:
            raise ValueError(f"max_connections: expected >= 1, got {max_connections}")
        self.app, self.host, self.requested_port = app, host, port
        self.port: int | None = None
        self.header_timeout_s = header_timeout_s
        raise_open_file_limit()
        self.max_connections = max_connections or default_max_connections()
        protocol = guarded_h11(header_timeout_s=header_timeout_s, max_connections=self.max_connections)
        self._config = uvicorn.Config(app, http=protocol, log_config=None, access_log=False, lifespan="off",
                                      ws="none", server_header=False, timeout_graceful_shutdown=graceful_s,
                                      timeout_keep_alive=keep_alive_s, backlog=BACKLOG)
        self._server = _Server(self._config)
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    async def start(self) -> int:
        if self._task is not None:
            raise RuntimeError("the API server is already started")
        try:
            self._sock = bind(self.host, self.requested_port)
        except OSError as exc:
            raise CrossviewError(f"REST API: cannot listen on {self.host}:{self.requested_port}: "
                                 f"{exc.strerror or exc}") from exc
        self.port = int(self._sock.getsockname()[1])
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()
        if not getattr(previous, "crossview_accept_guard", False):
            loop.set_exception_handler(_exception_handler(previous))
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]), name="crossview-api")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the API server stopped while starting")
            await asyncio.sleep(0.01)
        log.info("REST API on %s (at most %d connections, %g s for a request header)", self.url,
                 self.max_connections, self.header_timeout_s)
        return self.port

    async def stop(self) -> None:
        self.app.state.stopping = True
        if self._task is not None:
            self._server.should_exit = True
            try:
                await self._task
            finally:
                self._task = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
