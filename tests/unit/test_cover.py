"""A refused Flush keeps flush_sync's promise: every row acknowledged before the call
began, by any client, is persisted when it returns (docs/guarantees.md, "What each
path covers"). Both drivers, over one fake server whose checkpoint stands between
this process's last write and a write another process made before the call."""

from __future__ import annotations

from typing import Any

import pytest
from pymilvus.client import ts_utils
from pymilvus.grpc_gen import milvus_pb2

from pymilvus_flushsync._call import prepare, prepare_seal

from ..fakes import RATE_LIMITED, FakeServer, flush_reply, stamp_reply, state_reply, through

OWN_WRITE = 4000  # this process's last write of the collection (pymilvus's cache)
CHECKPOINT = 5000  # another client's accepted Flush persisted every write before it
OTHERS_WRITE = 5500  # a worker's rows, acknowledged before the call: not persisted
STAMP = 6000  # AllocTimestamp, after the call began


class Window:
    """A server inside another client's Flush window: the first Flush is refused, the
    next accepted and flushed at once; GetFlushState answers from the checkpoint."""

    def __init__(self) -> None:
        self.flushes = 0
        self.asked: list[int] = []  # flush_ts of every GetFlushState

    def __call__(self, method: str, request: Any) -> Any:
        if method == "Flush":
            self.flushes += 1
            if self.flushes == 1:
                return RATE_LIMITED
            return flush_reply({name: [9] for name in request.collection_names}, 7000)
        if method == "AllocTimestamp":
            return stamp_reply(STAMP)
        if method == "GetFlushState":
            self.asked.append(request.flush_ts)
            return state_reply(request.flush_ts <= CHECKPOINT or request.flush_ts == 7000)
        if method == "GetPersistentSegmentInfo":
            return milvus_pb2.GetPersistentSegmentInfoResponse(status=state_reply(True).status)
        if method == "DescribeCollection":
            return milvus_pb2.DescribeCollectionResponse(
                status=state_reply(True).status, collectionID=11, created_timestamp=22
            )
        raise AssertionError(method)


@pytest.fixture
def wrote_it(request: pytest.FixtureRequest) -> Any:
    """This process wrote a collection of its own at ``OWN_WRITE``, as pymilvus records
    an insert (a name per test: the endpoint's Flush history outlives a test)."""
    name = f"cw{len(_NAMES)}"
    _NAMES.append(name)
    ts_utils.update_collection_ts(name, OWN_WRITE)
    yield name
    ts_utils.update_collection_ts(name, 0)


_NAMES: list[str] = []


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_a_refused_flush_is_never_covered_at_this_process_own_writes(
    flavor: str, wrote_it: str
) -> None:
    window = Window()
    server = FakeServer(window)
    client = server.client()
    response = through(
        flavor, prepare(client, wrote_it, None, 10.0, client.flush_sync_policy), client
    )
    assert response.flushed
    assert OWN_WRITE not in window.asked  # the old rule: flushed=True, the worker's rows not
    assert STAMP in window.asked  # covered at a timestamp taken after the call began
    assert window.flushes == 2 and not response.collections[wrote_it].covered
    assert response.collections[wrote_it].flush_ts == 7000


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_a_ticket_is_never_stamped_with_this_process_own_writes(flavor: str, wrote_it: str) -> None:
    window = Window()
    server = FakeServer(window)
    client = server.client()
    machine = prepare_seal(client, wrote_it, None, 10.0, client.flush_sync_policy)
    through(flavor, machine, client)
    (entry,) = machine.work.progress.states.values()
    assert OWN_WRITE not in window.asked and entry.flush_ts in {STAMP, 7000}
    assert entry.flush_ts > OTHERS_WRITE


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_a_refused_flush_tickets_the_timestamp_that_covered_it(flavor: str, wrote_it: str) -> None:
    """The ticket of a call whose Flush was refused is visible at the cover's timestamp,
    taken after the call began: every write acknowledged before it, by anyone."""
    server = FakeServer(Window())
    client = server.client()
    machine = prepare(client, wrote_it, None, 10.0, client.flush_sync_policy, identify=True)
    ticket = through(flavor, machine, client).ticket
    assert ticket is not None and ticket.covers == "all"
    assert ticket.collections[0].visible_ts == STAMP
