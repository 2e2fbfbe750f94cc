"""One call's ``FlushMachine``, made from a client and the caller's arguments.

The one internal entry point: the clients' ``flush_sync``, the command line and
the benchmark all start a call here and hand it to a driver (``_sync.run``,
``_async.run``).

``flush_all_sync`` (``AllDatabases``) runs in stages of machines, each stage driven
at once under the call's one deadline; which stages, per server line and why, is
docs/guarantees.md's "flush_all_sync and FlushAll":

* over every database (``db_name=None``): ``ListDatabases``, one listing machine per
  database (``seal=False``: what the response names, and what a timeout names
  pending), then one FlushAll machine (``flush_all_machine``). On Milvus 2.6.8+ (by
  ``GetVersion``, protos with 2.6.8's fields) it is a broadcast, and its polls end
  the call. Otherwise (the sweep: FlushAll is not rate-limited) one machine per
  database follows (``_steps.SWEPT``: it lists its collections and covers them at
  the FlushAll's timestamp, with a Flush only for what the FlushAll did not seal),
  as it does after a 2.6.8+ FlushAll reply without per-channel messages.
* ``db_name`` given, or FlushAll UNIMPLEMENTED (Milvus Lite): one machine per
  database (``_steps.EVERY``: it lists its collections, flushes them and waits). A
  server without databases (``ListDatabases`` UNIMPLEMENTED: Milvus Lite 2.x) has
  the client's own only.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import replace
from typing import Any

import grpc
from pymilvus.exceptions import MilvusException, MilvusUnavailableException, ParamError
from pymilvus.grpc_gen import milvus_pb2

from ._compat import (
    BROADCAST_FIELDS,
    check_lite,
    current_db_name,
    endpoint,
    session_reads_at,
    write_timestamps,
)
from ._core import FlushMachine, SendRpc, flush_all_machine, stage_failure
from ._errors import (
    classify_exception,
    classify_rpc_error,
    classify_status,
    interrupted,
    undecodable,
)
from ._history import history_for
from ._params import check_db_name, check_hook, check_names, check_timeout, check_until
from ._response import CollectionFlushState, FlushAllSyncResponse, FlushSyncResponse, ProgressHook
from ._schedule import FlushPolicy
from ._stages import PERSISTED
from ._state import CallState, Event, Phase
from ._steps import ALL_DATABASES, IDENTIFIED, SEAL, SWEPT, WAIT, Known, Table
from ._ticket import FlushTicket
from ._ticks import TickModel, for_endpoint

__all__ = [
    "AllDatabases",
    "broadcasts",
    "connect_timeout",
    "not_connected",
    "prepare",
    "prepare_seal",
    "prepare_wait",
    "reads_see",
    "ticket_of",
]

logger = logging.getLogger("pymilvus_flushsync")


def prepare(
    client: Any,
    collection_names: Any,
    db_name: Any,
    timeout: Any,
    policy: FlushPolicy,
    *,
    every: bool = False,
    since: float | None = None,
    seal: bool = True,
    on_progress: ProgressHook | None = None,
    table: Table | None = None,
    floor: int = 0,
    until: Any = PERSISTED.name,
    known: Known | None = None,
    identify: bool = False,
) -> FlushMachine:
    """Check the arguments (``ParamError`` before any RPC), resolve the database and
    the endpoint's tick model, and start the deadline (now, or at ``since``).

    ``every=True`` (the CLI's ``--all``) ignores ``collection_names`` and flushes
    every collection of the database, listed under the same deadline; with
    ``seal=False`` it only lists them. ``on_progress``: the caller's hook;
    ``table``: the kind of call (``_steps.SEAL`` for ``start_flush``); ``floor``: a
    FlushAll's timestamp, which covers every collection listed (``_steps.SWEPT``);
    ``known``: a ticket's (``_steps.Known``; else this process's last writes);
    ``until``: the last stage (``_stages``); ``identify``: named collections'
    identities too, once persisted (``_steps.IDENTIFIED``), for the response's ticket.
    """
    check_hook(on_progress)
    stage, names = check_until(until), None if every else check_names(collection_names)
    seconds, db = check_timeout(timeout), check_db_name(db_name)
    check_lite(client)
    db = current_db_name(client) if db is None else db
    return FlushMachine(
        names,
        db,
        seconds,
        policy,
        ticks=_ticks(client, policy),
        since=since,
        history=history_for(endpoint(client)),
        seal=seal,
        on_progress=on_progress,
        table=IDENTIFIED if identify and names is not None and table is None else table,
        cover_ts=known.cover_ts if known else None,
        floor=floor,
        until=stage,
        known=known or Known(written=write_timestamps(names or (), db)),
    )


def prepare_seal(client: Any, collection_names: Any, db_name: Any, timeout: Any,
                 policy: FlushPolicy, *, since: float | None = None) -> FlushMachine:  # fmt: skip
    """``start_flush``'s machine: identify, seal, and end (``_steps.SEAL``)."""
    return prepare(client, collection_names, db_name, timeout, policy, table=SEAL, since=since)


