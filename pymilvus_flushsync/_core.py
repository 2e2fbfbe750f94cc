"""The flush-and-wait decision maker: no sockets, no sleeps, no threads, no RPCs.

Theory
======
A ``FlushMachine`` holds all state of one call: its ``Table`` and phase (what it
sends and where each answer leads: ``_steps``, where the tables are drawn), its
``Turn`` (whether it owes a sleep, is ready to send, or awaits a reply), its
``Retries`` and ``PollSchedule`` (``_schedule``) and its ``Progress``
(``_progress``). A driver asks what to do next, does it, and reports back; it
decides nothing and the machine starts no I/O::

    while not isinstance(action := machine.next_action(), Done):   # may raise
        with machine.expect(action) as outcome:    # an RPC's exception -> on_error
            Sleep   -> sleep(action.seconds)
            SendRpc -> outcome.reply = [stub.<method>(r) for r in action.requests]
    return action.response

The stub is read from the client for every RPC (``client._get_connection()``):
pymilvus swaps it on reconnect, and once the client is closed that raises,
which ends the call with that ``MilvusException``. The sync driver
(``_sync.run``) and the asyncio driver (``_async.run``) are that loop, one with
``await``; both cancel a round's other RPCs when one fails. An RPC whose
``shared`` is set may go through the client's group (``_group``), which shares
it among concurrent calls; each call's machine is unchanged.

Deadline. One absolute monotonic deadline, made once (``None`` -> infinity).
Every RPC is sent with ``min(remaining, policy.rpc_timeout)``; every sleep is
``min(delay, remaining)``; when nothing is left, ``next_action`` raises
``FlushTimeoutError`` with the last failure as ``__cause__``. Errors, too, are
raised only from ``next_action``: the reply handlers never raise. A failed RPC
goes to ``Retries.decide`` (retry after a delay, perhaps sealing again, or
fail), and the progress hook is called before every sleep and with the final
response.
"""

from __future__ import annotations

import enum
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from pymilvus.exceptions import MilvusException, MilvusUnavailableException

from ._errors import (
    Failure,
    FlushTimeoutError,
    classify_exception,
    classify_rpc_error,
    classify_status,
    interrupted,
    undecodable,
)
from ._history import FlushHistory
from ._progress import Progress
from ._response import FlushSyncResponse, ProgressHook
from ._schedule import Deadline, Fail, FlushPolicy, PollSchedule, Retries
from ._steps import EVERY, FLUSH, FLUSH_ALL, LISTING, Event, Phase, Shared, Step, Table, Work
from ._ticks import TickModel

__all__ = [
    "Done",
    "FlushMachine",
    "Outcome",
    "SendRpc",
    "Sleep",
    "Turn",
    "flush_all_machine",
]

logger = logging.getLogger("pymilvus_flushsync")


@dataclass(frozen=True)
class SendRpc:
    """Send every request with ``stub.<method>(request, timeout=..., metadata=...)``,
    all at once; reply with the list of replies, in request order. ``shared``: group
    commit may share it with other calls (``_group``)."""

    method: str
    requests: tuple[Any, ...]
    timeout: float
    metadata: tuple[tuple[str, str], ...] | None
    shared: Shared | None = None

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


