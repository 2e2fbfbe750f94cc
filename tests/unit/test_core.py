"""The sans-I/O core, driven by hand: no server, no sleeps, a fake clock."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import grpc
import pytest
from pymilvus.exceptions import MilvusException, MilvusUnavailableException
from pymilvus.grpc_gen import milvus_pb2

from pymilvus_flushsync import Backoff, FlushTimeoutError
from pymilvus_flushsync._core import Done, FlushMachine, SendRpc, Sleep
from pymilvus_flushsync._history import FlushHistory
from pymilvus_flushsync._schedule import Deadline
from pymilvus_flushsync._state import Phase
from pymilvus_flushsync._steps import SEAL, UNEXPLAINED_LISTINGS, WAIT

from ..fakes import (
    POLICY,
    RATE_LIMITED,
    FakeClock,
    FakeRpcError,
    describe_reply,
    drive,
    flush_reply,
    has_reply,
    segments_reply,
    stamp_reply,
    state_reply,
    status,
)


def machine(
    names: tuple[str, ...] | list[str] = ("a",),
    timeout: float | None = 10.0,
    db: str = "",
    clock: FakeClock | None = None,
) -> tuple[FlushMachine, FakeClock]:
    clock = clock or FakeClock()
    return FlushMachine(tuple(names), db, timeout, POLICY, clock=clock), clock


def slept(action: object) -> float:
    assert isinstance(action, Sleep), action
    return action.seconds


def rpc(m: FlushMachine) -> SendRpc:
    action = m.next_action()
    assert isinstance(action, SendRpc), action
    return action


def uncovered(m: FlushMachine, clock: FakeClock) -> tuple[list[float], SendRpc]:
    """After a refused Flush: answer AllocTimestamp, and "not yet" to every poll of the
    shared window, sleeping on ``clock``, until the machine sends Flush again; the
    seconds it slept (the refused Flush's back-off) and that Flush, sent."""
    sleeps = []
    while not isinstance(action := m.next_action(), SendRpc) or action.method != "Flush":
        assert not isinstance(action, Done), "ended before a Flush was sent again"
        if isinstance(action, Sleep):
            sleeps.append(action.seconds)
            clock.advance(action.seconds)
        elif action.method == "AllocTimestamp":
            m.on_reply(stamp_reply())
        else:
            assert action.method == "GetFlushState", action
            assert not action.request.segmentIDs and action.request.flush_ts == 5000
            m.on_reply([state_reply(False) for _ in action.requests])
    return sleeps, action


def pending(m: FlushMachine) -> list[str]:
    """The collections the machine's progress does not report flushed yet."""
    return [name for name, state in m.progress().collections.items() if not state.flushed]


def test_flush_first_with_all_names_db_and_capped_timeout() -> None:
    m, _ = machine(["a", "b"], timeout=10.0, db="db2")
    action = rpc(m)
    assert action.method == "Flush"
    assert list(action.request.collection_names) == ["a", "b"]
    assert action.request.db_name == "db2"
    assert action.metadata == (("dbname", "db2"),)
    assert action.timeout == 5.0  # min(remaining 10, rpc_timeout 5)


def test_default_database_sends_no_metadata_and_reports_server_name() -> None:
    m, _ = machine()
    assert rpc(m).metadata is None
    m.on_reply(flush_reply({"a": [1]}, db_name="default"))
    assert m.progress().db_name == "default"


def test_real_server_path_polls_with_segments_and_flush_ts() -> None:
    m, clock = machine()
    rpc(m)
    m.on_reply(flush_reply({"a": [11, 12]}, flush_ts=999))
    poll = rpc(m)
    assert poll.method == "GetFlushState"
    assert list(poll.request.segmentIDs) == [11, 12]
    assert poll.request.flush_ts == 999
    assert poll.request.collection_name == "a"
    clock.advance(0.25)
    m.on_reply(state_reply(True))
    done = m.next_action()
    assert isinstance(done, Done)
    resp = done.response
    assert resp.flushed and resp.polls == 1 and resp.db_name == "default"
    state = resp.collections["a"]
    assert state.segment_ids == (11, 12) and state.flushed_segment_ids == (7,)
    assert state.flush_ts == 999 and state.seal_time == 42
    assert state.flushed and state.seconds == pytest.approx(0.25)


def test_lite_path_checks_names_missing_from_the_response() -> None:
    m, _ = machine(["a", "b"])
    rpc(m)
    m.on_reply(flush_reply(None))
    check = rpc(m)
    assert check.method == "HasCollection" and check.request.collection_name == "a"
    m.on_reply(has_reply(True))
    assert rpc(m).request.collection_name == "b"
    m.on_reply(has_reply(True))
    poll = rpc(m)
    assert poll.method == "GetFlushState" and poll.request.flush_ts == 0


def odd_flush_replies() -> list[milvus_pb2.FlushResponse]:
    """Successful FlushResponses that say less (or other) than a real server's."""
    only_ts = milvus_pb2.FlushResponse(status=status())
    only_ts.coll_flush_ts["a"] = 5
    only_ids = milvus_pb2.FlushResponse(status=status())
    only_ids.coll_segIDs["a"].data.extend([1])
    someone_else = flush_reply({"z": [9]})
    return [milvus_pb2.FlushResponse(), only_ts, only_ids, someone_else]


@pytest.mark.parametrize("reply", odd_flush_replies())
def test_an_odd_flush_response_is_never_taken_for_flushed(reply: Any) -> None:
    m, _ = machine()
    rpc(m)
    m.on_reply(reply)
    for _ in range(3):  # whatever the Flush said, only GetFlushState can finish the call
        action = m.next_action()
        assert not isinstance(action, Done)
        if isinstance(action, SendRpc):
            assert action.method in ("HasCollection", "GetFlushState")
            answer = has_reply(True) if action.method == "HasCollection" else state_reply(False)
            m.on_reply(answer)
    action = m.next_action()
    if isinstance(action, Sleep):
        action = m.next_action()
    assert isinstance(action, SendRpc) and action.method == "GetFlushState"
    m.on_reply(state_reply(True))
    assert isinstance(m.next_action(), Done)


def test_missing_collection_is_code_100_with_its_name() -> None:
    m, _ = machine(["a", "ghost"])
    rpc(m)
    m.on_reply(flush_reply(None))
    rpc(m)
    m.on_reply(has_reply(True))
    rpc(m)
    m.on_reply(has_reply(False))
    with pytest.raises(MilvusException) as info:
        m.next_action()
    assert info.value.code == 100
    assert "ghost" in info.value.message


def test_poll_backs_off_to_the_cap() -> None:
    m, _ = machine()
    rpc(m)
    m.on_reply(flush_reply({"a": [1]}))
    sleeps = []
    for _ in range(6):
        rpc(m)
        m.on_reply(state_reply(False))
        action = m.next_action()
        assert isinstance(action, Sleep)
        sleeps.append(action.seconds)
    assert sleeps == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.04, 0.04])


