"""Tickets on a fake of Milvus 2.6's streaming line, through both drivers.

Where the line differs: GetFlushState answers "flushed" for what it no longer knows
(a segment compacted or dropped, and, inferred from ``task_flush_streaming.go`` and
the segment rule, a collection dropped; docs/guarantees.md, "Tickets"). A ticket
whose collection is dropped or recreated meanwhile, or that comes from another
server, must not be "flushed": the identity check before and after the polls
catches what the state hides.
"""

from __future__ import annotations

from typing import Any

import pytest
from pymilvus.exceptions import MilvusException
from pymilvus.grpc_gen import milvus_pb2

from pymilvus_flushsync import FlushSyncResponse, FlushTicket, TicketCollection
from pymilvus_flushsync._call import prepare_seal, prepare_wait, ticket_of

from ..fakes import (
    POLICY,
    FakeServer,
    describe_reply,
    flush_reply,
    state_reply,
    status,
    through,
)


class Streaming:
    """Milvus 2.6 streaming as a fake: collection ``a`` (ID 11, created at 22) with
    segments 1 and 2. GetFlushState flips to flushed on its ``polls_before_flushed``
    + 1st poll for segments it knows, and at once for any it does not; ``on_poll``
    runs before each answer (a drop mid-wait)."""

    def __init__(self) -> None:
        self.collections: dict[str, tuple[int, int]] = {"a": (11, 22)}
        self.segments: dict[str, set[int]] = {"a": {1, 2}}
        self.polls = 0
        self.polls_before_flushed = 2
        self.on_poll: Any = None

    def __call__(self, method: str, request: Any) -> Any:
        return getattr(self, f"on_{method}")(request)

    def drop(self, name: str, *, recreate: bool) -> None:
        del self.collections[name]
        self.segments[name] = set()
        if recreate:
            self.collections[name] = (12, 23)

    def on_DescribeCollection(self, request: Any) -> Any:
        found = self.collections.get(request.collection_name)
        if found is None:
            reason = f"collection not found[collection={request.collection_name}]"
            return milvus_pb2.DescribeCollectionResponse(status=status(100, reason))
        return describe_reply(*found)

    def on_Flush(self, request: Any) -> Any:
        sealed = {name: sorted(self.segments[name]) for name in request.collection_names}
        return flush_reply(sealed, flush_ts=5000)

    def on_GetFlushState(self, request: Any) -> Any:
        self.polls += 1
        if self.on_poll is not None:
            self.on_poll()
        known = self.segments.get(request.collection_name, set())
        unknown = not set(request.segmentIDs) <= known
        return state_reply(unknown or self.polls > self.polls_before_flushed)


def _seal(flavor: str, server: FakeServer) -> FlushTicket:
    client = server.client()
    machine = prepare_seal(client, "a", None, 10.0, POLICY)
    through(flavor, machine, client)
    return ticket_of(machine)


def _wait(flavor: str, server: FakeServer, ticket: FlushTicket) -> FlushSyncResponse:
    client = server.client()
    return through(flavor, prepare_wait(client, ticket, 10.0, POLICY, None), client)


@pytest.fixture(params=["sync", "async"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_ticket_is_flushed_once_its_segments_are(flavor: str) -> None:
    streaming = Streaming()
    server = FakeServer(streaming)
    ticket = _seal(flavor, server)
    assert ticket.collections == (TicketCollection("a", 11, 22, (1, 2), 5000, 5000),)
    response = _wait(flavor, server, ticket)
    assert response.flushed and streaming.polls == 3


@pytest.mark.parametrize("recreate", [False, True])
def test_a_collection_dropped_mid_wait_is_not_flushed(flavor: str, recreate: bool) -> None:
    streaming = Streaming()
    server = FakeServer(streaming)
    ticket = _seal(flavor, server)
    streaming.on_poll = lambda: streaming.drop("a", recreate=recreate)
    with pytest.raises(MilvusException) as info:
        _wait(flavor, server, ticket)
    assert info.value.code == 100
    found = "is not the server's (id 12, created 23)" if recreate else "collection not found"
    assert found in info.value.message
    assert streaming.polls == 1  # the state said "flushed" at once: the check caught it


def test_a_ticket_from_another_server_is_refused_before_any_poll(flavor: str) -> None:
    streaming = Streaming()
    server = FakeServer(streaming)
    ticket = FlushTicket("default", (TicketCollection("a", 446, 449, (1, 2), 5000),))
    with pytest.raises(MilvusException) as info:
        _wait(flavor, server, ticket)
    assert info.value.code == 100 and "another server" in info.value.message
    assert "(id 446, created 449) is not the server's (id 11, created 22)" in info.value.message
    assert streaming.polls == 0
