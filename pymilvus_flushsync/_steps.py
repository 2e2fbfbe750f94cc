"""The steps of a call and the tables that chain them: what each phase sends, and
where each answer leads.

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

A call is in one ``Phase`` (``_state``). Each phase but the two ends has one
``Step``: the RPC it sends, the reply type it expects, how its requests are
built, how a successful reply is read (into an ``Event``) and how the step is
described in logs and errors. A ``Table`` holds the steps of one kind of call
and its moves, ``phase -> {event: next phase}``, which ``_state.CallState``
checks, in one place, at every move. Every phase but DONE may move to FAILED (a
final failure, the deadline, the retry budget, an exception mid-step). A failed RPC
is an event too (``failure_events``), and the call takes the first of its events that
its table lists: ``RETRY`` (every phase with a step retries itself after the
back-off: ``Table`` lists it), ``LOST`` (a retried failure that may have cost the
server its Flush, as it was unreachable or restarting: back to the sealing phase),
``REFUSED``/``UNSTAMPED`` (a rate-limited Flush: the shared window), the step's
``fallback`` (the server declined the RPC), ``GONE`` (below). The tables, as they
read (``RETRY`` left out)::

    FLUSH (names given)     FLUSH -SEALED-> POLL          FLUSH -UNMENTIONED-> CHECK
                            CHECK -CHECKED-> CHECK        CHECK -EXIST-> POLL
                            POLL  -NOT_YET-> POLL         POLL  -FLUSHED-> DONE
                            CHECK, POLL -LOST-> FLUSH
    IDENTIFIED (flush_sync) FLUSH's, but POLL -FLUSHED-> CONFIRM -DESCRIBED-> DONE
                            (CONFIRM declined: DESCRIBED, and no ticket)
    EVERY (names=None)      LIST -LISTED-> FLUSH          LIST -EMPTY-> DONE; then FLUSH's
    SWEPT (after FlushAll)  LIST -LISTED-> COVER          LIST -EMPTY-> DONE; then FLUSH's
                            every phase after LIST -GONE-> LIST (EVERY, SWEPT)
    LISTING (seal=False)    LIST -LISTED-> DONE           LIST -EMPTY-> DONE
    FLUSH_ALL               FLUSH_ALL -SEALED-> POLL_ALL  FLUSH_ALL -NOT_BROADCAST-> DONE
                            POLL_ALL -NOT_YET-> POLL_ALL  POLL_ALL -FLUSHED-> DONE
                            POLL_ALL -LOST-> FLUSH_ALL    FLUSH_ALL -GONE-> FLUSH_ALL
    ALL_DATABASES           ASK -ONE_DATABASE-> SEALING   ASK -BROADCASTS-> LISTING
    (flush_all_sync: each   ASK -SWEEPS-> LISTING         LISTING -LISTED-> FLUSH_ALL
    phase drives machines)  LISTING -EMPTY-> DONE         FLUSH_ALL -FLUSHED-> DONE
                            FLUSH_ALL -NOT_BROADCAST-> SEALING  SEALING -FLUSHED-> DONE
    VISIBLE_FLUSH           DESCRIBE -DESCRIBED-> STAMP   STAMP -STAMPED/NO_STAMP-> DONE
    VISIBLE_EVERY           LIST -LISTED-> DESCRIBE       then VISIBLE_FLUSH's
    VISIBLE_WAIT            DESCRIBE -DESCRIBED-> DONE

``LIST`` (``ShowCollections``) lists every collection of a database under the
same deadline. A collection another client drops after the listing answers "not
found" (``_errors.gone``) to whatever comes next: such a call lists again
(``GONE``) and goes on with the collections of its first listing still there, none
new. A drop under way may still be listed: after ``UNEXPLAINED_LISTINGS`` listings
again that miss nothing, the error stands. A call given its names fails at once.
A FlushAll lists for itself: one that answers "not found" (a collection dropped during
the server's own sweep: 2.3.5's says "channel not found", code 500 or 65535) is sent
again, at most ``UNEXPLAINED_LISTINGS`` times.
``FLUSH_ALL`` is FlushAll, for ``flush_all_sync`` (docs/guarantees.md,
"flush_all_sync and FlushAll"). On Milvus 2.6.8+ its reply's
per-channel messages give the time ticks GetFlushAllState is asked about. A reply
without them (older servers) is NOT_BROADCAST, as is a FlushAll that is UNIMPLEMENTED
(Milvus Lite) or beyond the caller's privileges (PERMISSION_DENIED). The caller then
takes each database's collections through SWEPT, covered at the reply's
``flush_all_ts`` (no Flush for what the FlushAll sealed), or through EVERY without
that timestamp (``_call.AllDatabases``). A new barrier is a new step and a table.

``until="visible"`` sends no Flush: ``staged`` gives each call its VISIBLE table, whose
DescribeCollection and AllocTimestamp (a ticket's DescribeCollection alone) make the
response's ticket (``Work.ticket``; docs/guarantees.md, "Visible").
``staged`` extends a table past persisted (``until="indexed"`` or ``"loaded"``):
DescribeIndex's counts (INDEX), then one refresh and the query nodes' segments
(REFRESH, STILL_LOADED, SEGMENTS_NOW, SERVING), under the same deadline and retries
(docs/guarantees.md, "Beyond persisted").
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pymilvus.exceptions import MilvusException
from pymilvus.grpc_gen import common_pb2, milvus_pb2

from ._errors import (
    INDEX_NOT_FOUND,
    Failure,
    collection_not_found,
    collection_not_loaded,
    gone,
    index_failed,
    ticket_mismatch,
    undecodable,
)
from ._history import FlushHistory
from ._progress import Progress
from ._requests import (
    DEFAULT_DB,
    broadcast_ticks,
    collection_names,
    flush_request,
    flush_state_request,
)
from ._response import CollectionFlushState, FlushSyncResponse
from ._schedule import Decision, Fail, FlushPolicy, PollSchedule
from ._stages import INDEXED, LOADED, VISIBLE, Stage, stages_until
from ._state import CallState, Event, Moves, Phase
from ._ticket import FlushTicket, TicketCollection
from ._ticks import TickModel

__all__ = [
    "ALL_DATABASES",
    "EVERY",
    "FLUSH",
    "FLUSH_ALL",
    "IDENTIFIED",
    "LISTING",
    "SEAL",
    "SWEPT",
    "WAIT",
    "Known",
    "Next",
    "Shared",
    "Step",
    "Table",
    "Work",
    "failure_events",
    "staged",
]

#: Listings again (``GONE``) that still hold every collection the call listed, before
#: its "not found" stands: a collection being dropped may be listed a while yet.
UNEXPLAINED_LISTINGS = 3


class Shared(enum.Enum):
    """Which of a step's RPCs group commit may share among calls (``_group``)."""

    FLUSH = "flush"
    POLL = "poll"