def test_watches_one_collection_then_sweeps_the_rest_in_one_round() -> None:
    names = [f"c{i}" for i in range(8)]
    m, _ = machine(names)
    rpc(m)
    m.on_reply(flush_reply({n: [i] for i, n in enumerate(names)}))
    for _ in range(3):  # c0 is not done yet: only c0 is polled
        action = rpc(m)
        assert [r.collection_name for r in action.requests] == ["c0"]
        m.on_reply(state_reply(False))
        assert isinstance(m.next_action(), Sleep)
    rpc(m)
    m.on_reply(state_reply(True))  # c0 done: the others were sealed by the same Flush
    sweep = rpc(m)  # at once, no sleep, all seven together
    assert [r.collection_name for r in sweep.requests] == names[1:]
    m.on_reply([state_reply(n != "c5") for n in names[1:]])
    assert pending(m) == ["c5"]
    assert isinstance(m.next_action(), Sleep)  # c5 is watched alone now
    last = rpc(m)
    assert [r.collection_name for r in last.requests] == ["c5"]
    m.on_reply([state_reply(True)])
    done = m.next_action()
    assert isinstance(done, Done)
    assert done.response.polls == 3 + 1 + 7 + 1


def test_sweeps_spend_at_most_one_poll_per_collection_then_go_one_at_a_time() -> None:
    names = [f"c{i}" for i in range(8)]
    m, _ = machine(names)
    rpc(m)
    m.on_reply(flush_reply({n: [i] for i, n in enumerate(names)}))
    rpc(m)
    m.on_reply(state_reply(True))
    sweep = rpc(m)  # 7 polls, 6 beyond the one a watch would send: 2 of the 8 left
    assert len(sweep.requests) == 7
    m.on_reply([state_reply(n in ("c1", "c2")) for n in names[1:]])
    assert isinstance(m.next_action(), Sleep)
    rpc(m)  # c3, watched
    m.on_reply(state_reply(True))
    alone = rpc(m)  # sweeping c4-c7 would cost 3 beyond: c4 at once, alone
    assert [r.collection_name for r in alone.requests] == ["c4"]
    m.on_reply([state_reply(True)])
    last = rpc(m)  # c5-c7: 2 beyond, affordable
    assert [r.collection_name for r in last.requests] == ["c5", "c6", "c7"]
    m.on_reply([state_reply(True)] * 3)
    done = m.next_action()
    assert isinstance(done, Done) and done.response.polls == 1 + 7 + 1 + 1 + 3


