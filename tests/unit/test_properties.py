"""Property tests (hypothesis) of the core's decisions, against a simulated server
whose every reply, error and delay hypothesis chooses."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymilvus.exceptions import MilvusException, ParamError
from pymilvus.grpc_gen import milvus_pb2

from pymilvus_flushsync import FlushTimeoutError
from pymilvus_flushsync._core import FlushMachine, SendRpc
from pymilvus_flushsync._errors import classify_rpc_error, classify_status
from pymilvus_flushsync._params import check_names, check_timeout

from .. import fakes
from ..fakes import POLICY, FakeClock, drive

#: Retries wait a random part of their back-off (from a seeded ``random.Random``).
JITTERED = replace(POLICY, jitter=True)
RETRYABLE = ("rate_limited", "unavailable")
OUTCOMES = st.sampled_from(["ok", "ok", "ok", "ok", "not_yet", *RETRYABLE, "garbage"])
#: What grpc.aio hands back for a reply it could not decode.
UNDECODABLE = None

names_strategy = st.lists(
    st.text(alphabet="abcdefgh_", min_size=1, max_size=4), min_size=1, max_size=5, unique=True
)


class Simulation:
    """Answers the machine's RPCs as hypothesis says, and checks every decision."""

    def __init__(self, names: list[str], timeout: float | None, data: st.DataObject) -> None:
        self.clock = FakeClock()
        self.started = self.clock.now
        self.timeout = timeout
        self.data = data
        self.machine = FlushMachine(
            tuple(names), "", timeout, JITTERED, clock=self.clock, rng=random.Random(0)
        )
        self.flushed_by_server: set[str] = set()  # said "flushed" since its latest Flush
        self.polled: set[str] = set()
        self.lite = data.draw(st.booleans())  # Milvus Lite: empty maps, HasCollection
        self.missing = set(data.draw(st.lists(st.sampled_from(names), max_size=1)))
        self.final: int | None = None  # the code of a final answer the server gave
        self.failing_since: float | None = None  # send time of a run of retryable failures

    def deadline_left(self) -> float:
        assert self.timeout is not None
        return self.started + self.timeout - self.clock.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        if self.timeout is not None:  # never sleeps past the deadline
            assert seconds <= self.deadline_left() + 1e-9
        self.clock.advance(seconds)

    def step(self, action: SendRpc) -> Any:
        """The reply (list) to an RPC; raises the RPC's ``grpc.RpcError``."""
        assert action.timeout is not None and 0 < action.timeout <= POLICY.rpc_timeout
        if self.timeout is not None:  # no RPC may outlive the deadline
            assert action.timeout <= self.deadline_left() + 1e-9
        assert self.final is None, "an RPC was sent after a final answer"
        if action.method == "AllocTimestamp" and self.lite:  # Lite has none
            raise fakes.FakeRpcError(grpc.StatusCode.UNIMPLEMENTED, "AllocTimestamp")
        outcome = self.data.draw(OUTCOMES)
        sent = self.clock.now
        self.clock.advance(self.data.draw(st.floats(0, action.timeout)))
        if outcome in RETRYABLE and not (outcome == "rate_limited" and action.method != "Flush"):
            self.failing_since = sent if self.failing_since is None else self.failing_since
        elif outcome != "garbage" and self.settles(action):
            self.failing_since = None
        if outcome == "unavailable":
            raise fakes.FakeRpcError(grpc.StatusCode.UNAVAILABLE, "down")
        if outcome == "garbage":
            self.final = 13
            return [UNDECODABLE for _ in action.requests]
        if action.method == "Flush":
            return self.answer_flush(action, outcome)
        if action.method == "HasCollection":
            return self.answer_has(action)
        if action.method == "AllocTimestamp":
            return [fakes.stamp_reply()]
        if action.method == "GetPersistentSegmentInfo":  # another's Flush sealed one
            return [fakes.segments_reply({9: 3}) for _ in action.requests]
        return self.answer_polls(action, outcome)

    @staticmethod
    def settles(action: SendRpc) -> bool:
        """Whether a success ends a run of failures: not the shared window's RPCs, which
        wait on a refused Flush (its timestamp, and the polls at it)."""
        if action.method in ("AllocTimestamp", "GetPersistentSegmentInfo"):
            return False
        request = action.request
        return not (
            action.method == "GetFlushState" and request.flush_ts == 5000 and not request.segmentIDs
        )

    def answer_flush(self, action: SendRpc, outcome: str) -> Any:
        if outcome == "rate_limited":
            return fakes.RATE_LIMITED
        names = list(action.request.collection_names)
        self.flushed_by_server -= set(names)
        if self.lite:  # skips missing collections, says nothing about the others
            return fakes.flush_reply(None)
        if self.missing & set(names):  # a real server fails the whole Flush
            self.final = 100
            return milvus_pb2.FlushResponse(status=fakes.status(100, "collection not found"))
        return fakes.flush_reply({name: [1] for name in names})

    def answer_has(self, action: SendRpc) -> Any:
        assert self.lite, "HasCollection is only needed where the FlushResponse is empty"
        exists = action.request.collection_name not in self.missing
        if not exists:
            self.final = 100
        return fakes.has_reply(exists)

    def answer_polls(self, action: SendRpc, outcome: str) -> Any:
        replies = []
        for request in action.requests:
            if request.collection_name in self.missing and request.flush_ts == 5000:
                self.final = 100  # the shared window asks a missing one: as a real server
                return [fakes.state_reply(False, 100, "not found") for _ in action.requests]
            assert request.collection_name not in self.missing, "polled a missing collection"
            if self.lite:  # or the shared window's polls, at a write timestamp
                assert request.flush_ts in (0, 5000) and not request.segmentIDs
            self.polled.add(request.collection_name)
            flushed = outcome == "ok" and not self.data.draw(st.booleans())  # simplest: flushed
            if flushed:
                self.flushed_by_server.add(request.collection_name)
            replies.append(fakes.state_reply(flushed))
        return replies


