"""Cancelling an asyncio call at every point of it, on Milvus Lite: the cancellation
always arrives (a ``CancelledError``), never a response (Python 3.10 and 3.11's
``asyncio.wait_for`` drops a cancellation that races its task's completion)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pymilvus_flushsync import AsyncMilvusClient

from ..helpers import Backend

#: Enough event-loop turns for a whole call on Lite (about 200 for flush_sync, 700 for
#: flush_all_sync, measured); the test fails if a call has not completed by then.
MOST_TURNS = 20_000

Call = Callable[[AsyncMilvusClient, str], Awaitable[Any]]
CALLS: dict[str, Call] = {
    "flush_sync": lambda client, name: client.flush_sync(name, timeout=30),
    "flush_all_sync": lambda client, name: client.flush_all_sync(timeout=30),
}


async def _cancel_after(client: AsyncMilvusClient, call: Call, name: str, turns: int) -> bool:
    """Start ``call``, let the loop turn ``turns`` times, cancel it: ``True`` when it
    had completed before the cancel (every point before was tried)."""
    task = asyncio.ensure_future(call(client, name))
    for _ in range(turns):
        await asyncio.sleep(0)
    if task.done():
        task.result()
        return True
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return False


@pytest.mark.parametrize("fresh", [False, True], ids=["connected", "connecting"])
@pytest.mark.parametrize("which", list(CALLS))
def test_a_cancel_at_any_turn_of_a_call_cancels_it(lite: Backend, which: str, fresh: bool) -> None:
    name = lite.collection(10)

    async def every_point() -> int:
        client = AsyncMilvusClient(lite.uri)
        try:
            if not fresh:
                await client.flush_sync(name, timeout=30)  # connected before each call
            for turns in range(MOST_TURNS):
                if fresh:
                    await client.close()
                    client = AsyncMilvusClient(lite.uri)  # each call connects first
                if await _cancel_after(client, CALLS[which], name, turns):
                    return turns
            raise AssertionError(f"{which} did not complete within {MOST_TURNS} turns")
        finally:
            await client.close()

    turns = asyncio.run(every_point())
    assert turns > 0  # at least one point was cancelled

    async def still_usable() -> Any:
        client = AsyncMilvusClient(lite.uri)
        try:
            return await CALLS[which](client, name)
        finally:
            await client.close()

    assert asyncio.run(still_usable()).flushed