@dataclass(frozen=True)
class Known:
    """What a call knows of its collections before it starts: a ticket's (for
    ``wait_flushed``: each one's state as sealed, its identity to check, the ticket),
    and this process's last write timestamps (``_compat.write_timestamps``), for a
    ticket where the server gives no timestamp."""

    states: Mapping[str, CollectionFlushState] = field(default_factory=dict)
    expected: Mapping[str, tuple[int, int]] | None = None
    ticket: FlushTicket | None = None
    written: Mapping[str, int] = field(default_factory=dict)

    @property
    def cover_ts(self) -> dict[str, int]:
        """The flush timestamps that cover a refused Flush of each collection."""
        return {name: state.flush_ts for name, state in self.states.items()}


@dataclass(eq=False)
class Work:
    """What a call's steps read and write: all of a call but its phase and retries."""

    progress: Progress
    polls: PollSchedule
    clock: Callable[[], float]
    policy: FlushPolicy = field(default_factory=FlushPolicy)  # the call's own
    history: FlushHistory | None = None  # the endpoint's accepted Flushes
    sent_at: float = 0.0  # when the RPC being answered was sent
    cover_ts: dict[str, int] = field(default_factory=dict)  # COVER: name -> timestamp
    reflush_at: float = 0.0  # COVER: when a refused Flush may be sent again
    floor: int = 0  # SWEPT: a FlushAll's timestamp, covering every listed collection
    identity: dict[str, tuple[int, int]] = field(default_factory=dict)  # DESCRIBE found
    expected: dict[str, tuple[int, int]] | None = None  # a ticket's identities
    unchecked: list[str] = field(default_factory=list)  # CHECK: names still to check
    broadcast: dict[str, int] = field(default_factory=dict)  # FLUSH_ALL: channel -> tick
    stage_round: int = 0  # INDEX, SERVING: rounds of the stage so far (its back-off)
    flushed_now: dict[str, Flushed] = field(default_factory=dict)  # SEGMENTS_NOW
    recheck_at: float = 0.0  # SERVING: when to check the load state and segments again
    gone: MilvusException | None = None  # GONE: the "not found" that sent LIST again
    unexplained: int = 0  # GONE: listings again that still held every collection
    known: Known = field(default_factory=Known)  # before the call (``Known``)

    @classmethod
    def of(  # noqa: PLR0917  # the machine's own arguments, passed on
        cls,
        progress: Progress,
        policy: FlushPolicy,
        ticks: TickModel | None,
        clock: Callable[[], float],
        history: FlushHistory | None,
        cover_ts: dict[str, int],
        floor: int,
        known: Known | None = None,
    ) -> Work:
        """A call's work, with its policy's schedules (``FlushMachine``), and what a
        ticket knows (``known``) in place before the first step."""
        polls = PollSchedule(policy.poll, ticks)
        work = cls(progress, polls, clock, policy, history, cover_ts=dict(cover_ts), floor=floor)
        if known is not None:
            progress.states.update(known.states)
            work.known = known
            work.expected = None if known.expected is None else dict(known.expected)
        return work

    def response(self, flushed: bool) -> FlushSyncResponse:
        """The call's response as it stands, with its ticket once it is done."""
        response = self.progress.response(flushed)
        return replace(response, ticket=self.ticket()) if flushed else response

    def ticket(self) -> FlushTicket | None:
        """What the call identified, sealed and covered (``_ticket``); ``None`` where it
        did not identify every collection. Each is visible at the first of: the call's
        ``AllocTimestamp`` (visible; a refused Flush's cover), the Flush's timestamp (it
        covers every write before it), or, where the server gave neither (Milvus Lite, a
        refused ``AllocTimestamp``), this process's last write before the call
        (``covers="process"``). ``wait_flushed``: the ticket waited on."""
        states, known = self.progress.states, self.known
        if known.ticket is not None or not states or not states.keys() <= self.identity.keys():
            return known.ticket
        stamped = {
            name: self.cover_ts.get(name) or state.flush_ts for name, state in states.items()
        }
        return FlushTicket(
            self.progress.db_name,
            tuple(
                TicketCollection(
                    name, *self.identity[name], state.segment_ids, state.flush_ts,
                    stamped[name] or known.written.get(name, 0),
                )
                for name, state in states.items()
            ),
            "all" if all(stamped.values()) else "process",
        )  # fmt: skip

    @property
    def db(self) -> str:
        """The database as the caller asked for it (``""``: the server's default)."""
        return self.progress.requested_db


