"""Newer Milvus behaviour in front of a real Milvus 2.3.5: gRPC interposers on
127.0.0.1 (a free port) that forward every ``MilvusService`` call to the real server
unchanged (bytes in, bytes out, metadata kept) except the ones they answer as the
newer line would, from the Milvus sources (``docs/milvus.md`` says what, with the paths).

``RateLimitingInterposer``: 2.4.5+'s per-collection Flush limit. Milvus 2.3.5 has
only a global Flush limit; 2.4.5 made the default
``quotaAndLimits.flushRate.collection.max = 0.1``: each collection may be flushed
once per 10 s. Flush is checked first as the sources do
(``internal/proxy/simple_rate_limiter.go``, ``pkg/util/ratelimitutil/limiter.go``):

* every collection of the request is checked; if any was flushed less than
  ``1 / rate`` seconds ago, the whole request is rejected and the others'
  allowance is refunded (nothing is spent);
* the rejection is status code 8, legacy error_code 49 (RateLimit), reason
  ``request is rejected by grpc RateLimiter middleware, please retry later: rate
  limit exceeded[rate=0.1]``.

``BroadcastingInterposer``: 2.6.8+'s FlushAll (module docstring there).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any, TypeVar

import grpc
import pymilvus
import pytest
from pymilvus.grpc_gen import common_pb2, milvus_pb2, milvus_pb2_grpc

from pymilvus_flushsync._requests import flush_state_request, sealed_state
from pymilvus_flushsync._response import CollectionFlushState

from .fakes import base36
from .proxy import grpc_server

#: A mark for tests through an interposer: pymilvus 2.5's connect handshake fails
#: through one (DEADLINE_EXCEEDED at once; not investigated). They run under 2.6 and 3.0.
THROUGH_AN_INTERPOSER = pytest.mark.skipif(
    pymilvus.__version__.startswith("2.5."),
    reason="pymilvus 2.5's connect handshake fails through the interposer",
)

_SERVICE = "/milvus.proto.milvus.MilvusService/"
#: Metadata gRPC sets itself: not forwarded.
_TRANSPORT = {"user-agent", "te", "content-type", "grpc-accept-encoding", "grpc-encoding"}


def rate_limited_reason(rate: float) -> str:
    return (
        "request is rejected by grpc RateLimiter middleware, please retry later: "
        f"rate limit exceeded[rate={rate:g}]"
    )


_Interposer = TypeVar("_Interposer", bound="Interposer")


#: When the server at host:port last accepted a Flush sent through an interposer of this
#: process (its reply's arrival, ``time.monotonic``): the server-wide limit's window
#: started no later (``tests/processes.whole_window``).
_accepted_flush: dict[str, float] = {}


class Interposer(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Forwards every call to ``target`` (host:port) but those ``intercept`` answers."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.calls: Counter[str] = Counter()  # method -> calls that reached the server
        self._counting = threading.Lock()
        self._channel = grpc.insecure_channel(target)
        self._server, self.port = grpc_server((self,), workers=32)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def last_accepted_flush(self) -> float | None:
        """When the server last accepted a Flush through an interposer (``time.monotonic``)."""
        return _accepted_flush.get(self.target)

    def close(self) -> None:
        self._server.stop(grace=None).wait(5)
        self._channel.close()

    def __enter__(self: _Interposer) -> _Interposer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def intercept(
        self, method: str, request: bytes, metadata: tuple[tuple[str, str], ...]
    ) -> bytes | None:
        """The serialized reply to ``method`` (its name alone), or ``None`` to forward."""
        return None

    def service(self, details: Any) -> Any:
        method: str = details.method
        if not method.startswith(_SERVICE):
            return None
        name = method[len(_SERVICE) :]
        forward = self._channel.unary_unary(method)  # bytes in, bytes out

        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            metadata = tuple(
                (key, value)
                for key, value in context.invocation_metadata()
                if key not in _TRANSPORT and not key.startswith(":")
            )
            answered = self.intercept(name, request, metadata)
            if answered is not None:
                return answered
            with self._counting:
                self.calls[name] += 1
            remaining = context.time_remaining()
            try:
                reply = bytes(forward(request, timeout=remaining, metadata=metadata))
            except grpc.RpcError as error:
                context.abort(error.code(), error.details())
                raise  # unreachable: abort raises
            if name == "Flush":
                status = milvus_pb2.FlushResponse.FromString(reply).status
                if status.code == 0 and status.error_code == 0:
                    _accepted_flush[self.target] = time.monotonic()
            return reply

        return grpc.unary_unary_rpc_method_handler(handle)


class RateLimitingInterposer(Interposer):
    """Limits Flush per collection (module docstring).

    ``flushes`` records the Flush requests that reached the server, ``rejected`` those
    refused here.
    """

    def __init__(self, target: str, rate: float = 0.1) -> None:
        self.rate = rate
        self.flushes: list[tuple[float, tuple[str, ...]]] = []
        self.rejected: list[tuple[float, tuple[str, ...]]] = []
        self._next: dict[tuple[str, str], float] = {}  # (db, collection) -> next allowed
        self._lock = threading.Lock()
        super().__init__(target)

    def intercept(
        self, method: str, request: bytes, metadata: tuple[tuple[str, str], ...]
    ) -> bytes | None:
        if method != "Flush":
            return None
        return self._admit(milvus_pb2.FlushRequest.FromString(request), metadata)

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


#: Milvus 2.3.5's DML channels: ``rootCoord.dmlChannelNum`` (16) named ``<prefix>_<i>``.
_DML_CHANNELS = 16


_NOT_FOUND = 100  # "collection not found": dropped by another client meanwhile
_FAIL = object()  # ``_call``: no stand-in for a dropped collection's reply
_GONE = milvus_pb2.GetFlushStateResponse(flushed=True)
_NO_CHANNELS = milvus_pb2.DescribeCollectionResponse()


class BroadcastingInterposer(Interposer):
    """Milvus 2.6.8+'s FlushAll protocol, in front of a real Milvus 2.3.5.

    What a 2.6.8 server does (``internal/proxy/task_flush_all_streaming.go``,
    ``internal/datacoord/services.go``; ``docs/milvus.md``), and how
    this stands in for it:

    * ``GetVersion`` answers ``v2.6.8``.
    * ``FlushAll`` ignores ``db_name`` and ``flush_targets`` and seals every
      collection of every database: one message per physical channel, whose time
      tick (property ``_tt``, base 36) the reply carries in ``flush_all_msgs``
      (``flush_all_ts``: the greatest). Here: one real Flush per database, and each
      physical channel's tick is the greatest flush timestamp of the collections on
      it (the overall greatest for a channel without one).
    * ``GetFlushAllState`` with ``flush_all_tss`` answers whether every channel's
      checkpoint has passed its tick; a channel of a collection missing from the map
      is a parameter error (code 1100). Milvus's own integration test
      (``tests/integration/flushall``) checks that every segment is then Flushed.
      Here: "flushed" once the real server says so of every collection the FlushAll
      sealed (GetFlushState on its segments and flush timestamp). With the legacy
      ``flush_all_ts`` alone it is forwarded to the real server, whose answer is the
      old checkpoint comparison.

    A collection dropped meanwhile (by another client of the server) is skipped, as a
    broadcast to the channels skips it: its Flush is sent again without it, and its
    state counts as flushed (Milvus counts a dropped segment as flushed).

    ``flush_alls``, ``client_flushes`` and ``tick_polls`` count what clients sent.
    """

    version = "v2.6.8"

    def __init__(self, target: str) -> None:
        self.flush_alls = 0
        self.client_flushes = 0
        self.tick_polls = 0
        #: the ticks of each FlushAll answered -> (database, state) of what it sealed
        self._sealed: dict[tuple[tuple[str, int], ...], list[tuple[str, CollectionFlushState]]] = {}
        self._lock = threading.Lock()
        super().__init__(target)
        self._stub = milvus_pb2_grpc.MilvusServiceStub(self._channel)

    def intercept(
        self, method: str, request: bytes, metadata: tuple[tuple[str, str], ...]
    ) -> bytes | None:
        reply: Any = None
        if method == "GetVersion":
            reply = milvus_pb2.GetVersionResponse(status=_ok(), version=self.version)
        elif method == "Flush":
            with self._lock:
                self.client_flushes += 1
        elif method == "FlushAll":
            reply = self._flush_all()
        elif method == "GetFlushAllState":
            asked = milvus_pb2.GetFlushAllStateRequest.FromString(request)
            if asked.flush_all_tss:
                reply = self._flush_all_state(dict(asked.flush_all_tss))
        return None if reply is None else bytes(reply.SerializeToString())

    def _flush_all(self) -> Any:
        with self._lock:
            self.flush_alls += 1
        sealed: list[tuple[str, CollectionFlushState]] = []
        ticks: dict[str, int] = {}
        for db in self._call("ListDatabases", milvus_pb2.ListDatabasesRequest()).db_names:
            flushed, names = None, []
            while flushed is None:  # until no collection was dropped in between
                request = milvus_pb2.ShowCollectionsRequest(db_name=db)
                names = list(self._call("ShowCollections", request, db).collection_names)
                if not names:
                    break
                request = milvus_pb2.FlushRequest(db_name=db, collection_names=names)
                flushed = self._call("Flush", request, db, gone=None)
            for name in names:
                state = sealed_state(CollectionFlushState(name), flushed)
                sealed.append((db, state))
                for channel in self._channels(db, name):
                    ticks[channel] = max(ticks.get(channel, 0), state.flush_ts)
        top = max(ticks.values(), default=0)
        prefixes = {channel.rsplit("_", 1)[0] for channel in ticks}
        for prefix in prefixes:
            for i in range(_DML_CHANNELS):
                ticks.setdefault(f"{prefix}_{i}", top)
        reply = milvus_pb2.FlushAllResponse(status=_ok(), flush_all_ts=top)
        for channel, tick in ticks.items():
            message = reply.flush_all_msgs[channel]
            message.properties.update({"_tt": base36(tick), "_vc": channel})
        with self._lock:
            self._sealed[tuple(sorted(ticks.items()))] = sealed
        return reply

    def _flush_all_state(self, ticks: dict[str, int]) -> Any:
        for db in self._call("ListDatabases", milvus_pb2.ListDatabasesRequest()).db_names:
            request = milvus_pb2.ShowCollectionsRequest(db_name=db)
            for name in self._call("ShowCollections", request, db).collection_names:
                missing = [c for c in self._channels(db, name) if not ticks.get(c)]
                if missing:
                    reason = f"FlushAllTs not found for pchannel {missing[0]}"
                    return milvus_pb2.GetFlushAllStateResponse(
                        status=common_pb2.Status(code=1100, error_code=5, reason=reason)
                    )
        with self._lock:
            self.tick_polls += 1
            sealed = self._sealed.get(tuple(sorted(ticks.items())))
        if sealed is None:  # not a FlushAll of ours: the real server's old comparison
            request = milvus_pb2.GetFlushAllStateRequest(flush_all_ts=max(ticks.values()))
            return self._call("GetFlushAllState", request)
        flushed = all(
            self._call("GetFlushState", flush_state_request(db, state), db, gone=_GONE).flushed
            for db, state in sealed
        )
        return milvus_pb2.GetFlushAllStateResponse(status=_ok(), flushed=flushed)

    def _channels(self, db: str, name: str) -> list[str]:
        """The physical channels of ``name`` (none, once it is dropped)."""
        request = milvus_pb2.DescribeCollectionRequest(db_name=db, collection_name=name)
        reply = self._call("DescribeCollection", request, db, gone=_NO_CHANNELS)
        return list(reply.physical_channel_names)

    def _call(self, method: str, request: Any, db: str = "", gone: Any = _FAIL) -> Any:
        """The real server's reply; ``gone`` instead, if given, for "collection not found"."""
        metadata = (("dbname", db),) if db else None
        reply = getattr(self._stub, method)(request, timeout=30, metadata=metadata)
        if reply.status.code == _NOT_FOUND and gone is not _FAIL:
            return gone
        if reply.status.code != 0:
            raise RuntimeError(f"{method}: {reply.status}")
        return reply


def _ok() -> Any:
    return common_pb2.Status()
