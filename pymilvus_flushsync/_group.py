"""Group commit: concurrent ``flush_sync`` calls on one client share their RPCs.

Theory
======
Databases share one log fsync among the transactions that commit together
(PostgreSQL's ``commit_delay``, RocksDB's write groups). Flushing a Milvus
collection is the same kind of step: it seals whatever was inserted before it,
for everyone, and it is scarce (Milvus 2.4.5+ allows one Flush per collection
per 10 s by default). So calls on one client and database share:

* **One Flush per batch.** A call that reaches its Flush joins the batch being
  prepared, or starts one and leads it. The leader yields once (other threads
  or tasks released together get to join: ``HANDOFF``), then waits ``FlushPolicy.gather``
  seconds only while other calls on the client are in progress (as PostgreSQL
  delays a commit only with ``commit_siblings`` active), and, if the group's
  previous Flush is still in flight, until it is answered (the next batch
  gathers meanwhile, as a database's next group forms during an fsync). Then
  it closes the batch and sends one Flush for the union of its members' names.
  A lone call pays a yield (``HANDOFF`` for a thread). A batch is closed before
  it is sent, so a call is only ever satisfied by a Flush sent after it began:
  one sent earlier may predate its rows.
* **One poll per question, one question per batch.** GetFlushState for the same
  (collection, segments, flush timestamp) is one RPC while it is in flight,
  whoever asks, and another call's "not yet" is reused for ``FRESH`` seconds;
  a "flushed" answer (final for that question) is kept while calls are in
  progress (and forgotten at the first Flush ``LEAD_FOR`` seconds later: a
  client may never be idle).
  The collections of one shared Flush were sealed together and flip
  together, so, as one call watches one collection and then sweeps the
  rest, the members of a batch all watch its first collection (the lead): a
  member's own question is asked once the lead says flushed (or fails, or has
  stood in for ``LEAD_FOR`` seconds). Calls of an earlier batch still waiting
  on a collection the new batch sealed again watch the new lead too: callers
  released together sometimes split into two batches (the first leader saw no
  one else yet: benchmarks/README.md), and a later Flush of a
  collection completes no sooner than an earlier one, so one stream serves
  both. Sixteen callers then poll at one caller's rate.
* **Every call keeps its own** machine: its deadline (it waits for a shared
  RPC no longer than its own time allows), its response (its own collections),
  its errors, its retries. A shared Flush that fails for good (a missing
  collection fails a real server's whole Flush) is sent again by each member
  for its own names, so one caller's bad name fails only that caller (behind a
  per-collection rate limit that re-send waits for the allowance the failed
  Flush spent: the price of one caller's mistake is one limit window). A rate
  limited batch is retried by its members together: they all wait for the
  same moment (``_history``), so their retries form one batch again. A
  cancelled or timed-out call leaves; a shared RPC is cancelled only when no
  call waits for it any more.

Only calls on the same client and database share (``for_client``): a client
carries its own credentials, and a Flush sent for another client's caller
would bypass that caller's privileges.

``Group`` is bookkeeping only, under its own lock, which is never held while
waiting (it is held to start a shared GetFlushState, which does not block). The
protocol (``flush_shared`` and the leader's ``lead``, ``poll_shared``) is written
once, as steps that yield what to wait for (``_io``); the drivers carry them out.
What a group remembers (answers, leads, earlier questions) is aged in one place,
``expire``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, NamedTuple

import grpc
from pymilvus.grpc_gen import milvus_pb2

from ._core import SendRpc
from ._errors import classify_status
from ._io import Joined, Landed, Lead, Pause, Start, Steps, Wait, send
from ._requests import flush_request, flush_state_request, sealed_state
from ._response import CollectionFlushState

__all__ = [
    "HANDOFF",
    "LEAD_FOR",
    "Batch",
    "Flight",
    "Group",
    "Questions",
    "Unanswered",
    "answers",
    "flush_shared",
    "for_client",
    "poll_shared",
]

#: A call's monotonic clock (``FlushMachine.clock``): the group reads no other.
Clock = Callable[[], float]
#: How long the members of a batch watch its lead instead of their own collections:
#: collections sealed together flip within a tick or two; a lead that lags longer
#: (another vchannel, a dropped collection) then delays no one.
LEAD_FOR = 30.0
#: A "not yet" another call got is this call's too if its RPC went out less than
#: this long ago: callers that wake a few ms apart share one poll (a lone call
#: never reuses its own answers).
FRESH = 0.010
#: How long a leading thread yields before it counts the calls in progress: longer
#: than another thread's wake-up, which ``time.sleep(0)`` is not (benchmarks/README.md,
#: "group commit"). Tasks yield once: the loop runs every ready task.
HANDOFF = 0.0001


class Unanswered(grpc.RpcError):  # type: ignore[misc]  # grpc is untyped
    """A shared RPC gave this call no answer in the time the call had (or its
    leader stopped before sending it): for the machine, a per-RPC DEADLINE_EXCEEDED;
    or it was cancelled under the call (the client closed its channel): CANCELLED."""

    def __init__(
        self, details: str, code: grpc.StatusCode = grpc.StatusCode.DEADLINE_EXCEEDED
    ) -> None:
        super().__init__(details)
        self._details = details
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    @classmethod
    def late(cls, what: str, callers: int) -> Unanswered:
        """No answer to ``what`` in this call's time; "shared" only when it was."""
        shared = "shared " if callers > 1 else ""
        return cls(f"no answer to the {shared}{what} within this call's time")


