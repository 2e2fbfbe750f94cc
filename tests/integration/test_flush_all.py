"""``flush_all_sync``: every collection of every database (or of one), one deadline."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pymilvus_flushsync import (
    AsyncMilvusClient,
    FlushAllSyncResponse,
    FlushTimeoutError,
    MilvusClient,
)

from ..helpers import TOLERANCE, Backend, Measure, broadcast_only, rows, server_only, unique
from ..interposer import BroadcastingInterposer
from .test_cli import CLI, QUIET

# A FlushAll seals every collection of the server: no other test on it meanwhile
# (tests/servers.py).
pytestmark = pytest.mark.alone

FlushAllFn = Callable[..., FlushAllSyncResponse]


def flavored(flavor: str, uri: str) -> FlushAllFn:
    """flush_all_sync on a fresh client of ``uri``: sync, or asyncio in a fresh loop."""

    def flush(**kwargs: Any) -> FlushAllSyncResponse:
        async def call() -> FlushAllSyncResponse:
            client = AsyncMilvusClient(uri)
            try:
                return await client.flush_all_sync(**kwargs)
            finally:
                await client.close()

        if flavor == "async":
            return asyncio.run(call())
        client = MilvusClient(uri)
        try:
            return client.flush_all_sync(**kwargs)
        finally:
            client.close()

    return flush


@pytest.fixture(params=["sync", "async"])
def flush_all(request: pytest.FixtureRequest, backend: Backend) -> FlushAllFn:
    if request.param == "sync":
        return backend.client.flush_all_sync
    return flavored("async", backend.uri)


def test_every_collection_of_every_database(backend: Backend, flush_all: FlushAllFn) -> None:
    db = backend.database()
    here = backend.collection(800)
    there = [backend.collection(600, db_name=db), backend.collection(400, db_name=db)]
    response = flush_all(timeout=60)
    assert response.flushed and {"default", db} <= set(response.databases)
    assert here in response.databases["default"].collections
    assert sorted(response.databases[db].collections) == sorted(there)
    assert all(one.flushed for one in response.databases.values())
    if backend.kind == "server":
        assert backend.persisted_rows(here) == (800, 0)
        counts = [backend.persisted_rows(name, db_name=db) for name in there]
        assert counts == [(600, 0), (400, 0)]


def test_db_name_flushes_that_database_only(backend: Backend, flush_all: FlushAllFn) -> None:
    db = backend.database()
    name = backend.collection(300, db_name=db)
    response = flush_all(timeout=60, db_name=db)
    assert list(response.databases) == [db]
    assert list(response.databases[db].collections) == [name]


@server_only
def test_rows_inserted_just_before_the_call_are_persisted(
    backend: Backend, flush_all: FlushAllFn, measure: Measure
) -> None:
    """Milvus 2.3.5's own FlushAll + GetFlushAllState said "flushed" with such rows
    (a collection made just before it) still unflushed: flush_all_sync does not."""
    db = backend.database()
    names = [backend.collection(700), backend.collection(500, db_name=db)]
    started = time.monotonic()
    flush_all(timeout=60)
    measure("flush_all_sync_s", round(time.monotonic() - started, 3))
    assert backend.persisted_rows(names[0]) == (700, 0)
    assert backend.persisted_rows(names[1], db_name=db) == (500, 0)


@server_only
@pytest.mark.exclusive  # the proxy runs FlushAlls one at a time: others' would queue its own
def test_the_deadline_bounds_the_whole_call(backend: Backend, flush_all: FlushAllFn) -> None:
    """Wherever the deadline falls once the default database was listed (the other
    databases' listings, the FlushAll, each database's wait), this collection is named."""
    name = backend.collection(3000)
    started = time.monotonic()
    with pytest.raises(FlushTimeoutError) as info:
        flush_all(timeout=0.3)
    took = time.monotonic() - started
    assert took <= 0.3 + TOLERANCE + 0.5  # the async twin also makes its client
    assert name in info.value.pending, info.value.message


@broadcast_only
@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_milvus_2_6_8_gets_one_flush_all_broadcast(
    server: Backend, broadcasting: BroadcastingInterposer, flavor: str, measure: Measure
) -> None:
    """Through ``tests/interposer.py``'s 2.6.8 FlushAll, in front of the real server."""
    db = server.database()
    here = server.collection(700)
    there = [server.collection(500, db_name=db), server.collection(300, db_name=db)]
    started = time.monotonic()
    response = flavored(flavor, broadcasting.uri)(timeout=60)
    measure("flush_all_sync_broadcast_s", round(time.monotonic() - started, 3))
    assert response.flushed and response.broadcast
    assert (broadcasting.flush_alls, broadcasting.client_flushes) == (1, 0)
    assert broadcasting.tick_polls >= 1
    assert here in response.databases["default"].collections
    assert sorted(response.databases[db].collections) == sorted(there)
    assert server.persisted_rows(here) == (700, 0)
    assert [server.persisted_rows(name, db_name=db) for name in there] == [(500, 0), (300, 0)]


@pytest.fixture
def churn(backend: Backend) -> Iterator[list[str]]:
    """Another thread creating, filling and dropping collections in the default
    database as fast as it can, for the test's length; the names it dropped. It uses
    the test's client: under pymilvus 2.5, clients of one URI share one connection,
    which a second client's ``close()`` would close for both."""
    stop, dropped = threading.Event(), []

    def create_and_drop() -> None:
        client = backend.client
        while not stop.is_set():
            name = unique("churn")
            client.create_collection(name, dimension=8)
            client.insert(name, rows(0, 10))
            client.drop_collection(name)
            dropped.append(name)

    thread = threading.Thread(target=create_and_drop)
    thread.start()
    try:
        yield dropped
    finally:
        stop.set()
        thread.join()


@server_only
@pytest.mark.exclusive  # its drops would fail the FlushAlls of the tests beside it
@pytest.mark.xfail(
    reason="not yet on every path: under continuous drops a code 100 still escapes, "
    "about one call in two on the real server (#28's closing note)",
    strict=False,
)
def test_collections_another_client_drops_meanwhile_are_left_out(
    backend: Backend, flush_all: FlushAllFn, churn: list[str]
) -> None:
    """A collection dropped after the call listed it answers "not found" to what comes
    next: the call lists again and flushes what is there (``_steps``, ``GONE``), as
    does the command line's ``--all``. Without that, this failed within two calls."""
    here = backend.collection(100)
    for _ in range(2):
        # The command at the same time, in a process of its own: under pymilvus 2.5 its
        # client, closed in this process, would close the connection this test's shares.
        with subprocess.Popen(
            [*CLI, "flush", "--uri", backend.uri, "--all"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=QUIET,
        ) as cli:  # fmt: skip
            response = flush_all(timeout=60)
            _, err = cli.communicate(timeout=120)
        assert response.flushed and here in response.databases["default"].collections
        assert cli.returncode == 0, err
    assert churn  # it did drop collections meanwhile
    assert backend.persisted_rows(here) == (100, 0)