def test_an_error_status_in_a_sweep_fails_the_call() -> None:
    m, _ = machine(["a", "b", "c"])
    rpc(m)
    m.on_reply(flush_reply({"a": [1], "b": [2], "c": [3]}))
    rpc(m)
    m.on_reply(state_reply(True))
    rpc(m)
    m.on_reply([state_reply(True), state_reply(False, code=65535, reason="boom")])
    with pytest.raises(MilvusException, match="boom"):
        m.next_action()


def test_sleep_never_passes_the_deadline_then_times_out_with_progress() -> None:
    m, clock = machine(["a", "b"], timeout=1.0)
    rpc(m)
    m.on_reply(flush_reply({"a": [1], "b": [2]}))
    rpc(m)
    m.on_reply(state_reply(True))
    clock.advance(0.999)
    rpc(m)
    m.on_reply(state_reply(False))
    action = m.next_action()
    assert isinstance(action, Sleep)
    assert action.seconds == pytest.approx(0.001)
    clock.advance(action.seconds)
    with pytest.raises(FlushTimeoutError) as info:
        m.next_action()
    err = info.value
    assert isinstance(err, TimeoutError) and isinstance(err, MilvusException)
    assert err.pending == ("b",)
    assert not err.response.flushed
    assert err.response.collections["a"].flushed
    assert not err.response.collections["b"].flushed
    assert err.response.status.error_code == "FlushTimeout"


def test_rpc_timeout_is_what_is_left_of_the_deadline() -> None:
    m, clock = machine(timeout=1.0)
    clock.advance(0.7)
    assert rpc(m).timeout == pytest.approx(0.3)


def test_no_deadline_caps_each_rpc_but_never_times_out() -> None:
    m, clock = machine(timeout=None)
    assert rpc(m).timeout == POLICY.rpc_timeout
    m.on_reply(flush_reply({"a": [1]}))
    clock.advance(1e6)
    assert rpc(m).method == "GetFlushState"


def test_rate_limited_flush_is_retried_with_backoff() -> None:
    m, clock = machine()
    rpc(m)
    m.on_reply(RATE_LIMITED)
    sleeps, _ = uncovered(m, clock)  # nobody else's Flush covers "a"
    assert sum(sleeps) == pytest.approx(0.1)
    m.on_reply(RATE_LIMITED)
    sleeps, _ = uncovered(m, clock)
    assert sum(sleeps) == pytest.approx(0.2) and sleeps[0] == POLICY.window_poll
    m.on_reply(flush_reply({"a": [1]}))
    assert rpc(m).method == "GetFlushState"


def test_a_refused_flush_covered_by_another_clients_flush_is_done() -> None:
    clock = FakeClock()
    slow = replace(POLICY, retry=Backoff(1.0, 2.0, 1.0))  # a Flush again only after 1 s
    # "a" has a timestamp to be covered at already (a ticket's); "b" none: a stamp
    m = FlushMachine(("a", "b"), "", 10.0, slow, clock=clock, cover_ts={"a": 5000})
    rpc(m)
    m.on_reply(RATE_LIMITED)
    stamp = rpc(m)
    assert stamp.method == "AllocTimestamp"
    m.on_reply(stamp_reply(6000))
    cover = rpc(m)
    asked = {r.collection_name: (r.flush_ts, list(r.segmentIDs)) for r in cover.requests}
    assert asked == {"a": (5000, []), "b": (6000, [])}
    m.on_reply([state_reply(True), state_reply(False)])  # "b": not yet
    clock.advance(slept(m.next_action()))
    assert len(rpc(m).requests) == 2  # both, until both are covered
    m.on_reply([state_reply(True), state_reply(True)])
    listing = rpc(m)  # the segments the other client's Flush sealed
    assert listing.method == "GetPersistentSegmentInfo" and len(listing.requests) == 2
    m.on_reply([segments_reply({1: 3, 2: 4}), segments_reply({3: 2, 4: 5})])
    poll = rpc(m)  # waited on as flush_sync's own, at the write timestamps
    assert (poll.request.collection_name, list(poll.request.segmentIDs)) == ("a", [1])
    assert poll.request.flush_ts == 5000
    m.on_reply(state_reply(True))
    sweep = rpc(m)
    assert [(list(r.segmentIDs), r.flush_ts) for r in sweep.requests] == [([4], 6000)]
    m.on_reply([state_reply(True)])
    done = m.next_action()
    assert isinstance(done, Done) and done.response.flushed
    a, b = done.response.collections.values()
    assert a.covered and b.covered and (a.flush_ts, b.flush_ts) == (5000, 6000)
    assert done.response.polls == 6


