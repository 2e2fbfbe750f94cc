"""Milvus 2.4.5+'s per-collection Flush rate limit, in front of a real Milvus 2.3.5.

Milvus 2.3.5 has only a global Flush limit; 2.4.5 made the default
``quotaAndLimits.flushRate.collection.max = 0.1``: each collection may be flushed
once per 10 s. ``RateLimitingInterposer`` is a gRPC server on 127.0.0.1 (a free
port) that forwards every ``MilvusService`` call to the real server unchanged
(bytes in, bytes out, metadata kept) except ``Flush``, which it checks first as
the Milvus sources do (``internal/proxy/simple_rate_limiter.go``,
``pkg/util/ratelimitutil/limiter.go``; see ``shared/MILVUS_FLUSH_FACTS.md``):

* every collection of the request is checked; if any was flushed less than
  ``1 / rate`` seconds ago, the whole request is rejected and the others'
  allowance is refunded (nothing is spent);
* the rejection is status code 8, legacy error_code 49 (RateLimit), reason
  ``request is rejected by grpc RateLimiter middleware, please retry later: rate
  limit exceeded[rate=0.1]``.

``flushes`` records the Flush requests that reached the server, ``rejected`` those
refused here.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
from pymilvus.grpc_gen import common_pb2, milvus_pb2

from .proxy import grpc_server

_SERVICE = "/milvus.proto.milvus.MilvusService/"
#: Metadata gRPC sets itself: not forwarded.
_TRANSPORT = {"user-agent", "te", "content-type", "grpc-accept-encoding", "grpc-encoding"}


def rate_limited_reason(rate: float) -> str:
    return (
        "request is rejected by grpc RateLimiter middleware, please retry later: "
        f"rate limit exceeded[rate={rate:g}]"
    )


class RateLimitingInterposer(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Forwards to ``target`` (host:port), limiting Flush per collection (module docstring)."""

    def __init__(self, target: str, rate: float = 0.1) -> None:
        self.rate = rate
        self.flushes: list[tuple[float, tuple[str, ...]]] = []
        self.rejected: list[tuple[float, tuple[str, ...]]] = []
        self._next: dict[tuple[str, str], float] = {}  # (db, collection) -> next allowed
        self._lock = threading.Lock()
        self._channel = grpc.insecure_channel(target)
        self._server, self.port = grpc_server((self,), workers=32)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.stop(grace=None).wait(5)
        self._channel.close()

    def service(self, details: Any) -> Any:
        method: str = details.method
        if not method.startswith(_SERVICE):
            return None
        forward = self._channel.unary_unary(method)  # bytes in, bytes out

        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            metadata = tuple(
                (key, value)
                for key, value in context.invocation_metadata()
                if key not in _TRANSPORT and not key.startswith(":")
            )
            if method.endswith("/Flush"):
                refused = self._admit(milvus_pb2.FlushRequest.FromString(request), metadata)
                if refused is not None:
                    return refused
            remaining = context.time_remaining()
            try:
                return bytes(forward(request, timeout=remaining, metadata=metadata))
            except grpc.RpcError as error:
                context.abort(error.code(), error.details())
                raise  # unreachable: abort raises

        return grpc.unary_unary_rpc_method_handler(handle)

    def _admit(self, request: Any, metadata: tuple[tuple[str, str], ...]) -> bytes | None:
        """``None`` if the Flush may pass (its allowance spent), else the refusal."""
        db = request.db_name or dict(metadata).get("dbname", "") or "default"
        names = tuple(request.collection_names)
        now = time.monotonic()
        with self._lock:
            if any(now < self._next.get((db, name), 0.0) for name in names):
                self.rejected.append((now, names))  # refused whole: nothing spent
                status = common_pb2.Status(
                    code=8, error_code=49, reason=rate_limited_reason(self.rate)
                )
                return bytes(milvus_pb2.FlushResponse(status=status).SerializeToString())
            for name in names:
                self._next[(db, name)] = now + 1 / self.rate
            self.flushes.append((now, names))
        return None