@dataclass(eq=False)
class Batch:
    """One Flush being prepared for the calls that joined it, then sent for them all.
    Its fields are the group's: the drivers only wait (``sent``, ``wait_landed``)."""

    db_name: str
    names: dict[str, None] = field(default_factory=dict)  # the union, in order
    members: int = 0
    waiting: int = 0  # members still waiting for its reply
    timeout: float = 0.0  # the longest per-RPC timeout among the members
    after: Batch | None = None  # the batch in flight when this one began: sent first
    io: Any = None  # the driver's handle of the shared Flush, once sent
    lead: Any = None  # the GetFlushState every member watches, once answered
    ready: threading.Event = field(default_factory=threading.Event)  # the leader is done
    landed: threading.Event = field(default_factory=threading.Event)  # the Flush is done

    def sent(self, seconds: float | None = None) -> Any:
        """The shared Flush's handle; a thread waits up to ``seconds`` for its leader."""
        if seconds is not None and not self.ready.wait(max(seconds, 0.0)):
            raise Unanswered(f"the shared Flush was not sent within {seconds:.3g} s")
        if self.io is None:
            raise Unanswered("the shared Flush was not sent: its leader stopped")
        return self.io

    def wait_landed(self, seconds: float) -> None:
        """A thread waits, at most ``seconds``, until the Flush is done."""
        self.landed.wait(max(seconds, 0.0))


@dataclass(eq=False)
class Flight:
    """One GetFlushState RPC in flight, and how many calls wait for its answer."""

    call: Any  # the driver's: a gRPC future / an asyncio task
    asker: object = None  # the call that started it
    sent_at: float = 0.0
    waiters: int = 1


@dataclass(frozen=True)
class _Answer:
    """A reply another call got, to a question asked at ``asked_at`` by ``asker``."""

    reply: Any
    asked_at: float
    asker: object = None


class _StandIn(NamedTuple):
    """Until when a batch's member asks ``lead``, the batch's question, for its own."""

    until: float
    lead: Any


class _Question(NamedTuple):
    """When an answered batch's question was sealed: a later batch's lead may stand in
    for it."""

    sealed_at: float
    request: Any