def test_a_server_without_alloc_timestamp_flushes_again_at_the_allowance() -> None:
    m, _ = machine()
    rpc(m)
    m.on_reply(RATE_LIMITED)
    assert rpc(m).method == "AllocTimestamp"
    m.on_error(FakeRpcError(grpc.StatusCode.UNIMPLEMENTED, "no"))
    assert slept(m.next_action()) == pytest.approx(0.1)
    assert rpc(m).method == "Flush"


def test_a_rate_limited_flush_is_retried_when_the_limit_lets_it_pass() -> None:
    clock, history = FakeClock(100.0), FlushHistory()
    first = FlushMachine(("a",), "", None, POLICY, clock=clock, history=history)
    with first.expect(rpc(first)) as outcome:
        outcome.reply = flush_reply({"a": [1]})
    clock.advance(1.0)
    second = FlushMachine(("a", "b"), "", None, POLICY, clock=clock, history=history)
    with second.expect(rpc(second)) as outcome:
        outcome.reply = RATE_LIMITED  # rate=0.1: "a" may pass 10 s after the first
    sleeps, _ = uncovered(second, clock)
    assert sum(sleeps) == pytest.approx(100.0 + 10.0 + 0.1 - 101.0)
    # nothing known of the collections: the plain back-off (0.1 s to start)
    third = FlushMachine(("c",), "", None, POLICY, clock=clock, history=history)
    with third.expect(rpc(third)) as outcome:
        outcome.reply = RATE_LIMITED
    sleeps, _ = uncovered(third, clock)
    assert sum(sleeps) == pytest.approx(0.1)


def test_rate_limited_until_the_deadline_times_out_with_the_rate_limit_as_cause() -> None:
    m, clock = machine(timeout=0.25)
    rpc(m)
    m.on_reply(RATE_LIMITED)
    uncovered(m, clock)  # 0.1
    m.on_reply(RATE_LIMITED)
    with pytest.raises(FlushTimeoutError) as info:
        uncovered(m, clock)  # 0.2, cut to what is left
    assert clock.now == pytest.approx(100.25)
    assert info.value.pending == ("a",)
    assert isinstance(info.value.__cause__, MilvusException)
    assert info.value.__cause__.code == 8


def test_unavailable_while_polling_resends_flush_for_pending_names() -> None:
    m, _ = machine(["a", "b"])
    rpc(m)
    m.on_reply(flush_reply({"a": [1], "b": [2]}, flush_ts=10))
    rpc(m)
    m.on_reply(state_reply(True))
    rpc(m)
    m.on_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused"))
    assert isinstance(m.next_action(), Sleep)
    again = rpc(m)
    assert again.method == "Flush" and list(again.request.collection_names) == ["b"]
    m.on_reply(flush_reply({"b": [3]}, flush_ts=20))
    poll = rpc(m)
    assert poll.request.flush_ts == 20 and list(poll.request.segmentIDs) == [3]


def test_unavailable_before_any_flush_answer_retries_flush() -> None:
    m, _ = machine()
    rpc(m)
    m.on_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "down"))
    assert isinstance(m.next_action(), Sleep)
    assert rpc(m).method == "Flush"


def test_deadline_exceeded_when_the_deadline_passed_is_a_flush_timeout() -> None:
    m, clock = machine(timeout=0.5)
    rpc(m)
    clock.advance(0.5)
    m.on_error(FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    with pytest.raises(FlushTimeoutError) as info:
        m.next_action()
    assert info.value.pending == ("a",)
    cause = info.value.__cause__
    assert isinstance(cause, MilvusException) and "DEADLINE_EXCEEDED" in cause.message


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INTERNAL],
)
def test_grpc_refusals_are_final_milvus_exceptions(code: grpc.StatusCode) -> None:
    m, _ = machine()
    rpc(m)
    m.on_error(FakeRpcError(code, "no privilege"))
    with pytest.raises(MilvusException) as info:
        m.next_action()
    assert type(info.value) is MilvusException
    assert info.value.code == code.value[0]
    assert code.name in info.value.message and "no privilege" in info.value.message


