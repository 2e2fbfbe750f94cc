"""Property tests (hypothesis) of the core's decisions, against a simulated server
whose every reply, error and delay hypothesis chooses."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymilvus.exceptions import MilvusException, ParamError

from pymilvus_flushsync import Backoff, FlushPolicy, FlushTimeoutError
from pymilvus_flushsync._core import Done, FlushMachine, SendRpc, Sleep
from pymilvus_flushsync._errors import classify_rpc_error, classify_status
from pymilvus_flushsync._params import check_names, check_timeout

from .fakes import RATE_LIMITED, FakeClock, FakeRpcError, flush_reply, state_reply, status

POLICY = FlushPolicy(poll=Backoff(0.005, 1.5, 0.045), retry=Backoff(0.1, 2.0, 2.0), rpc_timeout=5.0)
RETRYABLE = ("rate_limited", "unavailable")
OUTCOMES = st.sampled_from(["ok", "ok", "ok", "not_yet", *RETRYABLE])

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
        self.machine = FlushMachine(tuple(names), "", timeout, POLICY, clock=self.clock)
        self.flushed_by_server: set[str] = set()  # said "flushed" since its latest Flush
        self.polled: set[str] = set()

    def deadline_left(self) -> float:
        assert self.timeout is not None
        return self.started + self.timeout - self.clock.now

    def step(self, action: SendRpc | Sleep) -> Any:
        """Sleep, or the reply (list) to an RPC; raises the RPC's ``grpc.RpcError``."""
        if isinstance(action, Sleep):
            assert action.seconds >= 0
            if self.timeout is not None:  # never sleeps past the deadline
                assert action.seconds <= self.deadline_left() + 1e-9
            self.clock.advance(action.seconds)
            return None
        assert action.timeout is not None and 0 < action.timeout <= POLICY.rpc_timeout
        if self.timeout is not None:  # no RPC may outlive the deadline
            assert action.timeout <= self.deadline_left() + 1e-9
        outcome = self.data.draw(OUTCOMES)
        self.clock.advance(self.data.draw(st.floats(0, action.timeout)))
        if outcome == "unavailable":
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "down")
        if action.method == "Flush":
            return self.answer_flush(action, outcome)
        return self.answer_polls(action, outcome)

    def answer_flush(self, action: SendRpc, outcome: str) -> Any:
        if outcome == "rate_limited":
            return RATE_LIMITED
        names = list(action.request.collection_names)
        self.flushed_by_server -= set(names)
        return flush_reply({name: [1] for name in names})

    def answer_polls(self, action: SendRpc, outcome: str) -> Any:
        replies = []
        for request in action.requests:
            self.polled.add(request.collection_name)
            flushed = outcome == "ok" and not self.data.draw(st.booleans())  # simplest: flushed
            if flushed:
                self.flushed_by_server.add(request.collection_name)
            replies.append(state_reply(flushed))
        return replies


def drive(sim: Simulation, limit: int = 400) -> Any:
    for _ in range(limit):
        action = sim.machine.next_action()
        if isinstance(action, Done):
            return action.response
        with sim.machine.expect(action) as outcome:
            outcome.reply = sim.step(action)
    return None


@settings(max_examples=200, deadline=None)
@given(names=names_strategy, timeout=st.floats(0.05, 5.0), data=st.data())
def test_deadline_holds_and_flushed_means_the_server_said_so(
    names: list[str], timeout: float, data: st.DataObject
) -> None:
    sim = Simulation(names, timeout, data)
    try:
        response = drive(sim, limit=2_000)
    except FlushTimeoutError as error:
        timed_out = error
    else:
        timed_out = None
    if timed_out is not None:
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
    response = drive(sim, limit=2_000)
    if response is not None:  # finished: each one was asked about, and said "flushed"
        assert sim.polled == set(names)
        assert set(names) <= sim.flushed_by_server


@given(code=st.sampled_from(list(grpc.StatusCode)))
def test_retry_classification_of_grpc_errors(code: grpc.StatusCode) -> None:
    failure = classify_rpc_error(FakeRpcError(code, "x"), "Flush [a]")
    assert isinstance(failure.error, MilvusException)
    assert failure.retryable == (
        code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    )
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        assert not failure.retryable  # denied: at once, never retried until the deadline


@given(
    code=st.integers(min_value=0, max_value=70_000),
    legacy=st.integers(min_value=0, max_value=100),
    reason=st.text(max_size=30),
)
def test_retry_classification_of_server_statuses(code: int, legacy: int, reason: str) -> None:
    failure = classify_status(status(code, reason, error_code=legacy), "Flush [a]")
    if code == 0 and legacy == 0:
        assert failure is None
        return
    assert failure is not None
    assert failure.error.code == (code or legacy)
    limited = code in (4, 8) or legacy == 49
    restarting = code in (1, 2, 901, 902, 904, 905)
    assert failure.retryable == (limited or restarting or failure.reflush)
    assert failure.reflush == (not limited and failure.retryable)
    if code in (100, 1400, 1401) and legacy != 49:
        assert not failure.retryable  # missing collection, denied: final at once
    if code == 65535 and not limited:
        assert failure.retryable == any(
            text in reason
            for text in ("service not ready", "service unavailable", "node not", "node offline")
        )


@given(
    value=st.one_of(
        st.none(), st.integers(), st.floats(allow_nan=True), st.text(), st.lists(st.text())
    )
)
def test_argument_validation_is_param_error_or_a_clean_value(value: Any) -> None:
    for check in (check_names, check_timeout):
        try:
            checked = check(value)
        except ParamError:
            continue
        if check is check_timeout:
            assert checked is None or (checked > 0 and checked < float("inf"))
        else:
            assert checked and all(isinstance(n, str) and n for n in checked)


def never_flushes(machine: FlushMachine, clock: FakeClock) -> None:
    while True:
        action = machine.next_action()
        with machine.expect(action) as outcome:
            if isinstance(action, Sleep):
                clock.advance(action.seconds)
            elif isinstance(action, SendRpc) and action.method == "Flush":
                outcome.reply = flush_reply({"a": [1]})
            elif isinstance(action, SendRpc):
                clock.advance(0.001)
                outcome.reply = [state_reply(False) for _ in action.requests]


def test_a_server_that_never_flushes_ends_in_a_timeout_on_the_deadline() -> None:
    clock = FakeClock()
    machine = FlushMachine(("a",), "", 0.3, POLICY, clock=clock)
    with pytest.raises(FlushTimeoutError):
        never_flushes(machine, clock)
    assert clock.now == pytest.approx(100.3)