@dataclass(frozen=True)
class Next:
    """A step's reading of a successful reply: the event, and the delay it owes first."""

    event: Event
    delay: float = 0.0


Requests = tuple[Any, ...]


@dataclass(frozen=True)
class Step:
    """One phase's RPC: how its requests are built from the call's ``Work``, and how a
    successful reply (``reply``'s type, status checked) moves the call on.

    ``polls``: its requests count as polls in the response; ``shared``: which group
    commit shares; ``retry_at``: when a rate-limited refusal may pass (``_history``);
    ``refused``: the event a rate-limited refusal moves on, given when the refused RPC
    may be sent again (the shared window); ``fallback``: the event an UNIMPLEMENTED
    or PERMISSION_DENIED answer moves on, instead of failing the call; ``settles``:
    its successful reply ends a run of failures (not the shared window's, which wait
    on a refused Flush: its back-off goes on growing); ``answers``: status codes that
    are answers for ``read``, not failures (DescribeIndex's "index not found");
    ``on_fallback``: what the ``fallback`` records first; ``label``: how logs and
    errors name a round of its requests (by default the method and the collections
    they ask about).
    """

    method: str
    reply: type
    build: Callable[[Work], Requests]
    read: Callable[[Work, Requests, list[Any]], Next | Fail]
    label: Callable[[Requests], str] | None = None
    polls: bool = False
    shared: Shared | None = None
    retry_at: Callable[[Work, float], float | None] | None = None
    refused: Callable[[Work, float], Event] | None = None
    fallback: Event | None = None
    settles: bool = True
    answers: frozenset[int] = frozenset()
    on_fallback: Callable[[Work], None] | None = None
    optional: bool = False

    def describe(self, requests: Requests) -> str:
        """A round of its requests, as logs and errors name it."""
        if self.label is not None:
            return self.label(requests)
        return f"{self.method} {collection_names(requests)}"


@dataclass(frozen=True)
class Table:
    """One kind of call: its first phase, its steps and its moves (module docstring)."""

    name: str
    first: Phase
    steps: Mapping[Phase, Step]
    moves: Moves
    persists: bool = True  # False: it ends once sealed (start_flush)

    def __post_init__(self) -> None:
        ends = {Phase.DONE, Phase.FAILED}
        targets = {to for row in self.moves.values() for to in row.values()}
        reached = {self.first, *self.moves, *targets} - ends
        if not reached <= set(self.steps):
            raise ValueError(f"table {self.name}: a phase without a step")
        # every phase with a step retries itself (``failure_events``)
        retrying = {phase: {**self.moves.get(phase, {}), Event.RETRY: phase} for phase in reached}
        object.__setattr__(self, "moves", {**self.moves, **retrying})

    def state(self) -> CallState:
        """A call's state at the table's first phase."""
        return CallState(self.name, self.first, self.moves)


# -- the steps ----------------------------------------------------------------------


def _list_read(work: Work, requests: Requests, replies: list[Any]) -> Next | Fail:
    listed = list(dict.fromkeys(replies[0].collection_names))
    if work.gone is not None:  # listed again (GONE): what is left of the first listing
        before, there = list(work.progress.states), set(listed)
        listed = [name for name in before if name in there]
        if len(listed) == len(before):  # none gone yet: a drop under way, or none at all
            work.unexplained += 1
            if work.unexplained > UNEXPLAINED_LISTINGS:
                return Fail(work.gone)
        work.gone = None
    work.progress.listed(listed)
    if work.floor:  # SWEPT: what the FlushAll sealed is covered at its timestamp
        for name in work.progress.pending:
            work.cover_ts[name] = max(work.cover_ts.get(name, 0), work.floor)
        work.reflush_at = work.clock() + work.policy.flush_all_grace
    return Next(Event.LISTED if work.progress.pending else Event.EMPTY)


def _flush_read(work: Work, requests: Requests, replies: list[Any]) -> Next:
    pending = work.progress.pending
    if work.history is not None:
        work.history.accepted(work.db, pending, work.sent_at)
    work.unchecked = work.progress.sealed(replies[0])
    delay = work.polls.restart(work.clock(), len(pending))
    return Next(Event.UNMENTIONED if work.unchecked else Event.SEALED, delay)


