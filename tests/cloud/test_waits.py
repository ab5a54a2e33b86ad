"""`cloud.waits`: a wait with a timeout never drops the task's cancellation, even when what it waits for
completes in the same loop iteration (where Python 3.11's `asyncio.wait_for` drops it: an edge session
that lost its cancellation so kept the edge "connected" for minutes after it left)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

import pytest

from cloud.waits import wait_event, within

ROOT = Path(__file__).resolve().parents[2]


async def _cancel_as_it_completes(wait_once) -> bool:  # type: ignore[no-untyped-def]
    """A writer loop like an edge session's, awaited by an RPC task that is cancelled in the same loop
    iteration as the writer's wait completes; True when the cancellation reached the RPC task."""
    event = asyncio.Event()
    rounds = 0

    async def writer() -> None:
        nonlocal rounds
        while rounds < 3:
            rounds += 1
            event.clear()
            await wait_once(event)

    rpc = asyncio.create_task(writer())
    await asyncio.sleep(0.01)
    event.set()
    rpc.cancel()
    try:
        await rpc
    except asyncio.CancelledError:
        return True
    return False


@pytest.mark.parametrize("name", ["wait_event", "within"])
def test_a_cancellation_that_meets_a_completion_is_never_lost(name: str) -> None:
    async def wait_once(event: asyncio.Event) -> None:
        if name == "wait_event":
            await wait_event(event, 0.05)
        else:
            with contextlib.suppress(TimeoutError):
                await within(event.wait(), 0.05)

    async def main() -> list[bool]:
        return [await _cancel_as_it_completes(wait_once) for _ in range(50)]

    assert all(asyncio.run(main()))


def test_waits_say_whether_the_event_came() -> None:
    async def main() -> tuple[bool, bool]:
        event = asyncio.Event()
        missed = await wait_event(event, 0.01)
        event.set()
        return missed, await wait_event(event, 10)

    assert asyncio.run(main()) == (False, True)
    with pytest.raises(TimeoutError):
        asyncio.run(within(asyncio.Event().wait(), 0.01))


def test_the_hub_and_edge_do_not_use_asyncio_wait_for() -> None:
    users = [str(path.relative_to(ROOT)) for folder in ("cloud", "edge", "crossview")
             for path in (ROOT / folder).rglob("*.py")
             if path.name != "waits.py" and re.search(r"asyncio\.wait_for\(", path.read_text())]
    assert users == [], "use cloud.waits (asyncio.wait_for can drop a cancellation on Python 3.11)"
