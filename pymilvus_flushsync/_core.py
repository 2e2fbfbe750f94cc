"""The flush-and-wait decision maker: no sockets, no sleeps, no threads, no RPCs.

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

Phases. A ``FlushMachine`` holds all state of one call, in one ``Phase``::

    LIST  -- the database's collections -->  FLUSH          (none: DONE)
    FLUSH -- FlushResponse ------------->  CHECK          (names it did not mention)
                                       |->  POLL
    CHECK -- every name exists --------->  POLL           (missing: FAILED)
    POLL  -- a round of GetFlushState -->  POLL           (all flushed: DONE)
    any   -- retryable failure --------->  the same phase after a back-off, or
                                           FLUSH when the server may have lost it
    any   -- final failure, deadline, retry budget, an exception mid-step --> FAILED

``LIST`` (``ShowCollections``) is the first phase only for ``names=None``:
every collection of a database, listed under the same deadline.
``FlushAllMachine`` (Milvus 2.6.8+'s FlushAll, for ``flush_all_sync``) seals and
waits in two phases of its own: ``FLUSH_ALL -> POLL_ALL -> DONE``.

A driver asks what to do next, does it, and reports back; it decides nothing
and the machine starts no I/O::

    while not isinstance(action := machine.next_action(), Done):   # may raise
        with machine.expect(action) as outcome:    # an RPC's exception -> on_error
            Sleep   -> sleep(action.seconds)
            SendRpc -> outcome.reply = [stub.<method>(r) for r in action.requests]
    return action.response

The stub is read from the client for every RPC (``client._get_connection()``):
pymilvus swaps it on reconnect, and once the client is closed that raises,
which ends the call with that ``MilvusException``. The sync driver
(``_sync.run``) and the asyncio driver (``_async.run``) are that loop, one with
``await``; both cancel a round's other RPCs when one fails. With
``policy.group_commit`` they send Flush and GetFlushState through the client's
group (``_group``), which shares them among concurrent calls; each call's
machine is unchanged.

Deadline. One absolute monotonic deadline, made once (``None`` -> infinity).
Every RPC is sent with ``min(remaining, policy.rpc_timeout)``; every sleep is
``min(delay, remaining)``; when nothing is left, ``next_action`` raises
``FlushTimeoutError`` with the last failure as ``__cause__``. Errors, too, are
raised only from ``next_action``: the reply handlers never raise. Without a
deadline, an unbroken run of retried failures (no successful reply in between)
ends once it has lasted ``policy.retry_budget`` seconds: the last error is raised.

Polling (``PollSchedule``). One pending collection is watched at a time. When it
reports flushed all the others are polled at once, in one round of concurrent
RPCs, without a sleep: the same Flush sealed them, so they are usually done too.
The cost of waiting is thus one collection's polls (plus one round), whatever
the number of collections. The sweeps of one Flush spend at most one poll per
collection beyond the watched one's; past that, after a flip the next pending one
is polled at once, alone. A call's GetFlushState thus stays within the watched
one's rate (at most about 22 per second) plus two per collection. *When* to
poll: a server completes flushes on its time tick, so once the ``TickModel``
(``_ticks``) of the endpoint is trusted, polls go just after the ticks; until
then, on ``policy.poll`` (a fast start that backs off to a cap). Each wait that
saw "not yet" then "flushed" teaches the model the bracket in between; a retry in
between spoils the bracket.

Retries (``Retries``). A rate-limited Flush (status 8), an unreachable server
(UNAVAILABLE), a server that is restarting ("service not ready", "node not
match", ...) and an RPC that hit its own per-RPC cap (not the deadline) are
retried after ``policy.retry`` back-off, with full jitter so that callers who
share a rate limit do not retry in lockstep (``_errors`` holds the list). A
rate-limited Flush whose collections this process flushed recently is retried
instead when the refusal's rate lets it pass (``_group.FlushHistory``).
After the server was unreachable or restarting, Flush is sent again for the
collections still pending (it is idempotent) and the wait goes on with the new
flush timestamps: a restarted server may never complete the old ones. An RPC cut
short by the deadline itself (sent with what was left of it) says nothing of the
server: the ``FlushTimeoutError`` then has the error before it as its cause (a
"service not ready" rather than the DEADLINE_EXCEEDED of the last try), or that
DEADLINE_EXCEEDED when nothing failed before. Anything
else is final at once: a reply that is not the RPC's message type
(undecodable), and any other exception of the I/O, become a ``MilvusException``.
"""