class Questions:
    """What the calls on one (client, database) know of GetFlushState: the flights in
    the air, the answers, and which question stands in for which; and how many calls
    are in progress (``Group`` tells it when they come and go). Every method takes its
    lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls = 0  # calls in progress: answers are kept only while there are some
        self._flights: dict[bytes, Flight] = {}
        self._flushed: dict[bytes, _Answer] = {}  # final "flushed" answers
        self._not_yet: dict[bytes, _Answer] = {}  # recent "not yet" answers
        self._stand_ins: dict[bytes, _StandIn] = {}
        self._questions: dict[bytes, _Question] = {}  # answered batches' questions

    def calls(self, change: int = 0) -> int:
        """``change`` calls came (+) or went (-): how many are in progress now. With none
        left, everything is forgotten."""
        with self._lock:
            self._calls += change
            if not self._calls:
                self._expire(None)
            return self._calls

    def remembered(self) -> int:
        """How many answers, stand-ins and questions are held (all aged)."""
        with self._lock:
            caches: tuple[dict[bytes, Any], ...] = (
                self._flushed, self._not_yet, self._stand_ins, self._questions,
            )  # fmt: skip
            return sum(len(cache) for cache in caches)

    def _expire(self, now: float | None) -> None:
        """Forget what answers or stands in no more at ``now`` (``None``: everything,
        no call is in progress). Calls may be in progress without end: an answer
        forgotten too soon costs a poll, nothing more."""
        if now is None:
            for cache in (self._flushed, self._not_yet, self._stand_ins, self._questions):
                cache.clear()
            return
        self._stand_ins = {k: v for k, v in self._stand_ins.items() if v.until > now}
        self._questions = {
            k: v
            for k, v in self._questions.items()
            if now - v.sealed_at < LEAD_FOR and k not in self._flushed
        }
        self._flushed = {k: v for k, v in self._flushed.items() if now - v.asked_at < LEAD_FOR}
        self._not_yet = {k: v for k, v in self._not_yet.items() if now - v.asked_at < FRESH}

    def sealed_together(self, batch: Batch, reply: Any, now: float) -> None:
        """A shared Flush answered at ``now``: its collections were sealed together, so
        for ``LEAD_FOR`` seconds the members watch one of them, the lead, instead of one
        each (``stand_ins``); so do the questions of earlier batches about these
        collections (a later Flush of a collection completes no sooner)."""
        with self._lock:
            if batch.lead is not None:
                return
            asked = [name for name in batch.names if name in reply.coll_segIDs]
            requests = [
                flush_state_request(batch.db_name, sealed_state(CollectionFlushState(name), reply))
                for name in asked
            ]
            if not requests:
                return
            batch.lead = lead = requests[0]
            self._expire(now)
            followers = requests[1:] if batch.members > 1 else []
            followers += [  # earlier questions about these collections: sealed before
                q.request
                for q in self._questions.values()
                if q.request.collection_name in batch.names
            ]
            for request in followers:
                self._stand_ins[_key(request)] = _StandIn(now + LEAD_FOR, lead)
            self._questions.update((_key(r), _Question(now, r)) for r in requests)

    def flight(self, request: Any, start: Callable[[], Any], now: float, asker: object) -> Any:
        """The shared flight of ``request`` (started with ``start()`` if there is none),
        or a reply already known for it: "flushed" (final), or a "not yet" another
        call got from an RPC sent less than ``FRESH`` seconds before ``now``."""
        key = _key(request)
        with self._lock:
            known = self._flushed.get(key)
            if known is not None:
                return known.reply
            recent = self._not_yet.get(key)
            if recent is not None and recent.asker is not asker and now - recent.asked_at < FRESH:
                return recent.reply
            flight = self._flights.get(key)
            if flight is not None:
                flight.waiters += 1
                return flight
            flight = self._flights[key] = Flight(start(), asker=asker, sent_at=now)
        flight.call.add_done_callback(lambda call: self._flight_done(key, flight, call))
        return flight

    def stand_ins(self, requests: tuple[Any, ...], now: float) -> list[Any]:
        """What to ask for each request at ``now``: its batch's lead while the lead is
        not known to be flushed (the request's own "not yet" is then inferred: see
        ``answers``), for ``LEAD_FOR`` seconds at most; else the request itself."""
        with self._lock:
            asked = []
            for request in requests:
                stand_in = self._stand_ins.get(_key(request))
                stands = (
                    stand_in is not None
                    and now < stand_in.until
                    and _key(stand_in.lead) not in self._flushed
                )
                asked.append(stand_in.lead if stand_in is not None and stands else request)
            return asked

    def release(self, waits: list[Any]) -> list[Any]:
        """A call stops waiting for what ``flight`` gave it: the calls of the flights it
        was the last waiter of, for the driver to cancel (a no-op once done)."""
        with self._lock:
            last = []
            for flight in waits:
                if isinstance(flight, Flight):
                    flight.waiters -= 1
                    if flight.waiters == 0:
                        last.append(flight.call)
            return last

    def _flight_done(self, key: bytes, flight: Flight, call: Any) -> None:
        try:
            reply = call.result()
        except BaseException:  # failed or cancelled: each waiter sees that itself
            reply = None
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
            if not self._calls or reply is None or reply.status.code:
                return
            if reply.flushed:
                self._flushed[key] = _Answer(reply, flight.sent_at)
                self._not_yet.pop(key, None)
            else:
                self._not_yet[key] = _Answer(reply, flight.sent_at, flight.asker)


class Group:
    """What the calls on one (client, database) share: their Flush batches here, their
    GetFlushState in ``questions``. Every method takes the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._forming: Batch | None = None
        self._in_flight: Batch | None = None  # the last batch sent, until it is answered
        self.questions = Questions()  # what they share of GetFlushState

    # -- calls --------------------------------------------------------------------

    def enter(self) -> None:
        self.questions.calls(+1)

    def leave(self) -> None:
        self.questions.calls(-1)

    # -- Flush --------------------------------------------------------------------

    def join(self, request: Any, timeout: float) -> tuple[Batch, bool]:
        """Join the batch being prepared (or start one: then this call leads it)."""
        with self._lock:
            batch, leader = self._forming, False
            if batch is None:
                batch = self._forming = Batch(request.db_name, after=self._in_flight)
                leader = True
            batch.names.update(dict.fromkeys(request.collection_names))
            batch.members += 1
            batch.waiting += 1
            batch.timeout = max(batch.timeout, timeout)
            return batch, leader

    def gather(self, seconds: float) -> float:
        """How long the leader waits for more members: ``seconds`` while other calls
        are in progress, else nothing (a lone call pays nothing)."""
        return seconds if self.questions.calls() > 1 else 0.0

    def close(self, batch: Batch) -> tuple[Any, float]:
        """No one joins ``batch`` any more: its Flush request and per-RPC timeout."""
        with self._lock:
            if self._forming is batch:  # the first close: it goes out now
                self._forming = None
                self._in_flight = batch
            batch.after = None
            return flush_request(batch.db_name, list(batch.names)), batch.timeout

    def led(self, batch: Batch, io: Any) -> None:
        """The leader's part is over: ``io`` is the Flush it sent (``None``: none was),
        which the members wait for; the next batch goes once it lands."""
        with self._lock:
            batch.io = io
        batch.ready.set()
        if io is None:
            self.landed(batch)
        else:
            io.add_done_callback(lambda _: self.landed(batch))

    def landed(self, batch: Batch) -> None:
        """``batch``'s Flush was answered (or failed, or never sent): the next may go."""
        with self._lock:
            if self._in_flight is batch:
                self._in_flight = None
        batch.landed.set()

    def abandon(self, batch: Batch) -> None:
        """A member stops waiting without the reply: the Flush is cancelled if no one
        else waits for it."""
        with self._lock:
            batch.waiting -= 1
            last = batch.waiting == 0
        if last and batch.io is not None:
            batch.io.cancel()

    def finish(self, batch: Batch, reply: Any, now: float) -> bool:
        """A member got ``reply`` to ``batch``'s Flush at ``now``: whether it must send
        its own Flush (this one failed for good, and for more than one call). An
        accepted reply makes its collections' questions watch one lead."""
        with self._lock:
            batch.waiting -= 1
        if not isinstance(reply, milvus_pb2.FlushResponse):
            return False
        failure = classify_status(reply.status, "Flush")
        if failure is None:
            self.questions.sealed_together(batch, reply, now)
        return failure is not None and not failure.retryable and batch.members > 1