def ending(sim: Simulation) -> tuple[Any, MilvusException | None]:
    """How the call ended: ``(response, None)``, or ``(None, what it raised)``; it
    must end (``drive`` fails the test otherwise)."""
    try:
        return drive(sim.machine, sim.step, sim.sleep, limit=2_000), None
    except MilvusException as error:
        return None, error


@settings(max_examples=200, deadline=None)
@given(names=names_strategy, timeout=st.floats(0.05, 5.0), data=st.data())
def test_deadline_holds_and_flushed_means_the_server_said_so(
    names: list[str], timeout: float, data: st.DataObject
) -> None:
    sim = Simulation(names, timeout, data)
    response, error = ending(sim)
    if error is not None and not isinstance(error, FlushTimeoutError):
        # final at once: undecodable, or a missing collection
        assert sim.final is not None and error.code == sim.final
        assert sim.clock.now <= sim.started + timeout + 1e-9
        return
    assert sim.final is None, "a final answer was not raised"
    if (timed_out := error) is not None:
        assert sim.clock.now >= sim.started + timeout - 1e-9  # not early
        assert sim.clock.now <= sim.started + timeout + 1e-9  # not late
        assert timed_out.pending
        assert set(timed_out.pending) <= set(names)
        assert not timed_out.response.flushed
        return
    assert response is not None, "the machine neither finished nor timed out"
    assert response.flushed
    assert set(response.collections) == set(names)
    assert set(names) <= sim.flushed_by_server  # never "flushed" unless the server said so
    assert sim.clock.now <= sim.started + timeout + 1e-9


@settings(max_examples=100, deadline=None)
@given(names=names_strategy, data=st.data())
def test_every_pending_collection_is_polled_until_done(
    names: list[str], data: st.DataObject
) -> None:
    sim = Simulation(names, None, data)
    response, error = ending(sim)
    if error is not None:
        assert not isinstance(error, FlushTimeoutError)  # no deadline, no timeout
        if sim.final is not None:
            assert error.code == sim.final
        else:  # the retry budget: a run of failures that lasted all of it
            assert sim.failing_since is not None
            assert sim.clock.now - sim.failing_since == pytest.approx(POLICY.retry_budget)
        return
    assert response is not None and response.flushed  # it ended: all said "flushed"
    assert sim.polled == set(names)
    assert set(names) <= sim.flushed_by_server


@given(code=st.sampled_from(list(grpc.StatusCode)))
def test_retry_classification_of_grpc_errors(code: grpc.StatusCode) -> None:
    failure = classify_rpc_error(fakes.FakeRpcError(code, "x"), "Flush [a]")
    assert isinstance(failure.error, MilvusException)
    assert failure.retryable == (
        code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    )


@given(
    code=st.one_of(
        st.integers(min_value=0, max_value=70_000),
        st.sampled_from([0, 1, 2, 4, 8, 100, 901, 902, 904, 905, 65535]),
    ),
    legacy=st.one_of(st.integers(min_value=0, max_value=100), st.just(0)),
    reason=st.one_of(
        st.text(max_size=30),
        st.sampled_from(["service not ready", "node not match[x]", "invalid database name"]),
    ),
)
def test_a_server_status_is_success_or_a_failure_with_its_own_code(
    code: int, legacy: int, reason: str
) -> None:
    failure = classify_status(fakes.status(code, reason, error_code=legacy), "Flush [a]")
    if code == 0 and legacy == 0:
        assert failure is None
        return
    assert failure is not None
    assert failure.error.code == (code or legacy) and isinstance(failure.error, MilvusException)
    assert failure.retryable or not failure.reflush  # only a retry seals again
    if failure.rate is not None:  # a rate limit says when to retry, and loses nothing
        assert failure.retryable and not failure.reflush


