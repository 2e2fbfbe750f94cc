"""Where one call is, as values: a ``Phase`` of its table and a ``Turn`` within it.

``CallState`` is the one place a call's state changes, as h11's ``_state.py`` is
for a connection: ``move`` takes an ``Event`` and follows the table's moves
(``phase -> {event: next phase}``, drawn in ``_steps``), raising ``IllegalMove``
for any move the table does not list; every phase but DONE may move to FAILED.
Within a phase, the turn says what may come next: the phase's RPC (SEND), the
delay the last answer owes (SLEEP), or only the reply of the RPC that is out
(AWAIT); a driver that asks out of turn gets a ``RuntimeError``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from pymilvus.exceptions import MilvusException

__all__ = ["CallState", "Event", "IllegalMove", "Moves", "Phase", "Turn"]


class Phase(enum.Enum):
    """Where one call is (``_steps``: the tables)."""

    LIST = "list"  # ShowCollections: the database's collections
    FLUSH = "flush"  # Flush: seal the pending collections
    CHECK = "check"  # HasCollection: a name the Flush did not mention
    POLL = "poll"  # GetFlushState: a round of polls
    DESCRIBE = "describe"  # DescribeCollection: the collections' identity
    CONFIRM = "confirm"  # DescribeCollection again, once a ticket's polls said flushed
    STAMP = "stamp"  # AllocTimestamp: a timestamp after the call began
    COVER = "cover"  # GetFlushState at that timestamp: sealed by another?
    SEGMENTS = "segments"  # GetPersistentSegmentInfo: the segments another's Flush sealed
    FLUSH_ALL = "flush_all"  # FlushAll (flush_all_sync's stage: of what LISTING listed)
    POLL_ALL = "poll_all"  # GetFlushAllState on the channels' time ticks
    LOAD_CHECK = "load_check"  # GetLoadState before the Flush (until="loaded")
    INDEX = "index"  # DescribeIndex: has every index covered the persisted rows?
    REFRESH = "refresh"  # LoadCollection(refresh=True): take the new segments now
    STILL_LOADED = "still_loaded"  # GetLoadState: not released meanwhile
    SEGMENTS_NOW = "segments_now"  # GetPersistentSegmentInfo: the Flushed segments now
    SERVING = "serving"  # GetQuerySegmentInfo: do the query nodes serve them, indexed?
    # flush_all_sync's stages, each a set of machines driven at once (``_call``):
    ASK = "ask"  # ListDatabases (and GetVersion): the databases, and FlushAll's kind
    LISTING = "listing"  # one listing machine per database, before the FlushAll
    SEALING = "sealing"  # one machine per database: it lists, flushes and waits
    DONE = "done"
    FAILED = "failed"


class Event(enum.Enum):
    """What a step's reply said, or what befell the call."""

    LISTED = "listed"  # the database has collections
    EMPTY = "empty"  # it has none
    SEALED = "sealed"  # the Flush answered for every pending name
    UNMENTIONED = "unmentioned"  # it did not mention some: are they there?
    CHECKED = "checked"  # one more exists; more to check
    EXIST = "exist"  # every name exists
    NOT_YET = "not_yet"  # a round of polls left some pending
    FLUSHED = "flushed"  # everything is flushed
    NOT_BROADCAST = "not_broadcast"  # a FlushAll without per-channel messages
    DESCRIBED = "described"  # every collection's identity is known (and matches)
    REFUSED = "refused"  # the Flush was rate-limited: did another client's seal it?
    UNSTAMPED = "unstamped"  # refused, and no timestamp to cover at yet: ask for one
    STAMPED = "stamped"  # the timestamp came
    NO_STAMP = "no_stamp"  # the server has none: Flush again at the allowance
    COVERED = "covered"  # every pending collection's checkpoint passed its timestamp
    FOUND = "found"  # the segments another client's Flush sealed are known
    REFLUSH = "reflush"  # not all: the allowance has come, Flush again
    LOST = "lost"  # a retried failure after which the server may have lost the Flush
    RETRY = "retry"  # a retried failure: the same phase again, after the back-off
    LOADABLE = "loadable"  # every collection is loaded (or loading)
    INDEXED = "indexed"  # every index of every collection covers its rows
    REFRESHED = "refreshed"  # the query coordinator was asked to load the new segments
    SERVED = "served"  # the query nodes serve every Flushed segment, indexed
    RECHECK = "recheck"  # not yet, and time to check the load state and segments again
    GONE = "gone"  # a collection the call listed was dropped meanwhile: list again
    ONE_DATABASE = "one_database"  # flush_all_sync was given its database
    BROADCASTS = "broadcasts"  # the server answers FlushAll per channel (2.6.8+)
    SWEEPS = "sweeps"  # it does not: one FlushAll, then each database covered at it
    FAILED = "failed"  # a final failure, the deadline, the retry budget, an interrupt


