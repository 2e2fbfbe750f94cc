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
  it seals the batch and sends one Flush for the union of its members' names.
  A lone call pays a yield (``HANDOFF`` for a thread). A batch is sealed before
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
  one else yet: 2 of 7 trials of 16 threads, measured), and a later Flush of a
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
waiting (it is held to start a shared GetFlushState, which does not block); the
drivers (``_sync``, ``_async``) start the RPCs and do the waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
from pymilvus.grpc_gen import milvus_pb2

from ._core import SendRpc
from ._errors import classify_status
from ._requests import flush_request, flush_state_request, sealed_state
from ._response import CollectionFlushState

__all__ = [
    "Batch",
    "Flight",
    "Group",
    "Unanswered",
    "alone",
    "answers",
    "for_client",
    "split",
]

#: How long the members of a batch watch its lead instead of their own collections:
#: collections sealed together flip within a tick or two; a lead that lags longer
#: (another vchannel, a dropped collection) then delays no one.
LEAD_FOR = 30.0
#: A "not yet" another call got is this call's too if its RPC went out less than
#: this long ago: callers that wake a few ms apart share one poll (a lone call
#: never reuses its own answers).
FRESH = 0.010
#: How long a leading thread yields before it counts the calls in progress. A thread
#: that gives up the GIL for less than another's wake-up takes it back first, and
#: then sees no one: six threads released by a barrier split into two Flushes in 16
#: of 300 trials with ``time.sleep(0)``, in 0 of 300 with this (the fake server, sync
#: driver; 1 of 200 under a busy loop per core: no yield waits for a thread the OS has
#: not run yet). Tasks yield with ``asyncio.sleep(0)``: the loop runs every ready task.
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
    """One Flush being prepared for the calls that joined it, then sent for them all."""

    db_name: str
    names: dict[str, None] = field(default_factory=dict)  # the union, in order
    members: int = 0
    waiting: int = 0  # members still waiting for its reply
    timeout: float = 0.0  # the longest per-RPC timeout among the members
    after: Batch | None = None  # the batch in flight when this one began: sent first
    io: Any = None  # the driver's: the shared call, once sent
    lead: Any = None  # the GetFlushState every member watches, once sealed
    ready: threading.Event = field(default_factory=threading.Event)  # io is set
    landed: threading.Event = field(default_factory=threading.Event)  # io is done

    def request(self) -> Any:
        return flush_request(self.db_name, list(self.names))


@dataclass(eq=False)
class Flight:
    """One GetFlushState RPC in flight, and how many calls wait for its answer."""

    call: Any  # the driver's: a gRPC future / an asyncio task
    asker: object = None  # the call that started it
    sent_at: float = 0.0
    waiters: int = 1


