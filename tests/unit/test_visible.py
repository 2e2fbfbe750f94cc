"""``until="visible"`` over a fake server, both drivers: no Flush, the collections'
identities and one timestamp (``flush_sync``), the ticket's identities alone
(``wait_flushed``); Milvus Lite (no AllocTimestamp) is visible at once."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from pymilvus.exceptions import MilvusException

from pymilvus_flushsync import FlushSyncResponse, FlushTicket, TicketCollection
from pymilvus_flushsync._call import prepare, prepare_wait, with_ticket

from ..fakes import POLICY, FakeRpcError, FakeServer, describe_reply, stamp_reply, through

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
    ticket = with_ticket(machine, response).ticket
    visible = 7777 if stamps else 0
    assert ticket == FlushTicket(
        "default",
        (
            TicketCollection("a", 11, 22, (), 0, visible),
            TicketCollection("b", 11, 22, (), 0, visible),
        ),
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
