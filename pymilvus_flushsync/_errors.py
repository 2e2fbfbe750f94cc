"""Errors raised by ``flush_sync``, and the one place where failures are classified.

Everything ``flush_sync`` raises is one of pymilvus's own exception types::

    MilvusException                      (pymilvus.exceptions)
    ├── ParamError                       bad arguments, raised before any RPC
    ├── MilvusUnavailableException       the server could not be reached (gRPC UNAVAILABLE)
    └── FlushTimeoutError (+TimeoutError) the one deadline passed; .response and .pending

A server status with a non-zero code becomes a ``MilvusException`` carrying that
code and the server's reason; a gRPC-level failure (PERMISSION_DENIED,
UNAUTHENTICATED, ...) becomes a ``MilvusException`` whose ``code`` is the gRPC
status code's number and whose message starts with its name. A bare
``grpc.RpcError`` never escapes.

``Failure`` is the classified form the core works with: the exception to raise
(or to chain as ``__cause__``), whether retrying may help, and whether the
server may have lost the Flush (it was unreachable, or is restarting), so Flush
must be sent again.

Retried while the deadline allows: a rate limit (status 8, legacy 49) or a
request limit (4); a server that is starting or has lost a node (2, 901, 902,
904, 905; and 1 or 65535 only when the reason says so: Milvus Lite answers 1
for any unexpected failure, Milvus 2.3 loses codes across internal hops);
gRPC UNAVAILABLE and a per-RPC DEADLINE_EXCEEDED, or a status saying the server's own
context for the RPC ran out ("context deadline exceeded", "TaskCondition context
Done"). Everything else
(PERMISSION_DENIED, UNAUTHENTICATED, a missing collection, a reply that cannot
be decoded, ...) is final at once. Without a deadline, an unbroken run of
retries ends after ``FlushPolicy.retry_budget`` seconds with the last error
(``_core``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from pymilvus.exceptions import ErrorCode, MilvusException, MilvusUnavailableException
from pymilvus.grpc_gen import common_pb2

from ._response import FlushStatus

if TYPE_CHECKING:
    from ._response import FlushSyncResponse

__all__ = [
    "Failure",
    "FlushTimeoutError",
    "classify_exception",
    "classify_rpc_error",
    "classify_status",
    "collection_not_loaded",
    "database_not_found",
    "index_failed",
    "interrupted",
    "status_of",
    "ticket_mismatch",
    "undecodable",
]

#: Milvus status codes that mean "try again later" (8: rate limit exceeded;
#: 4: request limit exceeded).
RETRYABLE_STATUS_CODES = frozenset({int(ErrorCode.RATE_LIMIT), 4})
#: The legacy ``error_code`` enum value for a rate limit (``RateLimit``).
_LEGACY_RATE_LIMIT = 49
#: Milvus status codes of a server that is (re)starting or has lost a node:
#: service unavailable, node not found / offline / not match / not available.
#: What the client asked for may be lost, so Flush is sent again.
TRANSIENT_STATUS_CODES = frozenset({2, 901, 902, 904, 905})
#: Codes that are transient only with one of ``_TRANSIENT_REASONS``: 1 is
#: Milvus's "service not ready" but Milvus Lite's answer to *any* unexpected
#: failure (e.g. an invalid database name); 65535 ("unexpected error") is what
#: Milvus 2.3 sends when an error crossed an internal gRPC hop and lost its
#: code, e.g. "node not match" while a restarted data node registers.
_TRANSIENT_IF_SAID = frozenset({1, 65535})
_TRANSIENT_REASONS = (
    "service not ready",
    "service unavailable",
    "node not found",
    "node offline",
    "node not match",
    "node not available",
)
#: What a server says when its own context for the RPC ran out: Go's
#: ``context.DeadlineExceeded`` (2.3.5's proxy, code 10001, when a FlushAll outlived
#: the timeout the call sent), or, from a request still queued in the proxy when it
#: did, 2.3.5's "proxy TaskCondition context Done" (code 65535, measured: forty
#: databases' ShowCollections at once; ``internal/proxy/condition.go``). As gRPC's
#: DEADLINE_EXCEEDED: retried while the deadline allows, so that the call's own
#: deadline raises ``FlushTimeoutError`` (CI run 17).
_SERVER_DEADLINE = ("context deadline exceeded", "taskcondition context done")
#: How a rate limit names its rate: "... rate limit exceeded[rate=0.1]".
_RATE = re.compile(r"\[rate=([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)\]")
#: gRPC codes that mean "the server is (temporarily) out of reach".
_UNREACHABLE = frozenset({grpc.StatusCode.UNAVAILABLE})
#: gRPC codes worth another try while the deadline allows.
_RETRYABLE_GRPC = _UNREACHABLE | {grpc.StatusCode.DEADLINE_EXCEEDED}
#: Milvus's status code for a collection that does not exist.
COLLECTION_NOT_FOUND = int(ErrorCode.COLLECTION_NOT_FOUND)
#: What Milvus answers about a collection another client has just dropped: "not found"
#: (code 100), or, its channels gone first, "channel not found" (``merr.ErrChannelNotFound``,
#: code 500; 2.3.5's FlushAll wraps it in a retry error of code 65535: ``gone``).
GONE_CODES = frozenset({COLLECTION_NOT_FOUND, 500})
_CHANNEL_NOT_FOUND = "channel not found"


def gone(error: MilvusException) -> bool:
    """Whether ``error`` may say a collection was dropped meanwhile (``GONE_CODES``)."""
    return error.code in GONE_CODES or _CHANNEL_NOT_FOUND in error.message


#: Milvus's status code for a database that does not exist (``merr.ErrDatabaseNotFound``).
DATABASE_NOT_FOUND = 800
#: How Milvus Lite says so instead, with code 6 to Flush and 1 to ShowCollections.
_LITE_NO_DATABASE = re.compile(r"database '(.*)' does not exist")
#: gRPC INTERNAL's number: the code of a reply that cannot be decoded (as the
#: sync gRPC stub reports it: "Exception deserializing response!").
_UNDECODABLE = int(grpc.StatusCode.INTERNAL.value[0])
#: The longest reason a log line shows (Milvus 2.3 puts Go stack traces in some).
_LOG_REASON_CHARS = 300


class FlushTimeoutError(MilvusException, TimeoutError):  # type: ignore[misc]
    """The deadline of a ``flush_sync`` call passed before every collection was flushed.

    Attributes:
        response: a ``FlushSyncResponse`` with ``flushed=False`` and the
            per-collection progress made so far.
        pending: the collection names that were not yet reported flushed.

    The last underlying error (a per-RPC deadline, a rate limit, an unreachable
    server), if any, is chained as ``__cause__``; a last try that the deadline itself
    cut short is the cause only when nothing failed before it (``_core``).
    """

    def __init__(self, message: str, response: FlushSyncResponse, pending: tuple[str, ...]):
        super().__init__(code=int(ErrorCode.UNEXPECTED_ERROR), message=message)  # type: ignore[call-arg]
        self.response = response
        self.pending = pending

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle (multiprocessing, Celery, Ray) rebuilds it from these, cause included
        return (
            type(self),
            (self.message, self.response, self.pending),
            vars(self) | {"__cause__": self.__cause__},
        )


@dataclass(frozen=True)
class Failure:
    """A classified failure of one RPC."""

    error: MilvusException
    retryable: bool = False
    reflush: bool = False
    rate: float | None = None  # a rate limit's allowed requests per second, when it says
    #: the server will not serve this RPC to this caller (gRPC UNIMPLEMENTED, or
    #: PERMISSION_DENIED: e.g. FlushAll needs a privilege a Flush does not)
    declined: bool = False

    def describe(self, what: str = "") -> str:
        """A one-line reason for logs: the first line, at most a few hundred characters;
        without the `` (what)`` that ends the messages of gRPC errors, if ``what`` is given."""
        reason = str(self.error.message)
        reason = reason.removesuffix(f" ({what})") if what else reason
        lines = reason.strip().splitlines() or [""]
        reason = lines[0][:_LOG_REASON_CHARS] + (
            "..." if len(lines) > 1 or len(lines[0]) > _LOG_REASON_CHARS else ""
        )
        return f"code={self.error.code}: {reason}"


def classify_status(status: Any, what: str) -> Failure | None:
    """Classify a Milvus ``common.Status``; ``None`` when it reports success.

    Args:
        status: the ``status`` field of a Milvus response.
        what: the RPC and its subject, for the message (``"Flush ['a']"``).
    """
    code = int(status.code)
    legacy = int(status.error_code)
    if code == 0 and legacy == 0:
        return None
    reason = status.reason or f"{what} failed"
    if missing := _LITE_NO_DATABASE.fullmatch(reason):  # one code and message everywhere
        return Failure(database_not_found(missing.group(1)))
    error = MilvusException(code=code or legacy, message=reason, compatible_code=legacy)
    if code in RETRYABLE_STATUS_CODES or legacy == _LEGACY_RATE_LIMIT:
        rate = _RATE.search(reason)
        return Failure(error, retryable=True, rate=float(rate.group(1)) if rate else None)
    transient = code in TRANSIENT_STATUS_CODES or (
        code in _TRANSIENT_IF_SAID and any(text in reason for text in _TRANSIENT_REASONS)
    )
    timed_out = any(text in reason.lower() for text in _SERVER_DEADLINE)
    return Failure(error, retryable=transient or timed_out, reflush=transient)


_DECLINED = frozenset({grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.PERMISSION_DENIED})


def classify_rpc_error(exc: grpc.RpcError, what: str) -> Failure:
    """Turn a ``grpc.RpcError`` (sync or ``grpc.aio``) into a classified ``Failure``."""
    code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
    details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    message = f"{code.name}: {details} ({what})"
    number = int(code.value[0])
    error_type = MilvusUnavailableException if code in _UNREACHABLE else MilvusException
    error = error_type(code=number, message=message)
    return Failure(
        error,
        retryable=code in _RETRYABLE_GRPC,
        reflush=code in _UNREACHABLE,
        declined=code in _DECLINED,
    )


def classify_exception(exc: Exception, what: str) -> Failure:
    """Any other exception an RPC raised: final. A ``MilvusException`` (e.g. the
    client was closed: "should create connection first") is kept as it is; anything
    else becomes one, with the original chained as ``__cause__``."""
    if isinstance(exc, MilvusException):
        return Failure(exc)
    error = MilvusException(
        code=int(ErrorCode.UNEXPECTED_ERROR), message=f"{type(exc).__name__}: {exc} ({what})"
    )
    error.__cause__ = exc
    return Failure(error)


def interrupted(exc: BaseException) -> MilvusException:
    """What a machine raises after a step was cut short (Ctrl-C, task cancellation, an
    error of the caller's own code): it is FAILED and will not resume."""
    error = MilvusException(
        code=int(ErrorCode.UNEXPECTED_ERROR),
        message=f"flush_sync was interrupted ({type(exc).__name__}) and cannot go on",
    )
    error.__cause__ = exc
    return error


def undecodable(what: str) -> Failure:
    """A reply that is not the message the RPC returns (``grpc.aio`` gives ``None``
    where the sync stub raises INTERNAL): final, as the sync stub reports it."""
    message = f"INTERNAL: the server's reply could not be decoded ({what})"
    return Failure(MilvusException(code=_UNDECODABLE, message=message))


def collection_not_found(name: str, db_name: str) -> MilvusException:
    """The error a real Milvus server gives for Flush on a missing collection."""
    return MilvusException(
        code=COLLECTION_NOT_FOUND,
        message=f"collection not found[database={db_name}][collection={name}]",
        compatible_code=4,  # common.ErrorCode.CollectionNotExists
    )


#: Milvus's code for a collection that is not loaded (``merr.ErrCollectionNotLoaded``).
COLLECTION_NOT_LOADED = 101
#: Milvus's code for a collection without an index (``merr.ErrIndexNotFound``): for
#: DescribeIndex, an answer (nothing to build), not a failure.
INDEX_NOT_FOUND = 700


def collection_not_loaded(name: str, db_name: str) -> MilvusException:
    """``until="loaded"`` on a collection that is not loaded (or was released)."""
    return MilvusException(
        code=COLLECTION_NOT_LOADED,
        message=f"collection not loaded[database={db_name}][collection={name}]: load it "
        "first (load_collection), or wait until persisted or indexed",
    )


def index_failed(name: str, index: str, reason: str) -> MilvusException:
    """An index of ``name`` failed to build: ``until="indexed"`` cannot be reached."""
    return MilvusException(
        code=int(ErrorCode.UNEXPECTED_ERROR),
        message=f"index build failed[collection={name}][index={index}]: {reason}",
        compatible_code=21,  # common.ErrorCode.BuildIndexError
    )


def ticket_mismatch(
    name: str, db_name: str, expected: tuple[int, int], found: tuple[int, int]
) -> MilvusException:
    """A ticket's collection is not the one the server has under that name: dropped
    and recreated, or another server (``_ticket``)."""
    return MilvusException(
        code=COLLECTION_NOT_FOUND,
        message=(
            f"collection not found[database={db_name}][collection={name}]: the ticket's "
            f"collection (id {expected[0]}, created {expected[1]}) is not the server's "
            f"(id {found[0]}, created {found[1]}): dropped and recreated, or another server"
        ),
        compatible_code=4,
    )


def database_not_found(db_name: str) -> MilvusException:
    """The error a real Milvus server gives for a database that does not exist."""
    return MilvusException(
        code=DATABASE_NOT_FOUND, message=f"database not found[database={db_name}]"
    )


def status_of(error: MilvusException) -> FlushStatus:
    """An error as the Node SDK's ``status``: its code, the legacy code's name, its
    message."""
    if isinstance(error, FlushTimeoutError):
        return error.response.status
    legacy = int(getattr(error, "compatible_code", 0) or 0)
    known = legacy != 0 and legacy in common_pb2.ErrorCode.values()
    name = common_pb2.ErrorCode.Name(legacy) if known else "UnexpectedError"
    return FlushStatus(code=int(error.code), error_code=name, reason=str(error.message))
