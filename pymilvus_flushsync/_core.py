"""The flush-and-wait decision maker: no sockets, no sleeps, no threads, no RPCs.

Theory
======
A ``FlushMachine`` holds all state of one call: its ``Table`` and phase (what it
sends and where each answer leads: ``_steps``, where the tables are drawn), its
``Turn`` (whether it owes a sleep, is ready to send, or awaits a reply; phase and
turn live in ``_state``, which checks every move), its ``Retries`` and
``PollSchedule`` (``_schedule``) and its ``Progress`` (``_progress``). Whoever
drives it asks what to do next, does it, and reports back; it decides nothing and
the machine starts no I/O::

    while not isinstance(action := machine.next_action(), Done):   # may raise
        with machine.expect(action) as outcome:    # an RPC's exception -> on_error
            Sleep   -> sleep(action.seconds)
            SendRpc -> outcome.reply = [stub.<method>(r) for r in action.requests]
    return action.response

The stub is read from the client for every RPC (``client._get_connection()``):
pymilvus swaps it on reconnect, and once the client is closed that raises,
which ends the call with that ``MilvusException``. That loop is written once,
``_protocol.call``, as steps the sync and asyncio drivers carry out (``_io``); a
round's other RPCs are cancelled when one fails. An RPC whose ``shared`` is set
may go through the client's group (``_group``), which shares it among concurrent
calls; each call's machine is unchanged.

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

import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from pymilvus.exceptions import MilvusException
from pymilvus.grpc_gen import common_pb2

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
from ._progress import Progress, not_yet, timed_out
from ._response import FlushSyncResponse, ProgressHook
from ._schedule import Deadline, Decision, Fail, FlushPolicy, Retries, Retry
from ._stages import PERSISTED
from ._state import CallState, Event, Phase, Turn
from ._steps import (
    EVERY,
    FLUSH,
    FLUSH_ALL,
    LISTING,
    UNEXPLAINED_LISTINGS,
    Known,
    Shared,
    Step,
    Table,
    Work,
    failure_events,
    staged,
)
from ._ticks import TickModel

__all__ = [
    "Done",
    "FlushMachine",
    "Outcome",
    "SendRpc",
    "Sleep",
    "flush_all_machine",
    "stage_failure",
    "stage_timeout",
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


class FlushMachine:
    """The state of one ``flush_sync`` call (see the module docstring).

    Args:
        names: collection names, checked and de-duplicated; ``None``: every
            collection of ``db_name`` (``""``: the server's default), listed first.
        timeout: seconds for the whole call (``None``: no deadline), counted from
            ``since`` (default: now; the CLI connects first).
        clock, rng, ticks, history: the monotonic clock, the jitter's source, the
            endpoint's learned tick phase (``None``: off) and accepted Flush times.
        seal, table, until: ``False`` only lists; the kind of call; the last stage.
        cover_ts, floor, known: a ticket's and a FlushAll's (``SWEPT``) flush timestamps,
            covering a refused Flush (else a fresh ``AllocTimestamp``); a ticket's states.
        on_progress: called with a snapshot before every sleep and with the final
            response (``ProgressHook``); what it raises fails the call, unchanged.
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
        cover_ts: dict[str, int] | None = None,
        floor: int = 0,
        until: str = PERSISTED.name,
        known: Known | None = None,
    ) -> None:
        self.policy = policy = policy or FlushPolicy()
        self.clock, self._timeout, self._hook = clock, timeout, on_progress
        start = clock() if since is None else since
        self._deadline = Deadline.after(timeout, start)
        self.table = staged(table or _table_of(names, seal), until, refresh=policy.refresh_load)
        self.state = self.table.state()
        self.every = names is None  # every collection of the database
        progress = Progress(names or (), db_name, start, clock, until)
        self.work = Work.of(progress, policy, ticks, clock, history, cover_ts or {}, floor, known)
        self._retries = Retries.of(policy, timeout, rng)
        self._metadata = (("dbname", db_name),) if db_name else None
        self.in_flight: SendRpc | None = None
        self._stopped: MilvusException | None = None  # set by stop(), from any thread

    @property
    def phase(self) -> Phase:
        return self.state.phase

    def next_action(self) -> Action:
        """The next step for the driver; raises when the call has failed or timed out."""
        state = self.state
        if state.turn is Turn.AWAIT:
            raise RuntimeError(f"{self.table.steps[state.phase].method} awaits its reply")
        if self._stopped is not None and state.phase is not Phase.DONE:
            state.fail(self._stopped)
        if state.error is not None:
            raise state.error
        if state.phase is Phase.DONE:
            persisted = self.table.persists
            response, hook, self._hook = self.work.response(persisted), self._hook, None
            if hook is not None:  # once, the final response: a bar reaches its total
                hook(response)
            return Done(response)
        now = self.clock()
        left = self._deadline.remaining(now)
        if left <= 0:
            raise state.fail(self.timeout_error())
        if (spent := self._retries.spent(now)) is not None:
            raise state.fail(spent.error)
        left = min(left, self._retries.budget_left(now))
        if state.turn is Turn.SLEEP:
            self._report()
            return Sleep(min(state.slept(), left))
        step = self.table.steps[state.phase]
        requests = step.build(self.work)
        self.work.progress.polled += len(requests) if step.polls else 0
        timeout = min(left, self.policy.rpc_timeout)
        self.in_flight = SendRpc(step.method, requests, timeout, self._metadata, step.shared)
        state.sent()
        self.work.sent_at = self.clock()
        return self.in_flight

    def _report(self) -> None:
        """A snapshot to the caller's hook, before a sleep."""
        if self._hook is not None:
            try:
                self._hook(self.progress())
            except BaseException as exc:
                self.state.fail(interrupted(exc))
                raise

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
                self.state.fail(interrupted(exc))
                raise
            self.on_error(exc)
            return
        except BaseException as exc:
            self.state.fail(interrupted(exc))
            raise
        if isinstance(action, SendRpc):
            self.on_reply(outcome.reply)

    def on_reply(self, reply: Any) -> None:
        """The reply (or the list of replies, in request order) of the last ``SendRpc``."""
        action, step = self._answered()
        what = step.describe(action.requests)
        replies = list(reply) if isinstance(reply, (list, tuple)) else [reply]
        failure = _failure(step, action, replies, what)
        if failure is not None:
            self._retry(step, failure, what)
            return
        if step.settles:
            self._retries.succeeded()
        read = step.read(self.work, action.requests, replies)
        if isinstance(read, Fail):  # final, unless a collection was dropped meanwhile
            failure, now = Failure(read.error), self.clock()
            _follow(self.state, step, self.work, failure, decision=read, now=now)
        else:
            self.state.move(read.event)
            self.state.owe(read.delay)

    def on_error(self, exc: Exception) -> None:
        """What the last ``SendRpc`` raised: a ``grpc.RpcError`` (sync or aio) is
        classified; anything else is final (``_errors.classify_exception``)."""
        action, step = self._answered()
        if self._retries.cut_short(exc, self._deadline.remaining(now := self.clock()), now):
            return  # next_action raises the timeout (or the spent budget's) last error
        what = step.describe(action.requests)
        classify = classify_rpc_error if isinstance(exc, grpc.RpcError) else classify_exception
        self._retry(step, classify(exc, what), what)

    def stop(self, error: MilvusException) -> None:
        """Another part of the call failed: ``next_action`` raises ``error`` (any thread)."""
        self._stopped = error

    def _answered(self) -> tuple[SendRpc, Step]:
        self.state.answered()
        action, self.in_flight = self.in_flight, None
        assert action is not None
        return action, self.table.steps[self.state.phase]

    def _retry(self, step: Step, failure: Failure, what: str) -> None:
        """A failed RPC: what ``Retries`` decides (``_schedule``)."""
        work, rate = self.work, failure.rate
        work.polls.interrupted()
        at = step.retry_at(work, rate) if step.retry_at and rate is not None else None
        now = self.clock()
        decision = self._retries.decide(failure, work.sent_at, now, what, at)
        _follow(self.state, step, work, failure, decision=decision, now=now)

    def remaining(self) -> float | None:
        """Seconds left before the deadline (``None`` without one; 0 once passed)."""
        left = self._deadline.remaining(self.clock())
        return None if math.isinf(left) else max(0.0, left)

    def progress(self) -> FlushSyncResponse:
        """A snapshot of the progress so far (``flushed`` is ``False`` until done)."""
        return self.work.progress.response(flushed=self.phase is Phase.DONE)

    def timeout_error(self) -> FlushTimeoutError:
        """The ``FlushTimeoutError`` for this call as it stands (the deadline passed)."""
        listed = self.state.stood is not Phase.LIST
        return self.work.progress.timeout_error(self._timeout, listed, self._retries.last)