def ticket_of(machine: FlushMachine) -> FlushTicket:
    """The ticket of a machine that identified its collections (``start_flush``'s, the
    command line's), once done (``_steps.Work.ticket``)."""
    ticket = machine.work.ticket()
    if ticket is None:
        raise RuntimeError(f"{machine.table.name} identified no collection")
    return ticket


def prepare_wait(client: Any, ticket: Any, timeout: Any, policy: FlushPolicy,
                 on_progress: ProgressHook | None, *, since: float | None = None,
                 until: Any = PERSISTED.name) -> FlushMachine:  # fmt: skip
    """``wait_flushed``'s machine for ``ticket`` (``_steps.WAIT``): its identities are
    checked before and after the polls; a Flush it must send again (the server lost
    it) may be covered at the ticket's flush timestamps. A ticket that sealed nothing
    (``until="visible"``'s) is persisted once the server's checkpoint passes its
    visible timestamp: whoever's Flush, or the server's own, persisted those rows."""
    if not isinstance(ticket, FlushTicket):
        raise ParamError(message=f"ticket must be a FlushTicket, not {type(ticket).__name__}")
    known = Known(
        {one.name: CollectionFlushState(one.name, one.segment_ids,
                                        flush_ts=one.flush_ts or one.visible_ts)
         for one in ticket.collections},
        {one.name: one.identity for one in ticket.collections},
        ticket,
    )  # fmt: skip
    return prepare(
        client, ticket.names, ticket.db_name, timeout, policy, on_progress=on_progress,
        table=WAIT, since=since, until=until, known=known,
    )  # fmt: skip


def reads_see(handler: Any, ticket: FlushTicket) -> None:
    """The ticket's collections waited on: from now on the client of ``handler`` reads
    them, at ``consistency_level="Session"``, at the ticket's timestamps at least."""
    timestamps = {one.name: one.visible_ts for one in ticket.collections if one.visible_ts}
    session_reads_at(getattr(handler, "server_address", ""), ticket.db_name, timestamps)


def connect_timeout(machine: FlushMachine) -> float | None:
    """How long a driver may spend connecting: what is left of the deadline; without
    one, the retry budget (connecting is retried inside pymilvus)."""
    left = machine.remaining()
    return machine.policy.retry_budget if left is None else left


def not_connected(machine: FlushMachine) -> MilvusException:
    """Connecting took all of ``connect_timeout``: the machine FAILED, with a
    ``FlushTimeoutError`` under a deadline, else the server is unavailable."""
    if machine.remaining() is not None:
        return machine.state.fail(machine.timeout_error())
    budget = machine.policy.retry_budget
    message = f"no connection to the server within the retry budget ({budget:g} s)"
    return machine.state.fail(MilvusUnavailableException(code=2, message=message))


def _ticks(client: Any, policy: FlushPolicy) -> TickModel | None:
    """The tick model of the client's endpoint (``None``: learning is off)."""
    period = policy.tick_period
    return None if period is None else for_endpoint(endpoint(client), period)