def _flush_retry_at(work: Work, rate: float) -> float | None:
    history = work.history
    return None if history is None else history.retry_at(work.db, work.progress.pending, rate)


def _check_read(work: Work, requests: Requests, replies: list[Any]) -> Next | Fail:
    name = requests[0].collection_name
    if not replies[0].value:
        return Fail(collection_not_found(name, work.progress.db_name))
    work.unchecked.remove(name)
    return Next(Event.CHECKED if work.unchecked else Event.EXIST)


def _poll_build(work: Work) -> Requests:
    states = work.progress.states
    asked = work.polls.names(work.progress.pending)
    return tuple(flush_state_request(work.db, states[name]) for name in asked)


def _poll_read(work: Work, requests: Requests, replies: list[Any]) -> Next:
    now = work.clock()
    flushed = [r.collection_name for r, one in zip(requests, replies, strict=True) if one.flushed]
    for name in flushed:
        work.progress.flushed(name, now)
    waiting = len(flushed) < len(requests)
    delay = work.polls.after_round(bool(flushed), waiting, work.sent_at, now)
    return Next(Event.NOT_YET if work.progress.pending else Event.FLUSHED, delay)


def _flush_all_read(work: Work, requests: Requests, replies: list[Any]) -> Next | Fail:
    work.floor = int(replies[0].flush_all_ts)
    try:
        work.broadcast = broadcast_ticks(replies[0])
    except ValueError as error:
        return Fail(undecodable(f"FlushAll: {error}").error)
    delay = work.polls.restart(work.clock())
    return Next(Event.SEALED if work.broadcast else Event.NOT_BROADCAST, delay)


def _poll_all_read(work: Work, requests: Requests, replies: list[Any]) -> Next:
    flushed, now = bool(replies[0].flushed), work.clock()
    delay = work.polls.after_round(flushed, not flushed, work.sent_at, now)
    if not flushed:
        return Next(Event.NOT_YET, delay)
    flush_ts = max(work.broadcast.values())
    for name in list(work.progress.pending):
        work.progress.flushed(name, now, flush_ts)
    return Next(Event.FLUSHED, delay)


def _flush_refused(work: Work, reflush_at: float) -> Event:
    work.reflush_at = reflush_at
    unknown = any(name not in work.cover_ts for name in work.progress.pending)
    return Event.UNSTAMPED if unknown else Event.REFUSED


def _describe_build(work: Work) -> Requests:
    return tuple(
        milvus_pb2.DescribeCollectionRequest(db_name=work.db, collection_name=name)
        for name in work.progress.states
    )


def _describe_read(work: Work, requests: Requests, replies: list[Any]) -> Next | Fail:
    for request, reply in zip(requests, replies, strict=True):
        name, found = request.collection_name, (reply.collectionID, reply.created_timestamp)
        expected = work.expected and work.expected.get(name)
        if expected and expected != found:
            return Fail(ticket_mismatch(name, work.progress.db_name, expected, found))
        work.identity[name] = found
    if work.expected is None:  # start_flush: the Flush follows at once
        return Next(Event.DESCRIBED)
    delay = work.polls.restart(work.clock(), len(work.progress.pending))  # a ticket's polls
    return Next(Event.DESCRIBED, delay)


def _stamp_read(work: Work, requests: Requests, replies: list[Any]) -> Next:
    for name in work.progress.pending:
        work.cover_ts.setdefault(name, int(replies[0].timestamp))
    return Next(Event.STAMPED)


def _cover_build(work: Work) -> Requests:
    return tuple(
        flush_state_request(work.db, CollectionFlushState(name, flush_ts=work.cover_ts[name]))
        for name in work.progress.pending
    )


def _cover_read(work: Work, requests: Requests, replies: list[Any]) -> Next:
    if all(reply.flushed for reply in replies):
        return Next(Event.COVERED)
    now = work.clock()
    if now + work.policy.window_poll >= work.reflush_at:  # no poll before the allowance
        return Next(Event.REFLUSH, max(0.0, work.reflush_at - now))
    return Next(Event.NOT_YET, work.policy.window_poll)


def _each(
    names: Callable[[Work], list[str]], request: Callable[[str, str], Any]
) -> Callable[[Work], Requests]:
    """A step's ``build``: one ``request(db, name)`` per collection of ``names``."""
    return lambda work: tuple(request(work.db, name) for name in names(work))


def _waiting(stage: Stage) -> Callable[[Work], list[str]]:
    """The collections that have not reached ``stage`` (``Progress.waiting``)."""
    return lambda work: work.progress.waiting[stage.name]


def _segment_infos(db: str, name: str) -> Any:
    return milvus_pb2.GetPersistentSegmentInfoRequest(dbName=db, collectionName=name)


def _segments_read(work: Work, requests: Requests, replies: list[Any]) -> Next:
    for request, reply in zip(requests, replies, strict=True):
        sealed = tuple(i.segmentID for i in reply.infos if i.state in _NOT_YET_FLUSHED)
        name = request.collectionName
        work.progress.covered(name, sealed, work.cover_ts[name])
    delay = work.polls.restart(work.clock(), len(work.progress.pending))
    return Next(Event.FOUND, delay)