def _table_of(names: tuple[str, ...] | None, seal: bool) -> Table:
    """The table of a call that names none: names given, every collection, a listing."""
    return FLUSH if names is not None else EVERY if seal else LISTING


def _follow(
    state: CallState, step: Step, work: Work, failure: Failure, *, decision: Decision, now: float
) -> None:
    """A failed RPC (or a reply its step read as final) moves on the first of its events
    (``_steps.failure_events``) open to it (``_open``), as its table says, owing the
    delay that event's move owes."""
    event = next(e for e in failure_events(step, failure, decision) if _open(state, work, e))
    if event is Event.FAILED:
        state.fail(failure.error)
    elif event is Event.GONE:
        _relist(state, work, failure.error)
    elif event is Event.REFUSED:  # the shared window: which of its events, and when
        assert isinstance(decision, Retry) and step.refused is not None
        state.move(step.refused(work, now + decision.delay))
        state.owe(0.0)
    elif isinstance(decision, Fail):  # the step's fallback: the server declined it
        if step.on_fallback is not None:
            step.on_fallback(work)
        state.move(event)
        state.owe(max(0.0, work.reflush_at - now))
    else:  # LOST (seal again first) or RETRY, after the back-off
        state.move(event)
        state.owe(decision.delay)


def _open(state: CallState, work: Work, event: Event) -> bool:
    """Whether the call may move on ``event``: its table lists it; a FlushAll, which
    has no listing of its own to shrink, is sent again at most ``UNEXPLAINED_LISTINGS``
    times (``_steps``: a listing's own bound is counted as it reads)."""
    if event is Event.FAILED:
        return True
    if event is Event.GONE and state.phase is Phase.FLUSH_ALL:
        return state.can(event) and work.unexplained < UNEXPLAINED_LISTINGS
    return state.can(event)