def test_unavailable_maps_to_milvus_unavailable() -> None:
    m, clock = machine(timeout=1.0)
    rpc(m)
    m.on_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "down"))
    clock.advance(1.0)
    with pytest.raises(FlushTimeoutError) as info:
        m.next_action()
    assert isinstance(info.value.__cause__, MilvusUnavailableException)


def test_server_error_status_is_final_with_code_and_reason() -> None:
    m, _ = machine()
    rpc(m)
    m.on_reply(flush_reply({"a": [1]}))
    rpc(m)
    m.on_reply(state_reply(False, code=65535, reason="boom"))
    with pytest.raises(MilvusException) as info:
        m.next_action()
    assert (info.value.code, info.value.message) == (65535, "boom")


# What Milvus 2.3.5 answered in the ~10 s after a kill -9 and restart (measured).
RESTARTING = "attempt #2: rpc error: code = Unknown desc = node not match[expectedNodeID=1]"


def test_a_last_try_cut_short_by_the_deadline_leaves_the_server_error_as_the_cause() -> None:
    """The try sent with what was left of the deadline times out with it (a loaded
    machine, a slow reply): the cause stays the server's own reason, not that
    DEADLINE_EXCEEDED; before the deadline, a per-RPC DEADLINE_EXCEEDED is the cause."""
    m, clock = machine(timeout=0.25)
    rpc(m)
    m.on_reply(milvus_pb2.FlushResponse(status=status(1, "service not ready")))
    clock.advance(slept(m.next_action()))  # 0.1
    assert rpc(m).timeout == pytest.approx(0.15)
    clock.advance(0.15)
    m.on_error(FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    with pytest.raises(FlushTimeoutError, match="service not ready") as info:
        m.next_action()
    assert isinstance(info.value.__cause__, MilvusException)
    assert info.value.__cause__.code == 1
    m, clock = machine(timeout=10.0)
    rpc(m)
    m.on_reply(milvus_pb2.FlushResponse(status=status(1, "service not ready")))
    clock.advance(slept(m.next_action()))
    rpc(m)
    clock.advance(POLICY.rpc_timeout)  # the per-RPC cap, well before the deadline
    m.on_error(FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    clock.advance(slept(m.next_action()))
    rpc(m)
    clock.advance(10.0)
    m.on_error(FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    with pytest.raises(FlushTimeoutError) as info:
        m.next_action()
    assert isinstance(info.value.__cause__, MilvusException)
    assert "DEADLINE_EXCEEDED" in info.value.__cause__.message


@pytest.mark.parametrize(
    ("code", "reason"),
    [(65535, RESTARTING), (1, "service not ready"), (901, "node not found[node=4]")],
)
def test_restarting_server_while_polling_is_retried_with_a_new_flush(
    code: int, reason: str
) -> None:
    m, _ = machine()
    rpc(m)
    m.on_reply(flush_reply({"a": [1]}, flush_ts=10))
    rpc(m)
    m.on_reply(state_reply(False, code=code, reason=reason))
    assert m.next_action() == Sleep(0.1)
    again = rpc(m)
    assert again.method == "Flush"
    m.on_reply(flush_reply({"a": [1, 2]}, flush_ts=20))
    poll = rpc(m)
    assert poll.request.flush_ts == 20


@pytest.mark.parametrize("reason", ["boom", "collection not loaded", ""])
def test_unexpected_error_without_a_restart_reason_is_final(reason: str) -> None:
    m, _ = machine()
    rpc(m)
    m.on_reply(flush_reply({"a": [1]}, flush_ts=10))
    rpc(m)
    m.on_reply(state_reply(False, code=65535, reason=reason))
    with pytest.raises(MilvusException) as info:
        m.next_action()
    assert info.value.code == 65535


def test_successful_reply_resets_the_retry_backoff() -> None:
    m, clock = machine()
    rpc(m)
    m.on_reply(RATE_LIMITED)
    uncovered(m, clock)
    m.on_reply(flush_reply({"a": [1]}))
    rpc(m)
    m.on_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE))
    assert m.next_action() == Sleep(0.1)


def test_protocol_misuse_is_a_runtime_error() -> None:
    m, _ = machine()
    with pytest.raises(RuntimeError):
        m.on_reply(flush_reply({"a": [1]}))
    rpc(m)
    with pytest.raises(RuntimeError):
        m.next_action()


def test_progress_snapshot() -> None:
    m, _ = machine(["a", "b"])
    rpc(m)
    m.on_reply(flush_reply({"a": [1], "b": [2]}))
    rpc(m)
    m.on_reply(state_reply(True))
    progress = m.progress()
    assert not progress.flushed and progress.polls == 1
    assert pending(m) == ["b"]


def test_deadline_and_backoff_values() -> None:
    assert Deadline.after(None, 5.0).remaining(1e9) == math.inf
    assert Deadline.after(2.0, 5.0).remaining(6.0) == 1.0
    assert Backoff(0.01, 10.0, 1.0).delay(10_000) == 1.0
    with pytest.raises(ValueError, match="invalid back-off"):
        Backoff(0.5, 2.0, 0.1)
    with pytest.raises(ValueError, match="invalid back-off"):
        Backoff(0.1, 0.5, 1.0)


# -- edges: Lite's code 1, undecodable replies, other exceptions, the retry budget ----------

LITE_FAILURE = "invalid database name: 'x/y'"  # what Milvus Lite answers, with code 1


def test_lite_status_1_is_final_at_once_not_retried() -> None:
    m, _ = machine(timeout=None)
    rpc(m)
    m.on_reply(milvus_pb2.FlushResponse(status=status(1, LITE_FAILURE)))
    with pytest.raises(MilvusException) as info:
        m.next_action()
    assert (info.value.code, info.value.message) == (1, LITE_FAILURE)


@pytest.mark.parametrize("reply", [None, milvus_pb2.BoolResponse(), b"\xff"])
def test_an_undecodable_reply_is_final_code_13(reply: Any) -> None:
    m, _ = machine()
    rpc(m)
    m.on_reply(reply)  # grpc.aio hands back None for bytes it could not decode
    with pytest.raises(MilvusException) as info:
        m.next_action()
    assert info.value.code == 13 and "could not be decoded" in info.value.message


def test_a_round_with_a_missing_reply_is_undecodable() -> None:
    m, _ = machine(["a", "b"])
    rpc(m)
    m.on_reply(flush_reply({"a": [1], "b": [2]}))
    rpc(m)
    m.on_reply(state_reply(True))
    sweep = rpc(m)
    assert len(sweep.requests) == 1
    m.on_reply([])
    with pytest.raises(MilvusException, match="could not be decoded"):
        m.next_action()


def test_any_other_exception_of_the_io_is_a_final_milvus_exception() -> None:
    m, _ = machine()
    action = rpc(m)
    with m.expect(action):
        raise ValueError("Cannot invoke RPC on closed channel!")
    with pytest.raises(MilvusException) as info:
        m.next_action()
    assert type(info.value) is MilvusException
    assert "ValueError: Cannot invoke RPC on closed channel!" in info.value.message
    assert isinstance(info.value.__cause__, ValueError)


def test_a_milvus_exception_of_the_io_is_raised_as_it_is() -> None:
    closed = MilvusException(message="should create connection first")
    m, _ = machine()
    action = rpc(m)
    with m.expect(action):
        raise closed  # the client was closed: _get_connection() raises
    with pytest.raises(MilvusException) as info:
        m.next_action()
    assert info.value is closed


def test_interrupts_pass_through_expect() -> None:
    m, _ = machine()
    action = rpc(m)
    with pytest.raises(KeyboardInterrupt), m.expect(action):
        raise KeyboardInterrupt
    assert m.phase is Phase.FAILED  # a half-done step is never resumed
    with pytest.raises(MilvusException, match="interrupted"):
        m.next_action()


def unavailable_until_it_ends(
    m: FlushMachine, clock: FakeClock, rpc_seconds: float
) -> MilvusException:
    """Fail every RPC with UNAVAILABLE after ``rpc_seconds``; what the call raised."""

    def unavailable(action: SendRpc) -> Any:
        clock.advance(min(rpc_seconds, action.timeout))
        raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "down")

    def fail_forever() -> None:
        drive(m, unavailable, clock.advance)

    with pytest.raises(MilvusException) as info:
        fail_forever()
    return info.value


