"""The open edge sessions of one hub replica and what they share (see `cloud.edge_session` for
the protocol one session speaks)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection
from concurrent.futures import Executor

from cloud.auth import EdgeAuth
from cloud.edge_session import EdgeSession
from cloud.edge_session_types import (
    Admission,
    SearchResultHandler,
    Send,
    SessionAbort,
    SessionLimits,
    SessionServices,
)
from cloud.gallery import Gallery
from cloud.shortlists import ShortListService
from cloud.store import HubStore

log = logging.getLogger(__name__)


class SessionManager:
    """The open sessions of this replica, and what they share: services, limits, in-flight count."""

    def __init__(self, *, store: HubStore, auth: EdgeAuth, gallery: Gallery, shortlists: ShortListService,
                 executor: Executor, hub_id: str, limits: SessionLimits | None = None,
                 accepted_fingerprints: Collection[str] | None = None,
                 search_results: SearchResultHandler | None = None, clock: Callable[[], float] = time.time) -> None:
        self.store, self.hub_id, self.clock = store, hub_id, clock
        self.limits = limits or SessionLimits()
        self.services = SessionServices(
            store=store, auth=auth, gallery=gallery, shortlists=shortlists, executor=executor, hub_id=hub_id,
            register=self.register, search_results=search_results, clock=clock,
            accepted_fingerprints=None if accepted_fingerprints is None else frozenset(accepted_fingerprints))
        self.admission = Admission(self.limits.max_inflight_total)
        self.sessions: dict[str, EdgeSession] = {}
        self._closing = False
        self._unlisten = gallery.add_listener(self._gallery_changed)
        self._housekeeping: list[Callable[[], object]] = []

    @property
    def inflight(self) -> int:
        """Short lists being verified, all edges."""
        return self.admission.count

    def _gallery_changed(self, version: int) -> None:  # any thread
        for session in list(self.sessions.values()):
            session.gallery_changed()

    def notify_outgoing(self, edge_id: str) -> None:
        """Something was queued for the edge (any thread): wake its writer if it is connected here."""
        session = self.sessions.get(edge_id)
        if session is not None:
            session.outgoing_queued()

    def register(self, session: EdgeSession) -> None:
        old = self.sessions.get(session.edge_id)
        if old is not None and old is not session:
            old.close(SessionAbort("unavailable", "replaced by a newer session of this edge"))
        self.sessions[session.edge_id] = session

    def connected_edges(self) -> list[str]:
        return sorted(self.sessions)

    def connected(self) -> dict[str, str]:
        """Edge id -> model fingerprint of every edge with a session on this replica."""
        return {edge_id: session.fingerprint for edge_id, session in list(self.sessions.items())}

    async def serve(self, token_edge_id: str | None, requests: AsyncIterator[bytes], send: Send,
                    peer: str = "") -> None:
        """Run one edge's stream; raises SessionAbort when it must end with a non-OK status."""
        if self._closing:
            raise SessionAbort("unavailable", "the hub is shutting down", retry_after_ms=self.limits.retry_after_ms)
        session = EdgeSession(self.services, self.admission, self.limits, token_edge_id, peer)
        try:
            await session.run(requests, send)
        finally:
            if session.edge_id and self.sessions.get(session.edge_id) is session:
                del self.sessions[session.edge_id]
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.store.record_disconnect, session.edge_id, hub_id=self.hub_id,
                                            now=self.clock())

    def add_housekeeping(self, task: Callable[[], object]) -> None:
        """Run `task` (in a worker thread) at each round of `sweep_forever`, e.g. `AuditLog.sweep_if_due`;
        it decides itself whether it is due."""
        self._housekeeping.append(task)

    def housekeep(self) -> None:
        """(worker thread) The registered housekeeping tasks, each on its own: one failing does not stop the rest."""
        for task in list(self._housekeeping):
            try:
                task()
            except Exception:
                log.exception("housekeeping task %s failed", getattr(task, "__qualname__", task))

    def sweep_silent_edges(self) -> list[str]:
        """(worker thread) Mark disconnected, in the store, every edge no replica has heard from within the
        heartbeat timeout; their ids. An edge that speaks again is marked connected by its next heartbeat."""
        timeout = self.limits.silence_timeout_s
        gone = self.store.disconnect_silent_edges(silent_since=self.clock() - timeout)
        if gone:
            log.info("no heartbeat from edge(s) %s for %.0f s: marked disconnected", ", ".join(gone), timeout)
        return gone

    async def sweep_forever(self) -> None:
        """Mark silent edges of any replica disconnected, every third of the heartbeat timeout, until cancelled;
        and end this replica's sessions silent for twice the timeout (each session ends itself after one; this
        is the backstop for a writer stuck sending)."""
        timeout = self.limits.silence_timeout_s
        while not self._closing:
            await asyncio.sleep(max(timeout / 3, 0.1))
            for session in list(self.sessions.values()):
                if session.silent_for() > 2 * timeout:
                    session.close(SessionAbort("unavailable", f"no message from edge {session.edge_id} for "
                                               f"{session.silent_for():.0f} s"))
            try:
                await asyncio.to_thread(self.sweep_silent_edges)
            except Exception:  # a store hiccup: try again next round
                log.exception("marking silent edges disconnected failed")
            if self._housekeeping:
                await asyncio.to_thread(self.housekeep)

    def close_all(self, message: str = "the hub is shutting down") -> None:
        """End every session (each edge gets a fatal Error UNAVAILABLE and reconnects elsewhere)."""
        self._closing = True
        for session in list(self.sessions.values()):
            session.close(SessionAbort("unavailable", message, retry_after_ms=self.limits.retry_after_ms))

    def close(self) -> None:
        self.close_all()
        self._unlisten()


__all__ = ["EdgeSession", "SearchResultHandler", "SessionAbort", "SessionLimits", "SessionManager"]
