"""``flush_all_sync`` under a Flush limit: the real Milvus 2.3.5 with its global
``flushRate.max`` (``tests/processes.GLOBAL_LIMITED``) behind a counting interposer,
and the 2.4.5+ per-collection rule (``tests/interposer.RateLimitingInterposer``). One
FlushAll (not rate-limited) covers every database's collections at its timestamp
(docs/guarantees.md, "flush_all_sync under a Flush limit")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pymilvus
import pytest

from pymilvus_flushsync import MilvusClient

from ..helpers import TOLERANCE, Backend, Measure, own_server, rows, serving
from ..interposer import THROUGH_AN_INTERPOSER, Interposer
from ..processes import GLOBAL, GLOBAL_WINDOW, PER_COLLECTION, behind
from ..servers import Servers
from .test_flush_all import flavored

pytestmark = [
    pytest.mark.server,
    pytest.mark.faults,
    THROUGH_AN_INTERPOSER,
]


@pytest.fixture(params=[own_server(GLOBAL)])
def limited(
    request: pytest.FixtureRequest, milvus_servers: Servers
) -> Iterator[tuple[Backend, Interposer]]:
    # alone: its FlushAll seals every collection of the server (tests/servers.py)
    with behind(milvus_servers, request.param, alone=True) as (server, interposer):
        for backend in serving(MilvusClient(server.uri), server.uri):
            yield backend, interposer


def _made(backend: Backend, db: str, here: int, there: int) -> list[tuple[str, str, int]]:
    """A collection of ``here`` rows in the default database and one of ``there`` in
    ``db``, made at once (each waits about 2.5 s for its load): (database, name, rows)."""
    with ThreadPoolExecutor(2) as pool:
        one = pool.submit(backend.collection, here)
        other = pool.submit(backend.collection, there, db_name=db)
        return [("", one.result(), here), (db, other.result(), there)]


def _persisted(backend: Backend, made: list[tuple[str, str, int]]) -> bool:
    return all(backend.persisted_rows(name, db_name=db) == (n, 0) for db, name, n in made)


@pytest.mark.parametrize(
    ("limited", "flavor"),
    [
        (PER_COLLECTION, "sync"),
        own_server(GLOBAL, "sync"),
        own_server(GLOBAL, "async"),
    ],
    indirect=["limited"],
)
def test_two_databases_pay_no_window_and_beat_pymilvus(
    limited: tuple[Backend, Interposer], flavor: str, measure: Measure
) -> None:
    backend, interposer = limited
    db = backend.database()
    made = _made(backend, db, 800, 600)
    started = time.monotonic()
    response = flavored(flavor, interposer.uri)(timeout=60)
    ours = time.monotonic() - started
    assert response.flushed and _persisted(backend, made)
    assert (interposer.calls["FlushAll"], interposer.calls["Flush"]) == (1, 0)
    for db_name, name, _ in made:
        assert response.databases[db_name or "default"].collections[name].covered
    for db_name, name, n in made:  # the same again, for pymilvus's flush_all
        client = MilvusClient(backend.uri, db_name=db_name) if db_name else backend.client
        client.insert(name, rows(n, n))
    started = time.monotonic()
    pymilvus.MilvusClient(interposer.uri).flush_all(timeout=60)
    theirs = time.monotonic() - started
    measure(f"{flavor}: flush_all_sync, pymilvus flush_all (s)", (round(ours, 2), round(theirs, 2)))
    assert ours < 5.0 and ours < theirs


def test_a_collection_made_just_before_costs_at_most_one_window(
    limited: tuple[Backend, Interposer], measure: Measure
) -> None:
    backend, interposer = limited
    db = backend.database()
    made = _made(backend, db, 500, 500)
    client = MilvusClient(interposer.uri)
    started = time.monotonic()
    client.flush_all_sync(timeout=60)
    lone = time.monotonic() - started
    made.append((db, backend.collection(300, db_name=db), 300))  # just before the call
    for db_name, name, n in made[:2]:
        writer = MilvusClient(backend.uri, db_name=db_name) if db_name else backend.client
        writer.insert(name, rows(n, 100))
    made = [(d, name, n + 100 if i < 2 else n) for i, (d, name, n) in enumerate(made)]
    started = time.monotonic()
    response = client.flush_all_sync(timeout=60)
    took = time.monotonic() - started
    client.close()
    measure("lone, with a collection made just before (s)", (round(lone, 2), round(took, 2)))
    measure("Flush RPCs that reached the server", interposer.calls["Flush"])
    assert response.flushed and _persisted(backend, made)
    assert took <= lone + GLOBAL_WINDOW + TOLERANCE
