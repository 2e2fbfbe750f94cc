"""``flush_all_sync``'s stages over one fake server per line, through both drivers:
Milvus 2.6.8+'s FlushAll broadcast; on older lines one FlushAll whose timestamp
covers each database's collections, with a Flush only for what it did not seal; one
Flush per database where FlushAll is UNIMPLEMENTED (Milvus Lite)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, ClassVar

import grpc
import pytest
from pymilvus.exceptions import MilvusException
from pymilvus.grpc_gen import milvus_pb2

from pymilvus_flushsync import FlushAllSyncResponse, FlushTimeoutError, _async, _call, _sync
from pymilvus_flushsync._call import broadcasts
from pymilvus_flushsync._compat import BROADCAST_FIELDS
from pymilvus_flushsync._requests import broadcast_ticks
from pymilvus_flushsync._state import CallState, Event, IllegalMove, Phase
from pymilvus_flushsync._steps import ALL_DATABASES, UNEXPLAINED_LISTINGS

from ..fakes import POLICY, Cluster, FakeRpcError, FakeServer, base36, state_reply, status

needs_fields = pytest.mark.skipif(
    not BROADCAST_FIELDS, reason="this pymilvus's protos lack Milvus 2.6.8's FlushAll fields"
)


def flush_all(flavor: str, server: FakeServer, **kwargs: Any) -> Any:
    """flush_all_sync through one driver: its response, or the MilvusException raised."""
    args = (server.client(), kwargs.get("db_name"), kwargs.get("timeout", 10.0), POLICY)
    try:
        if flavor == "sync":
            return _sync.flush_all(*args)
        return asyncio.run(_async.flush_all(*args))
    except MilvusException as error:
        return error


def methods(server: FakeServer) -> Counter[str]:
    return Counter(method for method, _ in server.sent)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("v2.6.8", True),
        ("2.6.8", True),
        ("v2.6.12", True),
        ("v2.7.0", True),
        ("v3.0.0-beta", True),
        (" v2.6.8\n", True),
        ("v2.6.7", False),
        ("v2.5.19", False),
        ("v2.3.5", False),
        ("milvus_lite-3.2.2", False),  # Milvus Lite's answer, measured
        ("", False),
        ("unknown", False),
    ],
)
def test_which_versions_broadcast_flush_all(version: str, expected: bool) -> None:
    assert broadcasts(version) is expected


@needs_fields
def test_the_time_ticks_come_from_each_channel_message() -> None:
    reply = milvus_pb2.FlushAllResponse()
    reply.flush_all_msgs["dml_0"].properties["_tt"] = base36(456_789_012_345_678_901)
    reply.flush_all_msgs["dml_1"].properties.update({"_tt": "zz", "_vc": "dml_1_v0"})
    assert broadcast_ticks(reply) == {"dml_0": 456_789_012_345_678_901, "dml_1": 36 * 36 - 1}
    assert broadcast_ticks(milvus_pb2.FlushAllResponse(flush_all_ts=9)) == {}
    del reply.flush_all_msgs["dml_1"].properties["_tt"]
    with pytest.raises(ValueError, match="dml_1"):
        broadcast_ticks(reply)
    given = SimpleNamespace(flush_all_tss={"dml_0": 5}, flush_all_msgs=reply.flush_all_msgs)
    assert broadcast_ticks(given) == {"dml_0": 5}


@needs_fields
@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_a_broadcasting_server_gets_one_flush_all_and_polls_on_its_ticks(flavor: str) -> None:
    cluster = Cluster(polls_before_flushed=2)
    server = FakeServer(cluster)
    response = flush_all(flavor, server)
    assert isinstance(response, FlushAllSyncResponse) and response.flushed
    assert methods(server) == Counter(
        ListDatabases=1, GetVersion=1, ShowCollections=2, FlushAll=1, GetFlushAllState=3
    )
    assert cluster.flush_all_polls == [cluster.ticks] * 3  # each channel's own tick
    assert dict(response.broadcast) == cluster.ticks
    assert {db: sorted(one.collections) for db, one in response.databases.items()} == {
        "default": ["a", "b"],
        "x": ["c"],
    }
    states = [state for one in response.databases.values() for state in one.collections.values()]
    assert all(s.flushed and s.flush_ts == max(cluster.ticks.values()) for s in states)
    assert all(s.seconds is not None and 0 <= s.seconds <= response.elapsed for s in states)


def _without_a_broadcast(flavor: str, cluster: Cluster, flushes: int) -> FlushAllSyncResponse:
    """flush_all_sync on ``cluster``: one FlushAll, no state of a broadcast, ``flushes``
    Flush RPCs; collections a and b of the default database in the response."""
    server = FakeServer(cluster)
    response = flush_all(flavor, server)
    assert isinstance(response, FlushAllSyncResponse) and not response.broadcast
    sent = methods(server)
    assert (sent["FlushAll"], sent["GetFlushAllState"], sent["Flush"]) == (1, 0, flushes)
    assert sorted(response.databases["default"].collections) == ["a", "b"]
    return response


@pytest.mark.parametrize("flavor", ["sync", "async"])
@pytest.mark.parametrize("version", ["v2.6.7", "v2.5.19", "v2.3.5"])
def test_older_lines_get_one_flush_all_that_covers_every_collection(
    flavor: str, version: str
) -> None:
    cluster = Cluster(version=version)
    response = _without_a_broadcast(flavor, cluster, flushes=0)
    states = [state for one in response.databases.values() for state in one.collections.values()]
    flush_all_ts = max(cluster.ticks.values())
    assert all(s.flushed and s.covered and s.flush_ts == flush_all_ts for s in states)
    assert cluster.checked_at == {flush_all_ts}  # covered at the FlushAll's timestamp


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_a_collection_the_flush_all_missed_gets_a_flush_of_its_own(flavor: str) -> None:
    server = FakeServer(Cluster(version="v2.3.5", missed=frozenset({"c"})))
    started = time.monotonic()
    response = flush_all(flavor, server, timeout=10.0)
    took = time.monotonic() - started
    assert isinstance(response, FlushAllSyncResponse) and response.flushed
    assert [names for m, names in server.sent if m == "Flush"] == [("c",)]  # after its grace
    assert POLICY.flush_all_grace <= took < POLICY.flush_all_grace + 2.0
    assert not response.databases["x"].collections["c"].covered
    assert response.databases["default"].collections["a"].covered


@pytest.mark.parametrize("flavor", ["sync", "async"])
@pytest.mark.parametrize("refusal", ["unimplemented", "permission denied"])
def test_where_flush_all_is_refused_each_database_gets_a_flush(flavor: str, refusal: str) -> None:
    """Milvus Lite has no FlushAll; a user may lack FlushAll's privilege but not Flush's."""
    cluster = Cluster(version="milvus_lite-3.2.2" if refusal == "unimplemented" else "v2.3.5")
    if refusal == "permission denied":

        def denied(request: Any) -> Any:
            raise FakeRpcError(grpc.StatusCode.PERMISSION_DENIED)

        cluster.on_FlushAll = denied  # type: ignore[method-assign]
    _without_a_broadcast(flavor, cluster, flushes=2)


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_a_server_without_databases_flushes_the_clients_own(flavor: str) -> None:
    """Milvus Lite 2.x answers ListDatabases UNIMPLEMENTED: it has one database."""
    cluster = Cluster(version="milvus_lite-2.4.10", databases={"default": ["a"]})

    def unimplemented(request: Any) -> Any:
        raise FakeRpcError(grpc.StatusCode.UNIMPLEMENTED)

    cluster.on_ListDatabases = unimplemented  # type: ignore[method-assign]
    server = FakeServer(cluster)
    response = flush_all(flavor, server)
    assert isinstance(response, FlushAllSyncResponse) and response.flushed
    assert {db: list(one.collections) for db, one in response.databases.items()} == {
        "default": ["a"]
    }
    assert methods(server)["Flush"] == 1


@needs_fields
@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_a_flush_all_reply_without_channel_messages_is_covered_per_database(
    flavor: str,
) -> None:
    cluster = Cluster()
    cluster.broadcasts = lambda: False  # type: ignore[method-assign]  # says 2.6.8, is not
    server = FakeServer(cluster)
    response = flush_all(flavor, server)
    assert isinstance(response, FlushAllSyncResponse) and not response.broadcast
    sent = methods(server)
    assert (sent["FlushAll"], sent["GetFlushAllState"], sent["Flush"]) == (1, 0, 0)
    assert all(one.flushed for one in response.databases.values())
    assert sorted(response.databases["x"].collections) == ["c"]


@needs_fields
@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_db_name_never_broadcasts(flavor: str) -> None:
    server = FakeServer(Cluster())
    response = flush_all(flavor, server, db_name="x")
    assert isinstance(response, FlushAllSyncResponse) and list(response.databases) == ["x"]
    assert methods(server) == Counter(ShowCollections=1, Flush=1, GetFlushState=1)


@needs_fields
@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_an_unreachable_server_mid_wait_gets_flush_all_again(flavor: str) -> None:
    cluster = Cluster(polls_before_flushed=1)
    failed = False

    def answer(method: str, request: Any) -> Any:
        nonlocal failed
        if method == "GetFlushAllState" and not failed:
            failed = True
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection reset")
        return cluster(method, request)

    server = FakeServer(answer)
    response = flush_all(flavor, server)
    assert isinstance(response, FlushAllSyncResponse) and response.flushed
    assert methods(server)["FlushAll"] == 2  # a restarted server may never finish the first


@needs_fields
@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_the_deadline_names_every_listed_collection(flavor: str) -> None:
    server = FakeServer(Cluster(polls_before_flushed=10**9))
    started = time.monotonic()
    error = flush_all(flavor, server, timeout=0.2)
    assert isinstance(error, FlushTimeoutError)
    assert time.monotonic() - started < 0.2 + 0.25
    assert sorted(error.pending) == ["a", "b", "c"]
    assert "not yet flushed: " in str(error)


@pytest.mark.parametrize("version", ["v2.3.5", "v2.6.8"])
@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_a_flush_all_that_outlives_the_deadline_names_every_listed_collection(
    flavor: str, version: str
) -> None:
    # 2.3.5's FlushAll seals every collection of the server in turn, and answers its
    # own "context deadline exceeded" when that outlives the RPC's timeout (CI stop 34)
    cluster = Cluster(version=version)

    def answer(method: str, request: Any) -> Any:
        if method == "FlushAll":
            timed_out = status(10001, "context deadline exceeded")
            return milvus_pb2.FlushAllResponse(status=timed_out)
        return cluster(method, request)

    error = flush_all(flavor, FakeServer(answer), timeout=0.2)
    assert isinstance(error, FlushTimeoutError)
    assert sorted(error.pending) == ["a", "b", "c"]
    assert "context deadline exceeded" in str(error.__cause__)


@pytest.mark.parametrize("version", ["v2.3.5", "milvus_lite-3.2.2"])
@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_a_deadline_while_every_database_waits_names_the_collections_of_each(
    flavor: str, version: str
) -> None:
    # each database is its own machine; the first to see the deadline named only its own
    cluster = Cluster(version=version)

    def answer(method: str, request: Any) -> Any:
        return state_reply(False) if method == "GetFlushState" else cluster(method, request)

    error = flush_all(flavor, FakeServer(answer), timeout=0.2)
    assert isinstance(error, FlushTimeoutError)
    assert sorted(error.pending) == ["a", "b", "c"]
    assert str(error).count("not yet flushed: ") == 1
    assert error.response.status.reason == error.message


@pytest.mark.parametrize("version", ["v2.3.5", "v2.6.8"])
@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_a_deadline_while_listing_names_what_was_listed(flavor: str, version: str) -> None:
    """Database x never answers its ShowCollections (retried until the deadline); the
    default database listed a and b: the timeout names them, and counts x."""
    cluster = Cluster(version=version)

    def answer(method: str, request: Any) -> Any:
        if method == "ShowCollections" and request.db_name == "x":
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection reset")
        return cluster(method, request)

    error = flush_all(flavor, FakeServer(answer), timeout=0.2)
    assert isinstance(error, FlushTimeoutError)
    assert error.pending == ("a", "b")
    assert "the collections of 1 of 2 databases were not yet listed" in str(error)
    assert "connection reset" in str(error.__cause__)


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_a_database_not_yet_listed_again_is_named_as_first_listed(flavor: str) -> None:
    """2.3.5: after the FlushAll each database is listed again; x's second listing
    never comes back: c, which the first listing found, is still named."""
    cluster = Cluster(version="v2.3.5")
    listings: Counter[str] = Counter()

    def answer(method: str, request: Any) -> Any:
        if method == "ShowCollections":
            listings[request.db_name] += 1
            if request.db_name == "x" and listings["x"] > 1:
                raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection reset")
        return state_reply(False) if method == "GetFlushState" else cluster(method, request)

    error = flush_all(flavor, FakeServer(answer), timeout=0.2)
    assert isinstance(error, FlushTimeoutError)
    assert sorted(error.pending) == ["a", "b", "c"]
    assert "not yet listed" not in str(error)


@needs_fields
@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_a_channel_message_without_a_time_tick_is_final(flavor: str) -> None:
    cluster = Cluster()

    def answer(method: str, request: Any) -> Any:
        reply = cluster(method, request)
        if method == "FlushAll":
            del reply.flush_all_msgs["dml_1"].properties["_tt"]
        return reply

    server = FakeServer(answer)
    error = flush_all(flavor, server)
    assert isinstance(error, MilvusException) and "dml_1 has no time tick" in str(error)
    assert methods(server)["GetFlushAllState"] == 0


@pytest.mark.parametrize("flavor", ["sync", "async"])
@pytest.mark.parametrize("version", ["v2.3.5", "v2.6.7", "milvus_lite-3.2.2"])
def test_a_collection_dropped_after_the_listing_is_left_out(flavor: str, version: str) -> None:
    """Another client drops b once flush_all_sync has listed it: b's next RPC answers
    "not found", the database is listed again, and the call flushes what is there."""
    cluster = Cluster(version=version, dropped_after_listing=frozenset({"b"}))
    response = flush_all(flavor, FakeServer(cluster))
    assert isinstance(response, FlushAllSyncResponse) and response.flushed
    assert sorted(response.databases["default"].collections) == ["a"]
    assert list(response.databases["x"].collections) == ["c"]


@pytest.mark.parametrize("flavor", ["sync", "async"])
@pytest.mark.parametrize(("refusals", "sent"), [(1, 2), (UNEXPLAINED_LISTINGS, 4)])
def test_a_flush_all_whose_sweep_met_a_drop_is_sent_again(
    flavor: str, refusals: int, sent: int
) -> None:
    """2.3.5's FlushAll answers "channel not found" (code 500 or 65535) when a collection
    is dropped during its own sweep: the call sends it again, which lists afresh, up to
    UNEXPLAINED_LISTINGS times."""
    server = FakeServer(Cluster(version="v2.3.5", flush_all_gone=refusals))
    response = flush_all(flavor, server)
    assert isinstance(response, FlushAllSyncResponse) and response.flushed
    assert methods(server)["FlushAll"] == sent


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_a_flush_all_that_keeps_answering_not_found_fails_with_its_error(flavor: str) -> None:
    server = FakeServer(Cluster(version="v2.3.5", flush_all_gone=UNEXPLAINED_LISTINGS + 1))
    error = flush_all(flavor, server)
    assert isinstance(error, MilvusException) and "channel not found" in error.message
    assert methods(server)["FlushAll"] == UNEXPLAINED_LISTINGS + 1


class _Recorded(CallState):
    """``flush_all_sync``'s state, recording each phase it moves to."""

    phases: ClassVar[list[Phase]] = []

    def move(self, event: Event) -> None:
        super().move(event)
        if self._name == "flush_all_sync":
            self.phases.append(self.phase)