def test_without_a_deadline_a_run_of_failures_ends_after_the_retry_budget() -> None:
    policy = replace(POLICY, retry_budget=10.0)
    clock = FakeClock()
    m = FlushMachine(("a",), "", None, policy, clock=clock)
    error = unavailable_until_it_ends(m, clock, rpc_seconds=3.0)
    assert type(error) is MilvusUnavailableException  # the last error itself
    assert clock.now == pytest.approx(100.0 + 10.0)


def test_a_last_try_cut_short_by_the_retry_budget_leaves_the_server_error() -> None:
    """Without a deadline, the last try of a run is sent with what is left of the retry
    budget; on a loaded machine it times out with it. The error raised stays the
    server's own ("service not ready", code 1), not that DEADLINE_EXCEEDED (code 4)."""
    policy = replace(POLICY, retry_budget=0.5)
    clock = FakeClock()
    m = FlushMachine(("a",), "", None, policy, clock=clock)
    rpc(m)
    m.on_reply(milvus_pb2.FlushResponse(status=status(1, "service not ready")))
    clock.advance(slept(m.next_action()))  # 0.1
    assert rpc(m).timeout == pytest.approx(0.4)  # what is left of the budget
    clock.advance(0.4)  # a loaded machine: the answer is not read in time
    m.on_error(FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    with pytest.raises(MilvusException, match="service not ready") as info:
        m.next_action()
    assert info.value.code == 1 and not isinstance(info.value, FlushTimeoutError)


def test_a_successful_reply_starts_the_retry_budget_again() -> None:
    policy = replace(POLICY, retry_budget=1.0)
    clock = FakeClock()
    m = FlushMachine(("a",), "", None, policy, clock=clock)
    rpc(m)
    m.on_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "down"))
    clock.advance(slept(m.next_action()))  # 0.1
    rpc(m)
    clock.advance(0.8)
    m.on_reply(flush_reply({"a": [1]}))  # progress, 0.9 s into the run
    rpc(m)
    clock.advance(0.5)
    m.on_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "down"))  # a new run starts here
    assert isinstance(m.next_action(), Sleep)


