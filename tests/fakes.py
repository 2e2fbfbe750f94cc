"""Fakes for the rare faults: a controllable clock, gRPC errors, Milvus replies."""

from __future__ import annotations

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