def _broadcast_refused(cluster: Cluster) -> Cluster:
    cluster.broadcasts = lambda: False  # type: ignore[method-assign]  # says 2.6.8, is not
    return cluster


PATHS = [
    pytest.param(Cluster, {}, "LISTING FLUSH_ALL DONE", marks=needs_fields, id="broadcast"),
    pytest.param(
        lambda: _broadcast_refused(Cluster()), {}, "LISTING FLUSH_ALL SEALING DONE",
        marks=needs_fields, id="not broadcast",
    ),
    pytest.param(
        lambda: Cluster(version="v2.3.5"), {}, "LISTING FLUSH_ALL SEALING DONE", id="sweep",
    ),
    pytest.param(Cluster, {"db_name": "x"}, "SEALING DONE", id="db_name"),
    pytest.param(
        lambda: Cluster(version="v2.3.5", flush_all_gone=UNEXPLAINED_LISTINGS + 1), {},
        "LISTING FLUSH_ALL FAILED", id="failed",
    ),
]  # fmt: skip


@pytest.mark.parametrize("flavor", ["sync", "async"])
@pytest.mark.parametrize(("cluster", "kwargs", "path"), PATHS)
def test_flush_all_sync_moves_through_its_checked_table(
    monkeypatch: pytest.MonkeyPatch,
    flavor: str,
    cluster: Callable[[], Cluster],
    kwargs: dict[str, Any],
    path: str,
) -> None:
    monkeypatch.setattr(_call, "CallState", _Recorded)
    _Recorded.phases = []
    flush_all(flavor, FakeServer(cluster()), **kwargs)
    assert " ".join(phase.name for phase in _Recorded.phases) == path
    state = CallState("flush_all_sync", Phase.LISTING, ALL_DATABASES)
    with pytest.raises(IllegalMove):  # a move the table does not list
        state.move(Event.FLUSHED)
