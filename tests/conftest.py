"""Fixtures: Milvus Lite clients on temporary files, and one real Milvus 2.3.5
standalone for the whole test session (the ``milvus`` wheel), always stopped."""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pymilvus_flushsync import AsyncMilvusClient, FlushSyncResponse, MilvusClient

from .helpers import Backend

# Milvus Lite's in-process gRPC server logs a traceback for RPCs it does not
# implement (pymilvus's insert asks for AllocTimestamp): noise in test output.
logging.getLogger("grpc._server").setLevel(logging.CRITICAL)


class _Server:
    """The one real Milvus server of this test session."""

    def __init__(self) -> None:
        from milvus import MilvusServer

        self.base_dir = tempfile.mkdtemp(prefix="flushsync-milvus-")
        self.server = MilvusServer()
        self.server.set_base_dir(self.base_dir)
        for key, value in _extra_config().items():
            self.server.config.set(key, value)
        atexit.register(self.stop)  # also when pytest is interrupted
        self.server.start()
        self.port = int(self.server.listen_port)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.server.running:
            self.server.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)


def _extra_config() -> dict[str, str]:
    """milvus.yaml keys for the test server, e.g. FLUSHSYNC_MILVUS_CONFIG="a.b=1,c.d=x"."""
    pairs = os.environ.get("FLUSHSYNC_MILVUS_CONFIG", "")
    return dict(pair.split("=", 1) for pair in pairs.split(",") if pair)


@pytest.fixture(scope="session")
def milvus_server() -> Iterator[_Server]:
    server = _Server()
    try:
        yield server
    finally:
        server.stop()


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
def server(milvus_server: _Server) -> Iterator[Backend]:
    client = MilvusClient(milvus_server.uri)
    backend = Backend("server", milvus_server.uri, client)
    try:
        yield backend
    finally:
        backend.drop_created()
        client.close()


@pytest.fixture(params=["lite", pytest.param("server", marks=pytest.mark.server)])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Runs the test once on Milvus Lite and once on the real server."""
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


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


@pytest.fixture(params=["sync", "async"])
def flush(request: pytest.FixtureRequest, backend: Backend) -> FlushFn:
    """``flush_sync`` of the sync client, or of the asyncio client: same contract."""
    if request.param == "sync":
        return backend.client.flush_sync
    return async_flush(backend.uri)
