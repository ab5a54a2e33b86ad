"""Alerts: a list, and a server-sent event stream.

The stream reads the store (so alerts raised by every hub replica arrive), every `poll_s` and as
soon as this replica's `AlertFeed` publishes one. A reconnecting browser sends Last-Event-ID and
continues after it. The stream re-checks its session at each keep-alive and as soon as a session of this
replica is revoked (`OperatorAuth.revocations`): a logged-out, disabled or re-passworded operator's stream
gets ``event: session_ended`` and closes (issue 12, finding 6).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from cloud.api.deps import MAX_ID, hub_of, operators_of, require_operator, session_token
from cloud.api.schemas import Alert
from cloud.api.views import Names, alert_view
from cloud.operators import OperatorAuthError
from cloud.store import HubStore
from cloud.waits import wait_event

router = APIRouter(prefix="/api", tags=["alerts"], dependencies=[Depends(require_operator)])
POLL_S = 0.5
KEEP_ALIVE_S = 15.0
_BATCH = 100


def _alerts(store: HubStore, after_id: int, limit: int) -> list[dict[str, Any]]:
    rows = store.alerts(after_id=after_id, limit=limit)
    names = Names(store).load(a.identity_id for a in rows)
    return [alert_view(a, names) for a in rows]


@router.get("/alerts", response_model=list[Alert])
def list_alerts(request: Request, after_id: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    """Oldest first, ids greater than `after_id`."""
    return _alerts(hub_of(request).store, after_id, limit)


def _alert_id(text: str) -> int | None:
    """`text` as an alert id (ASCII digits, at most MAX_ID), else None."""
    if not (0 < len(text) <= 19 and text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def _event(alert: dict[str, Any]) -> str:
    return f"id: {alert['alert_id']}\nevent: alert\ndata: {json.dumps(alert, separators=(',', ':'))}\n\n"


async def _events(request: Request, after_id: int) -> AsyncIterator[str]:
    hub = hub_of(request)
    state = request.app.state
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def published(_: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(wake.set)

    unsubscribe = hub.alerts.subscribe(published)
    last_id, last_sent = after_id, loop.time()
    auth, token = operators_of(request), session_token(request)
    revocations, last_check = auth.revocations, loop.time()
    try:
        yield "retry: 2000\n: connected\n\n"
        while not state.stopping:
            wake.clear()
            if auth.revocations != revocations or loop.time() - last_check >= state.keep_alive_s:
                revocations, last_check = auth.revocations, loop.time()
                try:
                    await run_in_threadpool(auth.check, token)
                except OperatorAuthError as exc:
                    yield f"event: session_ended\ndata: {json.dumps({'detail': str(exc)})}\n\n"
                    return
            batch = await run_in_threadpool(_alerts, hub.store, last_id, _BATCH)
            for alert in batch:
                yield _event(alert)
                last_id, last_sent = alert["alert_id"], loop.time()
            if len(batch) == _BATCH:
                continue
            if loop.time() - last_sent >= state.keep_alive_s:
                yield ": keep-alive\n\n"
                last_sent = loop.time()
            await wait_event(wake, state.poll_s)
    finally:
        unsubscribe()


@router.get("/alerts/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def stream_alerts(request: Request, after_id: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
                        latest: Annotated[int | None, Query(ge=0, le=1000)] = None) -> StreamingResponse:
    """``text/event-stream``: ``id: <alert_id>``, ``event: alert``, ``data: <Alert JSON>``; Last-Event-ID honoured.
    `latest=N` (without `after_id` or Last-Event-ID): start with the newest N alerts, not the whole history."""
    last_event = request.headers.get("last-event-id", "").strip()
    if _alert_id(last_event) is not None:  # anything but an id we could have sent is ignored
        after_id = int(last_event)
    elif latest is not None and after_id == 0:
        after_id = max(0, await run_in_threadpool(hub_of(request).store.newest_alert_id) - latest)
    return StreamingResponse(_events(request, after_id), media_type="text/event-stream",
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
