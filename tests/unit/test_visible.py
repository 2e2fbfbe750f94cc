"""``until="visible"`` over a fake server, both drivers: no Flush, the collections'
identities and one timestamp (``flush_sync``), the ticket's identities alone
(``wait_flushed``); Milvus Lite (no AllocTimestamp) is visible at once."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from pymilvus.exceptions import MilvusException

from pymilvus_flushsync import FlushSyncResponse, FlushTicket, FlushTimeoutError, TicketCollection
from pymilvus_flushsync._call import prepare, prepare_wait
from pymilvus_flushsync._steps import Known

from ..fakes import (
    POLICY,
    FakeRpcError,
    FakeServer,
    describe_reply,
    flush_reply,
    has_reply,
    stamp_reply,
    state_reply,
    through,
)

pytestmark = pytest.mark.parametrize("flavor", ["sync", "async"])


def answer(stamps: bool = True) -> Any:
    def reply(method: str, request: Any) -> Any:
        if method == "DescribeCollection":
            return describe_reply(11, 22)
        if method == "AllocTimestamp" and stamps:
            return stamp_reply(7777)
        if method == "AllocTimestamp":
            raise FakeRpcError(grpc.StatusCode.UNIMPLEMENTED, "Milvus Lite")
        raise AssertionError(f"{method} sent")

    return reply


@pytest.mark.parametrize("stamps", [True, False])
def test_flush_sync_until_visible_sends_no_flush(flavor: str, stamps: bool) -> None:
    server = FakeServer(answer(stamps))
    client = server.client()
    machine = prepare(client, ["a", "b"], None, 10.0, POLICY, until="visible")
    response = through(flavor, machine, client)
    assert isinstance(response, FlushSyncResponse)
    assert response.flushed and response.stage == "visible"
    assert [method for method, _ in server.sent] == [
        "DescribeCollection",
        "DescribeCollection",
        "AllocTimestamp",
    ]
    for state in response.collections.values():
        assert not state.flushed and state.visible_seconds is not None  # not persisted
    assert machine.work.cover_ts == ({"a": 7777, "b": 7777} if stamps else {})
    ticket = response.ticket
    assert ticket is not None
    visible = 7777 if stamps else 0
    assert ticket == FlushTicket(
        "default",
        (
            TicketCollection("a", 11, 22, (), 0, visible),
            TicketCollection("b", 11, 22, (), 0, visible),
        ),
        "all" if stamps else "process",  # no timestamp: this process's writes (none here)
    )
    assert FlushTicket.from_json(ticket.to_json()) == ticket


def test_wait_flushed_until_visible_checks_the_identities_alone(flavor: str) -> None:
    ticket = FlushTicket("default", (TicketCollection("a", 11, 22, (1,), 5000, 5100),))
    server = FakeServer(answer())
    client = server.client()
    response = through(
        flavor, prepare_wait(client, ticket, 10.0, POLICY, None, until="visible"), client
    )
    assert isinstance(response, FlushSyncResponse) and response.flushed
    assert response.stage == "visible"
    assert [method for method, _ in server.sent] == ["DescribeCollection"]
    recreated = FlushTicket("default", (TicketCollection("a", 11, 99, (1,), 5000, 5100),))
    with pytest.raises(MilvusException) as info:
        through(
            flavor, prepare_wait(client, recreated, 10.0, POLICY, None, until="visible"), client
        )
    assert info.value.code == 100


def persisting(segments: bool) -> Any:
    """A server that flushes at once: a real one's Flush (segments, timestamp 5000), or
    Milvus Lite's (empty maps, then HasCollection)."""

    def reply(method: str, request: Any) -> Any:
        if method == "DescribeCollection":
            return describe_reply(11, 22)
        if method == "Flush":
            names = request.collection_names
            return flush_reply({name: [1, 2] for name in names} if segments else None, 5000)
        if method == "GetFlushState":
            return state_reply(True)
        if method == "HasCollection":
            return has_reply(True)
        raise AssertionError(f"{method} sent")

    return reply


def test_every_stage_tickets_what_the_call_identified_and_covered(flavor: str) -> None:
    """``flush_sync``'s response carries a ticket at persisted too: the Flush and the
    polls as ever (calls released together share the Flush), then the identities; the
    Flush's timestamp is the visible one (it covers every write before it); the progress
    hook's final response is the response, ticket and all."""
    server = FakeServer(persisting(segments=True))
    client = server.client()
    seen: list[FlushSyncResponse] = []
    machine = prepare(client, ["a"], None, 10.0, POLICY, identify=True, on_progress=seen.append)
    response = through(flavor, machine, client)
    sent = [method for method, _ in server.sent]
    assert sent == ["Flush", "GetFlushState", "DescribeCollection"]
    assert response.stage == "persisted" and seen[-1] == response
    assert response.ticket == FlushTicket(
        "default", (TicketCollection("a", 11, 22, (1, 2), 5000, 5000),), "all"
    )


def test_without_a_server_timestamp_the_ticket_covers_this_process_writes(flavor: str) -> None:
    """Milvus Lite's Flush gives no timestamp: the ticket carries this process's last
    write before the call and says ``covers="process"``."""
    server = FakeServer(persisting(segments=False))
    client = server.client()
    known = Known(written={"a": 4321})
    machine = prepare(client, ["a"], None, 10.0, POLICY, identify=True, known=known)
    ticket = through(flavor, machine, client).ticket
    assert ticket is not None and ticket.covers == "process"
    assert ticket.collections == (TicketCollection("a", 11, 22, (), 0, 4321),)


def test_wait_flushed_answers_with_the_ticket_it_waited_on(flavor: str) -> None:
    ticket = FlushTicket("default", (TicketCollection("a", 11, 22, (1,), 5000, 5100),))
    server = FakeServer(persisting(segments=True))
    client = server.client()
    response = through(flavor, prepare_wait(client, ticket, 10.0, POLICY, None), client)
    assert response.flushed and response.ticket == ticket


def test_a_visible_ticket_waited_on_until_persisted_asks_at_its_timestamp(flavor: str) -> None:
    """A ticket that sealed nothing is persisted once the checkpoint passes the
    timestamp that covers its rows: GetFlushState at ``visible_ts``, never at 0 (which
    any server answers "flushed")."""
    ticket = FlushTicket("default", (TicketCollection("a", 11, 22, (), 0, 7777),))
    asked: list[int] = []

    def reply(method: str, request: Any) -> Any:
        if method == "GetFlushState":
            asked.append(request.flush_ts)
            return state_reply(len(asked) > 1)
        return persisting(segments=True)(method, request)

    server = FakeServer(reply)
    client = server.client()
    response = through(flavor, prepare_wait(client, ticket, 10.0, POLICY, None), client)
    assert response.flushed and response.stage == "persisted"
    assert asked == [7777, 7777]


def test_until_visible_keeps_the_deadline(flavor: str) -> None:
    """A server that never answers AllocTimestamp: ``FlushTimeoutError`` at the deadline,
    naming the stage and the collection."""

    def reply(method: str, request: Any) -> Any:
        if method == "DescribeCollection":
            return describe_reply(11, 22)
        raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "restarting")

    server = FakeServer(reply)
    client = server.client()
    machine = prepare(client, ["a"], None, 0.5, POLICY, until="visible")
    started = time.monotonic()
    with pytest.raises(FlushTimeoutError) as info:
        through(flavor, machine, client)
    assert time.monotonic() - started < 0.5 + 2.0  # a loaded 2-core machine's tolerance
    assert info.value.pending == ("a",) and "not yet visible: a" in info.value.message