class Group:
    """What the calls on one (client, database) share. Every method takes the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active = 0  # calls in progress
        self._forming: Batch | None = None
        self._in_flight: Batch | None = None  # the last batch sent, until it is answered
        self._flights: dict[bytes, Flight] = {}
        self._flushed: dict[bytes, tuple[Any, float]] = {}  # "flushed" answers, asked when
        self._leads: dict[bytes, tuple[Any, float]] = {}  # question -> (lead, until when)
        self._not_yet: dict[bytes, tuple[Any, object, float]] = {}  # (reply, asker, sent)
        self._earlier: dict[bytes, tuple[Any, float]] = {}  # batches' questions, sealed when

    # -- calls --------------------------------------------------------------------

    def enter(self) -> None:
        with self._lock:
            self.active += 1

    def leave(self) -> None:
        with self._lock:
            self.active -= 1
            if not self.active:
                self._flushed.clear()
                self._leads.clear()
                self._not_yet.clear()
                self._earlier.clear()

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
        with self._lock:
            return seconds if self.active > 1 else 0.0

    def seal(self, batch: Batch) -> tuple[Any, float]:
        """No one joins ``batch`` any more: its Flush request and per-RPC timeout."""
        with self._lock:
            if self._forming is batch:  # the first seal: it goes out now
                self._forming = None
                self._in_flight = batch
            batch.after = None
            return batch.request(), batch.timeout

    def done_waiting(self, batch: Batch) -> bool:
        """A member stops waiting for ``batch``'s reply: whether it was the last (so a
        driver that stops without the reply cancels the Flush: no one needs it)."""
        with self._lock:
            batch.waiting -= 1
            return batch.waiting == 0

    def landed(self, batch: Batch) -> None:
        """``batch``'s Flush was answered (or failed): the next one may go."""
        with self._lock:
            if self._in_flight is batch:
                self._in_flight = None
        batch.landed.set()

    # -- GetFlushState --------------------------------------------------------------

    def flight(self, request: Any, start: Callable[[], Any], now: float, asker: object) -> Any:
        """The shared flight of ``request`` (started with ``start()`` if there is none),
        or a reply already known for it: "flushed" (final), or a "not yet" another
        call got from an RPC sent less than ``FRESH`` seconds before ``now``."""
        key = _key(request)
        with self._lock:
            known = self._flushed.get(key)
            if known is not None:
                return known[0]
            recent = self._not_yet.get(key)
            if recent is not None and recent[1] is not asker and now - recent[2] < FRESH:
                return recent[0]
            flight = self._flights.get(key)
            if flight is not None:
                flight.waiters += 1
                return flight
            flight = self._flights[key] = Flight(start(), asker=asker, sent_at=now)
        flight.call.add_done_callback(lambda call: self._landed(key, flight, call))
        return flight

    def sealed(self, batch: Batch, reply: Any, now: float) -> None:
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
            # what stands in or answers no more is forgotten: calls may be in progress
            # without end (an answer forgotten too soon costs a poll, nothing more)
            self._leads = {k: v for k, v in self._leads.items() if v[1] > now}
            self._earlier = {
                k: v
                for k, v in self._earlier.items()
                if now - v[1] < LEAD_FOR and k not in self._flushed
            }
            self._flushed = {k: v for k, v in self._flushed.items() if now - v[1] < LEAD_FOR}
            self._not_yet = {k: v for k, v in self._not_yet.items() if now - v[2] < FRESH}
            followers = requests[1:] if batch.members > 1 else []
            followers += [  # earlier questions about these collections: sealed before
                r for r, _ in self._earlier.values() if r.collection_name in batch.names
            ]
            for request in followers:
                self._leads[_key(request)] = (lead, now + LEAD_FOR)
            self._earlier.update((_key(request), (request, now)) for request in requests)

    def stand_ins(self, requests: tuple[Any, ...], now: float) -> list[Any]:
        """What to ask for each request at ``now``: its batch's lead while the lead is
        not known to be flushed (the request's own "not yet" is then inferred: see
        ``answers``), for ``LEAD_FOR`` seconds at most; else the request itself."""
        with self._lock:
            asked = []
            for request in requests:
                lead, until = self._leads.get(_key(request), (None, 0.0))
                stands_in = lead is not None and now < until and _key(lead) not in self._flushed
                asked.append(lead if stands_in else request)
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

    def _landed(self, key: bytes, flight: Flight, call: Any) -> None:
        try:
            reply = call.result()
        except BaseException:  # failed or cancelled: each waiter sees that itself
            reply = None
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
            if not self.active or reply is None or reply.status.code:
                return
            if reply.flushed:
                self._flushed[key] = (reply, flight.sent_at)
                self._not_yet.pop(key, None)
            else:
                self._not_yet[key] = (reply, flight.asker, flight.sent_at)


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


def split(batch: Batch, reply: Any) -> bool:
    """Whether each member must send its own Flush after ``reply`` to a shared one: it
    failed for good (not a retryable status), and for more than one call."""
    if batch.members < 2 or not isinstance(reply, milvus_pb2.FlushResponse):
        return False
    failure = classify_status(reply.status, "Flush")
    return failure is not None and not failure.retryable


def alone(action: SendRpc, spent: float) -> SendRpc:
    """``action`` (a Flush of one call's names) to send by itself, with what is left
    of its per-RPC timeout after ``spent`` seconds of waiting for the shared one."""
    return replace(action, timeout=max(action.timeout - spent, 0.001))


_groups_lock = threading.Lock()
#: The attribute of a client that holds its groups (they live and die with it).
_GROUPS = "_flush_sync_groups"


def for_client(client: Any, db_name: str) -> Group:
    """The group of one client (the wrapped one, for a ``wrap`` proxy) and database."""
    owner = vars(getattr(client, "__wrapped__", client))
    with _groups_lock:
        groups: dict[str, Group] = owner.setdefault(_GROUPS, {})
        return groups.setdefault(db_name, Group())