from __future__ import annotations

import enum
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import grpc
from pymilvus.exceptions import MilvusException, MilvusUnavailableException
from pymilvus.grpc_gen import milvus_pb2

from ._errors import (
    Failure,
    FlushTimeoutError,
    classify_exception,
    classify_rpc_error,
    classify_status,
    collection_not_found,
    interrupted,
    undecodable,
)
from ._response import CollectionFlushState, FlushStatus, FlushSyncResponse
from ._ticks import TickModel

if TYPE_CHECKING:  # _group builds on this module
    from ._group import FlushHistory

__all__ = [
    "Backoff",
    "Deadline",
    "Done",
    "FlushAllMachine",
    "FlushMachine",
    "FlushPolicy",
    "Phase",
    "PollSchedule",
    "Retries",
    "SendRpc",
    "Sleep",
    "broadcast_ticks",
    "flush_state_request",
    "sealed_state",
]

logger = logging.getLogger("pymilvus_flushsync")

_DEFAULT_DB = "default"


class Phase(enum.Enum):
    """Where one call is (module docstring: the transitions)."""

    LIST = "ShowCollections"
    FLUSH = "Flush"
    CHECK = "HasCollection"
    POLL = "GetFlushState"
    FLUSH_ALL = "FlushAll"
    POLL_ALL = "GetFlushAllState"
    DONE = "done"
    FAILED = "failed"


#: The reply message type of each phase's RPC.
_REPLY_TYPES: dict[Phase, type] = {
    Phase.LIST: milvus_pb2.ShowCollectionsResponse,
    Phase.FLUSH: milvus_pb2.FlushResponse,
    Phase.CHECK: milvus_pb2.BoolResponse,
    Phase.POLL: milvus_pb2.GetFlushStateResponse,
    Phase.FLUSH_ALL: milvus_pb2.FlushAllResponse,
    Phase.POLL_ALL: milvus_pb2.GetFlushAllStateResponse,
}