#: What each kind of server answer makes of a call (docs/guarantees.md, "Retries").
STATUSES = [
    # (code, legacy error_code, reason) -> (retried, Flush sent again)
    ((8, 49, "rate limit exceeded[rate=0.1]"), (True, False)),  # the flush limit
    ((0, 49, "rate limit exceeded"), (True, False)),  # Milvus 2.3: the legacy code only
    ((4, 0, "request limit"), (True, False)),
    ((2, 0, "service not ready"), (True, True)),  # restarting: it may have lost the Flush
    ((1, 0, "service not ready"), (True, True)),  # Milvus Lite's code 1, with that reason
    ((1, 0, "collection not found[collection=a]"), (False, False)),  # Lite: anything else
    ((65535, 0, "node not match[x]"), (True, True)),
    ((100, 0, "collection not found[collection=a]"), (False, False)),  # final at once
    ((1400, 0, "permission denied"), (False, False)),
    ((800, 0, "database not found[database=x]"), (False, False)),
]


@pytest.mark.parametrize(("answer", "expected"), STATUSES, ids=[s[0][2] for s in STATUSES])
def test_what_each_server_answer_makes_of_a_call(
    answer: tuple[int, int, str], expected: tuple[bool, bool]
) -> None:
    code, legacy, reason = answer
    failure = classify_status(fakes.status(code, reason, error_code=legacy), "Flush [a]")
    assert failure is not None and (failure.retryable, failure.reflush) == expected


@settings(max_examples=50, deadline=None)
@given(
    failure=st.sampled_from(["unavailable", "rate_limited", "not_ready"]),
    rpc_seconds=st.floats(0, 5.0),
)
def test_without_a_deadline_endless_failures_end_after_the_retry_budget(
    failure: str, rpc_seconds: float
) -> None:
    clock = FakeClock()
    machine = FlushMachine(("a",), "", None, JITTERED, clock=clock, rng=random.Random(1))

    def fail(action: SendRpc) -> Any:
        assert action.timeout <= POLICY.rpc_timeout
        clock.advance(min(rpc_seconds, action.timeout))
        if failure == "unavailable":
            raise fakes.FakeRpcError(grpc.StatusCode.UNAVAILABLE, "down")
        if failure == "rate_limited":  # and no other client's Flush covers "a"
            if action.method == "AllocTimestamp":
                return [fakes.stamp_reply()]
            if action.method == "GetFlushState":
                return [fakes.state_reply(False)]
            return fakes.RATE_LIMITED
        return milvus_pb2.FlushResponse(status=fakes.status(1, "service not ready"))

    with pytest.raises(MilvusException) as info:
        drive(machine, fail, clock.advance)
    assert not isinstance(info.value, FlushTimeoutError)
    assert info.value.code == {"unavailable": 14, "rate_limited": 8, "not_ready": 1}[failure]
    assert clock.now - 100.0 == pytest.approx(POLICY.retry_budget)  # the first send was at 100


@given(
    value=st.one_of(
        st.none(), st.integers(), st.floats(allow_nan=True), st.text(), st.lists(st.text())
    )
)
def test_argument_validation_is_param_error_or_a_clean_value(value: Any) -> None:
    try:
        seconds = check_timeout(value)
    except ParamError:
        pass
    else:
        assert seconds is None or 0 < seconds < float("inf")
    try:
        names = check_names(value)
    except ParamError:
        pass
    else:
        assert names and all(isinstance(n, str) and n for n in names)


def test_a_server_that_never_flushes_ends_in_a_timeout_on_the_deadline() -> None:
    clock = FakeClock()
    machine = FlushMachine(("a",), "", 0.3, POLICY, clock=clock)

    def never_flushed(action: SendRpc) -> Any:
        if action.method == "Flush":
            return fakes.flush_reply({"a": [1]})
        clock.advance(0.001)
        return [fakes.state_reply(False) for _ in action.requests]

    with pytest.raises(FlushTimeoutError):
        drive(machine, never_flushed, clock.advance)
    assert clock.now == pytest.approx(100.3)


@settings(max_examples=200, deadline=None)
@given(flips=st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=40))
def test_the_sweeps_of_a_flush_cost_at_most_one_poll_per_collection(flips: list[int]) -> None:
    """Collection i reports flushed from round ``flips[i]`` on: however the flips fall,
    the polls beyond one per round are at most one per collection."""
    names = [f"c{i}" for i in range(len(flips))]
    machine = FlushMachine(tuple(names), "", None, POLICY, clock=FakeClock())
    rounds = beyond = 0

    def flipping(action: SendRpc) -> Any:
        nonlocal rounds, beyond
        if action.method == "Flush":
            return fakes.flush_reply({name: [i] for i, name in enumerate(names)})
        asked = [request.collection_name for request in action.requests]
        beyond += len(asked) - 1
        rounds += 1
        return [fakes.state_reply(rounds - 1 >= flips[names.index(n)]) for n in asked]

    response = drive(machine, flipping)
    assert beyond <= len(names)
    assert response.polls == rounds + beyond
