"""The hub, wired: store + crops + gallery + verifier + short lists + sessions + gRPC server.

    >>> hub = Hub.create(data_dir="hub-data")                       # doctest: +SKIP
    >>> token = hub.auth.create_token("edge-1").token               # give this to the edge once
    >>> port = await hub.start(port=50051)                          # doctest: +SKIP
    >>> hub.gallery.enroll([jpeg_bytes], display_name="visitor")    # pushed to connected edges
    >>> outcome = await hub.search.search(SearchQuery(photos=[jpeg_bytes]), deadline_s=10)  # doctest: +SKIP
    >>> await hub.stop()                                            # doctest: +SKIP

Plain keyword arguments here; configuration files and the command line belong to the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1.health import aio as health_aio

from cloud.alerts import AlertFeed
from cloud.auth import EdgeAuth
from cloud.crops import CropFiles
from cloud.gallery import Embedders, Gallery, zoo_embedder
from cloud.search import SearchJobs, SearchService
from cloud.server import TlsConfig, create_server, set_serving
from cloud.sessions import SessionLimits, SessionManager
from cloud.shortlists import ShortListService
from cloud.store import HubStore, open_store
from cloud.verification import DecisionPolicy, Verifier, create_verifier
from models.scores import DEFAULT_CONFIRM_P_SAME

log = logging.getLogger(__name__)


class Hub:
    """Everything one hub replica runs. Build it with `Hub.create`."""

    def __init__(self, *, store: HubStore, crops: CropFiles, gallery: Gallery, shortlists: ShortListService,
                 auth: EdgeAuth, alerts: AlertFeed, sessions: SessionManager, search: SearchService,
                 executor: ThreadPoolExecutor, hub_id: str, on_stop: Sequence[Callable[[], None]] = ()) -> None:
        """`on_stop`: closed last, after the sessions and workers (e.g. the judge micro-batcher)."""
        self.store, self.crops, self.gallery, self.shortlists = store, crops, gallery, shortlists
        self.auth, self.alerts, self.sessions, self.search = auth, alerts, sessions, search
        self.executor = executor
        self._on_stop = list(on_stop)
        self.hub_id = hub_id
        self.health = health_aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port: int | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @classmethod
    def create(cls, *, data_dir: str | Path, database: str | Path | None = None, verifier: Verifier | None = None,
               judge: str = "reid", judge_kwargs: dict[str, Any] | None = None,
               judge_batching: dict[str, Any] | None = None, policy: DecisionPolicy | None = None,
               embedder_factory: Callable[[str], Any] = zoo_embedder, limits: SessionLimits | None = None,
               accepted_fingerprints: Collection[str] | None = None, hub_id: str | None = None,
               workers: int = 2, lease_s: float = 120.0, max_delta_bytes: int = 1 << 20,
               clock: Callable[[], float] = time.time,
               store: HubStore | None = None) -> Hub:
        """A hub keeping crops under `data_dir` and its tables in `database` (a SQLite path, default
        ``<data_dir>/hub.db``, or a ``postgresql://`` URL; or pass an open `store`).

        `verifier` defaults to `judge` (a `models.verify` name, with `judge_kwargs`) plus fusion and
        `policy`; with `judge_batching` (`JudgeBatcher` options; None or empty: off) that judge is
        wrapped in the micro-batcher, which `stop` closes. `embedder_factory(fingerprint)` opens the
        Re-ID model of an edge's fingerprint.
        """
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        store = store or open_store(database or data_dir / "hub.db")
        on_stop: list[Callable[[], None]] = []
        try:
            crops = CropFiles(data_dir / "crops")
            gallery = Gallery(store, crops, Embedders(embedder_factory), clock=clock, max_delta_bytes=max_delta_bytes)
            if verifier is None:
                verifier = create_verifier(judge, policy=policy, judge_batching=judge_batching, **(judge_kwargs or {}))
                on_stop.append(verifier.judge.close)  # built here, closed here (a batcher closes its judge too)
            alerts = AlertFeed()
            shortlists = ShortListService(store, gallery, crops, verifier, alerts=alerts, clock=clock, lease_s=lease_s)
            auth = EdgeAuth(store, clock=clock)
            executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crossview-hub")
            hub_id = hub_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
            jobs = SearchJobs(store, clock=clock)
            sessions = SessionManager(store=store, auth=auth, gallery=gallery, shortlists=shortlists,
                                      executor=executor, hub_id=hub_id, limits=limits,
                                      accepted_fingerprints=accepted_fingerprints, search_results=jobs.on_result,
                                      clock=clock)
            # a search hit is "same" on the hub's own decision line and fusion (a fused P(same))
            policy = getattr(verifier, "policy", None)
            search = SearchService(store, gallery, crops, sessions, jobs, getattr(verifier, "judge", None),
                                   same_above=getattr(policy, "confirm_p_same", DEFAULT_CONFIRM_P_SAME),
                                   stage1_weight=getattr(policy, "stage1_weight", DecisionPolicy.stage1_weight),
                                   clock=clock)
        except BaseException:
            for close in on_stop:
                close()
            store.close()
            raise
        return cls(store=store, crops=crops, gallery=gallery, shortlists=shortlists, auth=auth, alerts=alerts,
                   sessions=sessions, search=search, executor=executor, hub_id=hub_id, on_stop=on_stop)

    async def start(self, *, port: int = 0, host: str = "127.0.0.1", tls: TlsConfig | None = None,
                    max_receive_message_bytes: int | None = None) -> int:
        """Serve edges and the health service on `host:port` (0: a free port); the bound port."""
        if self.server is not None:
            raise RuntimeError("the hub is already started")
        self.server, self.port = create_server(self, port, host=host, tls=tls,
                                               max_receive_message_bytes=max_receive_message_bytes)
        await self.server.start()
        await set_serving(self.health, True)
        self._sweeper = asyncio.create_task(self.sessions.sweep_forever(), name="crossview-silent-edges")
        log.info("hub %s serving edges on %s:%d", self.hub_id, host, self.port)
        return self.port

    async def stop(self, grace_s: float = 2.0) -> None:
        """NOT_SERVING first (load balancers stop sending edges here), then end sessions, then stop."""
        await self.health.enter_graceful_shutdown()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        self.sessions.close_all()
        if self.server is not None:
            await self.server.stop(grace_s)
            self.server = None
        self.sessions.close()
        self.executor.shutdown(wait=True, cancel_futures=True)
        while self._on_stop:
            self._on_stop.pop()()
        self.store.close()

    async def serve_forever(self, **start_kwargs: Any) -> None:
        await self.start(**start_kwargs)
        assert self.server is not None
        try:
            await self.server.wait_for_termination()
        finally:
            await self.stop()

