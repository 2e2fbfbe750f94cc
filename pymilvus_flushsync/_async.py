"""The asyncio driver, and ``flush_sync`` on ``AsyncMilvusClient``.

The same ``FlushMachine`` as the blocking driver decides everything; this loop
only awaits the client's own ``grpc.aio`` stub and ``asyncio.sleep``.
Cancelling the awaiting task stops at once: nothing more is sent, the client
stays usable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

import pymilvus

from ._compat import async_handler, async_stub
from ._core import Done, FlushMachine, FlushPolicy, Sleep
from ._params import start
from ._response import FlushSyncResponse

__all__ = ["AsyncFlushSyncMixin", "AsyncMilvusClient", "run"]


async def run(
    machine: FlushMachine,
    stub: Callable[[], Awaitable[Any]],
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> FlushSyncResponse:
    """Drive ``machine`` to the end over the ``grpc.aio`` stub that ``await stub()``
    returns (per RPC: it raises once the client is closed)."""
    while not isinstance(action := machine.next_action(), Done):
        with machine.expect(action) as outcome:
            if isinstance(action, Sleep):
                await sleep(action.seconds)
            else:
                outcome.reply = await asyncio.gather(*action.invoke(await stub()))
    return action.response


class AsyncFlushSyncMixin:
    """Adds ``async flush_sync`` to ``pymilvus.AsyncMilvusClient`` (or any class with
    its ``async _get_connection()``). ``flush_sync_policy`` tunes polling and retries."""

    flush_sync_policy: ClassVar[FlushPolicy] = FlushPolicy()

    async def flush_sync(
        self,
        collection_names: str | Sequence[str],
        db_name: str | None = None,
        timeout: float | None = None,
    ) -> FlushSyncResponse:
        """Flush collections and wait until Milvus reports them persisted.

        The asyncio twin of ``FlushSyncMixin.flush_sync``: same arguments, same
        ``FlushSyncResponse``, same errors. Connecting (on a client's first
        call) counts against ``timeout`` too. Works with pymilvus 2.6+'s async
        client and with 2.5's (whose ``_get_connection()`` is not a coroutine).

        Args:
            collection_names: a collection name, or a list or tuple of them.
            db_name: the database; ``None`` for the client's current one.
            timeout: seconds for the whole call; ``None`` waits without a deadline.

        Returns:
            A frozen ``FlushSyncResponse`` with ``flushed=True``.

        Raises:
            ParamError: invalid arguments (before any RPC).
            FlushTimeoutError: the deadline passed first (``.pending``, ``.response``).
            MilvusException: the server refused, with its code and reason.
        """
        machine = start(self, collection_names, db_name, timeout, self.flush_sync_policy)
        try:  # connect (a no-op once connected) under the deadline
            await asyncio.wait_for(async_handler(self), machine.remaining())
        except asyncio.TimeoutError:
            raise machine.timeout_error() from None
        return await run(machine, lambda: async_stub(self))


class AsyncMilvusClient(AsyncFlushSyncMixin, pymilvus.AsyncMilvusClient):  # type: ignore[misc]
    """``pymilvus.AsyncMilvusClient`` with ``async flush_sync``; everything else is unchanged."""
