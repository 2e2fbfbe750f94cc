"""What only the asyncio client has: concurrency on one client, cancellation, wait_for."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator
from typing import Any

import pymilvus
import pytest
import pytest_asyncio
from pymilvus.exceptions import ParamError

from pymilvus_flushsync import AsyncFlushSyncMixin, AsyncMilvusClient

from ..helpers import TOLERANCE, Backend


@pytest_asyncio.fixture
async def aclient(backend: Backend) -> AsyncIterator[AsyncMilvusClient]:
    client = AsyncMilvusClient(backend.uri)
    try:
        yield client
    finally:
        await client.close()


def test_drop_in_subclass() -> None:
    assert issubclass(AsyncMilvusClient, pymilvus.AsyncMilvusClient)
    assert issubclass(AsyncMilvusClient, AsyncFlushSyncMixin)


class NoRpcClient(AsyncFlushSyncMixin):
    async def _get_connection(self) -> None:
        raise AssertionError("an RPC was attempted")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("names", "kwargs"),
    [(None, {}), ([], {}), ([""], {}), ("a", {"timeout": 0}), ("a", {"db_name": 5})],
)
async def test_bad_arguments_before_any_rpc(names: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ParamError):
        await NoRpcClient().flush_sync(names, **kwargs)


@pytest.mark.asyncio
async def test_concurrent_calls_on_one_client_do_not_serialise(
    backend: Backend, aclient: AsyncMilvusClient
) -> None:
    names = [backend.collection(800) for _ in range(8)]
    started = time.monotonic()
    responses = await asyncio.gather(*(aclient.flush_sync(n, timeout=120) for n in names))
    wall = time.monotonic() - started
    assert [list(r.collections) for r in responses] == [[n] for n in names]
    assert all(r.flushed for r in responses)
    if backend.kind == "server":  # each waits seconds for the server: overlapping, not queued
        assert wall <= 0.5 * sum(r.elapsed for r in responses)
    for name in names:
        assert backend.count(name) == 800


class CountingStub:
    """Wraps a grpc.aio stub: records every RPC started, signals the first poll reply."""

    def __init__(self, stub: Any, calls: list[str], polled: asyncio.Event) -> None:
        self._stub, self._calls, self._polled = stub, calls, polled

    def __getattr__(self, method: str) -> Any:
        rpc = getattr(self._stub, method)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append(method)
            reply = await rpc(*args, **kwargs)
            if method == "GetFlushState":
                self._polled.set()
            return reply

        return call


class CountingHandler:
    def __init__(self, handler: Any, calls: list[str], polled: asyncio.Event) -> None:
        self._handler, self._calls, self._polled = handler, calls, polled

    @property
    def _async_stub(self) -> CountingStub:
        return CountingStub(self._handler._async_stub, self._calls, self._polled)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handler, name)


class CountingClient(AsyncMilvusClient):
    calls: list[str]
    polled: asyncio.Event

    def _get_connection(self) -> Any:
        """Same kind as pymilvus's: a coroutine on 2.6+, a plain call on 2.5."""
        handler = super()._get_connection()
        if not inspect.isawaitable(handler):
            return CountingHandler(handler, self.calls, self.polled)

        async def connected() -> CountingHandler:
            return CountingHandler(await handler, self.calls, self.polled)

        return connected()


@pytest.mark.server
@pytest.mark.asyncio
@pytest.mark.parametrize("backend", ["server"], indirect=True)
async def test_cancel_stops_polling_at_once_and_leaves_the_client_usable(backend: Backend) -> None:
    name = backend.collection(2000)
    client = CountingClient(backend.uri)
    client.calls, client.polled = [], asyncio.Event()
    try:
        task = asyncio.create_task(client.flush_sync(name, timeout=60))
        await client.polled.wait()  # the Flush went out and a poll came back: mid-wait
        task.cancel()
        cancelled_at = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - cancelled_at < 0.1
        sent = len(client.calls)
        assert client.calls[0] == "Flush"
        await asyncio.sleep(0.3)  # an observation window, not synchronisation
        assert len(client.calls) == sent  # nothing more was sent
        assert asyncio.all_tasks() == {asyncio.current_task()}
        response = await client.flush_sync(name, timeout=60)
        assert response.flushed
        assert backend.persisted_rows(name) == (2000, 0)
    finally:
        await client.close()


@pytest.mark.server
@pytest.mark.asyncio
@pytest.mark.parametrize("backend", ["server"], indirect=True)
async def test_wait_for_around_it(backend: Backend, aclient: AsyncMilvusClient) -> None:
    name = backend.collection(2000)
    await aclient.flush_sync(backend.collection(0), timeout=30)  # connected
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(aclient.flush_sync(name), 0.3)
    assert time.monotonic() - started <= 0.3 + TOLERANCE
    assert (await aclient.flush_sync(name, timeout=60)).flushed


@pytest.mark.asyncio
async def test_lite_flush_sync_is_awaitable_and_typed(
    backend: Backend, aclient: AsyncMilvusClient
) -> None:
    name = backend.collection(50)
    response = await aclient.flush_sync([name, name])
    assert response.flushed
    assert list(response.collections) == [name]
