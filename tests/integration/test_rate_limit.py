"""Milvus 2.4.5+'s per-collection Flush rate limit (0.1/s), enforced by
``tests/interposer.py`` in front of the real Milvus 2.3.5 server."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from pymilvus.exceptions import MilvusException
from pymilvus.grpc_gen import milvus_pb2

from pymilvus_flushsync import AsyncMilvusClient, FlushPolicy, FlushTimeoutError, MilvusClient

from ..helpers import Backend, Measure, rows
from ..interposer import THROUGH_AN_INTERPOSER, RateLimitingInterposer, rate_limited_reason
from ..servers import Server

pytestmark = [
    pytest.mark.server,
    pytest.mark.once,  # ten-second windows; the same protocol on every pymilvus line
    THROUGH_AN_INTERPOSER,
]


@dataclass
class Limited:
    server: Backend  # direct: for setup and checks
    client: MilvusClient  # behind the limit
    interposer: RateLimitingInterposer


@pytest.fixture
def limited(milvus_server: Server, server: Backend) -> Iterator[Limited]:
    with RateLimitingInterposer(f"127.0.0.1:{milvus_server.port}") as interposer:
        client = MilvusClient(interposer.uri)
        try:
            yield Limited(server, client, interposer)
        finally:
            client.close()


def test_the_refusal_is_milvus_own(limited: Limited) -> None:
    name = limited.server.collection(10)
    stub = limited.client._get_connection()._stub
    request = milvus_pb2.FlushRequest(collection_names=[name])
    assert stub.Flush(request, timeout=10).status.code == 0
    refused = stub.Flush(request, timeout=10).status
    assert (refused.code, refused.error_code) == (8, 49)
    assert refused.reason == (
        "request is rejected by grpc RateLimiter middleware, please retry later: "
        "rate limit exceeded[rate=0.1]"
    )
    assert refused.reason == rate_limited_reason(0.1)


def test_a_second_flush_of_a_collection_waits_for_its_allowance(
    limited: Limited, measure: Measure, caplog: pytest.LogCaptureFixture
) -> None:
    server, client, interposer = limited.server, limited.client, limited.interposer
    name = server.collection(500)
    assert client.flush_sync(name, timeout=30).flushed
    server.client.insert(name, rows(500, 500))
    with caplog.at_level(logging.INFO, logger="pymilvus_flushsync"):
        response = client.flush_sync(name, timeout=30)
    assert response.flushed
    assert interposer.rejected and len(interposer.flushes) == 2
    (first, _), (second, _) = interposer.flushes  # when each Flush reached the server
    measure("second_flush_reached_the_server_after_s", round(second - first, 2))
    measure("refusals", len(interposer.rejected))
    assert 10.0 <= second - first <= 10.0 + 2.0  # the allowance, then at most one back-off
    retries = [m for m in caplog.messages if "next try in" in m]
    assert retries and all("code=8" in m for m in retries)
    assert server.persisted_rows(name) == (1000, 0)


def test_a_flush_of_several_collections_is_refused_whole(limited: Limited) -> None:
    server, client, interposer = limited.server, limited.client, limited.interposer
    spent, fresh = server.collection(10), server.collection(10)
    assert client.flush_sync(spent, timeout=30).flushed
    with pytest.raises(FlushTimeoutError) as info:
        client.flush_sync([spent, fresh], timeout=1.0)
    cause = info.value.__cause__
    assert isinstance(cause, MilvusException) and cause.code == 8
    assert info.value.pending == (spent, fresh)
    assert all(fresh not in names for _, names in interposer.flushes)  # nothing spent
    started = time.monotonic()
    assert client.flush_sync(fresh, timeout=30).flushed  # its allowance is whole
    assert time.monotonic() - started < 5.0


# -- group commit ----------------------------------------------------------------------
# Six callers flush one collection at once behind the 0.1/s per-collection limit. Each
# caller inserts its own rows first; every one of them must be persisted at the end.


def _single_call_s(limited: Limited) -> float:
    """One lone call's time, on a fresh collection (the yardstick of the targets)."""
    name = limited.server.collection(500)
    started = time.monotonic()
    assert limited.client.flush_sync(name, timeout=60).flushed
    return time.monotonic() - started


