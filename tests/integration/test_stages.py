"""``until="indexed"`` and ``until="loaded"`` on Milvus Lite and the real server:
an AUTOINDEX collection from the quick setup with a few thousand rows, one without
an index, a released one, one dropped mid-wait, and the deadline inside a stage."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from importlib.metadata import version
from typing import Any

import pytest
from pymilvus import DataType
from pymilvus.exceptions import MilvusException
from pymilvus.grpc_gen import milvus_pb2

from pymilvus_flushsync import (
    FlushPolicy,
    FlushSyncResponse,
    FlushTimeoutError,
    MilvusClient,
    Until,
)

from ..helpers import DIM, Backend, async_flush, rows, serving, unique
from ..servers import CRASHABLE, CRASHABLE_UNBUILT, Servers
from .test_cli import run_cli

ROWS = 3000


def _until(flavor: str, backend: Backend, name: str, until: Until, timeout: float) -> Any:
    """``flush_sync`` of the sync client, or of a fresh asyncio one (``async_flush``)."""
    flush = backend.client.flush_sync if flavor == "sync" else async_flush(backend.uri)
    return flush(name, timeout=timeout, until=until)


#: Milvus Lite 2.x answers DescribeIndex with every count 0 (Lite 3 reports them).
LITE_COUNTS = int(version("milvus-lite").split(".")[0]) >= 3


def _indexed_counts(backend: Backend, rows_in: int) -> list[tuple[int, int, int]]:
    """What DescribeIndex says of one index over ``rows_in`` rows, all indexed."""
    if backend.kind == "lite" and not LITE_COUNTS:
        return [(0, 0, 0)]
    return [(rows_in, 0, rows_in)]


def _index_counts(backend: Backend, name: str) -> list[tuple[int, int, int]]:
    stub = backend.client._get_connection()._stub
    reply = stub.DescribeIndex(milvus_pb2.DescribeIndexRequest(collection_name=name), timeout=10)
    return [(i.indexed_rows, i.pending_index_rows, i.total_rows) for i in reply.index_descriptions]


def _unindexed(backend: Backend) -> str:
    name = unique()
    schema = backend.client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    backend.client.create_collection(name, schema=schema)
    backend.created.append(("", name))
    backend.client.insert(name, rows(0, 100))
    return name


@pytest.fixture(params=["sync", "async"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_indexed_returns_with_every_row_indexed(backend: Backend, flavor: str) -> None:
    name = backend.collection(ROWS)
    response = _until(flavor, backend, name, "indexed", 120)
    state = response.collections[name]
    assert response.flushed and state.indexes == 1 and state.indexed_seconds is not None
    assert _index_counts(backend, name) == _indexed_counts(backend, ROWS)


@pytest.mark.once  # the same rule on every pymilvus line: CI runs it once
def test_a_ticket_is_waited_on_until_indexed(
    backend: Backend, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """``wait_flushed(..., until=...)`` and ``wait --until``: the same stages."""
    name = backend.collection(ROWS)
    ticket = backend.client.start_flush(name, timeout=60)
    response = backend.client.wait_flushed(ticket, timeout=120, until="indexed")
    assert response.stage == "indexed" and response.collections[name].indexes == 1
    assert _index_counts(backend, name) == _indexed_counts(backend, ROWS)
    path = tmp_path / "ticket.json"
    path.write_text(ticket.to_json())
    flags = ["--uri", backend.uri, "--timeout", "120", "--json", "--until", "indexed"]
    code, out, _ = run_cli(capsys, "wait", str(path), *flags)
    assert code == 0 and json.loads(out)["collections"][name]["indexes"] == 1


def test_a_collection_without_an_index_has_nothing_to_build(backend: Backend) -> None:
    name = _unindexed(backend)
    response = backend.client.flush_sync(name, timeout=60, until="indexed")
    assert response.collections[name].indexes == 0


@pytest.mark.server
def test_loaded_returns_with_every_flushed_segment_served_with_its_index(
    server: Backend, flavor: str
) -> None:
    name = server.collection(ROWS)
    response = _until(flavor, server, name, "loaded", 120)
    state = response.collections[name]
    assert state.loaded_seconds is not None and state.indexed_seconds is not None
    flushed, other = server.persisted_rows(name)
    assert (flushed, other) == (ROWS, 0)
    stub = server.client._get_connection()._stub
    served = stub.GetQuerySegmentInfo(
        milvus_pb2.GetQuerySegmentInfoRequest(collectionName=name), timeout=10
    ).infos
    assert sum(i.num_rows for i in served if i.index_name) == ROWS


def test_loaded_on_milvus_lite_is_its_load_state(lite: Backend) -> None:
    """Lite lists no segments (GetPersistentSegmentInfo, GetQuerySegmentInfo are
    UNIMPLEMENTED): loaded once GetLoadState said Loaded, every row queryable."""
    name = lite.collection(ROWS)
    response = lite.client.flush_sync(name, timeout=120, until="loaded")
    state = response.collections[name]
    assert response.stage == "loaded" and state.loaded_seconds is not None
    assert state.indexes == 1
    count = lite.client.query(name, filter="", output_fields=["count(*)"])
    assert count[0]["count(*)"] == ROWS


def test_a_released_collection_fails_at_once_before_any_flush(backend: Backend) -> None:
    name = backend.collection(100)
    backend.client.release_collection(name)
    with pytest.raises(MilvusException) as info:
        backend.client.flush_sync(name, timeout=60, until="loaded")
    assert info.value.code == 101 and f"[collection={name}]" in info.value.message
    if backend.kind == "server":
        assert backend.persisted_rows(name)[0] == 0  # no Flush was sent


@pytest.mark.server
@pytest.mark.once  # the same rule on every pymilvus line: CI runs it once
def test_a_segment_too_small_to_build_is_served_without_an_index(server: Backend) -> None:
    """500 rows, under the server's ``minSegmentNumRowsToEnableIndex`` (1024): indexed
    at once (marked Finished without a build), then served with no index name."""
    name = server.collection(500)
    response = server.client.flush_sync(name, timeout=120, until="loaded")
    assert response.collections[name].loaded_seconds is not None
    stub = server.client._get_connection()._stub
    served = stub.GetQuerySegmentInfo(
        milvus_pb2.GetQuerySegmentInfoRequest(collectionName=name), timeout=10
    ).infos
    assert [(i.num_rows, i.index_name) for i in served] == [(500, "")]


@pytest.mark.server
@pytest.mark.once  # the same rule on every pymilvus line: CI runs it once
def test_a_collection_dropped_mid_wait_fails(server: Backend) -> None:
    name = server.collection(ROWS)
    stub = server.client._get_connection()._stub
    dropped = threading.Event()

    def drop_once_persisted(snapshot: FlushSyncResponse) -> None:
        if snapshot.collections[name].flushed and not dropped.is_set():
            dropped.set()
            stub.DropCollection(milvus_pb2.DropCollectionRequest(collection_name=name), timeout=10)

    with pytest.raises(MilvusException) as info:
        server.client.flush_sync(name, timeout=60, until="loaded", on_progress=drop_once_persisted)
    assert dropped.is_set() and not isinstance(info.value, FlushTimeoutError)


@pytest.mark.server
@pytest.mark.once  # the same rule on every pymilvus line: CI runs it once
def test_the_deadline_cuts_the_loaded_stage(server: Backend) -> None:
    """Without the refresh the hand-off to the query node took about 12 s after the
    index on 2.3.5 (indexed after about 3 s): an 8 s deadline falls inside "loaded"."""
    server.client.flush_sync_policy = replace(FlushPolicy(), refresh_load=False)
    name = server.collection(ROWS)
    with pytest.raises(FlushTimeoutError) as info:
        server.client.flush_sync(name, timeout=8, until="loaded")
    assert f"not yet loaded: {name}" in info.value.message and info.value.pending == (name,)
    assert info.value.response.collections[name].indexed_seconds is not None


def test_the_cli_waits_until_a_stage(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    name = backend.collection(ROWS)
    flags = ["--uri", backend.uri, "--timeout", "120"]
    code, out, _ = run_cli(capsys, "flush", *flags, "--until", "indexed", "--json", name)
    assert code == 0
    state = json.loads(out)["collections"][name]
    assert state["indexes"] == 1 and state["indexed_seconds"] is not None
    if backend.kind == "server":  # the CLI released Lite's file lock: its client is gone
        # a client of its own: under pymilvus 2.5 the CLI's close closed the shared one
        MilvusClient(backend.uri).release_collection(name)
        code, _, err = run_cli(capsys, "flush", *flags, "--until", "loaded", name)
        assert code == 1 and "collection not loaded" in err
    code, _, err = run_cli(capsys, "flush", *flags, "--until", "built", name)
    assert code == 2 and "invalid choice" in err


@pytest.fixture
def unbuilt(milvus_servers: Servers) -> Iterator[Backend]:
    """A server whose index builds never start (``tests/servers.CRASHABLE_UNBUILT``)."""
    with milvus_servers.lease(CRASHABLE_UNBUILT) as server:
        yield from serving(MilvusClient(server.uri), server.uri)


@pytest.mark.server
@pytest.mark.faults
@pytest.mark.own_server(CRASHABLE)  # its config, in a row with test_faults's kill -9
def test_the_deadline_cuts_the_indexed_stage(
    unbuilt: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every row stays pending (the state, asked without a timestamp, says Finished):
    the wait runs to its deadline, sync, async and in the CLI (exit 3)."""
    name = unbuilt.collection(ROWS)
    # Persisted first, under a deadline of its own: then a loaded machine's slow flush
    # cannot spend the 3 s below, which only the indexed stage may.
    assert unbuilt.client.flush_sync(name, timeout=60).flushed
    for flavor in ("sync", "async"):
        with pytest.raises(FlushTimeoutError) as info:
            _until(flavor, unbuilt, name, "indexed", 3)
        assert f"not yet indexed: {name}" in info.value.message
        assert info.value.pending == (name,)
    assert _index_counts(unbuilt, name) == [(0, ROWS, ROWS)]
    flags = ["--uri", unbuilt.uri, "--timeout", "2", "--until", "indexed"]
    code, _, err = run_cli(capsys, "flush", *flags, name)
    assert code == 3 and f"not yet indexed: {name}" in err and "Traceback" not in err