# -- the protocol: steps both drivers carry out (``_io``) ---------------------------


def flush_shared(group: Group, action: SendRpc, gather: float, clock: Clock) -> Steps[Any]:
    """The reply to this call's Flush, sent in a batch with the group's other calls
    (by its leader: ``lead``); ``clock`` is the call's."""
    began = clock()
    batch, leader = group.join(action.request, action.timeout)
    if leader:
        yield Lead(lead(group, batch, action, gather, clock), group, batch)
    try:
        io = yield Joined(batch, action.timeout)
        left = action.timeout - (clock() - began)
        reply = (yield Wait((io,), left, "Flush", (batch.members,)))[0]
    except BaseException:  # cancelled, or no answer in time: so is the Flush, if alone
        group.abandon(batch)
        raise
    if group.finish(batch, reply, clock()):  # failed for good: its own names alone
        spent = clock() - began
        alone = replace(action, timeout=max(action.timeout - spent, 0.001))
        return (yield from send(alone))[0]
    return reply


def lead(group: Group, batch: Batch, action: SendRpc, gather: float, clock: Clock) -> Steps[Any]:
    """The leader's part: let the callers released with it join, gather while other
    calls are in progress, let the previous Flush land, close the batch and start its
    Flush; the Flush's handle."""
    began = clock()
    try:
        yield Pause(HANDOFF, handoff=True)
        window = min(group.gather(gather), action.timeout)
        if window > 0:
            yield Pause(window)
        if batch.after is not None:  # the previous Flush first
            yield Landed(batch.after, action.timeout - (clock() - began))
    finally:
        request, timeout = group.close(batch)
    start = yield Start("Flush", timeout, action.metadata)
    return start(request)


