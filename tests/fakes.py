"""Fakes for the rare faults: a controllable clock, gRPC errors, Milvus replies, and an
in-memory server behind a sync and a ``grpc.aio`` stub (the drivers' tests)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Generator
from types import SimpleNamespace
from typing import Any

import grpc
from pymilvus.grpc_gen import common_pb2, milvus_pb2

from pymilvus_flushsync import Backoff, FlushPolicy, FlushSyncResponse, _async, _sync
from pymilvus_flushsync._core import Done, FlushMachine, SendRpc, Sleep

#: The tests' one policy: no jitter, no tick learning, short schedules.
POLICY = FlushPolicy(
    poll=Backoff(0.005, 2.0, 0.04),
    retry=Backoff(0.1, 2.0, 1.0),
    rpc_timeout=5.0,
    retry_budget=30.0,
    tick_period=None,
    jitter=False,
    flush_all_grace=0.3,
)


def through(flavor: str, machine: FlushMachine, client: Any) -> FlushSyncResponse:
    """Run ``machine`` to its end on ``client`` through the sync or the asyncio driver
    (``flavor``), with real sleeps."""
    if flavor == "sync":
        return _sync.run(machine, client)
    return asyncio.run(_async.run(machine, client))


def drive(
    machine: FlushMachine,
    answer: Callable[[SendRpc], Any],
    sleep: Callable[[float], object] = lambda seconds: None,
    *,
    limit: int = 10_000,
) -> FlushSyncResponse:
    """Drive ``machine`` to its end as a driver does: ``sleep`` for every ``Sleep``
    (e.g. a ``FakeClock``'s ``advance``), ``answer(action)`` for the reply to every RPC
    (what it raises is the RPC's error). Raises what the machine raises, and
    ``AssertionError`` if it has not ended after ``limit`` actions."""
    for _ in range(limit):
        action = machine.next_action()
        if isinstance(action, Done):
            return action.response
        with machine.expect(action) as outcome:
            if isinstance(action, Sleep):
                sleep(action.seconds)
            else:
                outcome.reply = answer(action)
    raise AssertionError(f"the machine did not end within {limit} actions")


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeRpcError(grpc.RpcError):  # type: ignore[misc]  # grpc is untyped
    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__(details)
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def status(code: int = 0, reason: str = "", error_code: int = 0) -> common_pb2.Status:
    return common_pb2.Status(code=code, reason=reason, error_code=error_code)


def flush_reply(
    segments: dict[str, list[int]] | None = None, flush_ts: int = 1000, db_name: str = "default"
) -> milvus_pb2.FlushResponse:
    """A real server's FlushResponse; ``segments=None`` gives Lite's empty maps."""
    reply = milvus_pb2.FlushResponse(status=status(), db_name=db_name if segments else "")
    for name, ids in (segments or {}).items():
        reply.coll_segIDs[name].data.extend(ids)
        reply.flush_coll_segIDs[name].data.extend([7])
        reply.coll_flush_ts[name] = flush_ts
        reply.coll_seal_times[name] = 42
    return reply


def state_reply(flushed: bool, code: int = 0, reason: str = "") -> milvus_pb2.GetFlushStateResponse:
    return milvus_pb2.GetFlushStateResponse(status=status(code, reason), flushed=flushed)


def has_reply(exists: bool) -> milvus_pb2.BoolResponse:
    return milvus_pb2.BoolResponse(status=status(), value=exists)


def stamp_reply(timestamp: int = 5000) -> milvus_pb2.AllocTimestampResponse:
    return milvus_pb2.AllocTimestampResponse(status=status(), timestamp=timestamp)


def segments_reply(states: dict[int, int]) -> Any:
    """GetPersistentSegmentInfo: segment ID -> ``common.SegmentState`` (3 Sealed, ...)."""
    reply = milvus_pb2.GetPersistentSegmentInfoResponse(status=status())
    for segment, state in states.items():
        reply.infos.add(segmentID=segment, state=state, num_rows=10)
    return reply


def describe_reply(collection_id: int = 11, created: int = 22) -> Any:
    return milvus_pb2.DescribeCollectionResponse(
        status=status(), collectionID=collection_id, created_timestamp=created
    )


RATE_LIMITED = milvus_pb2.FlushResponse(
    status=status(8, "rate limit exceeded[rate=0.1]", error_code=49)
)


Answer = Callable[[str, Any], Any]  # (method, request) -> reply; raises a grpc.RpcError


class FakeServer:
    """Answers every RPC with ``answer``; records what was sent and what was cancelled
    before it was answered. Sync calls are answered when first read, or, ``threaded``,
    on a thread of their own at once (as gRPC does: then readers may time out)."""

    def __init__(self, answer: Answer, *, threaded: bool = False) -> None:
        self.answer = answer
        self.threaded = threaded
        self.sent: list[tuple[str, tuple[str, ...]]] = []
        self.cancelled_in_flight = 0
        self.held: set[str] = set()  # async: polls of these are never answered

    def start(self, method: str, request: Any) -> FakeCall:
        names = getattr(request, "collection_names", None) or [
            getattr(request, "collection_name", "")
        ]
        self.sent.append((method, tuple(names)))
        return FakeCall(self, method, request)

    def client(self) -> Any:
        """A client whose connection has a sync stub and a ``grpc.aio`` stub on this server."""
        handler = SimpleNamespace(_stub=SyncStub(self), _async_stub=AioStub(self))
        return SimpleNamespace(_get_connection=lambda: handler, flush_sync_policy=POLICY)


class FakeCall:
    """One RPC: a sync future (``result``) and a ``grpc.aio`` call (awaitable) at once."""

    def __init__(self, server: FakeServer, method: str, request: Any) -> None:
        self._server, self._method, self._request = server, method, request
        self._done = False
        self._answered = threading.Event()
        self._lock = threading.Lock()
        self._outcome: tuple[Any, grpc.RpcError | None] = (None, None)
        self._callbacks: list[Callable[[FakeCall], object]] = []
        if server.threaded:
            threading.Thread(target=self._answer, daemon=True).start()

    def _answer(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        try:
            self._outcome = (self._server.answer(self._method, self._request), None)
        except grpc.RpcError as error:
            self._outcome = (None, error)
        self._answered.set()
        for callback in self._callbacks:
            callback(self)

    def result(self, timeout: float | None = None) -> Any:
        """The answer (asked of the server by the first reader unless ``threaded``)."""
        if not self._server.threaded:
            self._answer()
        if not self._answered.wait(timeout):
            raise grpc.FutureTimeoutError()
        reply, error = self._outcome
        if error is not None:
            raise error
        return reply

    def add_done_callback(self, callback: Callable[[FakeCall], object]) -> None:
        self._callbacks.append(callback)
        if self._answered.is_set():
            callback(self)

    def __await__(self) -> Generator[Any, None, Any]:
        """Answered on the next loop iteration, or never for a held collection;
        cancelled as ``grpc.aio`` cancels a call whose awaiting task is cancelled."""
        try:
            yield from asyncio.sleep(0).__await__()
            if getattr(self._request, "collection_name", None) in self._server.held:
                yield from asyncio.Event().wait().__await__()
        except asyncio.CancelledError:
            self.cancel()
            raise
        return self.result()

    def cancel(self) -> bool:
        with self._lock:
            if self._done:
                return False
            self._done = True
        self._server.cancelled_in_flight += 1
        return True


class SyncStub:
    def __init__(self, server: FakeServer) -> None:
        self._server = server

    def __getattr__(self, method: str) -> Any:
        def future(request: Any, timeout: float, metadata: Any) -> FakeCall:
            return self._server.start(method, request)

        return SimpleNamespace(future=future)


class AioStub:
    def __init__(self, server: FakeServer) -> None:
        self._server = server

    def __getattr__(self, method: str) -> Any:
        return lambda request, timeout, metadata: self._server.start(method, request)


def base36(value: int) -> str:
    """Milvus's ``message.EncodeUint64`` (``strconv.FormatUint(value, 36)``)."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        value, rest = divmod(value, 36)
        out = digits[rest] + out
        if not value:
            return out


NOT_FOUND = "collection not found"


class Cluster:
    """Milvus's whole-server RPCs as a fake answers them, per server line: ``version``
    (GetVersion), ``databases`` (ListDatabases, ShowCollections), and from 2.6.8 a
    FlushAll broadcast to ``channels`` (``internal/proxy/task_flush_all_streaming.go``:
    one message per physical channel, its time tick in the ``_tt`` property, base 36;
    ``flush_all_ts`` is the greatest) whose GetFlushAllState wants those ticks
    (``flush_all_tss``; a channel missing is a parameter error, code 1100). It flips to
    flushed after ``polls_before_flushed`` polls. Older lines answer FlushAll with
    ``flush_all_ts`` alone; Milvus Lite answers it UNIMPLEMENTED. Flush and GetFlushState
    seal and flip at once, but for the collections in ``missed``: the FlushAll did not
    seal them (2.3.5 was measured to miss one created just before it), so a check at a
    timestamp fails until a Flush names them. Each collection has one sealed segment.
    Those in ``dropped_after_listing`` are dropped right after their first listing, as
    another client may: then every RPC naming them answers "not found" (code 100),
    but Lite's Flush, which skips them. The first ``flush_all_gone`` FlushAlls answer
    "channel not found" (code 500 or 65535), as 2.3.5's does when a collection is
    dropped during its own sweep."""

    def __init__(
        self,
        version: str = "v2.6.8",
        databases: dict[str, list[str]] | None = None,
        channels: tuple[str, ...] = ("dml_0", "dml_1"),
        polls_before_flushed: int = 2,
        missed: frozenset[str] = frozenset(),
        *,
        dropped_after_listing: frozenset[str] = frozenset(),
        flush_all_gone: int = 0,
    ) -> None:
        self.version = version
        self.flush_all_gone = flush_all_gone  # FlushAlls that answer "channel not found" first
        self.missed = set(missed)
        self.to_drop = set(dropped_after_listing)
        self.checked_at: set[int] = set()  # GetFlushState's flush_ts without segments
        self.databases = databases if databases is not None else {"default": ["a", "b"], "x": ["c"]}
        self.channels = channels
        self.polls_before_flushed = polls_before_flushed
        self.ticks = {channel: 450_000_000_000_000_000 + i for i, channel in enumerate(channels)}
        self.flush_all_polls: list[dict[str, int]] = []

    def broadcasts(self) -> bool:
        return self.version == "v2.6.8"

    def __call__(self, method: str, request: Any) -> Any:
        answer: Callable[[Any], Any] = getattr(self, f"on_{method}")
        return answer(request)

    def on_GetVersion(self, request: Any) -> Any:
        return milvus_pb2.GetVersionResponse(status=status(), version=self.version)

    def on_ListDatabases(self, request: Any) -> Any:
        return milvus_pb2.ListDatabasesResponse(status=status(), db_names=list(self.databases))

    def on_ShowCollections(self, request: Any) -> Any:
        names = self.databases[request.db_name or "default"]
        reply = milvus_pb2.ShowCollectionsResponse(status=status(), collection_names=names)
        self.databases[request.db_name or "default"] = [n for n in names if n not in self.to_drop]
        self.to_drop -= set(names)
        return reply

    def _exists(self, name: str) -> bool:
        return any(name in names for names in self.databases.values())

    def on_HasCollection(self, request: Any) -> Any:
        return has_reply(self._exists(request.collection_name))

    def on_Flush(self, request: Any) -> Any:
        gone = [name for name in request.collection_names if not self._exists(name)]
        if gone and not self.version.startswith("milvus_lite"):
            return milvus_pb2.FlushResponse(status=status(100, NOT_FOUND))
        self.missed -= set(request.collection_names)
        segments = {name: [1] for name in request.collection_names if name not in gone}
        return flush_reply(segments, db_name=request.db_name or "default")

    def on_GetFlushState(self, request: Any) -> Any:
        if not self._exists(request.collection_name):
            return state_reply(False, 100, NOT_FOUND)
        if not request.segmentIDs:
            self.checked_at.add(request.flush_ts)
        unsealed = not request.segmentIDs and request.collection_name in self.missed
        return state_reply(not unsealed)

    def on_GetPersistentSegmentInfo(self, request: Any) -> Any:
        return segments_reply({1: 3})  # Sealed

    def on_FlushAll(self, request: Any) -> Any:
        if self.version.startswith("milvus_lite"):
            raise FakeRpcError(grpc.StatusCode.UNIMPLEMENTED)
        if self.flush_all_gone:  # as 2.3.5 answered, one way or the other
            self.flush_all_gone -= 1
            code, attempt = (500, 1) if self.flush_all_gone % 2 else (65535, 0)
            reason = f"attempt #{attempt}: channel not found[channel=by-dev-rootcoord-dml_5_4v0]"
            return milvus_pb2.FlushAllResponse(status=status(code, reason))
        reply = milvus_pb2.FlushAllResponse(status=status(), flush_all_ts=max(self.ticks.values()))
        if self.broadcasts():
            for channel, tick in self.ticks.items():
                reply.flush_all_msgs[channel].properties["_tt"] = base36(tick)
        return reply

    def on_GetFlushAllState(self, request: Any) -> Any:
        asked = dict(request.flush_all_tss)
        self.flush_all_polls.append(asked)
        if any(channel not in asked for channel in self.channels):
            reason = "FlushAllTs not found for pchannel"
            return milvus_pb2.GetFlushAllStateResponse(status=status(1100, reason))
        flushed = len(self.flush_all_polls) > self.polls_before_flushed
        return milvus_pb2.GetFlushAllStateResponse(status=status(), flushed=flushed)
