"""``until="visible"`` (#30, in progress): a writer's ticket lets a reader in another
process see its rows at once, with no Flush (the real server); on Milvus Lite, where
every read sees every write, the stage is reached at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymilvus.exceptions import MilvusException

from pymilvus_flushsync import AsyncMilvusClient, FlushTicket

from ..helpers import Backend, rows, server_only
from ..processes import _context


def _read(uri: str, name: str, text: str, span: tuple[int, int], out: Any) -> None:
    """In another process: wait on the ticket until visible, then count ``span``'s rows
    at Session consistency."""
    from pymilvus_flushsync import MilvusClient

    client = MilvusClient(uri)
    client.load_collection(name)
    client.wait_flushed(FlushTicket.from_json(text), timeout=30, until="visible")
    found = client.query(
        name,
        filter=f"id >= {span[0]} and id < {span[1]}",
        output_fields=["count(*)"],
        consistency_level="Session",
    )
    out.put(found[0]["count(*)"])
    client.close()


@server_only
def test_a_reader_in_another_process_sees_the_writers_rows_at_once(backend: Backend) -> None:
    server = backend
    name = server.collection()
    context = _context()
    for turn in range(3):
        span = (turn * 100, turn * 100 + 100)
        server.client.insert(name, rows(span[0], 100))
        response = server.client.flush_sync([name], timeout=30, until="visible")
        assert response.flushed and response.stage == "visible" and response.ticket
        assert not response.collections[name].flushed  # no Flush: not persisted
        out = context.Queue()
        reader = context.Process(
            target=_read, args=(server.uri, name, response.ticket.to_json(), span, out)
        )
        reader.start()
        try:
            assert out.get(timeout=60) == 100
        finally:
            reader.join(timeout=60)
            if reader.exitcode is None:
                reader.kill()


def test_a_ticket_of_a_recreated_collection_is_refused(backend: Backend) -> None:
    name = backend.collection(10)
    ticket = backend.client.flush_sync([name], timeout=30, until="visible").ticket
    assert ticket is not None
    backend.client.drop_collection(name)
    backend.client.create_collection(name, dimension=8)
    if backend.kind == "lite":  # Lite has no collection IDs: nothing tells them apart
        pytest.skip("Milvus Lite reports no collection identity")
    with pytest.raises(MilvusException) as info:
        backend.client.wait_flushed(ticket, timeout=30, until="visible")
    assert info.value.code == 100


def test_the_asyncio_twins(backend: Backend) -> None:
    name = backend.collection(10)

    async def main() -> tuple[Any, Any]:
        client = AsyncMilvusClient(backend.uri)
        try:
            written = await client.flush_sync([name], timeout=30, until="visible")
            assert written.ticket is not None
            return written, await client.wait_flushed(written.ticket, timeout=30, until="visible")
        finally:
            await client.close()

    if backend.kind == "lite":
        backend.client.close()  # one process, one Lite client at a time
    written, waited = asyncio.run(main())
    assert written.flushed and waited.flushed and waited.stage == "visible"