def _six_threads(client: MilvusClient, server: Backend, name: str) -> list[float]:
    """Six threads insert 100 rows each, meet at a barrier, flush_sync(name): their times."""
    barrier = threading.Barrier(6)
    times: list[float] = [math.nan] * 6

    def caller(i: int) -> None:
        server.client.insert(name, rows(1000 + 100 * i, 100))
        barrier.wait()
        started = time.monotonic()
        assert client.flush_sync(name, timeout=120).flushed
        times[i] = time.monotonic() - started

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(caller, range(6)))
    return times


@pytest.mark.parametrize("gather", [FlushPolicy().gather, 0.0])
def test_six_threads_flushing_one_collection_share_their_flushes(
    limited: Limited, measure: Measure, gather: float
) -> None:
    server, interposer = limited.server, limited.interposer
    single = _single_call_s(limited)
    client = MilvusClient(interposer.uri)
    client.flush_sync_policy = FlushPolicy(gather=gather)
    name = server.collection(0)
    before = len(interposer.flushes)
    try:
        times = _six_threads(client, server, name)
    finally:
        client.close()
    reached = [names for _, names in interposer.flushes[before:]]
    refused = [names for _, names in interposer.rejected if name in names]
    measure("single_call_s", round(single, 2))
    measure("slowest_s", round(max(times), 2))
    measure("flush_rpcs_reached_refused", (len(reached), len(refused)))
    assert server.persisted_rows(name) == (600, 0)
    if gather:  # the window gathers all six into one Flush
        assert len(reached) == 1 and max(times) <= 1.5 * single + 1.0
    else:  # the first alone, the rest in the next batch (two, when a loaded machine
        # wakes the retries too far apart to meet without the window)
        assert len(reached) <= 3 and max(times) <= single + 2 * 10.0 + 5.0


def test_six_tasks_flushing_one_collection_share_one_flush(
    limited: Limited, measure: Measure
) -> None:
    server, interposer = limited.server, limited.interposer
    single = _single_call_s(limited)
    name = server.collection(0)
    for i in range(6):
        server.client.insert(name, rows(1000 + 100 * i, 100))
    before = len(interposer.flushes)

    async def main() -> list[float]:
        client = AsyncMilvusClient(interposer.uri)

        async def caller() -> float:
            started = time.monotonic()
            assert (await client.flush_sync(name, timeout=120)).flushed
            return time.monotonic() - started

        try:
            return list(await asyncio.gather(*(caller() for _ in range(6))))
        finally:
            await client.close()

    times = asyncio.run(main())
    reached = interposer.flushes[before:]
    measure("single_call_s", round(single, 2))
    measure("slowest_s", round(max(times), 2))
    measure("flush_rpcs_reached", len(reached))
    assert len(reached) == 1 and not [n for _, n in interposer.rejected if name in n]
    assert max(times) <= 1.5 * single + 1.0
    assert server.persisted_rows(name) == (600, 0)


def test_sixteen_threads_over_overlapping_sets_persist_every_row(
    limited: Limited, measure: Measure
) -> None:
    server, interposer = limited.server, limited.interposer
    names = [server.collection(0) for _ in range(4)]
    sets = [(names[i], names[(i + 1) % 4]) for i in range(4)]  # each overlaps two others
    barrier = threading.Barrier(16)
    inserted = dict.fromkeys(names, 0)
    lock = threading.Lock()
    before = len(interposer.flushes)

    def caller(i: int) -> float:
        for name in sets[i % 4]:
            with lock:
                start, inserted[name] = inserted[name], inserted[name] + 50
            server.client.insert(name, rows(start, 50))
        barrier.wait()
        started = time.monotonic()
        response = limited.client.flush_sync(sets[i % 4], timeout=120)
        assert response.flushed and tuple(response.collections) == sets[i % 4]
        return time.monotonic() - started

    with ThreadPoolExecutor(16) as pool:
        times = list(pool.map(caller, range(16)))
    measure("slowest_s", round(max(times), 2))
    measure("flush_rpcs_reached", len(interposer.flushes) - before)
    for name in names:
        assert server.persisted_rows(name) == (inserted[name], 0) == (400, 0)
