"""The flush_sync contract against Milvus Lite and a real Milvus 2.3.5 server,
for the sync client and the asyncio client alike (the ``flush`` fixture)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from pymilvus.exceptions import MilvusException

from pymilvus_flushsync import (
    AsyncMilvusClient,
    FlushSyncResponse,
    FlushTimeoutError,
    MilvusClient,
    _async,
    _sync,
)
from pymilvus_flushsync._call import prepare
from pymilvus_flushsync._compat import async_handler, current_db_name

from ..helpers import TOLERANCE, Backend, FlushFn, Measure, server_only
from ..proxy import StallingProxy


def test_several_collections_in_one_call(backend: Backend, flush: FlushFn) -> None:
    counts = (1500, 2000, 10)
    names = [backend.collection(count) for count in counts]
    response = flush(names, timeout=60)
    assert response.flushed
    assert list(response.collections) == names
    assert all(s.flushed and s.seconds is not None for s in response.collections.values())
    assert response.elapsed >= max(s.seconds or 0.0 for s in response.collections.values())
    assert response.polls >= len(names)
    assert response.db_name == "default"
    assert response.to_dict()["status"] == {"code": 0, "error_code": "Success", "reason": ""}
    for name, count in zip(names, counts, strict=True):
        assert backend.count(name) == count


def test_the_progress_hook_ends_on_the_final_response(backend: Backend, flush: FlushFn) -> None:
    """On Lite (Flush is synchronous: no wait) too, the hook sees the call complete."""
    names = [backend.collection(200), backend.collection(10)]
    seen: list[FlushSyncResponse] = []
    response = flush(names, timeout=60, on_progress=seen.append)
    assert seen and seen[-1] == response and seen[-1].flushed
    assert all(not s.flushed for s in seen[:-1])
    assert sum(state.flushed for state in seen[-1].collections.values()) == len(names)


def test_one_name_duplicates_and_nothing_new(backend: Backend, flush: FlushFn) -> None:
    name = backend.collection(100)
    assert list(flush(name).collections) == [name]
    again = flush([name, name, name], timeout=30)
    assert again.flushed
    assert list(again.collections) == [name]


def test_missing_collection_is_code_100_naming_it(backend: Backend, flush: FlushFn) -> None:
    existing = backend.collection(10)
    with pytest.raises(MilvusException) as info:
        flush([existing, "no_such_collection"], timeout=30)
    assert not isinstance(info.value, FlushTimeoutError)
    assert info.value.code == 100
    assert "no_such_collection" in info.value.message


def test_db_name_for_one_call_only(backend: Backend, flush: FlushFn) -> None:
    db = backend.database()
    name = backend.collection(500, db_name=db)
    here = backend.collection()  # in the client's (default) database
    seen: list[list[str]] = []
    stop = threading.Event()

    def other_thread() -> None:  # uses the sync client while flush_sync runs
        while not stop.is_set():
            seen.append(backend.client.list_collections())

    thread = threading.Thread(target=other_thread)
    thread.start()
    try:
        response = flush([name], db_name=db, timeout=60)
    finally:
        stop.set()
        thread.join()
    assert response.flushed
    assert response.db_name == db
    assert seen
    # the default database throughout (other tests may add and drop collections there)
    assert all(here in listed and name not in listed for listed in seen)
    assert current_db_name(backend.client) == ""
    with pytest.raises(MilvusException) as info:  # not in the client's (default) database
        flush([name], timeout=30)
    assert info.value.code == 100


def test_client_current_database_is_the_default(backend: Backend) -> None:
    db = backend.database()
    name = backend.collection(10, db_name=db)
    client = MilvusClient(backend.uri, db_name=db)
    try:
        response = client.flush_sync(name, timeout=30)
    finally:
        client.close()
    assert response.flushed
    assert response.db_name == db


@server_only
def test_every_row_is_in_a_flushed_segment_and_the_server_agrees(
    backend: Backend, flush: FlushFn
) -> None:
    counts = (3000, 2000)
    names = [backend.collection(count) for count in counts]
    response = flush(names, timeout=60)
    for name, count in zip(names, counts, strict=True):
        state = response.collections[name]
        assert state.segment_ids
        assert state.flush_ts > 0
        assert state.seal_time > 0
        assert backend.persisted_rows(name) == (count, 0)
        assert backend.server_says_flushed(name, state.segment_ids, state.flush_ts)


@server_only
def test_every_row_flushed_in_a_second_database(backend: Backend, flush: FlushFn) -> None:
    db = backend.database()
    name = backend.collection(1200, db_name=db)
    response = flush([name], db_name=db, timeout=60)
    assert response.db_name == db
    assert backend.persisted_rows(name, db_name=db) == (1200, 0)


@server_only
def test_deadline_shorter_than_the_flush(backend: Backend, flush: FlushFn) -> None:
    names = [backend.collection(2000), backend.collection(2000)]
    start = time.monotonic()
    with pytest.raises(FlushTimeoutError) as info:
        flush(names, timeout=0.3)
    took = time.monotonic() - start
    assert took <= 0.3 + TOLERANCE + 0.2  # + making and closing an async client
    err = info.value
    assert err.pending == tuple(names)
    assert not err.response.flushed
    assert err.response.polls >= 1
    assert 0.3 <= err.response.elapsed <= 0.3 + TOLERANCE
    assert all(s.segment_ids for s in err.response.collections.values())  # Flush went through
    assert flush(names, timeout=60).flushed  # and they still flush fine afterwards


def _stalled_sync(proxy: StallingProxy, name: str, step: str, sleeps: list[float]) -> None:
    """flush_sync through ``proxy``, which stalls from the Flush on, or from the first
    poll back-off on (each sleep recorded)."""

    def sleep(seconds: float) -> None:
        proxy.stall()
        sleeps.append(seconds)
        time.sleep(seconds)

    client = MilvusClient(proxy.uri)  # connects before the stall
    try:
        if step == "flush":
            proxy.stall()
        machine = prepare(client, [name], None, 1.0, client.flush_sync_policy)
        _sync.run(machine, client, sleep=sleep)
    finally:
        client.close()


async def _stalled_async(proxy: StallingProxy, name: str, step: str, sleeps: list[float]) -> None:
    """The asyncio twin of ``_stalled_sync``."""

    async def sleep(seconds: float) -> None:
        proxy.stall()
        sleeps.append(seconds)
        await asyncio.sleep(seconds)

    client = AsyncMilvusClient(proxy.uri)
    try:
        await async_handler(client)  # connects before the stall
        if step == "flush":
            proxy.stall()
        machine = prepare(client, [name], None, 1.0, client.flush_sync_policy)
        await _async.run(machine, client, sleep=sleep)
    finally:
        await client.close()


@pytest.mark.server
@pytest.mark.parametrize("flavor", ["sync", "async"])
@pytest.mark.parametrize("step", ["flush", "poll"])
def test_hung_server_times_out_on_the_deadline(
    server: Backend, flavor: str, step: str, measure: Measure
) -> None:
    """Through a proxy that keeps connections open but forwards nothing, from the
    Flush on, or from the first poll back-off on."""
    name = server.collection(1000)
    proxy = StallingProxy(int(server.uri.rsplit(":", 1)[1]))
    sleeps: list[float] = []
    try:
        with pytest.raises(FlushTimeoutError) as info:
            _stalled_sync(proxy, name, step, sleeps) if flavor == "sync" else asyncio.run(
                _stalled_async(proxy, name, step, sleeps)
            )
    finally:
        proxy.close()
    # elapsed: from the start of the call to the raise
    measure("elapsed_s", round(info.value.response.elapsed, 3))
    assert 1.0 <= info.value.response.elapsed <= 1.0 + TOLERANCE
    assert info.value.pending == (name,)
    cause = info.value.__cause__
    assert isinstance(cause, MilvusException) and "DEADLINE_EXCEEDED" in cause.message
    assert bool(sleeps) == (step == "poll")


def test_six_threads_on_one_client(backend: Backend) -> None:
    """Three threads flush one shared collection, three flush one each, all on one
    client at once (a barrier lines them up): every call finishes with its own
    answer and every row is persisted."""
    shared = backend.collection(1500)
    own = [backend.collection(500 + 100 * i) for i in range(3)]
    targets = [shared, shared, shared, *own]
    barrier = threading.Barrier(len(targets))

    def call(name: str) -> tuple[str, tuple[str, ...], bool]:
        barrier.wait(timeout=30)
        response = backend.client.flush_sync(name, timeout=90)
        return name, tuple(response.collections), response.flushed

    with ThreadPoolExecutor(len(targets)) as pool:
        results = list(pool.map(call, targets))
    assert results == [(name, (name,), True) for name in targets]
    if backend.kind == "server":
        assert backend.persisted_rows(shared) == (1500, 0)
        assert [backend.persisted_rows(name) for name in own] == [
            (500, 0),
            (600, 0),
            (700, 0),
        ]