#: Segments sealed but not yet flushed (``common.SegmentState``: Sealed, Flushing).
_NOT_YET_FLUSHED = frozenset({3, 5})


def _load_state_read(work: Work, requests: Requests, replies: list[Any]) -> Next | Fail:
    """Loaded or loading, each (``common.LoadState``: 2 Loading, 3 Loaded)."""
    for request, reply in zip(requests, replies, strict=True):
        if reply.state not in _LOADED_OR_LOADING:
            return Fail(collection_not_loaded(request.collection_name, work.progress.db_name))
    return Next(Event.LOADABLE)


_LOADED_OR_LOADING = frozenset({2, 3})


def _stage_delay(work: Work) -> float:
    """The delay after a round of a stage's polls that left some behind."""
    delay = work.policy.stage_poll.delay(work.stage_round)
    work.stage_round += 1
    return delay


def _index_read(work: Work, requests: Requests, replies: list[Any]) -> Next | Fail:
    """Indexed: no index of the collection has rows pending (docs/guarantees.md,
    "Beyond persisted"); no index: nothing to build. A failed build fails the call."""
    now = work.clock()
    for request, reply in zip(requests, replies, strict=True):
        name = request.collection_name
        if reply.status.code == INDEX_NOT_FOUND:
            work.progress.reached(INDEXED, name, now, indexes=0)
            continue
        indexes = list(reply.index_descriptions)
        failed = next((i for i in indexes if i.state == _INDEX_FAILED), None)
        if failed is not None:
            return Fail(index_failed(name, failed.index_name, failed.index_state_fail_reason))
        if all(i.pending_index_rows == 0 and i.indexed_rows >= i.total_rows for i in indexes):
            work.progress.reached(INDEXED, name, now, indexes=len(indexes))
    if work.progress.waiting[INDEXED.name]:
        return Next(Event.NOT_YET, _stage_delay(work))
    work.stage_round = 0  # the next stage's back-off starts again
    return Next(Event.INDEXED)


_INDEX_FAILED = 4  # common.IndexState.Failed


def _segments_now_read(work: Work, requests: Requests, replies: list[Any]) -> Next:
    for request, reply in zip(requests, replies, strict=True):
        flushed = [i for i in reply.infos if i.state == _FLUSHED and i.num_rows > 0]
        work.flushed_now[request.collectionName] = Flushed(
            frozenset(i.segmentID for i in flushed),
            frozenset(i.segmentID for i in flushed if i.num_rows >= work.policy.index_min_rows),
        )
    work.recheck_at = work.clock() + work.policy.stage_recheck
    return Next(Event.FOUND)


_FLUSHED = 4  # common.SegmentState.Flushed


@dataclass(frozen=True)
class Flushed:
    """A collection's Flushed segments with rows (SEGMENTS_NOW), and those of them
    with ``FlushPolicy.index_min_rows`` or more, which the query nodes serve indexed."""

    rows: frozenset[int] = frozenset()
    built: frozenset[int] = frozenset()


def _serving_read(work: Work, requests: Requests, replies: list[Any]) -> Next:
    """Served: every segment Flushed now (a compaction's too: what it replaced is no
    longer Flushed) is on a query node, with an index name where the collection has
    an index and the segment is large enough to be built (``Flushed.built``)."""
    now = work.clock()
    for request, reply in zip(requests, replies, strict=True):
        name = request.collectionName
        flushed = work.flushed_now.get(name, Flushed())
        served = {i.segmentID for i in reply.infos}
        with_index = {i.segmentID for i in reply.infos if i.index_name}
        built = flushed.built if work.progress.states[name].indexes else frozenset()
        if flushed.rows <= served and built <= with_index:
            work.progress.reached(LOADED, name, now)
    if not work.progress.waiting[LOADED.name]:
        return Next(Event.SERVED)
    delay = _stage_delay(work)
    return Next(Event.RECHECK if now + delay >= work.recheck_at else Event.NOT_YET, delay)


def _served_as_loaded(work: Work) -> None:
    """No segment listing (Milvus Lite): served once GetLoadState said Loaded."""
    now = work.clock()
    for name in list(work.progress.waiting[LOADED.name]):
        work.progress.reached(LOADED, name, now)


