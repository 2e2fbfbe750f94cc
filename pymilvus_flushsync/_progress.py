"""What one call knows of its collections, and the responses it reports from that.

``Progress`` is the call's record: each collection's state (what Flush sealed,
when it was reported flushed, indexed and served), which are still pending at
each stage the call waits for (``_stages``), how many polls were sent, and
the database as the server named it. The machine's steps write it; every
response, snapshot and ``FlushTimeoutError`` of the call is read from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from ._errors import Failure, FlushTimeoutError
from ._requests import DEFAULT_DB, sealed_state
from ._response import CollectionFlushState, FlushStatus, FlushSyncResponse
from ._stages import PERSISTED, Stage, stage_named, stages_until

__all__ = ["Progress", "not_yet", "timed_out"]


class Progress:
    """One call's collections, as the server reported them.

    Args:
        names: the collections of the call (more may be ``listed`` later).
        db_name: the database as the caller asked for it (``""``: the default).
        start: the clock reading ``elapsed`` and each ``seconds`` count from.
        clock: the call's monotonic clock.
        until: the last stage the call waits for (``_stages``).
    """

    def __init__(
        self,
        names: tuple[str, ...],
        db_name: str,
        start: float,
        clock: Callable[[], float],
        until: str = PERSISTED.name,
    ) -> None:
        self.requested_db = db_name
        self.start = start
        self._clock = clock
        self.polled = 0
        self._reply_db = ""
        self.stages = tuple(stage.name for stage in stages_until(until))
        self.states: dict[str, CollectionFlushState] = {}
        self.pending: list[str] = []  # not yet persisted
        self.waiting: dict[str, list[str]] = {}  # a later stage -> not yet reached
        self.listed(names)

    def listed(self, names: tuple[str, ...] | list[str]) -> None:
        """The call's collections are ``names`` (in order), none flushed yet."""
        self.states = {name: CollectionFlushState(name) for name in names}
        self.pending = list(names)
        self.waiting = {stage: list(names) for stage in self.stages[1:]}

    @property
    def stage(self) -> str:
        """The first stage some collection has not reached (the last, once done)."""
        if self.pending:
            return self.stages[0]
        return next((s for s in self.stages[1:] if self.waiting[s]), self.stages[-1])

    @property
    def behind(self) -> list[str]:
        """The collections that have not reached ``stage``."""
        stage = self.stage
        return self.pending if stage == self.stages[0] else self.waiting[stage]

    def reached(self, stage: Stage, name: str, now: float, **fields: Any) -> None:
        """``name`` reached ``stage``, one after persisted, at ``now``; ``fields``: more
        of its state (``indexes``)."""
        fields[stage.seconds] = now - self.start
        self.states[name] = replace(self.states[name], **fields)
        self.waiting[stage.name].remove(name)

    def sealed(self, reply: Any) -> list[str]:
        """A FlushResponse sealed the pending collections it names; the others, which
        it does not mention (Milvus Lite; a missing collection), in order."""
        self._reply_db = reply.db_name or self._reply_db
        unmentioned = []
        for name in self.pending:
            if name in reply.coll_segIDs or name in reply.coll_flush_ts:
                self.states[name] = sealed_state(self.states[name], reply)
            else:
                unmentioned.append(name)
        return unmentioned

    def visible(self, name: str, now: float) -> None:
        """``name`` reached the first stage, visible (``until="visible"``), at ``now``."""
        self.states[name] = replace(self.states[name], visible_seconds=now - self.start)
        self.pending.remove(name)

    def flushed(self, name: str, now: float, flush_ts: int | None = None) -> None:
        """``name`` was reported flushed at ``now`` (FlushAll: at ``flush_ts``)."""
        state = replace(self.states[name], flushed=True, seconds=now - self.start)
        self.states[name] = state if flush_ts is None else replace(state, flush_ts=flush_ts)
        self.pending.remove(name)

    def covered(self, name: str, segment_ids: tuple[int, ...], cover_ts: int) -> None:
        """Another client's Flush sealed ``name`` up to ``cover_ts`` (the shared window):
        these segments of it are not yet flushed; they are waited on at that timestamp."""
        self.states[name] = replace(
            self.states[name], segment_ids=segment_ids, flush_ts=cover_ts, covered=True
        )

    @property
    def db_name(self) -> str:
        """The database, as the server named it once it answered."""
        return self._reply_db or self.requested_db or DEFAULT_DB

    def response(self, flushed: bool, status: FlushStatus | None = None) -> FlushSyncResponse:
        """The call's response as it stands (a snapshot while ``flushed`` is false)."""
        return FlushSyncResponse(
            flushed=flushed,
            collections=self.states,
            db_name=self.db_name,
            elapsed=self._clock() - self.start,
            polls=self.polled,
            status=status or FlushStatus(),
            stage=self.stage,
        )

    def timeout_error(
        self, timeout: float | None, listed: bool, last: Failure | None
    ) -> FlushTimeoutError:
        """The ``FlushTimeoutError`` of the call as it stands (the deadline passed), its
        cause the ``last`` failure."""
        stage, behind = self.stage, self.behind
        said = not_yet(stage, behind) if listed else "the collections were not yet listed"
        response = self.response(flushed=False)
        return timed_out("flush_sync", timeout, said, last, response, tuple(behind))


def not_yet(stage: str, behind: Sequence[str]) -> str:
    """What a timeout says of the collections ``behind`` at ``stage``."""
    return f"not yet {stage_named(stage).done}: {', '.join(behind)}"


def timed_out(  # noqa: PLR0917  # the error's parts, each its own
    call: str,
    timeout: float | None,
    said: str,
    last: Failure | None,
    response: FlushSyncResponse,
    pending: tuple[str, ...],
) -> FlushTimeoutError:
    """The ``FlushTimeoutError`` of ``call``: its message (``said`` of the collections,
    and the ``last`` failure, its cause, if any) is also ``response``'s status."""
    message = f"{call} did not finish within its {timeout:g} s deadline; {said}"
    if last is not None:
        message += f"; last error: {last.describe()}"
    status = FlushStatus.timed_out(message)
    error = FlushTimeoutError(message, replace(response, status=status), pending)
    error.__cause__ = last.error if last else None
    return error
