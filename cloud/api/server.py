"""`ApiServer`: uvicorn on a socket bound here (so port 0 works), on the caller's asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from models.errors import CrossviewError

log = logging.getLogger(__name__)


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
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class ApiServer:
    """Serves `app` on host:port; `start()` returns the bound port, `stop()` ends open streams too."""

    def __init__(self, app: FastAPI, *, host: str = "127.0.0.1", port: int = 0, graceful_s: float = 3.0) -> None:
        self.app, self.host, self.requested_port = app, host, port
        self.port: int | None = None
        self._config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", ws="none",
                                      server_header=False, timeout_graceful_shutdown=graceful_s)
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
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]), name="crossview-api")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the API server stopped while starting")
            await asyncio.sleep(0.01)
        log.info("REST API on %s", self.url)
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
