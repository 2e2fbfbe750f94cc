"""Test helpers shared by the Lite and real-server tests."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pymilvus
import pytest
from pymilvus.grpc_gen import common_pb2, milvus_pb2

from pymilvus_flushsync import AsyncMilvusClient, FlushSyncResponse, MilvusClient
from pymilvus_flushsync._compat import BROADCAST_FIELDS

DIM = 8

# A timed check's tolerance: what a loaded 2-core machine meets.
TOLERANCE = 0.25
#: pymilvus 2.5 keeps retrying a refused or garbled connection until its connect
#: timeout (2.6+ gives up at once).
CONNECT_RETRIED = pymilvus.__version__.startswith("2.5.")
FLUSHED, FLUSHING = common_pb2.SegmentState.Flushed, common_pb2.SegmentState.Flushing
#: How long a segment whose binlogs are saved (Flushing) may take to be marked Flushed:
#: measured up to 88 ms on the 2-core machine (docs/milvus.md), CI's load beside.
FLUSHED_LAG = 5.0

#: The ``measure`` fixture: record a measured outcome for pytest's summary.
Measure = Callable[[str, object], None]


def unique(prefix: str = "c") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def rows(start: int, count: int) -> list[dict[str, object]]:
    rng = random.Random(start)
    return [
        {"id": i, "vector": [rng.random() for _ in range(DIM)]} for i in range(start, start + count)
    ]


@dataclass
class Backend:
    """A client on one backend, with the collections a test made there."""

    kind: str
    uri: str
    client: MilvusClient
    created: list[tuple[str, str]] = field(default_factory=list)

    def collection(self, count: int = 0, db_name: str = "") -> str:
        """A new collection with ``count`` rows inserted (not flushed)."""
        name = unique()
        client = self.client if not db_name else MilvusClient(self.uri, db_name=db_name)
        client.create_collection(name, dimension=DIM)
        self.created.append((db_name, name))
        for start in range(0, count, 1000):
            client.insert(name, rows(start, min(1000, count - start)))
        return name

    def database(self) -> str:
        """A new database; skips the test on a backend without databases (Milvus Lite 2.x)."""
        name = unique("db")
        try:
            self.client.create_database(name)
        except grpc.RpcError as error:
            if error.code() is not grpc.StatusCode.UNIMPLEMENTED:
                raise
            pytest.skip(f"{self.kind} has no databases (CreateDatabase is UNIMPLEMENTED)")
        return name

    def drop_created(self) -> None:
        for db_name, name in self.created:
            with contextlib.suppress(Exception):
                client = MilvusClient(self.uri, db_name=db_name) if db_name else self.client
                client.drop_collection(name)

    def persisted_rows(self, name: str, db_name: str = "") -> tuple[int, int]:
        """(rows in Flushed segments, rows in any other state), from GetPersistentSegmentInfo.

        A segment whose binlogs are saved is Flushing, and Flushed a moment later
        (docs/milvus.md, "Flushing, then Flushed"): rows in Flushing segments alone
        are read again, for ``FLUSHED_LAG`` seconds at most, until they are Flushed.
        Rows in any other state (Growing, Sealed: not saved) are returned at once."""
        stub = self.client._get_connection()._stub
        request = milvus_pb2.GetPersistentSegmentInfoRequest(dbName=db_name, collectionName=name)
        until = time.monotonic() + FLUSHED_LAG
        while True:
            reply = stub.GetPersistentSegmentInfo(request, timeout=10)
            assert reply.status.code == 0, reply.status
            rows = {state: 0 for state in (FLUSHED, FLUSHING, None)}
            for info in reply.infos:
                rows[info.state if info.state in (FLUSHED, FLUSHING) else None] += info.num_rows
            if not rows[FLUSHING] or rows[None] or time.monotonic() > until:
                return rows[FLUSHED], rows[FLUSHING] + rows[None]
            time.sleep(0.01)

    def server_says_flushed(
        self, name: str, segment_ids: tuple[int, ...], flush_ts: int, db_name: str = ""
    ) -> bool:
        stub = self.client._get_connection()._stub
        request = milvus_pb2.GetFlushStateRequest(
            segmentIDs=segment_ids, flush_ts=flush_ts, collection_name=name, db_name=db_name
        )
        reply = stub.GetFlushState(request, timeout=10)
        assert reply.status.code == 0, reply.status
        return bool(reply.flushed)

    def count(self, name: str) -> int:
        result = self.client.query(name, filter="", output_fields=["count(*)"])
        return int(result[0]["count(*)"])


def serving(client: MilvusClient, uri: str) -> Iterator[Backend]:
    """A fixture body: a real-server ``Backend`` on ``client``, cleaned up and closed after."""
    backend = Backend("server", uri, client)
    try:
        yield backend
    finally:
        backend.drop_created()
        client.close()


FlushFn = Callable[..., FlushSyncResponse]


def async_flush(uri: str) -> FlushFn:
    """flush_sync on a fresh AsyncMilvusClient in a fresh event loop, as a plain call."""

    def flush(*args: Any, **kwargs: Any) -> FlushSyncResponse:
        async def call() -> FlushSyncResponse:
            client = AsyncMilvusClient(uri)
            try:
                return await client.flush_sync(*args, **kwargs)
            finally:
                await client.close()

        return asyncio.run(call())

    return flush


def server_only(test: Callable[..., None]) -> Callable[..., None]:
    """Run ``test`` on the real server only (both client flavours)."""
    marked: Callable[..., None] = pytest.mark.server(
        pytest.mark.parametrize("backend", ["server"], indirect=True)(test)
    )
    return marked


def broadcast_only(test: Callable[..., None]) -> Callable[..., None]:
    """Run ``test`` on the real server behind ``tests/interposer.py``'s Milvus 2.6.8
    FlushAll; it needs protos with 2.6.8's fields (pymilvus 2.5 lacks them, and its
    handshake fails through an interposer)."""
    skip = pytest.mark.skipif(
        not BROADCAST_FIELDS or pymilvus.__version__.startswith("2.5."),
        reason="needs pymilvus protos with Milvus 2.6.8's FlushAll fields",
    )
    marked: Callable[..., None] = pytest.mark.server(skip(test))
    return marked


def own_server(*values: object) -> Any:
    """A parameter set whose test needs a server config of its own (a rate limit):
    marked ``own_server``, it runs in turn with the others so marked
    (``tests/servers.py``)."""
    return pytest.param(*values, marks=pytest.mark.own_server)


def forget_connections() -> None:
    """Close the shared connections pymilvus keeps after their last client closed.

    pymilvus 2.6+ shares one gRPC handler per ``address|token`` for the life of the
    process: ``ConnectionManager.release`` only forgets the client, never the handler.
    A later test whose fake server gets the same free port from the OS would then be
    handed that handler, connected long ago, instead of connecting (CI saw a client of
    a garbage-speaking TCP server skip its failing connect that way). The autouse
    fixture in ``tests/conftest.py`` calls this after every test. pymilvus 2.5 has no
    such manager: a closed client removes its own connection.
    """
    try:
        from pymilvus.client import connection_manager as cm
    except ImportError:
        return
    manager = cm.ConnectionManager.get_instance()
    with manager._lock:
        for key, managed in list(manager._registry.items()):
            if not managed.has_clients:
                del manager._registry[key]
                with contextlib.suppress(Exception):
                    managed.strategy.close(managed)
    # The async managers are one per event loop, by the loop's id, which a later loop
    # may get again: a test's loops are gone by now, and so is what they held (a
    # handler, or a lock, bound to a closed loop fails "Event loop is closed").
    with cm.AsyncConnectionManager._instances_lock:
        instances = cm.AsyncConnectionManager._instances
        for loop_id, instance in list(instances.items()):
            for key, managed in list(instance._registry.items()):
                if not managed.has_clients:
                    del instance._registry[key]
            if not instance._registry and not instance._dedicated:
                del instances[loop_id]
