"""Fixtures: Milvus Lite clients on temporary files, and leases on the run's real
Milvus 2.3.5 standalone (``tests/servers.py``): the default config, shared, or a config
of a test's own."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from pymilvus_flushsync import MilvusClient

from ..helpers import Backend, FlushFn, async_flush, serving
from ..interposer import BroadcastingInterposer
from ..servers import BROKER_ENV, Server, Servers

# Milvus Lite's in-process gRPC server logs a traceback for RPCs it does not
# implement (pymilvus's insert asks for AllocTimestamp): noise in test output.
logging.getLogger("grpc._server").setLevel(logging.CRITICAL)


@pytest.fixture(scope="session")
def milvus_servers() -> Servers:
    """Leases on the run's servers (``tests/servers.py``)."""
    return Servers(os.environ[BROKER_ENV])


@pytest.fixture
def milvus_server(milvus_servers: Servers, request: pytest.FixtureRequest) -> Iterator[Server]:
    """The real server with the default config, shared with the tests beside this one
    (alone, for a test marked ``alone``; with no other, for one marked ``exclusive``)."""
    alone = request.node.get_closest_marker("alone") is not None
    exclusive = request.node.get_closest_marker("exclusive") is not None
    with milvus_servers.lease(alone=alone, exclusive=exclusive) as server:
        yield server


@pytest.fixture
def broadcasting(milvus_server: Server) -> Iterator[BroadcastingInterposer]:
    """Milvus 2.6.8's FlushAll in front of the real server (``tests/interposer.py``)."""
    with BroadcastingInterposer(f"127.0.0.1:{milvus_server.port}") as interposer:
        yield interposer


@pytest.fixture
def lite_uri(tmp_path: object) -> str:
    return os.path.join(str(tmp_path), "milvus.db")


@pytest.fixture
def lite(lite_uri: str) -> Iterator[Backend]:
    client = MilvusClient(lite_uri)
    try:
        yield Backend("lite", lite_uri, client)
    finally:
        client.close()


@pytest.fixture
def server(milvus_server: Server) -> Iterator[Backend]:
    yield from serving(MilvusClient(milvus_server.uri), milvus_server.uri)


@pytest.fixture(params=["lite", pytest.param("server", marks=pytest.mark.server)])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Runs the test once on Milvus Lite and once on the real server."""
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


@pytest.fixture(params=["sync", "async"])
def flush(request: pytest.FixtureRequest, backend: Backend) -> FlushFn:
    """``flush_sync`` of the sync client, or of the asyncio client: same contract."""
    if request.param == "sync":
        return backend.client.flush_sync
    return async_flush(backend.uri)
