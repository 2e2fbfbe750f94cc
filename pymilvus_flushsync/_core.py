"""The flush-and-wait decision maker: no sockets, no sleeps, no threads.

Theory
======
Milvus persists a collection in two steps. ``Flush(collection_names)`` seals the
growing segments and answers at once with, per collection, the sealed segment
IDs (``coll_segIDs``) and a flush timestamp (``coll_flush_ts``). The data is
persisted when ``GetFlushState(segmentIDs, flush_ts, collection_name, db_name)``
answers ``flushed=True``. Milvus Lite flushes synchronously and leaves its
FlushResponse maps empty; it also skips collections that do not exist. So a
name missing from ``coll_segIDs`` is checked with ``HasCollection`` first, and
then polled like every other one: a real server and Lite give the same answers.

The machine holds all state of one call. A driver asks it what to do next,
performs it, and reports back; it decides nothing::

    while not isinstance(action := machine.next_action(), Done):   # may raise
        with machine.expect(action) as outcome:    # an RPC's exception -> machine.fail()
            Sleep   -> sleep(action.seconds)
            SendRpc -> outcome.reply = [replies of action.invoke(stub), sent at once]
    return action.response

``stub`` is read from the client for every RPC (``client._get_connection()``):
pymilvus swaps it on reconnect, and once the client is closed that raises,
which ends the call with that ``MilvusException``.

The sync driver (``_sync.run``) and the asyncio driver (``_async.run``) are that
loop, one with ``await``.

Deadline. One absolute monotonic deadline, made once (``None`` -> infinity).
Every RPC is sent with ``min(remaining, policy.rpc_timeout)``; every sleep is
``min(delay, remaining)``; when nothing is left, ``next_action`` raises
``FlushTimeoutError`` with the last failure as ``__cause__``. Errors, too, are
raised only from ``next_action``: ``receive`` and ``fail`` never raise. Without a
deadline, an unbroken run of retried failures (no successful reply in between)
ends once it has lasted ``policy.retry_budget`` seconds: the last error is raised.

Polling. One pending collection is watched at a time. When it reports flushed
all the others are polled at once, in one round of concurrent RPCs, without a
sleep: the same Flush sealed them, so they are usually done too. The cost of
waiting is thus one collection's polls (plus one round), whatever the number
of collections. *When* to poll: a server completes flushes on its time tick, so
once the ``TickModel`` (``_ticks``) of the endpoint is trusted, polls go just
after the ticks; until then, on ``policy.poll`` (a fast start that backs off to
a cap). Each wait that saw "not yet" then "flushed" teaches the model the
bracket in between.

Retries. A rate-limited Flush (status 8), an unreachable server (UNAVAILABLE),
a server that is restarting ("service not ready", "node not match", ...) and an
RPC that hit its own per-RPC cap (not the deadline) are retried after
``policy.retry`` back-off (``_errors`` holds the list). After the server was
unreachable or restarting, Flush is sent again for the collections still
pending (it is idempotent) and the wait goes on with the new flush timestamps:
a restarted server may never complete the old ones. Anything else is final at
once: a reply that is not the RPC's message type (undecodable), and any other
exception of the I/O, become a ``MilvusException`` (``_errors``).

Every collection of a database. Made with ``names=None``, the machine first asks
the server for the database's collections (``ShowCollections``), under the same
deadline, and then flushes those; none at all is done at once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
from pymilvus.exceptions import MilvusException
from pymilvus.grpc_gen import milvus_pb2

from ._errors import (
    Failure,
    FlushTimeoutError,
    classify_exception,
    classify_rpc_error,
    classify_status,
    collection_not_found,
    undecodable,
)
from ._response import CollectionFlushState, FlushStatus, FlushSyncResponse
from ._ticks import TickModel

__all__ = [
    "Backoff",
    "Deadline",
    "Done",
    "FlushMachine",
    "FlushPolicy",
    "SendRpc",
    "Sleep",
]

logger = logging.getLogger("pymilvus_flushsync")

_DEFAULT_DB = "default"

#: The reply message type of every RPC the machine sends.
_REPLY_TYPES: dict[str, type] = {
    "Flush": milvus_pb2.FlushResponse,
    "GetFlushState": milvus_pb2.GetFlushStateResponse,
    "HasCollection": milvus_pb2.BoolResponse,
    "ShowCollections": milvus_pb2.ShowCollectionsResponse,
}


@dataclass(frozen=True)
class Deadline:
    """An absolute point on a monotonic clock; ``math.inf`` for "no deadline"."""

    at: float

    @classmethod
    def after(cls, timeout: float | None, now: float) -> Deadline:
        """The deadline ``timeout`` seconds after ``now`` (``None``: never)."""
        return cls(math.inf if timeout is None else now + timeout)

    def remaining(self, now: float) -> float:
        """Seconds left at ``now`` (negative once passed, ``inf`` without a deadline)."""
        return self.at - now


@dataclass(frozen=True)
class Backoff:
    """Exponential delays: ``initial * growth**attempt``, capped at ``cap`` seconds."""

    initial: float
    growth: float
    cap: float

    def __post_init__(self) -> None:
        if not (0 <= self.initial <= self.cap and self.growth >= 1 and math.isfinite(self.cap)):
            raise ValueError(f"invalid back-off {self!r}: need 0 <= initial <= cap, growth >= 1")

    def delay(self, attempt: int) -> float:
        """The delay before try ``attempt + 1`` (``attempt`` counts from 0)."""
        try:
            return min(self.cap, self.initial * self.growth**attempt)
        except OverflowError:
            return self.cap


@dataclass(frozen=True)
class FlushPolicy:
    """How ``flush_sync`` waits and retries; replace it to tune.

    Attributes:
        poll: delays between GetFlushState polls of the watched collection.
            Starts at 5 ms (a flush with nothing new is done within a few ms)
            and backs off to 45 ms, which keeps the load under about 22 polls
            per second while adding at most 45 ms (about 23 ms on average)
            after the server is done.
        retry: back-off before retrying a rate-limited or failed RPC.
        rpc_timeout: the most any one RPC may take, even with time left: a
            hung connection is then retried instead of eating the whole deadline.
        tick_period: the server's time-tick period (Milvus: 200 ms), to learn
            when flushes complete and poll then; ``None`` turns learning off.
        retry_budget: without a deadline, the longest an unbroken run of retried
            failures may last before the last error is raised (``None``: no
            limit). 120 s covers a restarting server: Milvus 2.3.5 answered
            Flush again 10 to 60 s after a restart, measured.
    """

    poll: Backoff = field(default_factory=lambda: Backoff(0.005, 1.5, 0.045))
    retry: Backoff = field(default_factory=lambda: Backoff(0.1, 2.0, 2.0))
    rpc_timeout: float = 30.0
    tick_period: float | None = 0.2
    retry_budget: float | None = 120.0


@dataclass(frozen=True)
class SendRpc:
    """Send ``request`` with ``stub.<method>(request, timeout=timeout, metadata=metadata)``."""

    method: str
    request: Any
    timeout: float | None
    metadata: tuple[tuple[str, str], ...] | None
    more: tuple[Any, ...] = ()  # further requests to the same method, sent concurrently

    @property
    def requests(self) -> tuple[Any, ...]:
        """Every request of this action, ``request`` first."""
        return (self.request, *self.more)

    def invoke(self, stub: Any, *, future: bool = False) -> list[Any]:
        """Start every request on a gRPC stub at once: sync futures (``future=True``)
        or ``grpc.aio`` awaitables, in request order."""
        method = getattr(stub, self.method)
        start = method.future if future else method
        return [
            start(request, timeout=self.timeout, metadata=self.metadata)
            for request in self.requests
        ]


@dataclass(frozen=True)
class Sleep:
    """Wait this many seconds (never past the deadline)."""

    seconds: float


@dataclass(frozen=True)
class Done:
    """Every collection is flushed: return ``response``."""

    response: FlushSyncResponse


Action = SendRpc | Sleep | Done


class Outcome:
    """Where a driver puts the replies of a ``SendRpc``, in request order (see
    ``FlushMachine.expect``)."""

    reply: Any = None


class FlushMachine:
    """The state of one ``flush_sync`` call (see the module docstring).

    Args:
        names: collection names, already checked and de-duplicated; ``None``
            for every collection of the database (listed first).
        db_name: the database to flush in; ``""`` for the server's default.
        timeout: seconds for the whole call, or ``None`` for no deadline.
        policy: poll and retry schedules.
        clock: a monotonic clock, injectable for tests.
        ticks: the endpoint's learned flush-completion phase, shared between
            calls; ``None`` polls on ``policy.poll`` only.
        since: the clock reading the deadline (and ``elapsed``) counts from, when
            the call began before the machine (the CLI connects first); default now.
    """

    def __init__(
        self,
        names: tuple[str, ...] | None,
        db_name: str,
        timeout: float | None,
        policy: FlushPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        ticks: TickModel | None = None,
        since: float | None = None,
    ) -> None:
        self._ticks = ticks
        self._db = db_name
        self._policy = policy or FlushPolicy()
        self._clock = clock
        self._start = clock() if since is None else since
        self._deadline = Deadline.after(timeout, self._start)
        self._timeout = timeout
        self._metadata = (("dbname", db_name),) if db_name else None
        self.every = names is None  # every collection of the database
        self._listing = self.every  # ShowCollections first
        self._states: dict[str, CollectionFlushState] = {}
        self._pending: list[str] = []
        self._listed(names or ())
        self._needs_flush = True
        self._flushed_once = False
        self._unchecked: list[str] = []
        self._reply_db = ""
        self._delay = 0.0
        self._poll_attempt = 0
        self._retry_attempt = 0
        self._polls = 0
        self._sweep = False  # poll every pending collection in the next round
        self._sent_at = 0.0
        self._not_yet_at: float | None = None  # send time of the watched one's last "not yet"
        self._in_flight: SendRpc | None = None
        self._last_failure: Failure | None = None
        self._failing_since: float | None = None  # start of the current run of retries
        self._fatal: MilvusException | None = None

    def _listed(self, names: tuple[str, ...] | list[str]) -> None:
        self._states = {name: CollectionFlushState(name) for name in names}
        self._pending = list(names)

    # -- what next? ---------------------------------------------------------------

    def next_action(self) -> Action:
        """The next step for the driver; raises when the call has failed or timed out."""
        if self._in_flight is not None:
            raise RuntimeError(f"{self._in_flight.method} is still waiting for its reply")
        if self._fatal is not None:
            raise self._fatal
        if not self._pending and not self._listing:
            return Done(self._response(flushed=True))
        now = self._clock()
        remaining = self._deadline.remaining(now)
        if remaining <= 0:
            raise self.timeout_error()
        budget_left = self._retry_budget_left(now)
        if budget_left <= 0:
            raise self._out_of_retries()
        remaining = min(remaining, budget_left)
        if self._delay > 0:
            seconds, self._delay = min(self._delay, remaining), 0.0
            return Sleep(seconds)
        rpc_timeout = min(remaining, self._policy.rpc_timeout)
        self._in_flight = self._next_rpc(rpc_timeout)
        self._sent_at = self._clock()
        return self._in_flight

    def _retry_budget_left(self, now: float) -> float:
        """Without a deadline, what is left of the retry budget of a run of failures."""
        budget = self._policy.retry_budget
        if self._failing_since is None or self._timeout is not None or budget is None:
            return math.inf
        return self._failing_since + budget - now

    def _out_of_retries(self) -> MilvusException:
        assert self._last_failure is not None
        logger.warning(
            "flush_sync: giving up after %.1f s of failed retries (retry_budget); last error %s",
            self._clock() - (self._failing_since or 0.0),
            self._last_failure.describe(),
        )
        self._fatal = self._last_failure.error
        return self._fatal

    def _next_rpc(self, timeout: float) -> SendRpc:
        if self._listing:
            request: Any = milvus_pb2.ShowCollectionsRequest(db_name=self._db)
            return SendRpc("ShowCollections", request, timeout, self._metadata)
        if self._needs_flush:
            request = milvus_pb2.FlushRequest(db_name=self._db, collection_names=self._pending)
            return SendRpc("Flush", request, timeout, self._metadata)
        if self._unchecked:
            request = milvus_pb2.HasCollectionRequest(
                db_name=self._db, collection_name=self._unchecked[0]
            )
            return SendRpc("HasCollection", request, timeout, self._metadata)
        names = self._pending if self._sweep else self._pending[:1]
        self._sweep = False
        self._polls += len(names)
        first, *more = (self._flush_state_request(self._states[name]) for name in names)
        return SendRpc("GetFlushState", first, timeout, self._metadata, tuple(more))

    def _flush_state_request(self, state: CollectionFlushState) -> Any:
        return milvus_pb2.GetFlushStateRequest(
            segmentIDs=state.segment_ids,
            flush_ts=state.flush_ts,
            db_name=self._db,
            collection_name=state.name,
        )

    # -- what happened ------------------------------------------------------------

    @contextmanager
    def expect(self, action: SendRpc | Sleep) -> Iterator[Outcome]:
        """Wrap the driver's I/O for ``action``: the reply set on the outcome is
        fed to ``receive``; any ``Exception`` the I/O of a ``SendRpc`` raised, to
        ``fail`` (and not raised). ``KeyboardInterrupt`` and task cancellation
        pass through."""
        outcome = Outcome()
        if isinstance(action, Sleep):
            yield outcome
            return
        try:
            yield outcome
        except Exception as exc:
            self.fail(exc)
            return
        self.receive(outcome.reply)

    def receive(self, reply: Any) -> None:
        """Feed the reply (or the list of replies, in request order) of the last ``SendRpc``."""
        action = self._take_in_flight()
        replies = list(reply) if isinstance(reply, (list, tuple)) else [reply]
        expected = _REPLY_TYPES[action.method]
        if len(replies) != len(action.requests) or not all(
            isinstance(one, expected) for one in replies
        ):
            self._failed(undecodable(_describe(action)), _describe(action))
            return
        for one in replies:
            failure = classify_status(one.status, _describe(action))
            if failure is not None:
                self._failed(failure, _describe(action))
                return
        self._retry_attempt = 0
        self._failing_since = None
        if action.method == "ShowCollections":
            self._listing = False
            self._listed(list(dict.fromkeys(replies[0].collection_names)))
        elif action.method == "Flush":
            self._flush_done(replies[0])
        elif action.method == "HasCollection":
            self._collection_checked(action.request.collection_name, bool(replies[0].value))
        else:
            requests = action.requests
            flushed = [
                r.collection_name for r, one in zip(requests, replies, strict=True) if one.flushed
            ]
            self._flush_states(flushed, polled=len(requests))

    def fail(self, exc: Exception) -> None:
        """Feed what the last ``SendRpc`` raised: a ``grpc.RpcError`` (sync or aio) is
        classified; anything else is final (``_errors.classify_exception``)."""
        action = self._take_in_flight()
        what = _describe(action)
        classify = classify_rpc_error if isinstance(exc, grpc.RpcError) else classify_exception
        self._failed(classify(exc, what), what)

    def _take_in_flight(self) -> SendRpc:
        action, self._in_flight = self._in_flight, None
        if action is None:
            raise RuntimeError("no RPC is waiting for a reply")
        return action

    def _flush_done(self, reply: Any) -> None:
        self._needs_flush = False
        self._flushed_once = True
        self._reply_db = reply.db_name or self._reply_db
        self._unchecked = []
        for name in self._pending:
            if name in reply.coll_segIDs or name in reply.coll_flush_ts:
                self._states[name] = replace(
                    self._states[name],
                    segment_ids=_ids(reply.coll_segIDs, name),
                    flushed_segment_ids=_ids(reply.flush_coll_segIDs, name),
                    flush_ts=int(reply.coll_flush_ts.get(name, 0)),
                    seal_time=int(reply.coll_seal_times.get(name, 0)),
                )
            else:
                self._unchecked.append(name)
        self._poll_attempt = 0
        self._not_yet_at = None
        self._sweep = False
        self._delay = self._tick_delay() or 0.0

    def _collection_checked(self, name: str, exists: bool) -> None:
        if not exists:
            self._fatal = collection_not_found(name, self.db_name)
            return
        self._unchecked.remove(name)

    def _flush_states(self, flushed: list[str], polled: int) -> None:
        """The collections of the last poll round that answered "flushed"; the
        others of the ``polled`` answered "not yet"."""
        now = self._clock()
        if flushed:
            if self._ticks is not None and self._not_yet_at is not None:
                self._ticks.observe(self._not_yet_at, now)
            self._not_yet_at = None
            self._sweep = True  # the rest were sealed by the same Flush: ask them all now
        for name in flushed:
            seconds = now - self._start
            self._states[name] = replace(self._states[name], flushed=True, seconds=seconds)
            self._pending.remove(name)
            logger.debug("collection %r flushed after %.3f s", name, seconds)
        if len(flushed) < polled:
            self._not_yet_at = self._sent_at
            self._sweep = False
            self._delay = self._tick_delay() or self._policy.poll.delay(self._poll_attempt)
            self._poll_attempt += 1

    def _tick_delay(self) -> float | None:
        """Seconds until the trusted tick model's next poll time, if there is one."""
        if self._ticks is None:
            return None
        now = self._clock()
        at = self._ticks.next_poll(now)
        return None if at is None else at - now

    def _failed(self, failure: Failure, what: str) -> None:
        self._last_failure = failure
        if not failure.retryable:
            self._fatal = failure.error
            return
        if self._failing_since is None:
            self._failing_since = self._sent_at
        delay = self._policy.retry.delay(self._retry_attempt)
        if failure.reflush and self._flushed_once:
            self._needs_flush = True
        self._delay = delay
        self._retry_attempt += 1
        logger.info(
            "flush_sync: %s failed (%s); next try in %.2f s (retry %d)",
            what,
            failure.describe(what),
            delay,
            self._retry_attempt,
        )

    # -- results ------------------------------------------------------------------

    @property
    def db_name(self) -> str:
        """The database, as the server named it once it answered."""
        return self._reply_db or self._db or _DEFAULT_DB

    def remaining(self) -> float | None:
        """Seconds left before the deadline (``None`` without one; 0 once passed)."""
        left = self._deadline.remaining(self._clock())
        return None if math.isinf(left) else max(0.0, left)

    @property
    def pending(self) -> tuple[str, ...]:
        """Collections not yet reported flushed."""
        return tuple(self._pending)

    def progress(self) -> FlushSyncResponse:
        """A snapshot of the progress so far (``flushed`` is ``False`` until done)."""
        return self._response(flushed=not self._pending)

    def _response(self, flushed: bool, status: FlushStatus | None = None) -> FlushSyncResponse:
        return FlushSyncResponse(
            flushed=flushed,
            collections=self._states,
            db_name=self.db_name,
            elapsed=self._clock() - self._start,
            polls=self._polls,
            status=status or FlushStatus(),
        )

    def timeout_error(self) -> FlushTimeoutError:
        """The ``FlushTimeoutError`` for this call as it stands (the deadline passed)."""
        pending = self.pending
        message = f"flush_sync did not finish within its {self._timeout:g} s deadline; " + (
            "the collections were not yet listed"
            if self._listing
            else f"not yet flushed: {', '.join(pending)}"
        )
        if self._last_failure is not None:
            message += f"; last error: {self._last_failure.describe()}"
        response = self._response(
            flushed=False, status=FlushStatus(code=1, error_code="FlushTimeout", reason=message)
        )
        error = FlushTimeoutError(message, response, pending)
        error.__cause__ = self._last_failure.error if self._last_failure else None
        return error


def _ids(segment_map: Any, name: str) -> tuple[int, ...]:
    return tuple(int(i) for i in segment_map[name].data) if name in segment_map else ()


def _describe(action: SendRpc) -> str:
    if action.method == "ShowCollections":
        return f"ShowCollections [database {action.request.db_name or _DEFAULT_DB!r}]"
    names = [
        name
        for request in action.requests
        for name in (
            request.collection_names if action.method == "Flush" else [request.collection_name]
        )
    ]
    return f"{action.method} {names}"
