"""flush_sync against Milvus Lite and a real Milvus 2.3.5 server."""

from __future__ import annotations

import threading
import time

import pytest
from pymilvus.exceptions import MilvusException

from pymilvus_flushsync import FlushTimeoutError, MilvusClient
from pymilvus_flushsync._sync import new_machine, run

from .helpers import Backend
from .proxy import StallingProxy

# A timed check's tolerance: what a loaded 2-core machine meets.
TOLERANCE = 0.25


def test_several_collections_in_one_call(backend: Backend) -> None:
    names = [backend.collection(count) for count in (1500, 2000, 10)]
    response = backend.client.flush_sync(names, timeout=60)
    assert response.flushed
    assert list(response.collections) == names
    assert all(
        state.flushed and state.seconds is not None for state in response.collections.values()
    )
    assert response.elapsed >= max(s.seconds for s in response.collections.values())
    assert response.polls >= len(names)
    assert response.db_name == "default"
    assert response.to_dict()["status"] == {"code": 0, "error_code": "Success", "reason": ""}
    for name, count in zip(names, (1500, 2000, 10), strict=True):
        assert backend.count(name) == count


def test_one_name_duplicates_and_nothing_new(backend: Backend) -> None:
    name = backend.collection(100)
    assert list(backend.client.flush_sync(name).collections) == [name]
    again = backend.client.flush_sync([name, name, name], timeout=30)
    assert again.flushed and list(again.collections) == [name]


def test_missing_collection_is_code_100_naming_it(backend: Backend) -> None:
    existing = backend.collection(10)
    with pytest.raises(MilvusException) as info:
        backend.client.flush_sync([existing, "no_such_collection"], timeout=30)
    assert not isinstance(info.value, FlushTimeoutError)
    assert info.value.code == 100
    assert "no_such_collection" in info.value.message


def test_db_name_for_one_call_only(backend: Backend) -> None:
    db = backend.database()
    name = backend.collection(500, db_name=db)
    default_collections = sorted(backend.client.list_collections())
    seen: list[list[str]] = []
    stop = threading.Event()

    def other_thread() -> None:  # uses the same client while flush_sync runs
        while not stop.is_set():
            seen.append(sorted(backend.client.list_collections()))

    thread = threading.Thread(target=other_thread)
    thread.start()
    try:
        response = backend.client.flush_sync([name], db_name=db, timeout=60)
    finally:
        stop.set()
        thread.join()
    assert response.flushed and response.db_name == db
    assert seen and all(s == default_collections for s in seen)
    assert backend.client._config.db_name == ""
    with pytest.raises(MilvusException) as info:  # not in the client's (default) database
        backend.client.flush_sync([name], timeout=30)
    assert info.value.code == 100


def test_client_current_database_is_the_default(backend: Backend) -> None:
    db = backend.database()
    name = backend.collection(10, db_name=db)
    client = MilvusClient(backend.uri, db_name=db)
    try:
        response = client.flush_sync(name, timeout=30)
    finally:
        client.close()
    assert response.flushed and response.db_name == db


@pytest.mark.server
def test_every_row_is_in_a_flushed_segment_and_the_server_agrees(server: Backend) -> None:
    names = [server.collection(3000), server.collection(2000)]
    response = server.client.flush_sync(names, timeout=60)
    for name, count in zip(names, (3000, 2000), strict=True):
        state = response.collections[name]
        assert state.segment_ids and state.flush_ts > 0 and state.seal_time > 0
        assert server.persisted_rows(name) == (count, 0)
        assert server.server_says_flushed(name, state.segment_ids, state.flush_ts)


@pytest.mark.server
def test_every_row_flushed_in_a_second_database(server: Backend) -> None:
    db = server.database()
    name = server.collection(1200, db_name=db)
    response = server.client.flush_sync([name], db_name=db, timeout=60)
    assert response.db_name == db
    assert server.persisted_rows(name, db_name=db) == (1200, 0)


@pytest.mark.server
def test_deadline_shorter_than_the_flush(server: Backend) -> None:
    names = [server.collection(2000), server.collection(2000)]
    start = time.monotonic()
    with pytest.raises(FlushTimeoutError) as info:
        server.client.flush_sync(names, timeout=0.3)
    took = time.monotonic() - start
    assert 0.3 <= took <= 0.3 + TOLERANCE
    err = info.value
    assert err.pending == tuple(names)
    assert not err.response.flushed and err.response.polls >= 1
    assert all(s.segment_ids for s in err.response.collections.values())  # Flush went through
    # the same collections still flush fine afterwards
    assert server.client.flush_sync(names, timeout=60).flushed


@pytest.mark.server
@pytest.mark.parametrize("step", ["flush", "poll"])
def test_hung_server_times_out_on_the_deadline(server: Backend, step: str) -> None:
    name = server.collection(1000)
    proxy = StallingProxy(int(server.uri.rsplit(":", 1)[1]))
    client = MilvusClient(proxy.uri)
    try:
        if step == "flush":
            proxy.stall()
        sleeps: list[float] = []

        def sleep(seconds: float) -> None:  # stall the proxy at the first poll back-off
            proxy.stall()
            sleeps.append(seconds)
            time.sleep(seconds)

        machine = new_machine(client, [name], None, 1.0, client.flush_sync_policy)
        start = time.monotonic()
        with pytest.raises(FlushTimeoutError) as info:
            run(machine, client._get_connection(), sleep=sleep)
        took = time.monotonic() - start
    finally:
        proxy.close()
        client.close()
    assert 1.0 <= took <= 1.0 + TOLERANCE
    assert info.value.pending == (name,)
    assert "DEADLINE_EXCEEDED" in info.value.__cause__.message
    assert bool(sleeps) == (step == "poll")
