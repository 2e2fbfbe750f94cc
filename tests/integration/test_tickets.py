"""Flush tickets on Milvus Lite (sync and async), and the heartbeat on a hung server."""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
from dataclasses import replace

import pytest
from pymilvus.exceptions import MilvusException, ParamError

from pymilvus_flushsync import (
    AsyncMilvusClient,
    FlushPolicy,
    FlushTicket,
    FlushTimeoutError,
    MilvusClient,
    TicketCollection,
)

from ..helpers import Backend, rows
from ..hostile import hostile


def test_a_ticket_is_waited_on_by_another_client(backend: Backend) -> None:
    name = backend.collection(100)
    ticket = backend.client.start_flush(name, timeout=30)
    assert ticket.names == (name,) and ticket.db_name == "default"
    other = MilvusClient(backend.uri)  # the same server, another client
    response = other.wait_flushed(FlushTicket.from_json(ticket.to_json()), timeout=30)
    assert response.flushed and response.collections[name].flushed
    assert pickle.loads(pickle.dumps(ticket)) == ticket
    assert backend.kind == "lite" or backend.persisted_rows(name) == (100, 0)
    other.close()  # last: under pymilvus 2.5 it closes the connection both clients share


def test_the_asyncio_twins(backend: Backend) -> None:
    name = backend.collection(10)

    async def main() -> None:
        client = AsyncMilvusClient(backend.uri)
        ticket = await client.start_flush([name], timeout=30)
        assert (await client.wait_flushed(ticket, timeout=30)).flushed
        await client.close()

    asyncio.run(main())
    assert backend.kind == "lite" or backend.persisted_rows(name) == (10, 0)


@pytest.mark.server
def test_a_ticket_for_a_collection_recreated_under_its_name_fails(server: Backend) -> None:
    name = server.collection(10)
    ticket = server.client.start_flush(name, timeout=30)
    (sealed,) = ticket.collections
    assert sealed.collection_id and sealed.created_timestamp and sealed.segment_ids
    server.client.drop_collection(name)
    server.client.create_collection(name, dimension=8)
    with pytest.raises(MilvusException) as info:
        server.client.wait_flushed(ticket, timeout=30)
    assert info.value.code == 100 and "recreated" in info.value.message


def test_a_ticket_for_a_dropped_collection_or_another_server_fails(lite: Backend) -> None:
    name = lite.collection(10)
    ticket = lite.client.start_flush(name, timeout=30)
    foreign = FlushTicket(ticket.db_name, (TicketCollection(name, 446, 449, (1,), 5),))
    with pytest.raises(MilvusException) as info:
        lite.client.wait_flushed(foreign, timeout=30)
    assert info.value.code == 100 and "another server" in info.value.message
    lite.client.drop_collection(name)
    with pytest.raises(MilvusException) as info:
        lite.client.wait_flushed(ticket, timeout=30)
    assert info.value.code == 100
    with pytest.raises(ParamError):
        lite.client.wait_flushed(ticket.to_json(), timeout=30)  # type: ignore[arg-type]


def test_flush_sync_is_unchanged_by_the_split(lite: Backend) -> None:
    name = lite.collection(10)
    lite.client.insert(name, rows(10, 10))
    response = lite.client.flush_sync(name, timeout=30)
    assert response.flushed and not response.collections[name].covered


def test_the_heartbeat_logs_a_wait_for_an_answer_that_never_comes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with hostile("never_answers") as server:
        client = MilvusClient(server.uri)
        client.flush_sync_policy = replace(FlushPolicy(), heartbeat=0.3)
        started = time.monotonic()
        with (
            caplog.at_level(logging.INFO, logger="pymilvus_flushsync"),
            pytest.raises(FlushTimeoutError),
        ):
            client.flush_sync("c0", timeout=1.5)
        took = time.monotonic() - started
        client.close()
    beats = [m for m in caplog.messages if "still waiting" in m]
    assert 3 <= len(beats) <= int(took / 0.3) + 1
    assert "stage flush" in beats[0] and "awaiting Flush ['c0']" in beats[0]
    assert "pending: c0" in beats[0] and "polls: 0" in beats[0]


def test_no_heartbeat_for_a_call_shorter_than_it(
    lite: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    name = lite.collection(10)
    with caplog.at_level(logging.INFO, logger="pymilvus_flushsync"):
        assert lite.client.flush_sync(name, timeout=30).flushed
    assert not [m for m in caplog.messages if "still waiting" in m]
