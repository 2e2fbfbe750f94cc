"""Fixtures: Milvus Lite clients on temporary files, and real Milvus 2.3.5
standalones (the ``milvus`` wheel, one at a time, always stopped): one with the
default config for the session, then one per fault scenario (``test_faults.py``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

from pymilvus_flushsync import MilvusClient

from ..helpers import Backend, FlushFn, Measure, async_flush, serving
from ..interposer import BroadcastingInterposer
from ..servers import Server, Servers

# Milvus Lite's in-process gRPC server logs a traceback for RPCs it does not
# implement (pymilvus's insert asks for AllocTimestamp): noise in test output.
logging.getLogger("grpc._server").setLevel(logging.CRITICAL)


def _extra_config() -> dict[str, str]:
    """milvus.yaml keys for the test server, e.g. FLUSHSYNC_MILVUS_CONFIG="a.b=1,c.d=x"."""
    pairs = os.environ.get("FLUSHSYNC_MILVUS_CONFIG", "")
    return dict(pair.split("=", 1) for pair in pairs.split(",") if pair)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Fault tests last, in file order: each asks for a server config of its own,
    and only one server can run at a time, so every other test shares the first."""
    items.sort(key=lambda item: item.get_closest_marker("faults") is not None)


_MEASURED = pytest.StashKey[list[tuple[str, str, object]]]()


@pytest.fixture
def measure(request: pytest.FixtureRequest) -> Measure:
    """Record a measured outcome (seconds, rows) for the terminal summary."""
    measured = request.config.stash.setdefault(_MEASURED, [])

    def record(key: str, value: object) -> None:
        measured.append((request.node.nodeid, key, value))

    return record


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    measured = config.stash.get(_MEASURED, [])
    if measured:
        terminalreporter.section("measured")
        for nodeid, key, value in measured:
            terminalreporter.write_line(f"{nodeid.split('::')[-1]}: {key} = {value}")


@pytest.fixture(scope="session")
def milvus_servers() -> Iterator[Servers]:
    servers = Servers(_extra_config())
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def milvus_server(milvus_servers: Servers) -> Server:
    """The real server with the default config (started once, kept while unchanged)."""
    return milvus_servers.get()


@pytest.fixture
def broadcasting(milvus_server: Server) -> Iterator[BroadcastingInterposer]:
    """Milvus 2.6.8's FlushAll in front of the real server (``tests/interposer.py``)."""
    interposer = BroadcastingInterposer(f"127.0.0.1:{milvus_server.port}")
    try:
        yield interposer
    finally:
        interposer.close()


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
