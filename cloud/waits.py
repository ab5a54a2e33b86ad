"""Waiting with a timeout without ever dropping a cancellation.

On Python 3.11, ``asyncio.wait_for(aw, timeout)`` returns `aw`'s result when its task is cancelled in the
same loop iteration as `aw` completes: the cancellation is lost (fixed in 3.12). An edge session's writer
that lost one this way (gRPC cancels the stream's task as the edge leaves, while an ack had just woken the
writer) went on running, and the hub called the edge connected until its silence timeout, minutes later.
``asyncio.timeout`` has no such window. Use these instead of ``asyncio.wait_for`` in the hub's loops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Whether `event` was set within `timeout_s` (False: the timeout); a cancellation always propagates."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def within(awaitable: Awaitable[T], timeout_s: float) -> T:
    """`awaitable`'s result, or TimeoutError after `timeout_s`; a cancellation always propagates."""
    async with asyncio.timeout(timeout_s):
        return await awaitable