class Turn(enum.Enum):
    """What may come next within a phase."""

    SEND = "send"  # the phase's RPC
    SLEEP = "sleep"  # the delay the last answer owes
    AWAIT = "await"  # an RPC is out: only its reply (or error)


class IllegalMove(RuntimeError):
    """A move the table does not list (a bug, never the server's doing)."""


#: A table's moves: phase -> {event: next phase}.
Moves = Mapping[Phase, Mapping[Event, Phase]]


class CallState:
    """One call's phase and turn, and the error it failed with.

    Args:
        name: the table's name, for ``IllegalMove``'s message.
        first: the table's first phase.
        moves: the table's moves.
    """

    def __init__(self, name: str, first: Phase, moves: Moves) -> None:
        self._name, self._moves = name, moves
        self.phase = first
        self.turn = Turn.SEND
        self.owed = 0.0  # seconds, while the turn is SLEEP
        self.error: MilvusException | None = None  # raised from FAILED
        self.failed_in: Phase | None = None  # where it stood when it FAILED

    @property
    def stood(self) -> Phase:
        """The phase it is in; once FAILED, the one it failed in."""
        return self.failed_in or self.phase

    def can(self, event: Event) -> bool:
        return event in self._moves.get(self.phase, {})

    def move(self, event: Event) -> None:
        """Follow ``event`` from the current phase, as the table says."""
        if event is Event.FAILED and self.phase is not Phase.DONE:
            if self.phase is not Phase.FAILED:
                self.failed_in, self.phase = self.phase, Phase.FAILED
            return
        to = self._moves.get(self.phase, {}).get(event)
        if to is None:
            raise IllegalMove(f"{self._name}: no move from {self.phase.name} on {event.name}")
        self.phase = to

    def fail(self, error: MilvusException) -> MilvusException:
        """Move to FAILED, for good: ``error`` is what the call raises from now on."""
        self.move(Event.FAILED)
        self.error, self.turn = error, Turn.SEND
        return error

    def owe(self, delay: float) -> None:
        """The answer just read owes ``delay`` seconds before the next RPC."""
        self.owed, self.turn = delay, Turn.SLEEP if delay > 0 else Turn.SEND

    def sent(self) -> None:
        """An RPC went out: only its reply may come next."""
        self._expect(Turn.SEND)
        self.turn = Turn.AWAIT

    def answered(self) -> None:
        """The RPC that was out is answered (or failed)."""
        if self.turn is not Turn.AWAIT:
            raise RuntimeError("no RPC is waiting for a reply")
        self.turn = Turn.SEND

    def slept(self) -> float:
        """The owed delay is handed out (as a ``Sleep``): its seconds."""
        self._expect(Turn.SLEEP)
        self.turn = Turn.SEND
        return self.owed

    def _expect(self, turn: Turn) -> None:
        if self.turn is not turn:
            raise RuntimeError(f"out of turn: {self.turn.name}, not {turn.name}")
