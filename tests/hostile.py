"""Hostile servers for the edge tests: small, on 127.0.0.1 (free ports), always stopped.

Two kinds:

* ``HostileTcp``: a TCP listener that never speaks gRPC. ``silent`` accepts and
  reads but never writes (a hung server: the HTTP/2 handshake never completes),
  ``reset`` accepts and resets the connection at once, ``garbage`` answers every
  connection with bytes that are not HTTP/2.
* ``FakeMilvus``: a real gRPC ``MilvusService`` that completes pymilvus's
  handshake (``Connect``) and then answers the flush RPCs (``Flush``,
  ``GetFlushState``, ``HasCollection``, ``ShowCollections``) as its
  ``behaviour`` says; see ``BEHAVIOURS``.

Every handler that waits does so on an event that ``close()`` sets, and for at
most ``_MAX_HOLD`` seconds, so nothing outlives a test.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from pymilvus.grpc_gen import common_pb2, milvus_pb2

from .proxy import TcpServer, grpc_server

_SERVICE = "milvus.proto.milvus.MilvusService"
_MAX_HOLD = 60.0  # no handler or connection is held longer than this

#: What a ``FakeMilvus`` does with the flush RPCs.
BEHAVIOURS = {
    "never_answers": "accepts every flush RPC and never replies",
    "garbage": "replies with bytes that are not a protobuf message",
    "status_1": "answers status code 1 with a reason that is not a restart (Milvus Lite's way)",
    "not_ready": 'answers status code 1 "service not ready" forever',
    "denied": "aborts every flush RPC with PERMISSION_DENIED",
    "never_flushed": "flushes, but GetFlushState never says flushed",
    "flush_refused": "lists its collections, then answers Flush with status 65535",
}

#: Lite's reason for any unexpected failure, with its code 1.
LITE_FAILURE = "invalid database name: 'x/y'"


class HostileTcp(TcpServer):
    """A TCP server that never speaks gRPC (module docstring)."""

    def __init__(self, mode: str, port: int = 0) -> None:
        if mode not in ("silent", "reset", "garbage"):
            raise ValueError(mode)
        self.mode = mode
        super().__init__(port)

    def serve(self, conn: socket.socket) -> None:
        if self.mode == "reset":  # RST instead of FIN: the client sees a reset
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return
        self.keep(conn)
        conn.settimeout(_MAX_HOLD)
        with contextlib.suppress(OSError):
            if self.mode == "garbage":
                conn.sendall(b"\x00garbage, not HTTP/2\r\n" * 64)
            while not self._closed.is_set() and conn.recv(65536):
                pass  # read and drop: the client sees an open, silent connection


class FakeMilvus:
    """A gRPC MilvusService on 127.0.0.1 that misbehaves as ``behaviour`` says.

    Attributes:
        calls: the flush RPCs received, by method name, in order.
        metadata: the invocation metadata of the last flush RPC.
    """

    def __init__(self, behaviour: str, collections: tuple[str, ...] = ("c0", "c1")) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(behaviour)
        self.behaviour = behaviour
        self.collections = collections
        self.calls: list[str] = []
        self.metadata: dict[str, str] = {}
        self._closed = threading.Event()
        handlers = {
            "Connect": self._unary(self._connect, milvus_pb2.ConnectRequest),
            **{
                method: self._unary(self._flush_rpc(method, reply), request)
                for method, request, reply in _FLUSH_RPCS
            },
        }
        self._server, self.port = grpc_server(
            (grpc.method_handlers_generic_handler(_SERVICE, handlers),)
        )

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed.set()
        self._server.stop(grace=None).wait(5)

    def _unary(self, handler: Callable[[Any, Any], Any], request: Any) -> Any:
        garbage = self.behaviour == "garbage"
        return grpc.unary_unary_rpc_method_handler(
            handler,
            request_deserializer=request.FromString,
            response_serializer=(lambda reply: reply) if garbage else _serialize,
        )

    def _connect(self, request: Any, context: Any) -> Any:
        reply = milvus_pb2.ConnectResponse(status=common_pb2.Status(), identifier=1)
        return reply.SerializeToString() if self.behaviour == "garbage" else reply

    def _flush_rpc(self, method: str, reply_type: Any) -> Callable[[Any, Any], Any]:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            self.calls.append(method)
            self.metadata = {key: str(value) for key, value in context.invocation_metadata()}
            behaviour = self.behaviour
            if behaviour == "never_answers":
                self._closed.wait(_MAX_HOLD)
                context.abort(grpc.StatusCode.UNAVAILABLE, "fake server closed")
            if behaviour == "garbage":
                return b"\xff\xff\xff\xff not a protobuf"
            if behaviour == "denied":
                context.abort(grpc.StatusCode.PERMISSION_DENIED, f"Privilege{method}: denied")
            if behaviour in ("status_1", "not_ready"):
                reason = LITE_FAILURE if behaviour == "status_1" else "service not ready"
                return reply_type(status=common_pb2.Status(code=1, reason=reason))
            if behaviour == "flush_refused" and method == "Flush":
                return reply_type(status=common_pb2.Status(code=65535, reason="boom"))
            return self._answer(method, request)

        return handle

    def _answer(self, method: str, request: Any) -> Any:
        """``never_flushed``: a server that seals but never completes."""
        if method == "Flush":
            reply = milvus_pb2.FlushResponse(status=common_pb2.Status(), db_name="default")
            for i, name in enumerate(request.collection_names):
                reply.coll_segIDs[name].data.extend([100 + i])
                reply.coll_flush_ts[name] = 1
            return reply
        if method == "GetFlushState":
            return milvus_pb2.GetFlushStateResponse(status=common_pb2.Status(), flushed=False)
        if method == "HasCollection":
            return milvus_pb2.BoolResponse(status=common_pb2.Status(), value=True)
        return milvus_pb2.ShowCollectionsResponse(
            status=common_pb2.Status(), collection_names=list(self.collections)
        )


def _serialize(reply: Any) -> bytes:
    return reply if isinstance(reply, bytes) else bytes(reply.SerializeToString())


_FLUSH_RPCS = (
    ("Flush", milvus_pb2.FlushRequest, milvus_pb2.FlushResponse),
    ("GetFlushState", milvus_pb2.GetFlushStateRequest, milvus_pb2.GetFlushStateResponse),
    ("HasCollection", milvus_pb2.HasCollectionRequest, milvus_pb2.BoolResponse),
    ("ShowCollections", milvus_pb2.ShowCollectionsRequest, milvus_pb2.ShowCollectionsResponse),
)


@contextlib.contextmanager
def hostile(kind: str) -> Iterator[HostileTcp | FakeMilvus]:
    """A hostile server by name (``tcp:<mode>`` or a ``FakeMilvus`` behaviour), always closed."""
    server: HostileTcp | FakeMilvus = (
        HostileTcp(kind.split(":", 1)[1]) if kind.startswith("tcp:") else FakeMilvus(kind)
    )
    try:
        yield server
    finally:
        server.close()
