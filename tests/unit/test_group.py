"""Group commit (``_group``) through both drivers, over the in-memory fake server: calls
on one client share one Flush and their polls, and each keeps its own answer, errors,
deadline and cancellation."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeAlias

import pytest
from pymilvus.exceptions import MilvusException
from pymilvus.grpc_gen import milvus_pb2

from pymilvus_flushsync import (
    FlushPolicy,
    FlushSyncResponse,
    FlushTimeoutError,
    _async,
    _group,
    _sync,
)
from pymilvus_flushsync._core import FlushMachine
from pymilvus_flushsync._group import LEAD_FOR, Group, for_client
from pymilvus_flushsync._requests import flush_state_request, sealed_state
from pymilvus_flushsync._response import CollectionFlushState

from .. import fakes
from ..fakes import FakeServer, flush_reply, state_reply, status

#: A wide gathering window: the tests must not depend on how fast threads start.
POLICY = replace(fakes.POLICY, gather=0.5)
Outcome: TypeAlias = FlushSyncResponse | MilvusException


def flushes(server: FakeServer) -> list[tuple[str, ...]]:
    return [names for method, names in server.sent if method == "Flush"]


def polls(server: FakeServer) -> int:
    return sum(method == "GetFlushState" for method, _ in server.sent)


def seals_then(polls_each: int) -> Callable[[str, Any], Any]:
    """Flush seals segment 1 of each collection; a collection's poll says "flushed"
    once it was asked ``polls_each`` times before."""
    asked: dict[str, int] = {}
    lock = threading.Lock()

    def answer(method: str, request: Any) -> Any:
        if method == "Flush":
            if "missing" in request.collection_names:  # a real server fails it whole
                reason = "collection not found[database=default][collection=missing]"
                return milvus_pb2.FlushResponse(status=status(100, reason, error_code=4))
            return flush_reply({name: [1] for name in request.collection_names})
        with lock:
            asked[request.collection_name] = asked.get(request.collection_name, 0) + 1
            return state_reply(asked[request.collection_name] > polls_each)

    return answer


def in_threads(client: Any, calls: list[tuple[str, ...]], timeouts: list[float]) -> list[Outcome]:
    """Each call in a thread of its own, all released by one barrier. A call of the
    test's own stays in progress meanwhile, so the gathering window always applies
    (threads that start late on a loaded machine still join the first Flush)."""
    outcomes: list[Outcome | None] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))
    group = for_client(client, "")
    group.enter()

    def one(i: int) -> None:
        machine = FlushMachine(calls[i], "", timeouts[i], POLICY)
        barrier.wait()
        try:
            outcomes[i] = _sync.run(machine, client)
        except MilvusException as error:
            outcomes[i] = error

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    group.leave()
    assert all(o is not None for o in outcomes), "a call did not end"
    return [o for o in outcomes if o is not None]


async def in_tasks(client: Any, calls: list[tuple[str, ...]]) -> list[Outcome]:
    """Each call in a task of its own, started by one gather."""

    async def one(names: tuple[str, ...]) -> Outcome:
        try:
            return await _async.run(FlushMachine(names, "", 10.0, POLICY), client)
        except MilvusException as error:
            return error

    return list(await asyncio.gather(*(one(names) for names in calls)))


def run_calls(flavor: str, server: FakeServer, calls: list[tuple[str, ...]]) -> list[Outcome]:
    client = server.client()
    if flavor == "sync":
        return in_threads(client, calls, [10.0] * len(calls))
    return asyncio.run(in_tasks(client, calls))


CALLS = [("a",), ("a", "b"), ("c",), ("a",), ("b",), ("c", "a")]


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_calls_released_together_share_one_flush_and_keep_their_own_answers(
    flavor: str,
) -> None:
    server = FakeServer(seals_then(polls_each=3), threaded=flavor == "sync")
    outcomes = run_calls(flavor, server, CALLS)
    assert flushes(server) == [flushes(server)[0]]  # one Flush, for everyone
    assert sorted(flushes(server)[0]) == ["a", "b", "c"]
    for names, outcome in zip(CALLS, outcomes, strict=True):
        assert isinstance(outcome, FlushSyncResponse) and outcome.flushed
        assert tuple(outcome.collections) == names  # its own collections, nothing else
    # a question asked by several calls at once is one RPC: far fewer than asked
    asked = sum(o.polls for o in outcomes if isinstance(o, FlushSyncResponse))
    assert polls(server) < asked
    if flavor == "async":  # in lockstep: exactly one caller's polls per collection
        assert polls(server) == 3 * (3 + 1)


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_one_callers_missing_collection_fails_only_that_call(flavor: str) -> None:
    server = FakeServer(seals_then(polls_each=1), threaded=flavor == "sync")
    calls = [("a",), ("missing",), ("b", "a")]
    outcomes = run_calls(flavor, server, calls)
    good = [outcomes[0], outcomes[2]]
    assert all(isinstance(o, FlushSyncResponse) and o.flushed for o in good)
    bad = outcomes[1]
    assert isinstance(bad, MilvusException) and type(bad) is MilvusException and bad.code == 100
    shared, *alone = flushes(server)
    assert sorted(shared) == ["a", "b", "missing"]
    assert sorted(alone) == sorted(calls)  # then each call's own names, by itself


def test_calls_on_other_clients_or_databases_do_not_share() -> None:
    server = FakeServer(seals_then(polls_each=0))
    one, other = server.client(), server.client()

    async def main() -> tuple[FlushSyncResponse, ...]:
        machines = [FlushMachine(("a",), db, 10.0, POLICY) for db in ("", "", "db2")]
        return await asyncio.gather(
            _async.run(machines[0], one), _async.run(machines[1], other),
            _async.run(machines[2], one),
        )  # fmt: skip

    assert all(r.flushed for r in asyncio.run(main()))
    assert flushes(server) == [("a",)] * 3
    assert for_client(one, "") is not for_client(other, "")
    assert for_client(one, "") is not for_client(one, "db2")


def test_a_lone_call_does_not_wait_the_gathering_window() -> None:
    server = FakeServer(seals_then(polls_each=0))
    slept: list[float] = []
    machine = FlushMachine(("a",), "", 10.0, FlushPolicy(tick_period=None, gather=30.0))
    assert _sync.run(machine, server.client(), sleep=slept.append).flushed
    assert 30.0 not in slept and flushes(server) == [("a",)]


def test_a_cancelled_task_does_not_cancel_the_flush_it_leads() -> None:
    server = FakeServer(seals_then(polls_each=0))
    client = server.client()

    async def main() -> list[Any]:
        in_window, go_on = asyncio.Event(), asyncio.Event()

        async def sleep(seconds: float) -> None:
            if seconds == POLICY.gather:  # the leader's gathering window
                in_window.set()
                await go_on.wait()

        tasks = [
            asyncio.ensure_future(
                _async.run(FlushMachine(names, "", 10.0, POLICY), client, sleep=sleep)
            )
            for names in (("a",), ("b",), ("c",))
        ]
        await in_window.wait()
        tasks[0].cancel()  # the leader's caller goes away mid-window
        go_on.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    cancelled, *others = asyncio.run(main())
    assert isinstance(cancelled, asyncio.CancelledError)
    assert all(isinstance(r, FlushSyncResponse) and r.flushed for r in others)
    assert flushes(server) == [("a", "b", "c")]


def test_a_call_whose_deadline_passes_leaves_the_others_waiting() -> None:
    release = threading.Event()
    answer = seals_then(polls_each=0)

    def slow_flush(method: str, request: Any) -> Any:
        if method == "Flush":
            release.wait(10)
        return answer(method, request)

    server = FakeServer(slow_flush, threaded=True)
    timer = threading.Timer(1.5, release.set)  # the Flush answers after 1.5 s
    timer.start()
    try:
        short, *long = in_threads(server.client(), [("a",), ("b",), ("c",)], [0.8, 10.0, 10.0])
    finally:
        timer.cancel()
        release.set()
    assert isinstance(short, FlushTimeoutError)
    assert all(isinstance(r, FlushSyncResponse) and r.flushed for r in long)
    assert len(flushes(server)) == 1


def test_the_members_of_a_batch_watch_one_collection_then_ask_their_own() -> None:
    """Sixteen calls over four overlapping sets: until the lead says flushed, only the
    lead is asked (at one caller's rate); then every collection once, for real."""
    asked = 0

    def answer(method: str, request: Any) -> Any:
        nonlocal asked
        if method == "Flush":
            return flush_reply({name: [1] for name in request.collection_names})
        asked += 1
        return state_reply(asked > 3)  # sealed together: all flip at once

    server = FakeServer(answer)
    names = ["w", "x", "y", "z"]
    calls: list[tuple[str, ...]] = [(names[i % 4], names[(i + 1) % 4]) for i in range(16)]
    outcomes = asyncio.run(in_tasks(server.client(), calls))
    assert all(isinstance(o, FlushSyncResponse) and o.flushed for o in outcomes)
    polled = [sent[0] for method, sent in server.sent if method == "GetFlushState"]
    assert polled[:4] == ["w"] * 4  # the lead alone while it said "not yet", then flushed
    assert sorted(polled[4:]) == ["x", "y", "z"]  # each other one asked once, for real


def test_a_later_batch_lead_stands_in_for_an_earlier_batch_on_the_same_collections() -> None:
    """Callers released together split in two batches (the first leader saw no one):
    the earlier batch's questions about collections the later Flush sealed again watch
    the later lead, so one stream serves both; others keep their own."""
    group = Group()

    def seal(
        names: list[str], members: int, segment: int, flush_ts: int, now: float = 0.0
    ) -> list[Any]:
        for _ in range(members):
            batch, _ = group.join(milvus_pb2.FlushRequest(collection_names=names), 10.0)
        group.close(batch)
        group.landed(batch)
        reply = flush_reply({name: [segment] for name in names}, flush_ts=flush_ts)
        group.finish(batch, reply, now)
        states = [sealed_state(CollectionFlushState(name), reply) for name in names]
        return [flush_state_request("", state) for state in states]

    for _ in range(3):
        group.enter()
    x1, y1 = seal(["x", "y"], members=1, segment=1, flush_ts=100)
    assert group.questions.stand_ins((x1, y1), now=1.0) == [x1, y1]  # a lone call watches its own
    y2, z2 = seal(["y", "z"], members=2, segment=2, flush_ts=200)
    assert group.questions.stand_ins((x1, y1, y2, z2), now=1.0) == [x1, y2, y2, y2]
    assert group.questions.stand_ins((y1,), now=1.0 + LEAD_FOR) == [y1]  # for LEAD_FOR at most
    (y3,) = seal(["y"], members=2, segment=3, flush_ts=300)  # sealed at 0.0 too: y1, y2 follow
    assert group.questions.stand_ins((y1, y2), now=1.0) == [y3, y3]
    # calls may be in progress without end: what stands in no more is forgotten
    later = 2 * LEAD_FOR
    seal(["y"], members=2, segment=4, flush_ts=400, now=later)
    assert group.questions.stand_ins((y1, y3), now=later) == [y1, y3]
    assert group.questions.remembered() == 1  # the last batch's question; no stand-in


class Answered:
    """A GetFlushState call that is already done."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        callback(self)

    def result(self) -> Any:
        return self.reply


def test_answers_are_forgotten_at_a_flush_lead_for_later_on_a_client_never_idle() -> None:
    """A "flushed" answer serves every later call with the same question while calls are
    in progress; a client that always has one in progress forgets it (and the "not yet"s)
    at the first sealed Flush ``LEAD_FOR`` seconds after it was asked, not never."""
    group = Group()
    group.enter()  # a call in progress throughout
    reply = flush_reply({"x": [1], "y": [2]}, flush_ts=100)
    x, y = (
        flush_state_request("", sealed_state(CollectionFlushState(name), reply))
        for name in ("x", "y")
    )
    group.questions.flight(x, lambda: Answered(state_reply(True)), now=0.0, asker=object())
    group.questions.flight(y, lambda: Answered(state_reply(False)), now=0.0, asker=object())

    def unused() -> Any:
        raise AssertionError("asked again")

    assert group.questions.flight(x, unused, now=1.0, asker=object()).flushed  # known: not asked

    def seal_at(now: float) -> None:
        batch, _ = group.join(milvus_pb2.FlushRequest(collection_names=["z"]), 10.0)
        group.close(batch)
        group.landed(batch)
        group.finish(batch, flush_reply({"z": [3]}, flush_ts=200 + int(now)), now)

    seal_at(LEAD_FOR / 2)
    assert group.questions.flight(
        x, unused, now=LEAD_FOR / 2, asker=object()
    ).flushed  # still known
    assert (
        group.questions.remembered() == 2
    )  # x's "flushed" and z's question: y's "not yet" is gone
    seal_at(LEAD_FOR)
    asked = group.questions.flight(
        x, lambda: Answered(state_reply(True)), now=LEAD_FOR, asker=object()
    )
    assert not isinstance(asked, milvus_pb2.GetFlushStateResponse)  # a new flight: asked again


def test_a_shared_poll_cancelled_under_the_call_ends_it_with_a_milvus_exception() -> None:
    """Closing an async client cancels its channel's calls (``grpc.aio``): a call waiting
    for a shared poll then ends with a ``MilvusException`` (CANCELLED), not with the
    ``CancelledError`` of a task that was never its own."""
    server = FakeServer(seals_then(polls_each=0))
    server.held.add("a")
    client = server.client()

    async def main() -> BaseException:
        call = asyncio.ensure_future(_async.run(FlushMachine(("a",), "", 10.0, POLICY), client))
        group = for_client(client, "")
        for _ in range(100):  # the call's Flush, then its first poll: a few steps
            if group.questions._flights:
                break
            await asyncio.sleep(0)
        assert group.questions._flights, "no poll in flight"
        for flight in list(group.questions._flights.values()):
            flight.call.cancel()  # as the closed channel does
        try:
            await call
        except BaseException as error:  # checked below
            return error
        raise AssertionError("the call returned")

    error = asyncio.run(main())
    assert isinstance(error, MilvusException) and not isinstance(error, FlushTimeoutError)
    assert error.code == 1 and "CANCELLED" in error.message


def test_the_group_counts_on_the_calls_clock_alone() -> None:
    # a clock of another epoch than time.monotonic(): mixing the two would wait ~1e6 s
    # or not at all; the group module reads no clock of its own
    server = FakeServer(seals_then(1))
    reads: list[float] = []

    def clock() -> float:
        reads.append(time.monotonic() + 1e6)
        return reads[-1]

    machine = FlushMachine(("a",), "", 10.0, POLICY, clock=clock)
    assert _sync.run(machine, server.client()).flushed
    assert flushes(server) == [("a",)] and len(reads) > 3
    assert not hasattr(_group, "time")