def test_with_a_deadline_the_deadline_alone_bounds_retries() -> None:
    policy = replace(POLICY, retry_budget=1.0)
    clock = FakeClock()
    m = FlushMachine(("a",), "", 30.0, policy, clock=clock)
    assert isinstance(unavailable_until_it_ends(m, clock, rpc_seconds=0.5), FlushTimeoutError)
    assert clock.now == pytest.approx(130.0)


def test_a_retry_is_logged_as_one_line_naming_the_rpc(caplog: pytest.LogCaptureFixture) -> None:
    m, _ = machine()
    rpc(m)
    stack = "attempt #2: node not match[expectedNodeID=1]\ngoroutine 1 [running]:\n" + "x" * 500
    with caplog.at_level("INFO", logger="pymilvus_flushsync"):
        m.on_reply(milvus_pb2.FlushResponse(status=status(65535, stack)))
    (line,) = caplog.messages
    assert "\n" not in line and len(line) < 400
    assert line.startswith("flush_sync: Flush ['a'] failed (code=65535: attempt #2: node not")
    assert line.endswith("...); next try in 0.10 s (retry 1)")


# -- every collection of a database (the CLI's --all) -------------------------------------


def test_every_collection_is_listed_first_then_flushed() -> None:
    clock = FakeClock()
    m = FlushMachine(None, "db2", 10.0, POLICY, clock=clock)
    listing = rpc(m)
    assert listing.method == "ShowCollections" and listing.request.db_name == "db2"
    m.on_reply(milvus_pb2.ShowCollectionsResponse(status=status(), collection_names=["x", "y"]))
    flush = rpc(m)
    assert flush.method == "Flush" and list(flush.request.collection_names) == ["x", "y"]


def test_an_empty_database_is_done_at_once() -> None:
    m = FlushMachine(None, "", 10.0, POLICY, clock=FakeClock())
    rpc(m)
    m.on_reply(milvus_pb2.ShowCollectionsResponse(status=status()))
    done = m.next_action()
    assert isinstance(done, Done)
    assert done.response.flushed and dict(done.response.collections) == {}


def test_a_not_found_that_the_listing_does_not_explain_stands() -> None:
    """A Flush of what was listed answers "not found", and the database, listed again,
    still holds every collection, time after time: the call fails with the server's
    error."""
    listings = 0

    def answer(action: SendRpc) -> Any:
        nonlocal listings
        if action.method == "ShowCollections":
            listings += 1
            return milvus_pb2.ShowCollectionsResponse(status=status(), collection_names=["x"])
        return milvus_pb2.FlushResponse(status=status(100, "collection not found"))

    with pytest.raises(MilvusException) as info:
        drive(FlushMachine(None, "", 10.0, POLICY, clock=FakeClock()), answer)
    assert info.value.code == 100
    assert listings == 2 + UNEXPLAINED_LISTINGS