def poll_shared(group: Group, action: SendRpc, asker: object, clock: Clock) -> Steps[list[Any]]:
    """The replies to a round of GetFlushState, asked through the group: a batch's
    lead stands in for its members (``answers``); ``clock`` is the call's."""
    asked = group.questions.stand_ins(action.requests, clock())
    ask = partial(_ask, group, action, asker=asker, clock=clock)
    replies, again = answers(action.requests, asked, (yield from ask(asked)))
    if again:
        real = [action.requests[i] for i in again]
        for i, reply in zip(again, (yield from ask(real)), strict=True):
            replies[i] = reply
    return replies


def _ask(
    group: Group, action: SendRpc, requests: list[Any], *, asker: object, clock: Clock
) -> Steps[list[Any]]:
    """The replies to ``requests``; questions another call is asking already share
    its RPC, and known answers are not asked again."""
    start = yield Start("GetFlushState", action.timeout, action.metadata, shared=True)
    now = clock()
    questions = group.questions
    waits = [questions.flight(request, partial(start, request), now, asker) for request in requests]
    flights = [wait for wait in waits if isinstance(wait, Flight)]
    try:
        calls, callers = tuple(f.call for f in flights), tuple(f.waiters for f in flights)
        got = iter((yield Wait(calls, action.timeout, "GetFlushState", callers)))
    finally:
        for call in questions.release(waits):
            call.cancel()
    return [next(got) if isinstance(wait, Flight) else wait for wait in waits]


def answers(
    requests: tuple[Any, ...], asked: list[Any], replies: list[Any]
) -> tuple[list[Any], list[int]]:
    """The replies for ``requests`` from those to ``asked`` (``stand_ins``): a lead's
    "not yet" stands for its members' (sealed by the same Flush, they flip together;
    waiting on the lead delays, never hastens, a return); after a lead's "flushed",
    the positions whose own question must now be asked. Only real answers say flushed."""
    out, again = list(replies), []
    for i, (request, question) in enumerate(zip(requests, asked, strict=True)):
        if question is request or not isinstance(replies[i], milvus_pb2.GetFlushStateResponse):
            continue  # its own answer, or one the machine rejects as it is
        if replies[i].flushed or replies[i].status.code or replies[i].status.error_code:
            again.append(i)  # flushed, or the lead's own trouble: ask for itself
        else:
            out[i] = milvus_pb2.GetFlushStateResponse(status=replies[i].status, flushed=False)
    return out, again


def _key(request: Any) -> bytes:
    return bytes(request.SerializeToString(deterministic=True))


_groups_lock = threading.Lock()
#: The attribute of a client that holds its groups (they live and die with it).
_GROUPS = "_flush_sync_groups"


def for_client(client: Any, db_name: str) -> Group:
    """The group of one client (the wrapped one, for a ``wrap`` proxy) and database."""
    owner = vars(getattr(client, "__wrapped__", client))
    with _groups_lock:
        groups: dict[str, Group] = owner.setdefault(_GROUPS, {})
        return groups.setdefault(db_name, Group())