class Turn(enum.Enum):
    """Whose move it is within a phase: the states that ``_delay`` and ``_in_flight``
    once hid."""

    SEND = "send"  # next: the phase's RPC
    SLEEP = "sleep"  # next: the delay the last answer owes
    AWAIT = "await"  # an RPC is out: only its reply (or error) may come next


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
        seal: ``False`` only lists (``flush_all_sync``, before one FlushAll).
        table: the kind of call (``_steps``); by default from ``names`` and ``seal``.
        on_progress: called with a snapshot before every sleep, and with the final
            response (``ProgressHook``).
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
        rng: random.Random | None = None,
        history: FlushHistory | None = None,
        seal: bool = True,
        table: Table | None = None,
        on_progress: ProgressHook | None = None,
    ) -> None:
        self._policy = policy = policy or FlushPolicy()
        self._clock, self._timeout, self._hook = clock, timeout, on_progress
        start = clock() if since is None else since
        self._deadline = Deadline.after(timeout, start)
        self.table = table or (FLUSH if names is not None else EVERY if seal else LISTING)
        self.phase, self.turn = self.table.first, Turn.SEND
        self.every = names is None  # every collection of the database
        progress = Progress(names or (), db_name, start, clock)
        self._work = Work(db_name, progress, PollSchedule(policy.poll, ticks), clock, history)
        self._retries = Retries.of(policy, timeout, rng)
        self._metadata = (("dbname", db_name),) if db_name else None
        self._owed = 0.0
        self._in_flight: SendRpc | None = None
        self._error: MilvusException | None = None  # raised from FAILED
        self._stopped: MilvusException | None = None  # set by stop(), from any thread

    @property
    def step(self) -> Step:
        return self.table.steps[self.phase]

    # -- what next? ---------------------------------------------------------------

    def next_action(self) -> Action:
        """The next step for the driver; raises when the call has failed or timed out."""
        if self.turn is Turn.AWAIT:
            raise RuntimeError(f"{self.step.method} is still waiting for its reply")
        if self._stopped is not None and self.phase is not Phase.DONE:
            self._fail(self._stopped)
        if self.phase is Phase.FAILED:
            assert self._error is not None
            raise self._error
        if self.phase is Phase.DONE:
            response, hook, self._hook = self._work.progress.response(True), self._hook, None
            if hook is not None:
                hook(response)  # once: the final response (a bar reaches its total)
            return Done(response)
        now = self._clock()
        left = self._deadline.remaining(now)
        if left <= 0:
            raise self._fail(self.timeout_error())
        spent = self._retries.spent(now)
        if spent is not None:
            raise self._fail(spent.error)
        left = min(left, self._retries.budget_left(now))
        if self.turn is Turn.SLEEP:
            self.turn = Turn.SEND
            self._report()
            return Sleep(min(self._owed, left))
        step = self.step
        requests = step.build(self._work)
        if step.polls:
            self._work.progress.polled += len(requests)
        timeout = min(left, self._policy.rpc_timeout)
        self._in_flight = SendRpc(step.method, requests, timeout, self._metadata, step.shared)
        self.turn, self._work.sent_at = Turn.AWAIT, self._clock()
        return self._in_flight

    def _report(self) -> None:
        """A snapshot to the caller's hook, before a sleep (what it raises fails the
        call and goes on up unchanged)."""
        if self._hook is not None:
            try:
                self._hook(self.progress())
            except BaseException as exc:
                self._fail(interrupted(exc))
                raise

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
                self._fail(interrupted(exc))
                raise
            self.on_error(exc)
            return
        except BaseException as exc:
            self._fail(interrupted(exc))
            raise
        if isinstance(action, SendRpc):
            self.on_reply(outcome.reply)

    def on_reply(self, reply: Any) -> None:
        """The reply (or the list of replies, in request order) of the last ``SendRpc``."""
        action, step = self._answered(), self.step
        what = step.describe(action.requests)
        replies = list(reply) if isinstance(reply, (list, tuple)) else [reply]
        if len(replies) != len(action.requests) or not all(
            isinstance(one, step.reply) for one in replies
        ):
            return self._retry(undecodable(what), what)
        for one in replies:
            failure = classify_status(one.status, what)
            if failure is not None:
                return self._retry(failure, what)
        self._retries.succeeded()
        read = step.read(self._work, action.requests, replies)
        if isinstance(read, Fail):
            self._fail(read.error)
            return None
        self._move(read.event)
        return self._owe(read.delay)

    def on_error(self, exc: Exception) -> None:
        """What the last ``SendRpc`` raised: a ``grpc.RpcError`` (sync or aio) is
        classified; anything else is final (``_errors.classify_exception``)."""
        action = self._answered()
        if self._retries.cut_short(exc, self._deadline.remaining(self._clock())):
            return  # next_action raises the FlushTimeoutError, caused by the last error
        what = self.step.describe(action.requests)
        classify = classify_rpc_error if isinstance(exc, grpc.RpcError) else classify_exception
        self._retry(classify(exc, what), what)

    def stop(self, error: MilvusException) -> None:
        """Another part of the same request failed (``flush_all_sync``: another
        database): the next ``next_action`` raises ``error``. Safe from any thread."""
        self._stopped = error

    def _answered(self) -> SendRpc:
        action, self._in_flight = self._in_flight, None
        if action is None or self.turn is not Turn.AWAIT:
            raise RuntimeError("no RPC is waiting for a reply")
        self.turn = Turn.SEND
        return action

    def _retry(self, failure: Failure, what: str) -> None:
        """A failed RPC: what ``Retries`` decides (module docstring)."""
        step, now, work = self.step, self._clock(), self._work
        work.polls.interrupted()
        rate = failure.rate
        at = step.retry_at(work, rate) if step.retry_at and rate is not None else None
        decision = self._retries.decide(failure, work.sent_at, now, allowed_at=at)
        if isinstance(decision, Fail):
            self._fail(decision.error)
            return
        if decision.reflush and self.table.can(self.phase, Event.LOST):
            self._move(Event.LOST)
        self._owe(decision.delay)
        logger.info(
            "flush_sync: %s failed (%s); next try in %.2f s (retry %d)",
            what,
            failure.describe(what),
            decision.delay,
            self._retries.attempt,
        )

    def _move(self, event: Event) -> None:
        """The one place the phase changes: as the table says, or ``IllegalMove``."""
        self.phase = self.table.move(self.phase, event)

    def _owe(self, delay: float) -> None:
        self._owed, self.turn = delay, Turn.SLEEP if delay > 0 else Turn.SEND

    def _fail(self, error: MilvusException) -> MilvusException:
        """Move to FAILED: every later ``next_action`` raises ``error``."""
        self._in_flight, self._error, self.turn = None, error, Turn.SEND
        self._move(Event.FAILED)
        return error

    # -- results ------------------------------------------------------------------

    @property
    def policy(self) -> FlushPolicy:
        return self._policy

    @property
    def requested_db(self) -> str:
        """The database as the caller asked for it (``""``: the server's default)."""
        return self._work.db

    @property
    def db_name(self) -> str:
        """The database, as the server named it once it answered."""
        return self._work.progress.db_name

    @property
    def pending(self) -> tuple[str, ...]:
        """Collections not yet reported flushed."""
        return tuple(self._work.progress.pending)

    @property
    def broadcast(self) -> dict[str, int]:
        """FlushAll's channels and their time ticks (empty: not broadcast)."""
        return self._work.broadcast

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
            return self._fail(self.timeout_error())
        budget = self._policy.retry_budget
        message = f"no connection to the server within the retry budget ({budget:g} s)"
        return self._fail(MilvusUnavailableException(code=2, message=message))

    def progress(self) -> FlushSyncResponse:
        """A snapshot of the progress so far (``flushed`` is ``False`` until done)."""
        return self._work.progress.response(flushed=self.phase is Phase.DONE)

    def timeout_error(self) -> FlushTimeoutError:
        """The ``FlushTimeoutError`` for this call as it stands (the deadline passed)."""
        listed = self.phase is not Phase.LIST
        return self._work.progress.timeout_error(self._timeout, listed, self._retries.last)


def flush_all_machine(
    names: tuple[str, ...], timeout: float | None, policy: FlushPolicy, **kwargs: Any
) -> FlushMachine:
    """Milvus 2.6.8+'s cluster-wide FlushAll (``_steps.FLUSH_ALL``), for
    ``flush_all_sync`` over every database; ``names``: the collections listed before,
    across databases, which it reports (a ``FlushTimeoutError`` names them pending)."""
    return FlushMachine(names, "", timeout, policy, table=FLUSH_ALL, **kwargs)