_DESCRIBE = Step(
    "DescribeCollection",
    milvus_pb2.DescribeCollectionResponse,
    _describe_build,
    _describe_read,
)
_LOAD_STATE = Step(
    "GetLoadState",
    milvus_pb2.GetLoadStateResponse,
    _each(
        _waiting(LOADED),
        lambda db, name: milvus_pb2.GetLoadStateRequest(db_name=db, collection_name=name),
    ),
    _load_state_read,
)
STEPS: Mapping[Phase, Step] = {
    Phase.LIST: Step(
        "ShowCollections",
        milvus_pb2.ShowCollectionsResponse,
        lambda work: (milvus_pb2.ShowCollectionsRequest(db_name=work.db),),
        _list_read,
        lambda requests: f"ShowCollections [database {requests[0].db_name or DEFAULT_DB!r}]",
    ),
    Phase.FLUSH: Step(
        "Flush",
        milvus_pb2.FlushResponse,
        lambda work: (flush_request(work.db, work.progress.pending),),
        _flush_read,
        lambda requests: f"Flush {list(requests[0].collection_names)}",
        shared=Shared.FLUSH,
        retry_at=_flush_retry_at,
        refused=_flush_refused,
    ),
    Phase.CHECK: Step(
        "HasCollection",
        milvus_pb2.BoolResponse,
        lambda work: (
            milvus_pb2.HasCollectionRequest(db_name=work.db, collection_name=work.unchecked[0]),
        ),
        _check_read,
    ),
    Phase.POLL: Step(
        "GetFlushState",
        milvus_pb2.GetFlushStateResponse,
        _poll_build,
        _poll_read,
        polls=True,
        shared=Shared.POLL,
    ),
    Phase.DESCRIBE: _DESCRIBE,
    Phase.CONFIRM: _DESCRIBE,
    Phase.STAMP: Step(
        "AllocTimestamp",
        milvus_pb2.AllocTimestampResponse,
        lambda work: (milvus_pb2.AllocTimestampRequest(),),
        _stamp_read,
        lambda requests: "AllocTimestamp",
        fallback=Event.NO_STAMP,
        settles=False,
    ),
    Phase.COVER: Step(
        "GetFlushState",
        milvus_pb2.GetFlushStateResponse,
        _cover_build,
        _cover_read,
        polls=True,
        shared=Shared.POLL,
        settles=False,
    ),
    Phase.SEGMENTS: Step(
        "GetPersistentSegmentInfo",
        milvus_pb2.GetPersistentSegmentInfoResponse,
        _each(lambda work: work.progress.pending, _segment_infos),
        _segments_read,
        settles=False,
    ),
    Phase.LOAD_CHECK: _LOAD_STATE,
    Phase.STILL_LOADED: _LOAD_STATE,
    Phase.INDEX: Step(
        "DescribeIndex",
        milvus_pb2.DescribeIndexResponse,
        _each(
            _waiting(INDEXED),
            lambda db, name: milvus_pb2.DescribeIndexRequest(db_name=db, collection_name=name),
        ),
        _index_read,
        polls=True,
        answers=frozenset({INDEX_NOT_FOUND}),
    ),
    Phase.REFRESH: Step(
        "LoadCollection",
        common_pb2.Status,
        _each(
            _waiting(LOADED),
            lambda db, name: milvus_pb2.LoadCollectionRequest(
                db_name=db, collection_name=name, refresh=True
            ),
        ),
        lambda work, requests, replies: Next(Event.REFRESHED),
        label=lambda requests: f"LoadCollection(refresh) {collection_names(requests)}",
        fallback=Event.REFRESHED,  # refused (not fully loaded yet, no privilege): poll
        optional=True,
    ),
    Phase.SEGMENTS_NOW: Step(
        "GetPersistentSegmentInfo",
        milvus_pb2.GetPersistentSegmentInfoResponse,
        _each(_waiting(LOADED), _segment_infos),
        _segments_now_read,
        fallback=Event.SERVED,  # Milvus Lite: loaded is what GetLoadState says
        on_fallback=_served_as_loaded,
    ),
    Phase.SERVING: Step(
        "GetQuerySegmentInfo",
        milvus_pb2.GetQuerySegmentInfoResponse,
        _each(
            _waiting(LOADED),
            lambda db, name: milvus_pb2.GetQuerySegmentInfoRequest(dbName=db, collectionName=name),
        ),
        _serving_read,
        polls=True,
        fallback=Event.SERVED,
        on_fallback=_served_as_loaded,
    ),
    Phase.FLUSH_ALL: Step(
        "FlushAll",
        milvus_pb2.FlushAllResponse,
        lambda work: (milvus_pb2.FlushAllRequest(),),
        _flush_all_read,
        lambda requests: "FlushAll",
        fallback=Event.NOT_BROADCAST,  # Milvus Lite: flush_all_sync flushes per database
    ),
    Phase.POLL_ALL: Step(
        "GetFlushAllState",
        milvus_pb2.GetFlushAllStateResponse,
        lambda work: (milvus_pb2.GetFlushAllStateRequest(flush_all_tss=work.broadcast),),
        _poll_all_read,
        lambda requests: "GetFlushAllState",
        polls=True,
    ),
}

# -- failures as events ---------------------------------------------------------------


def failure_events(step: Step, failure: Failure, decision: Decision) -> tuple[Event, ...]:
    """The events a failed RPC of ``step`` may move on, in order: the call follows the
    first its table lists (``_core._follow``). A final failure: ``GONE`` where it may
    say a collection was dropped meanwhile, the step's ``fallback`` where the server
    declined (or the step is optional), else ``FAILED``. A retried one: ``REFUSED`` (a
    rate-limited Flush: the shared window; ``step.refused`` says which of REFUSED or
    UNSTAMPED), ``LOST`` where the server may have lost the Flush, else ``RETRY``."""
    if isinstance(decision, Fail):
        relist = (Event.GONE,) if gone(failure.error) else ()
        declined = failure.declined or step.optional
        fallback = (step.fallback,) if declined and step.fallback else ()
        return (*relist, *fallback, Event.FAILED)
    refused = (Event.REFUSED,) if failure.rate is not None and step.refused else ()
    lost = (Event.LOST,) if decision.reflush else ()
    return (*refused, *lost, Event.RETRY)