#: The property of a Milvus 2.6 WAL message that holds its time tick, in base 36
#: (``pkg/streaming/util/message``: ``_tt``, ``EncodeUint64``).
_TIME_TICK = "_tt"


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
        jitter: "full jitter": each retry waits a uniformly random part of its
            back-off, so callers that share a rate limit spread out. A
            rate-limited Flush whose last accepted one is known is retried
            when the limit allows it instead (``_group``).
        group_commit: concurrent calls on one client and database share their
            Flush and GetFlushState RPCs (``_group``).
        gather: with ``group_commit``, how long a Flush waits for more callers
            to join it, only while other calls on the client are in progress.
            Threads released together arrive within about 2.5 ms (measured).
    """

    poll: Backoff = field(default_factory=lambda: Backoff(0.005, 1.5, 0.045))
    retry: Backoff = field(default_factory=lambda: Backoff(0.1, 2.0, 2.0))
    rpc_timeout: float = 30.0
    tick_period: float | None = 0.2
    retry_budget: float | None = 120.0
    jitter: bool = True
    group_commit: bool = True
    gather: float = 0.005


@dataclass(frozen=True)
class SendRpc:
    """Send every request with ``stub.<method>(request, timeout=..., metadata=...)``,
    all at once; reply with the list of replies, in request order."""

    method: str
    requests: tuple[Any, ...]
    timeout: float
    metadata: tuple[tuple[str, str], ...] | None

    @property
    def request(self) -> Any:
        """The first request (the only one but for a round of polls)."""
        return self.requests[0]


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


class Retries:
    """The retry state of one call: the back-off, the current run of failures, the last.

    Args:
        backoff: delays before the retries of one run.
        budget: seconds a run of failures may last (``None``: as long as the deadline).
        jitter: draws the delay actually waited from the back-off's (identity: none).
    """

    def __init__(
        self, backoff: Backoff, budget: float | None, jitter: Callable[[float], float]
    ) -> None:
        self._backoff = backoff
        self._budget = budget
        self._jitter = jitter
        self.attempt = 0
        self.failing_since: float | None = None  # send time of the run's first failed RPC
        self.last: Failure | None = None

    def failed(self, failure: Failure, sent_at: float) -> float:
        """A retryable failure of an RPC sent at ``sent_at``; the delay before the next try."""
        self.last = failure
        if self.failing_since is None:
            self.failing_since = sent_at
        delay = self._jitter(self._backoff.delay(self.attempt))
        self.attempt += 1
        return delay

    def succeeded(self) -> None:
        """A successful reply: the run of failures is over."""
        self.attempt = 0
        self.failing_since = None

    def budget_left(self, now: float) -> float:
        """Seconds the current run of failures may go on (``inf`` outside a run)."""
        if self.failing_since is None or self._budget is None:
            return math.inf
        return self.failing_since + self._budget - now


class PollSchedule:
    """When to poll the watched collection, and when to sweep all the pending ones.

    Args:
        backoff: delays between polls while the tick model is not trusted.
        ticks: the endpoint's learned flush-completion phase (``None``: back-off only).
    """

    def __init__(self, backoff: Backoff, ticks: TickModel | None) -> None:
        self._backoff = backoff
        self._ticks = ticks
        self._attempt = 0
        self._not_yet_at: float | None = None  # send time of the watched one's last "not yet"
        self._sweep = False
        self._allowance = 0  # polls the sweeps may still spend beyond the watched one

    def restart(self, now: float, collections: int = 1) -> float:
        """A new Flush of ``collections`` was answered: the delay before the first poll."""
        self._attempt = 0
        self._not_yet_at = None
        self._sweep = False
        self._allowance = collections
        return self._tick_delay(now) or 0.0

    def names(self, pending: list[str]) -> list[str]:
        """Who to poll in the next round: the watched one, or everyone after a flip
        while the sweeps' allowance lasts (then the next one, at once)."""
        extra = len(pending) - 1
        sweep = self._sweep and extra <= self._allowance
        self._sweep = False
        if not sweep:
            return pending[:1]
        self._allowance -= extra
        return pending

    def after_round(self, flushed: bool, waiting: bool, sent_at: float, now: float) -> float:
        """A round (sent at ``sent_at``) answered: ``flushed`` if any said so, ``waiting``
        if any did not. The delay before the next round."""
        if flushed:
            if self._ticks is not None and self._not_yet_at is not None:
                self._ticks.observe(self._not_yet_at, now)
            self._not_yet_at = None
            self._sweep = not waiting  # sealed by the same Flush: ask the rest now
        if not waiting:
            return 0.0
        self._not_yet_at = sent_at
        delay = self._tick_delay(now) or self._backoff.delay(self._attempt)
        self._attempt += 1
        return delay

    def interrupted(self) -> None:
        """A failed RPC came between two polls: no bracket may span it."""
        self._not_yet_at = None

    def _tick_delay(self, now: float) -> float | None:
        """Seconds until the trusted tick model's next poll time, if there is one."""
        if self._ticks is None:
            return None
        at = self._ticks.next_poll(now)
        return None if at is None else at - now


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
        rng: the source of the retries' jitter, injectable for tests.
        history: the endpoint's accepted Flush times, shared between calls, to
            retry a rate-limited Flush when the limit allows it.
        seal: ``False`` stops after LIST (``flush_all_sync``'s listing, when one
            FlushAll seals everything: ``FlushAllMachine``).
    """

    #: the phase that seals, and that a server which may have lost it returns to
    sealing = Phase.FLUSH

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
        rng: random.Random | None = None,
        history: FlushHistory | None = None,
        seal: bool = True,
    ) -> None:
        policy = policy or FlushPolicy()
        self._policy = policy
        self._clock = clock
        self._start = clock() if since is None else since
        self._deadline = Deadline.after(timeout, self._start)
        self._timeout = timeout
        self._db = db_name
        self._metadata = (("dbname", db_name),) if db_name else None
        draw = (rng or random.Random()).uniform
        self._retries = Retries(
            policy.retry,
            budget=policy.retry_budget if timeout is None else None,
            jitter=(lambda delay: draw(0.0, delay)) if policy.jitter else (lambda delay: delay),
        )
        self._polls = PollSchedule(policy.poll, ticks)
        self._history = history
        self.every = names is None  # every collection of the database
        self._seal = seal
        self.phase = Phase.LIST if names is None else Phase.FLUSH
        self._states: dict[str, CollectionFlushState] = {}
        self._pending: list[str] = []
        self._listed(names or ())
        self._unchecked: list[str] = []
        self._flushed_once = False
        self._reply_db = ""
        self._delay = 0.0
        self._polled = 0
        self._sent_at = 0.0
        self._in_flight: SendRpc | None = None
        self._error: MilvusException | None = None  # raised from FAILED
        self._stopped: MilvusException | None = None  # set by stop(), from any thread

    # -- what next? ---------------------------------------------------------------

    def next_action(self) -> Action:
        """The next step for the driver; raises when the call has failed or timed out."""
        if self._in_flight is not None:
            raise RuntimeError(f"{self._in_flight.method} is still waiting for its reply")
        if self._stopped is not None and self.phase is not Phase.DONE:
            self._failed(self._stopped)
        if self.phase is Phase.FAILED:
            assert self._error is not None
            raise self._error
        if self.phase is Phase.DONE:
            return Done(self._response(flushed=True))
        now = self._clock()
        remaining = self._deadline.remaining(now)
        if remaining <= 0:
            raise self._failed(self.timeout_error())
        budget_left = self._retries.budget_left(now)
        if budget_left <= 0:
            raise self._out_of_retries(now)
        left = min(remaining, budget_left)
        if self._delay > 0:
            seconds, self._delay = min(self._delay, left), 0.0
            return Sleep(seconds)
        self._in_flight = SendRpc(
            self.phase.value, self._requests(), min(left, self._policy.rpc_timeout), self._metadata
        )
        self._sent_at = self._clock()
        return self._in_flight

    def _requests(self) -> tuple[Any, ...]:
        if self.phase is Phase.LIST:
            return (milvus_pb2.ShowCollectionsRequest(db_name=self._db),)
        if self.phase is Phase.FLUSH:
            return (milvus_pb2.FlushRequest(db_name=self._db, collection_names=self._pending),)
        if self.phase is Phase.CHECK:
            name = self._unchecked[0]
            return (milvus_pb2.HasCollectionRequest(db_name=self._db, collection_name=name),)
        names = self._polls.names(self._pending)
        self._polled += len(names)
        return tuple(flush_state_request(self._db, self._states[name]) for name in names)

    # -- what happened ------------------------------------------------------------

    @contextmanager
    def expect(self, action: SendRpc | Sleep) -> Iterator[Outcome]:
        """Wrap the driver's I/O for ``action``: the reply set on the outcome goes to
        ``on_reply``, any ``Exception`` of a ``SendRpc``'s I/O to ``on_error`` (not
        raised). Anything else (``KeyboardInterrupt``, task cancellation, an error of
        a sleep) moves the machine to FAILED and goes on up, as h11 does."""
        outcome = Outcome()
        try:
            yield outcome
        except Exception as exc:
            if not isinstance(action, SendRpc):
                self._failed(interrupted(exc))
                raise
            self.on_error(exc)
            return
        except BaseException as exc:
            self._in_flight = None
            self._failed(interrupted(exc))
            raise
        if isinstance(action, SendRpc):
            self.on_reply(outcome.reply)

    def on_reply(self, reply: Any) -> None:
        """The reply (or the list of replies, in request order) of the last ``SendRpc``."""
        action = self._take_in_flight()
        what = _describe(action)
        replies = list(reply) if isinstance(reply, (list, tuple)) else [reply]
        expected = _REPLY_TYPES[self.phase]
        if len(replies) != len(action.requests) or not all(
            isinstance(one, expected) for one in replies
        ):
            self._retry_or_stop(undecodable(what), what)
            return
        for one in replies:
            failure = classify_status(one.status, what)
            if failure is not None:
                self._retry_or_stop(failure, what)
                return
        self._retries.succeeded()
        self._on_success(action, replies)

    def _on_success(self, action: SendRpc, replies: list[Any]) -> None:
        if self.phase is Phase.LIST:
            self._on_collections(replies[0])
        elif self.phase is Phase.FLUSH:
            self._on_flush(replies[0])
        elif self.phase is Phase.CHECK:
            self._on_has_collection(action.request.collection_name, bool(replies[0].value))
        else:
            self._on_flush_states(action.requests, replies)

    def on_error(self, exc: Exception) -> None:
        """What the last ``SendRpc`` raised: a ``grpc.RpcError`` (sync or aio) is
        classified; anything else is final (``_errors.classify_exception``)."""
        action = self._take_in_flight()
        if self._cut_by_deadline(exc):
            return  # next_action raises the FlushTimeoutError, caused by the last error
        what = _describe(action)
        classify = classify_rpc_error if isinstance(exc, grpc.RpcError) else classify_exception
        self._retry_or_stop(classify(exc, what), what)

    def _cut_by_deadline(self, exc: Exception) -> bool:
        """``exc`` is a DEADLINE_EXCEEDED that the call's own deadline caused (it has
        passed), and an earlier failure is the better cause (module docstring)."""
        code = getattr(exc, "code", None)
        return (
            isinstance(exc, grpc.RpcError)
            and callable(code)
            and code() == grpc.StatusCode.DEADLINE_EXCEEDED
            and self._retries.last is not None
            and self._deadline.remaining(self._clock()) <= 0
        )

    def stop(self, error: MilvusException) -> None:
        """Another part of the same request failed (``flush_all_sync``: another
        database): the next ``next_action`` raises ``error``. Safe from any thread."""
        self._stopped = error

    def _take_in_flight(self) -> SendRpc:
        action, self._in_flight = self._in_flight, None
        if action is None:
            raise RuntimeError("no RPC is waiting for a reply")
        return action

    def _on_collections(self, reply: Any) -> None:
        self._listed(list(dict.fromkeys(reply.collection_names)))
        self.phase = Phase.FLUSH if self._pending and self._seal else Phase.DONE

    def _on_flush(self, reply: Any) -> None:
        self._flushed_once = True
        if self._history is not None:
            self._history.accepted(self._db, self._pending, self._sent_at)
        self._reply_db = reply.db_name or self._reply_db
        self._unchecked = []
        for name in self._pending:
            if name in reply.coll_segIDs or name in reply.coll_flush_ts:
                self._states[name] = sealed_state(self._states[name], reply)
            else:
                self._unchecked.append(name)
        self.phase = Phase.CHECK if self._unchecked else Phase.POLL
        self._delay = self._polls.restart(self._clock(), len(self._pending))

    def _on_has_collection(self, name: str, exists: bool) -> None:
        if not exists:
            self._failed(collection_not_found(name, self.db_name))
            return
        self._unchecked.remove(name)
        if not self._unchecked:
            self.phase = Phase.POLL

    def _on_flush_states(self, requests: tuple[Any, ...], replies: list[Any]) -> None:
        now = self._clock()
        flushed = [
            r.collection_name for r, one in zip(requests, replies, strict=True) if one.flushed
        ]
        for name in flushed:
            seconds = now - self._start
            self._states[name] = replace(self._states[name], flushed=True, seconds=seconds)
            self._pending.remove(name)
            logger.debug("collection %r flushed after %.3f s", name, seconds)
        waiting = len(flushed) < len(requests)
        self._delay = self._polls.after_round(bool(flushed), waiting, self._sent_at, now)
        if not self._pending:
            self.phase = Phase.DONE

    def _retry_or_stop(self, failure: Failure, what: str) -> None:
        """A failed RPC: retried after a back-off while it may help, else FAILED."""
        if not failure.retryable:
            self._failed(failure.error)
            return
        self._polls.interrupted()
        self._delay = self._retries.failed(failure, self._sent_at)
        if failure.rate is not None and self.phase is Phase.FLUSH and self._history is not None:
            # when the limit lets the Flush pass; every caller of a batch waits until then
            at = self._history.retry_at(self._db, self._pending, failure.rate)
            if at is not None and at > self._clock():
                self._delay = at - self._clock()
        if failure.reflush and self._flushed_once:
            self.phase = self.sealing
        logger.info(
            "flush_sync: %s failed (%s); next try in %.2f s (retry %d)",
            what,
            failure.describe(what),
            self._delay,
            self._retries.attempt,
        )

    def _failed(self, error: MilvusException) -> MilvusException:
        """Move to FAILED: every later ``next_action`` raises ``error``."""
        self.phase = Phase.FAILED
        self._error = error
        return error

    def _out_of_retries(self, now: float) -> MilvusException:
        last = self._retries.last
        assert last is not None and self._retries.failing_since is not None
        logger.warning(
            "flush_sync: giving up after %.1f s of failed retries (retry_budget); last error %s",
            now - self._retries.failing_since,
            last.describe(),
        )
        return self._failed(last.error)

    def _listed(self, names: tuple[str, ...] | list[str]) -> None:
        self._states = {name: CollectionFlushState(name) for name in names}
        self._pending = list(names)

    # -- results ------------------------------------------------------------------

    @property
    def policy(self) -> FlushPolicy:
        return self._policy

    @property
    def requested_db(self) -> str:
        """The database as the caller asked for it (``""``: the server's default)."""
        return self._db

    @property
    def db_name(self) -> str:
        """The database, as the server named it once it answered."""
        return self._reply_db or self._db or _DEFAULT_DB

    def remaining(self) -> float | None:
        """Seconds left before the deadline (``None`` without one; 0 once passed)."""
        left = self._deadline.remaining(self._clock())
        return None if math.isinf(left) else max(0.0, left)

    def connect_timeout(self) -> float | None:
        """How long a driver may spend connecting: what is left of the deadline;
        without one, the retry budget (connecting is retried inside pymilvus)."""
        left = self.remaining()
        return self._policy.retry_budget if left is None else left

    def not_connected(self) -> MilvusException:
        """Connecting took all of ``connect_timeout()``: FAILED, with a
        ``FlushTimeoutError`` under a deadline, else the server is unavailable."""
        if self._timeout is not None:
            return self._failed(self.timeout_error())
        return self._failed(
            MilvusUnavailableException(
                code=2,
                message="no connection to the server within the retry budget "
                f"({self._policy.retry_budget:g} s)",
            )
        )

    @property
    def pending(self) -> tuple[str, ...]:
        """Collections not yet reported flushed."""
        return tuple(self._pending)

    def progress(self) -> FlushSyncResponse:
        """A snapshot of the progress so far (``flushed`` is ``False`` until done)."""
        return self._response(flushed=self.phase is Phase.DONE)

    def _response(self, flushed: bool, status: FlushStatus | None = None) -> FlushSyncResponse:
        return FlushSyncResponse(
            flushed=flushed,
            collections=self._states,
            db_name=self.db_name,
            elapsed=self._clock() - self._start,
            polls=self._polled,
            status=status or FlushStatus(),
        )

    def timeout_error(self) -> FlushTimeoutError:
        """The ``FlushTimeoutError`` for this call as it stands (the deadline passed)."""
        pending = self.pending
        last = self._retries.last
        message = f"flush_sync did not finish within its {self._timeout:g} s deadline; " + (
            "the collections were not yet listed"
            if self.phase is Phase.LIST
            else f"not yet flushed: {', '.join(pending)}"
        )
        if last is not None:
            message += f"; last error: {last.describe()}"
        response = self._response(flushed=False, status=FlushStatus.timed_out(message))
        error = FlushTimeoutError(message, response, pending)
        error.__cause__ = last.error if last else None
        return error


class FlushAllMachine(FlushMachine):
    """Milvus 2.6.8+'s cluster-wide FlushAll, for ``flush_all_sync`` over every database
    (why and when: docs/guarantees.md, "flush_all_sync and FlushAll").

    ``FLUSH_ALL -- FlushAllResponse --> POLL_ALL -- GetFlushAllState --> DONE``, with
    ``FlushMachine``'s deadline, retries, re-sends and poll schedule. The reply's
    per-channel messages (``flush_all_msgs``) give the time ticks that
    GetFlushAllState is asked about (``flush_all_tss``, ``broadcast_ticks``). A reply
    without them ends the machine at once with ``broadcast`` empty: the caller then
    flushes per database (``_call.AllDatabases``).

    Args:
        names: the collections the call reports (listed before, across databases);
            a ``FlushTimeoutError`` names them as pending.
        timeout, policy, and the keywords: as ``FlushMachine``'s.
    """

    sealing = Phase.FLUSH_ALL

    def __init__(
        self,
        names: tuple[str, ...],
        timeout: float | None,
        policy: FlushPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(names, "", timeout, policy, **kwargs)
        self.phase = Phase.FLUSH_ALL
        #: physical channel -> time tick of its FlushAll message (empty: not broadcast)
        self.broadcast: dict[str, int] = {}

    def _requests(self) -> tuple[Any, ...]:
        if self.phase is Phase.FLUSH_ALL:
            return (milvus_pb2.FlushAllRequest(),)
        self._polled += 1
        return (milvus_pb2.GetFlushAllStateRequest(flush_all_tss=self.broadcast),)

    def _on_success(self, action: SendRpc, replies: list[Any]) -> None:
        reply = replies[0]
        if self.phase is Phase.FLUSH_ALL:
            self._flushed_once = True
            try:
                self.broadcast = broadcast_ticks(reply)
            except ValueError as error:
                self._failed(undecodable(f"{_describe(action)}: {error}").error)
                return
            self.phase = Phase.POLL_ALL if self.broadcast else Phase.DONE
            self._delay = self._polls.restart(self._clock())
            return
        flushed = bool(reply.flushed)
        now = self._clock()
        self._delay = self._polls.after_round(flushed, not flushed, self._sent_at, now)
        if flushed:
            seconds = now - self._start
            flush_ts = max(self.broadcast.values())
            for name in self._pending:
                self._states[name] = replace(
                    self._states[name], flush_ts=flush_ts, flushed=True, seconds=seconds
                )
            self._pending = []
            self.phase = Phase.DONE


def broadcast_ticks(reply: Any) -> dict[str, int]:
    """A FlushAllResponse's ``flush_all_msgs`` as ``flush_all_tss``: physical channel ->
    its message's time tick (``ValueError`` if a message has none). A reply that
    carries ``flush_all_tss`` itself (so does one revision of Milvus's own FlushAll
    test) gives those."""
    given = getattr(reply, "flush_all_tss", None)
    if given:
        return {channel: int(tick) for channel, tick in given.items()}
    ticks: dict[str, int] = {}
    for channel, message in (getattr(reply, "flush_all_msgs", None) or {}).items():
        tick = message.properties.get(_TIME_TICK)
        if tick is None:
            raise ValueError(f"the FlushAll message of {channel} has no time tick")
        ticks[channel] = int(tick, 36)
    return ticks


def sealed_state(state: CollectionFlushState, reply: Any) -> CollectionFlushState:
    """``state`` once the FlushResponse ``reply``, which names its collection, sealed it."""
    name = state.name
    return replace(
        state,
        segment_ids=_ids(reply.coll_segIDs, name),
        flushed_segment_ids=_ids(reply.flush_coll_segIDs, name),
        flush_ts=int(reply.coll_flush_ts.get(name, 0)),
        seal_time=int(reply.coll_seal_times.get(name, 0)),
    )


def flush_state_request(db_name: str, state: CollectionFlushState) -> Any:
    """The GetFlushState that asks whether ``state``'s Flush is done. The one builder:
    calls that ask the same question send the same bytes (``_group`` shares them)."""
    return milvus_pb2.GetFlushStateRequest(
        segmentIDs=state.segment_ids,
        flush_ts=state.flush_ts,
        db_name=db_name,
        collection_name=state.name,
    )


def _ids(segment_map: Any, name: str) -> tuple[int, ...]:
    return tuple(int(i) for i in segment_map[name].data) if name in segment_map else ()


def _describe(action: SendRpc) -> str:
    if action.method == "ShowCollections":
        return f"ShowCollections [database {action.request.db_name or _DEFAULT_DB!r}]"
    if action.method == "Flush":
        return f"Flush {list(action.request.collection_names)}"
    if action.method in (Phase.FLUSH_ALL.value, Phase.POLL_ALL.value):
        return action.method
    return f"{action.method} {[request.collection_name for request in action.requests]}"
