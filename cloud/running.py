"""`RunningHub`: a hub (gRPC for edges) and its REST API on one asyncio loop in a background thread.

    with RunningHub(data_dir="hub-data", judge="reid", operators={"admin": "secret"}) as running:
        token = running.create_edge_token("edge-a")          # for an edge's config
        running.grpc_address, running.api_url                  # "127.0.0.1:PORT", "http://127.0.0.1:PORT"
        running.call(running.hub.search.search(query))         # a coroutine run on the hub's loop

For tests, demos and tools that want a whole hub in-process; `crossview hub` runs the same pieces
on its main thread. The REST API needs the ``api`` extra (FastAPI, uvicorn); `api_port=None` (or
-1) runs the hub without it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from cloud.hub import Hub
from cloud.operators import DEFAULT_SESSION_TTL_S, OperatorAuth
from cloud.server import TlsConfig

log = logging.getLogger(__name__)
T = TypeVar("T")


class RunningHub:
    """Start with `start()` or `with`; stop with `stop()` (idempotent) or by leaving the block.

    Pass `data_dir` plus any `Hub.create` keyword (judge, policy, verifier, embedder_factory, ...),
    or an already created `hub`. `operators` maps user name -> password (created, or their password
    reset, at start). `operator_clock` / `session_ttl_s` drive session expiry; `alert_poll_s` /
    `alert_keep_alive_s` how often the alert stream reads the store / sends a keep-alive comment.
    `api_options`: `ApiServer` keywords (header_timeout_s, max_connections, keep_alive_s) plus
    ``allowed_origins`` for `create_app`.
    """

    def __init__(self, *, data_dir: str | Path | None = None, hub: Hub | None = None, api_port: int | None = 0,
                 grpc_port: int = 0, api_host: str = "127.0.0.1", grpc_host: str = "127.0.0.1",
                 operators: Mapping[str, str] | None = None, tls: TlsConfig | None = None,
                 session_ttl_s: float = DEFAULT_SESSION_TTL_S, operator_clock: Callable[[], float] | None = None,
                 start_timeout_s: float = 120.0, alert_poll_s: float = 0.5, alert_keep_alive_s: float = 15.0,
                 api_options: Mapping[str, Any] | None = None, **hub_kwargs: Any) -> None:
        if (hub is None) == (data_dir is None):
            raise ValueError("RunningHub: expected exactly one of data_dir (a new hub) or hub")
        if hub is not None and hub_kwargs:
            raise ValueError(f"RunningHub: Hub.create arguments {sorted(hub_kwargs)} given with an existing hub")
        self._hub_args = dict(hub_kwargs, data_dir=data_dir) if hub is None else None
        self.hub: Hub = hub  # type: ignore[assignment]  # set in start() when created here
        self._api_port = None if api_port is None or api_port < 0 else api_port
        self._grpc_port, self._api_host, self._grpc_host = grpc_port, api_host, grpc_host
        self._initial_operators = dict(operators or {})
        self._tls = tls
        self._session_ttl_s = session_ttl_s
        self._operator_clock = operator_clock or hub_kwargs.get("clock") or time.time
        self._start_timeout_s = start_timeout_s
        self._alert_poll_s, self._alert_keep_alive_s = alert_poll_s, alert_keep_alive_s
        self._api_options = dict(api_options or {})
        self.operators: OperatorAuth | None = None
        self.grpc_port: int | None = None
        self.api_port: int | None = None
        self._api: Any = None  # cloud.api.ApiServer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._used = False

    # ------------------------------------------------------------------ addresses
    @property
    def grpc_address(self) -> str:
        host = self._grpc_host if self._grpc_host not in ("", "0.0.0.0", "[::]", "::") else "127.0.0.1"
        return f"{host}:{self.grpc_port}"

    @property
    def api_url(self) -> str:
        if self._api is None:
            raise RuntimeError("this RunningHub serves no REST API (api_port was None or -1)")
        return str(self._api.url)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> RunningHub:
        if self._thread is not None:
            raise RuntimeError("RunningHub is already started")
        if self._used:
            raise RuntimeError("a RunningHub runs once: create a new one to start again")
        self._used = True
        if self._hub_args is not None:
            self.hub = Hub.create(**self._hub_args)
        try:
            self.operators = OperatorAuth(self.hub.store, clock=self._operator_clock,
                                          session_ttl_s=self._session_ttl_s)
            for username, password in self._initial_operators.items():
                self.operators.create_operator(username, password)
            if self._api_port is not None:
                from cloud.api import ApiServer, create_app

                server_options = dict(self._api_options)
                app = create_app(self.hub, self.operators, poll_s=self._alert_poll_s,
                                 keep_alive_s=self._alert_keep_alive_s,
                                 allowed_origins=server_options.pop("allowed_origins", ()))
                self._api = ApiServer(app, host=self._api_host, port=self._api_port, **server_options)
        except BaseException:
            if self._hub_args is not None:
                self._close_unstarted_hub()
            raise
        self._thread = threading.Thread(target=self._run, name="crossview-running-hub", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._start_timeout_s):
            raise TimeoutError(f"the hub did not start within {self._start_timeout_s:g} s")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self

    def _close_unstarted_hub(self) -> None:
        self.hub.store.close()
        self.hub.executor.shutdown(wait=False)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            with contextlib.suppress(Exception):
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            self.grpc_port = await self.hub.start(port=self._grpc_port, host=self._grpc_host, tls=self._tls)
            if self._api is not None:
                self.api_port = await self._api.start()
        except BaseException as exc:
            self._error = exc
            await self._shutdown()
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await self._shutdown()

    async def _shutdown(self) -> None:
        if self._api is not None:
            try:
                await self._api.stop()
            except Exception:
                log.exception("stopping the REST API failed")
        if self.operators is not None:
            self.operators.close()  # its log-in hashing threads, else left behind by every hub a process runs
        await self.hub.stop()

    def stop(self) -> None:
        """Stop the API, then the hub (NOT_SERVING, sessions ended, store closed); waits for it."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(self._stop.set)
        thread.join()
        self._thread = None

    def __enter__(self) -> RunningHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers
    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the hub's loop and return its result (from any other thread)."""
        if self._loop is None or self._thread is None:
            coro.close()
            raise RuntimeError("RunningHub is not running")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"the coroutine did not finish within {timeout} s") from None

    def create_edge_token(self, edge_id: str, *, ttl_s: float | None = None, site: str = "") -> str:
        """A new token for `edge_id` (registered if new), to put in that edge's configuration."""
        return self.hub.auth.create_token(edge_id, ttl_s=ttl_s, site=site).token

    def create_operator(self, username: str, password: str) -> None:
        assert self.operators is not None, "start() first"
        self.operators.create_operator(username, password)


__all__ = ["RunningHub"]