# -- the tables (module docstring) ----------------------------------------------------


def _sealing(then: Phase) -> dict[Phase, dict[Event, Phase]]:
    """Flush, its checks, and the shared window, each ending in ``then``."""
    return {
        Phase.FLUSH: {
            Event.SEALED: then,
            Event.UNMENTIONED: Phase.CHECK,
            Event.REFUSED: Phase.COVER,
            Event.UNSTAMPED: Phase.STAMP,
        },
        Phase.CHECK: {Event.CHECKED: Phase.CHECK, Event.EXIST: then, Event.LOST: Phase.FLUSH},
        Phase.STAMP: {Event.STAMPED: Phase.COVER, Event.NO_STAMP: Phase.FLUSH},
        Phase.COVER: {
            Event.NOT_YET: Phase.COVER,
            Event.COVERED: Phase.SEGMENTS,
            Event.REFLUSH: Phase.FLUSH,
        },
        Phase.SEGMENTS: {Event.FOUND: then},
    }


def _polling(flushed: Phase) -> dict[Phase, dict[Event, Phase]]:
    return {
        Phase.POLL: {Event.NOT_YET: Phase.POLL, Event.FLUSHED: flushed, Event.LOST: Phase.FLUSH}
    }


def _relisting(moves: Moves) -> dict[Phase, dict[Event, Phase]]:
    """``moves`` of a call that lists its collections, where every phase after LIST
    lists them again when one of them was dropped meanwhile (``GONE``)."""
    gone = {Event.GONE: Phase.LIST}
    return {phase: {**row, **({} if phase is Phase.LIST else gone)} for phase, row in moves.items()}


_SEAL_AND_WAIT: Moves = {**_sealing(Phase.POLL), **_polling(Phase.DONE)}
FLUSH = Table("flush_sync", Phase.FLUSH, STEPS, _SEAL_AND_WAIT)
#: ``flush_sync`` with a ticket (``response.ticket``): ``FLUSH``, then, once persisted,
#: what identifies each collection (CONFIRM), as ``wait_flushed`` reads it after its
#: polls; neither the Flush (calls released together share it: ``_group``) nor the
#: first poll waits for it. Where the server declines to say (a proxy without it, no
#: privilege), no ticket.
IDENTIFIED = Table(
    "flush_sync with a ticket",
    Phase.FLUSH,
    {**STEPS, Phase.CONFIRM: replace(_DESCRIBE, fallback=Event.DESCRIBED)},
    {
        **_sealing(Phase.POLL),
        **_polling(Phase.CONFIRM),
        Phase.CONFIRM: {Event.DESCRIBED: Phase.DONE},
    },
)


def _listing_first(name: str, listed: Phase) -> Table:
    """A call over every collection of a database: it lists them, then goes to
    ``listed`` (and lists again when one was dropped meanwhile)."""
    listing = {Phase.LIST: {Event.LISTED: listed, Event.EMPTY: Phase.DONE}}
    return Table(name, Phase.LIST, STEPS, _relisting({**listing, **_SEAL_AND_WAIT}))


EVERY = _listing_first("flush_sync of every collection", Phase.FLUSH)
SEAL = Table(
    "start_flush",
    Phase.DESCRIBE,
    STEPS,
    {Phase.DESCRIBE: {Event.DESCRIBED: Phase.FLUSH}, **_sealing(Phase.DONE)},
    persists=False,
)
WAIT = Table(
    "wait_flushed",
    Phase.DESCRIBE,
    STEPS,
    {
        Phase.DESCRIBE: {Event.DESCRIBED: Phase.POLL},
        **_polling(Phase.CONFIRM),
        **_sealing(Phase.POLL),
        Phase.CONFIRM: {Event.DESCRIBED: Phase.DONE},
    },
)
SWEPT = _listing_first("flush_sync of every collection, after a FlushAll", Phase.COVER)
LISTING = Table(
    "listing", Phase.LIST, STEPS, {Phase.LIST: {Event.LISTED: Phase.DONE, Event.EMPTY: Phase.DONE}}
)
FLUSH_ALL = Table(
    "FlushAll",
    Phase.FLUSH_ALL,
    STEPS,
    {
        Phase.FLUSH_ALL: {
            Event.SEALED: Phase.POLL_ALL,
            Event.NOT_BROADCAST: Phase.DONE,
            Event.GONE: Phase.FLUSH_ALL,
        },
        Phase.POLL_ALL: {
            Event.NOT_YET: Phase.POLL_ALL,
            Event.FLUSHED: Phase.DONE,
            Event.LOST: Phase.FLUSH_ALL,
        },
    },
)


def _stamp_visible(work: Work, requests: Requests, replies: list[Any]) -> Next:
    """``until="visible"``: a timestamp taken now covers every write acknowledged
    before the call, by any client (``_stamp_read``): each collection is visible at it."""
    stamped = _stamp_read(work, requests, replies)
    _visible_now(work)
    return stamped


def _visible_now(work: Work) -> None:
    """Every collection is visible now: at the call's timestamp, a ticket's, or, where
    the server gave none, at this process's writes (``Work.ticket``)."""
    now = work.clock()
    for name in list(work.progress.pending):
        work.progress.visible(name, now)


