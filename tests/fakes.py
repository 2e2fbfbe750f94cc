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
        names = getattr(request, "collection_names", None) or [request.collection_name]
        self.sent.append((method, tuple(names)))
        return FakeCall(self, method, request)

    def client(self) -> Any:
        """A client whose connection has a sync stub and a ``grpc.aio`` stub on this server."""
        handler = SimpleNamespace(_stub=SyncStub(self), _async_stub=AioStub(self))
        return SimpleNamespace(_get_connection=lambda: handler)


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