def _relist(state: CallState, work: Work, error: MilvusException) -> None:
    """List again (``GONE``), or send the FlushAll again: ``error`` says a collection
    may have been dropped by another client since (``_steps``)."""
    if state.phase is Phase.FLUSH_ALL:
        work.unexplained += 1
    work.gone = error
    again = "sending FlushAll" if state.phase is Phase.FLUSH_ALL else "listing"
    logger.info("flush_sync: %s: dropped meanwhile; %s again", error.message, again)
    state.move(Event.GONE)
    state.owe(work.policy.retry.initial * work.unexplained)  # at once, the first time


def _failure(step: Step, action: SendRpc, replies: list[Any], what: str) -> Failure | None:
    """What is wrong with the replies to ``action``: not one of the step's reply type
    per request (undecodable), or a status that is not success."""
    if len(replies) != len(action.requests) or not all(isinstance(r, step.reply) for r in replies):
        return undecodable(what)
    for one in replies:
        status = one if isinstance(one, common_pb2.Status) else one.status
        if status.code in step.answers:
            continue
        failure = classify_status(status, what)
        if failure is not None:
            return failure
    return None


def flush_all_machine(
    names: tuple[str, ...], timeout: float | None, policy: FlushPolicy, **kwargs: Any
) -> FlushMachine:
    """Milvus 2.6.8+'s cluster-wide FlushAll (``_steps.FLUSH_ALL``), for
    ``flush_all_sync`` over every database; ``names``: the collections listed before,
    across databases, which it reports (a ``FlushTimeoutError`` names them pending)."""
    return FlushMachine(names, "", timeout, policy, table=FLUSH_ALL, **kwargs)


def stage_failure(
    machines: Sequence[FlushMachine],
    raised: BaseException,
    earlier: Mapping[str, tuple[str, ...]],
) -> BaseException:
    """What a stage of ``flush_all_sync``'s machines, one per database, raises when
    one of them raised ``raised``: that, but for a deadline met by several; then
    what every database had pending (``stage_timeout``)."""
    if isinstance(raised, FlushTimeoutError) and len(machines) > 1:
        return stage_timeout(machines, raised, earlier)
    return raised


def stage_timeout(
    machines: Sequence[FlushMachine],
    raised: FlushTimeoutError,
    earlier: Mapping[str, tuple[str, ...]],
) -> FlushTimeoutError:
    """The deadline passed during a stage of ``flush_all_sync``'s machines, ``raised``
    the first to say so: what every database had pending (one not yet listed again:
    what an ``earlier`` listing found there), and how many were not yet listed at all.
    The response is ``raised``'s; the cause, the last failure of the first database
    that had one."""
    pending: dict[str, None] = {}
    unlisted = 0
    for machine in machines:
        db = machine.work.progress.requested_db
        if machine.state.stood is not Phase.LIST:
            # a copy first: under the sync driver, the machine's thread may still run
            pending.update(dict.fromkeys(tuple(machine.work.progress.behind)))
        elif db in earlier:
            pending.update(dict.fromkeys(earlier[db]))
        else:
            unlisted += 1
    said = [not_yet(raised.response.stage, list(pending))] if pending or not unlisted else []
    if unlisted:
        of = f"{unlisted} of {len(machines)} databases"
        said.append(f"the collections of {of} were not yet listed")
    last = next((m._retries.last for m in machines if m._retries.last is not None), None)
    return timed_out(
        "flush_all_sync", machines[0]._timeout, "; ".join(said), last, raised.response,
        tuple(pending),
    )  # fmt: skip