def _identified(work: Work, requests: Requests, replies: list[Any]) -> Next | Fail:
    """A ticket's identities checked: its collections are visible at its timestamps."""
    checked = _describe_read(work, requests, replies)
    if isinstance(checked, Fail):
        return checked
    _visible_now(work)
    return Next(Event.DESCRIBED)


_VISIBLE_STEPS: Mapping[Phase, Step] = {
    **STEPS,
    Phase.STAMP: replace(STEPS[Phase.STAMP], read=_stamp_visible, on_fallback=_visible_now),
}
_STAMPED: Moves = {
    Phase.DESCRIBE: {Event.DESCRIBED: Phase.STAMP},
    Phase.STAMP: {Event.STAMPED: Phase.DONE, Event.NO_STAMP: Phase.DONE},
}
#: ``until="visible"``: no Flush; what identifies each collection, then a timestamp.
VISIBLE_FLUSH = Table("flush_sync until visible", Phase.DESCRIBE, _VISIBLE_STEPS, _STAMPED)
VISIBLE_EVERY = Table(
    "flush_sync of every collection until visible",
    Phase.LIST,
    _VISIBLE_STEPS,
    _relisting({Phase.LIST: {Event.LISTED: Phase.DESCRIBE, Event.EMPTY: Phase.DONE}, **_STAMPED}),
)
#: ``wait_flushed(until="visible")``: the ticket's identities, and nothing to wait for.
VISIBLE_WAIT = Table(
    "wait_flushed until visible",
    Phase.DESCRIBE,
    {**STEPS, Phase.DESCRIBE: replace(STEPS[Phase.DESCRIBE], read=_identified)},
    {Phase.DESCRIBE: {Event.DESCRIBED: Phase.DONE}},
)


def _visible(table: Table) -> Table:
    """The table of ``table``'s call waiting until visible."""
    tables = {
        FLUSH.name: VISIBLE_FLUSH,
        IDENTIFIED.name: VISIBLE_FLUSH,
        EVERY.name: VISIBLE_EVERY,
        WAIT.name: VISIBLE_WAIT,
    }
    if table.name not in tables:
        raise ValueError(f"{table.name} has no visible stage")
    return tables[table.name]


#: ``flush_all_sync``'s stages (``_call.AllDatabases``): each phase runs a set of machines
#: at once, and the machines' outcome is the event (``_call``'s module docstring).
ALL_DATABASES: Moves = {
    Phase.ASK: {
        Event.ONE_DATABASE: Phase.SEALING,
        Event.BROADCASTS: Phase.LISTING,
        Event.SWEEPS: Phase.LISTING,
    },
    Phase.LISTING: {Event.LISTED: Phase.FLUSH_ALL, Event.EMPTY: Phase.DONE},
    Phase.FLUSH_ALL: {Event.FLUSHED: Phase.DONE, Event.NOT_BROADCAST: Phase.SEALING},
    Phase.SEALING: {Event.FLUSHED: Phase.DONE},
}


def staged(table: Table, until: str, *, refresh: bool = True) -> Table:
    """``table`` waiting ``until`` a later stage than persisted (``_stages``): what moved
    to DONE once persisted (POLL, a ticket's CONFIRM) moves on to the next stage's
    entry, each stage's moves end at the next one's entry and the last's at DONE, and a
    stage's check comes before the table's first phase (after LIST, if it lists). As
    the tables read, for ``"loaded"``::

        INDEX -NOT_YET-> INDEX          INDEX -INDEXED-> REFRESH (without ``refresh``:
        LOAD_CHECK -LOADABLE-> (the table's first phase, or what LIST led to)  STILL_LOADED)
        REFRESH -REFRESHED-> STILL_LOADED -LOADABLE-> SEGMENTS_NOW
        SEGMENTS_NOW -FOUND-> SERVING -SERVED-> DONE;   SERVING -NOT_YET-> SERVING
        every stage_recheck: SERVING -RECHECK-> STILL_LOADED
    """
    if until == VISIBLE.name:
        return _visible(table)
    later = stages_until(until)[1:]
    if not later or not table.persists:
        return table
    moves = {phase: dict(row) for phase, row in table.moves.items()}
    entries = [stage.entry(refresh) for stage in later]
    for phase in (Phase.POLL, Phase.CONFIRM):
        for event, to in moves.get(phase, {}).items():
            if to is Phase.DONE:
                moves[phase][event] = entries[0]
    for stage, then in zip(later, [*entries[1:], Phase.DONE], strict=True):
        moves.update({phase: dict(row) for phase, row in stage.moves(then, refresh).items()})
    first = table.first
    for check in [stage.check for stage in later if stage.check is not None]:
        if first is Phase.LIST:
            moves[check] = {Event.LOADABLE: moves[Phase.LIST][Event.LISTED]}
            moves[Phase.LIST][Event.LISTED] = check
        else:
            moves[check], first = {Event.LOADABLE: first}, check
    if Phase.LIST in moves:
        moves = _relisting(moves)
    return Table(f"{table.name} until {until}", first, table.steps, moves, table.persists)
