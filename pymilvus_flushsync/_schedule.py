"""When to poll and when to retry: the schedules of one call, and its deadline.

Theory
======
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
instead when the refusal's rate lets it pass (``_history``): ``Retries.decide``
is told when. After the server was unreachable or restarting, Flush is sent again for the
collections still pending (it is idempotent) and the wait goes on with the new
flush timestamps: a restarted server may never complete the old ones. An RPC cut
short by the deadline itself, or by the retry budget (sent with what was left of
it), says nothing of the server: the ``FlushTimeoutError``, or the error the spent
budget raises, is then the error before it (a "service not ready" rather than the
DEADLINE_EXCEEDED of the last try), or that DEADLINE_EXCEEDED when nothing failed
before (``Retries.cut_short``). Anything
else is final at once: a reply that is not the RPC's message type
(undecodable), and any other exception of the I/O, become a ``MilvusException``.
Without a deadline, an unbroken run of retried failures (no successful reply in
between) ends once it has lasted ``policy.retry_budget`` seconds (``Retries.spent``):
the last error is raised.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from pymilvus.exceptions import MilvusException

from ._errors import Failure
from ._ticks import TickModel

logger = logging.getLogger("pymilvus_flushsync")

__all__ = [
    "Backoff",
    "Deadline",
    "Decision",
    "Fail",
    "FlushPolicy",
    "PollSchedule",
    "Retries",
    "Retry",
]


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
            when the limit allows it instead (``_history``).
        group_commit: concurrent calls on one client and database share their
            Flush and GetFlushState RPCs (``_group``).
        gather: with ``group_commit``, how long a Flush waits for more callers
            to join it, only while other calls on the client are in progress.
            Threads released together arrive within about 2.5 ms (measured).
        window_poll: after a rate-limited Flush, seconds between the polls that
            ask whether another client's Flush already persisted the caller's
            writes (half the server's 200 ms time tick, on which it advances).
        flush_all_grace: ``flush_all_sync`` after one FlushAll (servers before
            2.6.8): how long each collection's check that the FlushAll persisted
            it may take before a Flush is sent for it, for what the FlushAll did
            not seal (docs/guarantees.md, "flush_all_sync under a Flush limit").
        stage_poll: ``until="indexed"``/``"loaded"``: delays between the polls of
            those stages (DescribeIndex; GetQuerySegmentInfo), from each stage's
            start: 5 ms growing by 10% a poll to 50 ms, so that with "loaded"'s
            checks (``stage_recheck``) a collection's RPCs stay under the persisted
            stage's rate (docs/guarantees.md, "Beyond persisted").
        stage_recheck: ``until="loaded"``: seconds between the checks that the
            collection is still loaded and which segments are Flushed, between
            its GetQuerySegmentInfo polls.
        refresh_load: ``until="loaded"``: once indexed, ask the query coordinator
            to load the new segments at once (``LoadCollection(refresh=True)``, as
            pymilvus's ``refresh_load``), not at its next periodic target update;
            ``False``: only poll.
        index_min_rows: ``until="loaded"``: the server's
            ``indexCoord.segment.minSegmentNumRowsToEnableIndex`` (1024 on every
            line): a Flushed segment with fewer rows is served without an index,
            so only its presence is waited for.
        heartbeat: seconds between the INFO lines of a call that is still
            waiting, a wait for an RPC's answer included (``_heartbeat``);
            ``None``: none.
    """

    poll: Backoff = field(default_factory=lambda: Backoff(0.005, 1.5, 0.045))
    retry: Backoff = field(default_factory=lambda: Backoff(0.1, 2.0, 2.0))
    rpc_timeout: float = 30.0
    tick_period: float | None = 0.2
    retry_budget: float | None = 120.0
    jitter: bool = True
    group_commit: bool = True
    gather: float = 0.005
    window_poll: float = 0.1
    flush_all_grace: float = 3.0
    stage_poll: Backoff = field(default_factory=lambda: Backoff(0.005, 1.1, 0.05))
    stage_recheck: float = 1.0
    refresh_load: bool = True
    index_min_rows: int = 1024
    heartbeat: float | None = 10.0


@dataclass(frozen=True)
class Retry:
    """Try again after ``delay`` seconds; ``reflush``: seal again first, for what is
    still pending (the server may have lost the Flush: module docstring)."""

    delay: float
    reflush: bool = False


@dataclass(frozen=True)
class Fail:
    """Stop: the call fails with ``error``."""

    error: MilvusException


Decision = Retry | Fail


class Retries:
    """Decides what follows a failed RPC, and counts the current run of failures.

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

    @classmethod
    def of(cls, policy: FlushPolicy, timeout: float | None, rng: random.Random | None) -> Retries:
        """A call's retries: ``policy.retry`` with full jitter (if on), and the retry
        budget only without a deadline."""
        draw = (rng or random.Random()).uniform
        return cls(
            policy.retry,
            budget=policy.retry_budget if timeout is None else None,
            jitter=(lambda delay: draw(0.0, delay)) if policy.jitter else (lambda delay: delay),
        )

    def decide(
        self,
        failure: Failure,
        sent_at: float,
        now: float,
        what: str,
        allowed_at: float | None = None,
    ) -> Decision:
        """A failure of ``what``, sent at ``sent_at``: fail at once unless it is
        retryable; else retry after the back-off, or at ``allowed_at`` (when a rate
        limit lets the RPC pass) if that is later than now."""
        if not failure.retryable:
            return Fail(failure.error)
        self.last = failure
        if self.failing_since is None:
            self.failing_since = sent_at
        delay = self._jitter(self._backoff.delay(self.attempt))
        self.attempt += 1
        if allowed_at is not None and allowed_at > now:
            delay = allowed_at - now  # every caller of a batch waits until then
        logger.info(
            "flush_sync: %s failed (%s); next try in %.2f s (retry %d)",
            what,
            failure.describe(what),
            delay,
            self.attempt,
        )
        return Retry(delay, reflush=failure.reflush)

    def succeeded(self) -> None:
        """A successful reply: the run of failures is over."""
        self.attempt = 0
        self.failing_since = None

    def cut_short(self, exc: Exception, remaining: float, now: float) -> bool:
        """``exc`` is a DEADLINE_EXCEEDED that the call's own deadline (``remaining``
        of it) or its retry budget caused (nothing of either is left), and an earlier
        failure is the better cause: it says nothing of the server, so it is no
        decision (module docstring)."""
        code = getattr(exc, "code", None)
        return (
            isinstance(exc, grpc.RpcError)
            and callable(code)
            and code() == grpc.StatusCode.DEADLINE_EXCEEDED
            and self.last is not None
            and min(remaining, self.budget_left(now)) <= 0
        )

    def spent(self, now: float) -> Fail | None:
        """The run of failures has lasted its whole budget: fail with the last error."""
        if self.budget_left(now) > 0:
            return None
        assert self.last is not None and self.failing_since is not None
        logger.warning(
            "flush_sync: giving up after %.1f s of failed retries (retry_budget); last error %s",
            now - self.failing_since,
            self.last.describe(),
        )
        return Fail(self.last.error)

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