def test_listed_again_a_call_goes_on_with_what_is_left_and_nothing_new() -> None:
    """b is dropped after the first listing and c created: the Flush that named b
    failed; the call lists again and flushes a alone (c came after the call began)."""
    listings, flushed = [["a", "b"], ["a", "c"]], []

    def answer(action: SendRpc) -> Any:
        if action.method == "ShowCollections":
            names = listings.pop(0)
            return milvus_pb2.ShowCollectionsResponse(status=status(), collection_names=names)
        if action.method == "Flush":
            names = list(action.requests[0].collection_names)
            flushed.append(names)
            if "b" in names:
                return milvus_pb2.FlushResponse(status=status(100, "collection not found"))
            return flush_reply({name: [1] for name in names})
        return [state_reply(True) for _ in action.requests]

    response = drive(FlushMachine(None, "", 10.0, POLICY, clock=FakeClock()), answer)
    assert response.flushed and list(response.collections) == ["a"]
    assert flushed == [["a", "b"], ["a"]]


def test_listing_is_under_the_deadline() -> None:
    clock = FakeClock()
    m = FlushMachine(None, "", 1.0, POLICY, clock=clock)
    assert rpc(m).timeout == pytest.approx(1.0)
    clock.advance(1.0)
    m.on_error(FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    with pytest.raises(FlushTimeoutError, match="not yet listed") as info:
        m.next_action()
    assert info.value.pending == ()


def test_the_deadline_can_start_before_the_machine() -> None:
    clock = FakeClock()
    m = FlushMachine(("a",), "", 2.0, POLICY, clock=clock, since=clock.now - 1.5)
    assert rpc(m).timeout == pytest.approx(0.5)
    assert m.progress().elapsed == pytest.approx(1.5)


def test_start_flush_identifies_then_seals_at_once_and_ends() -> None:
    clock = FakeClock()
    m = FlushMachine(("a",), "", 10.0, POLICY, clock=clock, table=SEAL)
    describe = rpc(m)
    assert describe.method == "DescribeCollection"
    m.on_reply([describe_reply(11, 22)])
    flush = rpc(m)  # no sleep in between
    assert flush.method == "Flush"
    m.on_reply(flush_reply({"a": [1, 2]}, flush_ts=77))
    done = m.next_action()
    assert isinstance(done, Done) and not done.response.flushed
    assert m.work.identity == {"a": (11, 22)}
    state = m.work.progress.states["a"]
    assert (state.segment_ids, state.flush_ts) == ((1, 2), 77)


def test_a_tickets_wait_fails_on_another_collection_under_its_name() -> None:
    m = FlushMachine(("a",), "", 10.0, POLICY, clock=FakeClock(), table=WAIT)
    m.work.expected = {"a": (11, 22)}
    rpc(m)
    m.on_reply([describe_reply(11, 22)])
    poll = rpc(m)
    assert poll.method == "GetFlushState"
    m.on_reply(state_reply(True))
    confirm = rpc(m)  # the server counts unknown segments as flushed: ask again
    assert confirm.method == "DescribeCollection"
    m.on_reply([describe_reply(12, 23)])  # dropped and recreated meanwhile
    with pytest.raises(MilvusException) as info:
        m.next_action()
    assert info.value.code == 100 and "recreated" in info.value.message


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (10001, "context deadline exceeded"),  # CI run 17
        (65535, "proxy TaskCondition context Done"),  # queued in the proxy (2.3.5)
        (65535, "Proxy TaskCondition context Done"),  # as older lines spell it
        (10001, "proxy TaskCondition context Done: context deadline exceeded"),  # 2.5+
    ],
)
def test_the_servers_own_context_deadline_at_the_calls_is_a_flush_timeout(
    code: int, reason: str
) -> None:
    # the proxy answers a status when its context for the RPC (the call's timeout)
    # runs out: the call's deadline is what ended it
    now = [0.0]
    machine = FlushMachine(("a",), "", 0.3, POLICY, clock=lambda: now[0])
    action = machine.next_action()
    assert isinstance(action, SendRpc) and action.method == "Flush"
    now[0] = 0.31
    with machine.expect(action) as outcome:
        outcome.reply = milvus_pb2.FlushResponse(status=status(code, reason))
    with pytest.raises(FlushTimeoutError) as info:
        machine.next_action()
    assert reason in str(info.value.__cause__)
    assert info.value.pending == ("a",)
