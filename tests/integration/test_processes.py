"""Independent processes share Milvus's Flush limit window (docs/guarantees.md,
"Independent processes share the window"), on the real Milvus 2.3.5 with its global
``flushRate.max`` (at 0.25/s: ``tests/processes.GLOBAL_LIMITED``), and behind
``tests/interposer.py``'s 2.4.5+ per-collection rule. Each worker is a process and
client of its own, sync or asyncio (``tests/processes.py``). Whatever the path, a call
returns only once every row acknowledged before it began, by any process, is
persisted (docs/guarantees.md, "What each path covers")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from pymilvus_flushsync import MilvusClient

from ..helpers import Backend, Measure, async_flush, own_server
from ..interposer import THROUGH_AN_INTERPOSER, Interposer, RateLimitingInterposer
from ..processes import (
    GLOBAL,
    PER_COLLECTION,
    behind,
    insert_elsewhere,
    run,
    whole_window,
    window,
)
from ..servers import Server, Servers

pytestmark = [
    pytest.mark.server,
    pytest.mark.faults,  # a server config of its own: after the tests on the default one
    THROUGH_AN_INTERPOSER,
]


@pytest.fixture
def limited(
    request: pytest.FixtureRequest, milvus_servers: Servers
) -> Iterator[tuple[Server, Interposer]]:
    """A counting interposer in front of a server behind one of the two rules."""
    with behind(milvus_servers, request.param) as limited:
        yield limited


def _collection(limited: tuple[Server, Interposer]) -> tuple[str, float]:
    """A fresh collection (made on the server directly), and the yardstick: one lone
    worker's call (``processes.run`` with one process) on another; the window it
    spent has passed when this returns (the global rule's: a fresh collection's own
    window is whole under the per-collection rule)."""
    server, interposer = limited
    backend = Backend("server", server.uri, MilvusClient(server.uri))
    with ThreadPoolExecutor(2) as pool:  # each waits about 2.5 s for its load
        lone_name, name = pool.map(lambda _: backend.collection(), range(2))
    backend.client.close()
    global_rule = not isinstance(interposer, RateLimitingInterposer)
    if global_rule:
        whole_window(interposer)  # the lone call pays none
    (lone,) = run(server.uri, interposer.uri, lone_name, 1, together=True)
    if global_rule:
        whole_window(interposer)
    return name, lone.seconds


@pytest.mark.parametrize(
    ("limited", "processes", "flavor"),
    [
        own_server(GLOBAL, 6, "sync"),
        own_server(GLOBAL, 16, "sync"),
        own_server(GLOBAL, 6, "async"),
        (PER_COLLECTION, 6, "sync"),
        (PER_COLLECTION, 16, "sync"),
        (PER_COLLECTION, 6, "async"),
    ],
    indirect=["limited"],
)
def test_processes_that_inserted_then_flushed_pay_no_window(
    limited: tuple[Server, Interposer], processes: int, flavor: str, measure: Measure
) -> None:
    """The barrier pattern (MPI, pools, Dask): every process inserted before the first
    accepted Flush, which persists them all: the others' refused Flushes are covered."""
    name, lone = _collection(limited)
    interposer = limited[1]
    before = dict(interposer.calls)
    returned = run(limited[0].uri, interposer.uri, name, processes, together=True, flavor=flavor)
    slowest = max(r.seconds for r in returned)
    each = [(round(r.seconds, 2), r.covered) for r in returned]
    measure(f"{processes} processes: lone, slowest (s)", (round(lone, 2), round(slowest, 2)))
    measure(f"{processes} processes: each (s, covered)", each)
    flushes = interposer.calls["Flush"] - before.get("Flush", 0)
    measure(f"{processes} processes: Flush RPCs that reached the server", flushes)
    assert slowest <= 1.5 * lone + 1.0
    assert all(r.checkpoint_passed and r.unflushed_rows == 0 for r in returned)
    assert sum(r.covered for r in returned) >= processes - 1  # one Flush sealed all


@pytest.mark.parametrize(
    ("limited", "processes", "flavor"),
    [
        (PER_COLLECTION, 6, "sync"),
        (PER_COLLECTION, 6, "async"),
        own_server(GLOBAL, 6, "sync"),
        own_server(GLOBAL, 16, "sync"),
        own_server(GLOBAL, 6, "async"),
    ],
    indirect=["limited"],
)
def test_processes_inserting_as_they_flush_share_one_window(
    limited: tuple[Server, Interposer], processes: int, flavor: str, measure: Measure
) -> None:
    """Rows keep coming while others flush: a call whose rows (or another's, written
    before it began) the accepted Flush did not persist waits for the next window."""
    name, lone = _collection(limited)
    returned = run(limited[0].uri, limited[1].uri, name, processes, together=False, flavor=flavor)
    slowest = max(r.seconds for r in returned)
    measure(f"{processes} processes, inserting as they flush: lone, slowest (s)",
            (round(lone, 2), round(slowest, 2)))  # fmt: skip
    rule = PER_COLLECTION if isinstance(limited[1], RateLimitingInterposer) else GLOBAL
    assert slowest <= lone + window(rule) + 2.0  # one window at most
    assert all(r.checkpoint_passed for r in returned)


@pytest.mark.parametrize(
    ("limited", "flavor"),
    [
        own_server(GLOBAL, "sync"),
        own_server(GLOBAL, "async"),
        (PER_COLLECTION, "sync"),
        (PER_COLLECTION, "async"),
    ],
    indirect=["limited"],
)
def test_a_refused_flush_covers_what_another_process_wrote_before_the_call(
    limited: tuple[Server, Interposer], flavor: str, measure: Measure
) -> None:
    """A coordinator inserts 100 rows and flushes (accepted: the window starts); a worker
    process inserts 300 and exits; the coordinator flushes again inside the window. Its
    Flush is refused, and it must not return before all 400 rows are persisted."""
    server, interposer = limited
    backend = Backend("server", server.uri, MilvusClient(server.uri))
    try:
        name = backend.collection(100)  # this process wrote it: pymilvus keeps the time
        flush = (
            MilvusClient(interposer.uri).flush_sync
            if flavor == "sync"
            else async_flush(interposer.uri)
        )
        if not isinstance(interposer, RateLimitingInterposer):
            whole_window(interposer)
        first = flush(name, timeout=60)
        assert first.flushed and not first.collections[name].covered  # accepted: its window
        before = interposer.calls["Flush"]
        insert_elsewhere(server.uri, name, 1000, 300)
        started = time.monotonic()
        response = flush(name, timeout=60)
        took = time.monotonic() - started
        persisted = backend.persisted_rows(name)
    finally:
        backend.client.close()
    measure(f"{flavor}: second call (s), Flush RPCs that reached the server",
            (round(took, 2), interposer.calls["Flush"] - before))  # fmt: skip
    assert response.flushed and persisted == (400, 0)
    assert not response.collections[name].covered  # a Flush of its own, after the window
