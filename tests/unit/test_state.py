"""A call's state: the tables' moves, checked in one place, and the turn within a phase."""

from __future__ import annotations

from functools import singledispatch
from typing import Any

import pytest
from pymilvus.exceptions import MilvusException
from pymilvus.grpc_gen import milvus_pb2

from pymilvus_flushsync import _async, _sync
from pymilvus_flushsync._core import FlushMachine, SendRpc, Sleep
from pymilvus_flushsync._errors import Failure
from pymilvus_flushsync._io import KINDS, Pause, carried
from pymilvus_flushsync._schedule import Fail, Retry
from pymilvus_flushsync._state import CallState, Event, IllegalMove, Phase, Turn
from pymilvus_flushsync._steps import EVERY, FLUSH, FLUSH_ALL, LISTING, STEPS, Table, failure_events

from ..fakes import POLICY, flush_reply, state_reply

TABLES = [FLUSH, EVERY, LISTING, FLUSH_ALL]


@pytest.mark.parametrize("table", TABLES, ids=[t.name for t in TABLES])
def test_every_move_a_table_does_not_list_is_illegal(table: Table) -> None:
    for phase in Phase:
        for event in Event:
            state = CallState(table.name, phase, table.moves)
            listed = table.moves.get(phase, {}).get(event)
            if event is Event.FAILED and phase is not Phase.DONE:
                listed = Phase.FAILED
            if listed is None:
                with pytest.raises(IllegalMove, match=f"{phase.name} on {event.name}"):
                    state.move(event)
                assert state.phase is phase  # unchanged
            else:
                state.move(event)
                assert state.phase is listed


def test_a_polling_call_cannot_go_back_to_listing() -> None:
    state = EVERY.state()
    state.move(Event.LISTED)
    state.move(Event.SEALED)
    assert state.phase is Phase.POLL
    with pytest.raises(IllegalMove):
        state.move(Event.LISTED)


def test_a_table_with_a_phase_but_no_step_is_refused() -> None:
    with pytest.raises(ValueError, match="without a step"):
        Table("broken", Phase.FLUSH, {Phase.FLUSH: STEPS[Phase.FLUSH]}, FLUSH.moves)


def test_a_new_kind_of_call_is_a_new_table() -> None:
    """Seal and poll, no HasCollection: a table of the existing steps, no other change."""
    table = Table(
        "seal then poll",
        Phase.FLUSH,
        STEPS,
        {
            Phase.FLUSH: {Event.SEALED: Phase.POLL},
            Phase.POLL: {Event.NOT_YET: Phase.POLL, Event.FLUSHED: Phase.DONE},
        },
    )
    machine = FlushMachine(("a",), "", 10.0, POLICY, table=table)
    action = machine.next_action()
    assert isinstance(action, SendRpc) and action.method == "Flush"
    with pytest.raises(IllegalMove, match="FLUSH on UNMENTIONED"):
        machine.on_reply(flush_reply(None))  # Lite's empty maps: this table has no CHECK
    machine = FlushMachine(("a",), "", 10.0, POLICY, table=table)
    machine.next_action()
    machine.on_reply(flush_reply({"a": [1]}))
    assert machine.phase is Phase.POLL


def turn(machine: FlushMachine) -> Turn:
    return machine.state.turn


def test_the_turn_says_what_may_come_next() -> None:
    machine = FlushMachine(("a",), "", 10.0, POLICY)
    action = machine.next_action()
    assert turn(machine) is Turn.AWAIT
    with pytest.raises(RuntimeError, match="awaits its reply"):
        machine.next_action()
    machine.on_reply(flush_reply({"a": [1]}))
    assert turn(machine) is Turn.SEND  # Flush answered: poll at once
    with pytest.raises(RuntimeError, match="no RPC is waiting"):
        machine.on_reply(state_reply(True))
    poll = machine.next_action()
    assert isinstance(poll, SendRpc) and action is not poll
    machine.on_reply(state_reply(False))
    assert turn(machine) is Turn.SLEEP
    assert isinstance(machine.next_action(), Sleep)
    assert turn(machine) is Turn.SEND


def test_a_failed_call_stays_failed() -> None:
    machine = FlushMachine(("a",), "", 10.0, POLICY)
    error = MilvusException(code=100, message="collection not found")
    machine.stop(error)
    for _ in range(2):
        with pytest.raises(MilvusException) as raised:
            machine.next_action()
        assert raised.value is error and machine.phase is Phase.FAILED


def test_a_driver_without_a_way_to_carry_out_an_io_is_refused_at_once() -> None:
    @singledispatch
    def carry(io: object) -> None:
        raise TypeError

    carry.register(Pause, print)
    with pytest.raises(TypeError, match="Start, Wait"):
        carried(carry)
    for driver in (_sync, _async):  # each carries out every kind, by a function it names
        assert set(KINDS) <= set(driver._carry.registry)


_GONE = MilvusException(code=100, message="collection not found[collection=a]")
_OTHER = MilvusException(code=65535, message="no")


@pytest.mark.parametrize(
    ("phase", "failure", "decision", "events"),
    [
        (Phase.CHECK, Failure(_GONE), Fail(_GONE), (Event.GONE, Event.FAILED)),
        (Phase.STAMP, Failure(_OTHER, declined=True), Fail(_OTHER), (Event.NO_STAMP, Event.FAILED)),
        (Phase.REFRESH, Failure(_OTHER), Fail(_OTHER), (Event.REFRESHED, Event.FAILED)),
        (Phase.POLL, Failure(_OTHER), Fail(_OTHER), (Event.FAILED,)),
        (Phase.FLUSH, Failure(_OTHER, True, rate=0.1), Retry(1.0), (Event.REFUSED, Event.RETRY)),
        (Phase.POLL, Failure(_OTHER, True, True), Retry(1.0, True), (Event.LOST, Event.RETRY)),
        (Phase.POLL, Failure(_OTHER, True), Retry(1.0), (Event.RETRY,)),
    ],
)  # fmt: skip
def test_a_failure_is_one_of_its_tables_events(
    phase: Phase, failure: Failure, decision: Retry | Fail, events: tuple[Event, ...]
) -> None:
    # the call moves on the first its table lists (_core._follow); RETRY: every phase
    assert failure_events(STEPS[phase], failure, decision) == events
    for table in (FLUSH, EVERY, FLUSH_ALL, LISTING):
        assert all(row[Event.RETRY] is phase for phase, row in table.moves.items())


@pytest.mark.parametrize(
    ("phase", "request_", "said"),
    [
        (Phase.POLL, milvus_pb2.GetFlushStateRequest(collection_name="a"), "GetFlushState ['a']"),
        (
            Phase.SEGMENTS,  # spelt collectionName
            milvus_pb2.GetPersistentSegmentInfoRequest(collectionName="a"),
            "GetPersistentSegmentInfo ['a']",
        ),
        (
            Phase.REFRESH,
            milvus_pb2.LoadCollectionRequest(collection_name="a", refresh=True),
            "LoadCollection(refresh) ['a']",
        ),
        (
            Phase.LIST,
            milvus_pb2.ShowCollectionsRequest(db_name=""),
            "ShowCollections [database 'default']",
        ),
    ],
)
def test_logs_and_errors_name_a_round_by_its_method_and_collections(
    phase: Phase, request_: Any, said: str
) -> None:
    assert STEPS[phase].describe((request_,)) == said
