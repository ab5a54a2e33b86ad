"""The in-process alert feed: a watchlist identity was seen somewhere.

Alerts are also rows in the store (so a REST API can list them, and replicas can poll
`HubStore.alerts(after_id=…)`); this feed pushes the ones this replica raises, as they happen, to
callbacks (called on the publishing thread; keep them short) and to asyncio subscribers, each
with a bounded queue that drops its oldest alert when a slow reader falls behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from cloud.store import SightingRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    alert_id: int
    identity_id: str
    display_name: str
    watchlist_threshold: float
    sighting: SightingRecord


class AlertFeed:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[Alert], None]] = []
        self._queues: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Alert]]] = []

    def subscribe(self, callback: Callable[[Alert], None]) -> Callable[[], None]:
        """Call `callback` for every alert; returns the function that unsubscribes it."""
        with self._lock:
            self._callbacks.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._callbacks.remove(callback)
        return unsubscribe

    async def stream(self, *, max_pending: int = 100) -> AsyncIterator[Alert]:
        """Alerts as they are published, until the caller stops iterating."""
        entry = (asyncio.get_running_loop(), asyncio.Queue[Alert](max_pending))
        with self._lock:
            self._queues.append(entry)
        try:
            while True:
                yield await entry[1].get()
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._queues.remove(entry)

    def publish(self, alert: Alert) -> None:
        """Thread-safe; never raises because a subscriber did."""
        with self._lock:
            callbacks, queues = list(self._callbacks), list(self._queues)
        for callback in callbacks:
            try:
                callback(alert)
            except Exception:
                log.exception("alert subscriber %r failed", callback)
        for loop, queue in queues:
            with contextlib.suppress(RuntimeError):  # its loop has closed
                loop.call_soon_threadsafe(_put_dropping_oldest, queue, alert)


def _put_dropping_oldest(queue: asyncio.Queue[Alert], alert: Alert) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(alert)
