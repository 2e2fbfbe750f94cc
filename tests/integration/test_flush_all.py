"""flush_all_sync: FlushAll on the real server; on Milvus Lite (FlushAll is
UNIMPLEMENTED) every collection of the database is listed and flushed instead."""

from __future__ import annotations

import asyncio
import json

import pytest

from pymilvus_flushsync import AsyncMilvusClient, FlushSyncResponse
from pymilvus_flushsync._cli import main

from ..helpers import Backend

ROWS = 400


def flush_all(flavor: str, backend: Backend, db_name: str | None = None) -> FlushSyncResponse:
    if flavor == "sync":
        return backend.client.flush_all_sync(timeout=60, db_name=db_name)

    async def call() -> FlushSyncResponse:
        client = AsyncMilvusClient(backend.uri)
        try:
            return await client.flush_all_sync(timeout=60, db_name=db_name)
        finally:
            await client.close()

    return asyncio.run(call())


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_flush_all_on_lite_flushes_every_collection_of_the_database(
    lite: Backend, flavor: str
) -> None:
    names = {lite.collection(ROWS), lite.collection(ROWS)}
    response = flush_all(flavor, lite)
    assert response.flushed
    assert set(response.collections) >= names  # listed: FlushAll is UNIMPLEMENTED on Lite
    assert all(state.flushed for state in response.collections.values())


@pytest.mark.server
@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_flush_all_on_the_server_persists_every_row_in_every_database(
    server: Backend, flavor: str
) -> None:
    """Milvus 2.3.5's FlushAll flushes every database, whatever db_name says."""
    db = server.database()
    made = [("", server.collection(ROWS)), (db, server.collection(ROWS, db_name=db))]
    made.append((db, server.collection(ROWS, db_name=db)))
    response = flush_all(flavor, server)
    assert response.flushed and response.status.code == 0
    assert response.polls >= 1 and dict(response.collections) == {}
    for db_name, name in made:
        assert server.persisted_rows(name, db_name=db_name) == (ROWS, 0)


def test_flush_all_on_the_command_line(lite: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    name = lite.collection(ROWS)
    code = main(["flush", "--uri", lite.uri, "--server", "--json", "--timeout", "60"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["flushed"] is True and name in data["collections"]


def test_the_command_line_takes_one_form(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--server", "--all"], ["--server", "a"]):
        with pytest.raises(SystemExit) as info:
            main(["flush", *args])
        assert info.value.code == 2
    assert "one of them" in capsys.readouterr().err