#: The first Milvus release whose FlushAll is one broadcast answered per channel.
BROADCAST_SINCE = (2, 6, 8)
_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


def broadcasts(version: str) -> bool:
    """Whether a server reporting ``version`` (``GetVersion``: ``v2.6.8``) answers
    FlushAll per channel. Anything unparsable (Milvus Lite: ``milvus_lite-3.2.2``) does
    not."""
    found = _VERSION.match(version.strip())
    return found is not None and tuple(int(n) for n in found.groups()) >= BROADCAST_SINCE


class AllDatabases:
    """One ``flush_all_sync`` call: its deadline, and its stages as the checked table
    ``_steps.ALL_DATABASES`` (module docstring).

    A driver sends ``asks()`` (``ListDatabases`` and maybe ``GetVersion``; none when
    ``db_name`` names the database), hands their replies (or what each raised) to
    ``machines``, drives the machines it returns at once, hands their responses to
    ``then`` for the next stage's, until there are none, and returns ``response()``;
    what any of it raised goes to ``failed``.
    """

    def __init__(
        self,
        client: Any,
        db_name: Any,
        timeout: Any,
        policy: FlushPolicy,
        *,
        since: float | None = None,
    ) -> None:
        self._client, self._timeout, self._policy = client, timeout, policy
        self._started = time.monotonic() if since is None else since
        #: the deadline holder, and the machine of ``db_name`` when it is given
        self.first = prepare(
            client, None, db_name, timeout, policy, every=True, since=self._started
        )
        self.lists = db_name is None
        self.state = CallState("flush_all_sync", Phase.ASK, ALL_DATABASES)
        self._names: list[str] = []  # the databases
        self._listed: list[FlushSyncResponse] = []  # broadcast: what each database holds
        self._one: FlushMachine | None = None  # the one FlushAll, of either kind (FLUSH_ALL)
        self._responses: list[FlushSyncResponse] = []
        self._stage: list[FlushMachine] = []  # the machines driven now
        self._known: dict[str, tuple[str, ...]] = {}  # LISTING: database -> collections

    def asks(self) -> list[SendRpc]:
        """``ListDatabases``, then ``GetVersion`` where a broadcast could follow."""
        if not self.lists:
            return []
        asks = [self._ask("ListDatabases", milvus_pb2.ListDatabasesRequest())]
        if BROADCAST_FIELDS:
            asks.append(self._ask("GetVersion", milvus_pb2.GetVersionRequest()))
        return asks

    def machines(self, replies: list[Any]) -> list[FlushMachine]:
        """The first stage, from the replies to ``asks()`` (raises ``ListDatabases``'s
        failure, a ``FlushTimeoutError`` once the deadline has passed)."""
        self._stage = self._first_stage(replies)
        return self._stage

    def then(self, responses: list[FlushSyncResponse]) -> list[FlushMachine]:
        """The next stage after one ended with ``responses`` (none: the call is done)."""
        self._stage = self._next_stage(responses)
        return self._stage

    def failed(self, exc: BaseException) -> BaseException:
        """What a stage raised (a machine's failure, an interrupt): the call FAILED;
        what it raises. A timeout names what every machine of the stage had pending
        (``_core.stage_failure``), not only the first's to see the deadline."""
        exc = stage_failure(self._stage, exc, self._known)
        self.state.fail(exc if isinstance(exc, MilvusException) else interrupted(exc))
        return exc

    def _first_stage(self, replies: list[Any]) -> list[FlushMachine]:
        if not self.lists:
            self.state.move(Event.ONE_DATABASE)
            return [self.first]
        self._names = self._databases(replies[0])
        version = replies[1] if len(replies) > 1 else None
        broadcast = (
            isinstance(version, milvus_pb2.GetVersionResponse)
            and version.status.code == 0
            and broadcasts(version.version)
        )
        logger.debug("flush_all_sync: FlushAll is %sbroadcast", "" if broadcast else "not ")
        self.state.move(Event.BROADCASTS if broadcast else Event.SWEEPS)
        return self._per_database(seal=False)

    def _next_stage(self, responses: list[FlushSyncResponse]) -> list[FlushMachine]:
        phase, flush_all = self.state.phase, self._one
        if phase is Phase.LISTING:
            self._listed = responses
            self._known = {
                machine.work.progress.requested_db: tuple(one.collections)
                for machine, one in zip(self._stage, responses, strict=True)
            }
            names = tuple(dict.fromkeys(name for one in responses for name in one.collections))
            if not names:
                self.state.move(Event.EMPTY)
                return []
            self.state.move(Event.LISTED)
            self._one = self._flush_all(names)
            return [self._one]
        if phase is Phase.SEALING or (flush_all and flush_all.work.broadcast):
            self._responses = responses if phase is Phase.SEALING else []
            self.state.move(Event.FLUSHED)
            return []
        assert flush_all is not None  # FLUSH_ALL, not broadcast: per database
        logger.debug("flush_all_sync: FlushAll was not broadcast; covering per database")
        self.state.move(Event.NOT_BROADCAST)
        self._one, self._listed = None, []
        return self._per_database(seal=True, floor=flush_all.work.floor)

    def response(self) -> FlushAllSyncResponse:
        elapsed = time.monotonic() - self._started
        if not self._listed:
            databases = {r.db_name: r for r in self._responses}
            return FlushAllSyncResponse(flushed=True, databases=databases, elapsed=elapsed)
        broadcast = self._one  # set only while the FlushAll was a broadcast
        states = broadcast.progress().collections if broadcast else {}
        databases = {
            one.db_name: replace(
                one,
                collections={name: states.get(name, old) for name, old in one.collections.items()},
                elapsed=elapsed,
            )
            for one in self._listed
        }
        return FlushAllSyncResponse(
            flushed=True,
            databases=databases,
            elapsed=elapsed,
            broadcast=broadcast.work.broadcast if broadcast else {},
        )

    def _flush_all(self, names: tuple[str, ...]) -> FlushMachine:
        """The one FlushAll (``names``: what LISTING listed, what a timeout names)."""
        return flush_all_machine(
            names,
            check_timeout(self._timeout),
            self._policy,
            ticks=_ticks(self._client, self._policy),
            since=self._started,
        )

    def _per_database(self, *, seal: bool, floor: int = 0) -> list[FlushMachine]:
        """One machine per listed database: listing only (before a broadcast), or
        listing, flushing (covered at ``floor``, a FlushAll's timestamp) and waiting."""
        table = SWEPT if floor else None
        return [
            prepare(
                self._client, None, db, self._timeout, self._policy, every=True,
                since=self._started, seal=seal, table=table, floor=floor,
            )
            for db in self._names
        ]  # fmt: skip

    def _ask(self, method: str, request: Any) -> SendRpc:
        """An RPC before the machines, under the call's deadline (built when asked)."""
        left = self.first.remaining()
        cap = self._policy.rpc_timeout
        return SendRpc(method, (request,), cap if left is None else min(left, cap), None)

    def _databases(self, reply: Any) -> list[str]:
        what = "ListDatabases"
        if isinstance(reply, milvus_pb2.ListDatabasesResponse):
            failure = classify_status(reply.status, what)
            if failure is None:
                return list(dict.fromkeys(reply.db_names))
        elif isinstance(reply, grpc.RpcError):
            if reply.code() is grpc.StatusCode.UNIMPLEMENTED:  # Milvus Lite 2.x: no databases
                logger.debug("flush_all_sync: no ListDatabases; the client's database only")
                return [current_db_name(self._client)]
            failure = classify_rpc_error(reply, what)
        else:
            failure = classify_exception(reply, what) if isinstance(reply, Exception) else None
            failure = failure or undecodable(what)
        if self.first.remaining() == 0.0:
            error: MilvusException = self.first.timeout_error()
            error.__cause__ = failure.error
            raise error
        raise failure.error
