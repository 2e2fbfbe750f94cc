"""The typed, frozen result of ``flush_sync``.

``FlushSyncResponse.to_dict()`` has the shape of the Node SDK's ``flushSync``
result (``{"flushed": ..., "status": {"code", "error_code", "reason"}}``) plus
the per-collection details this package adds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from ._ticket import FlushTicket

__all__ = [
    "CollectionFlushState",
    "FlushAllSyncResponse",
    "FlushStatus",
    "FlushSyncResponse",
    "ProgressHook",
]


@dataclass(frozen=True)
class FlushStatus:
    """The status part of the response, as the Node SDK reports it."""

    code: int = 0
    error_code: str = "Success"
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """``{"code": ..., "error_code": ..., "reason": ...}``."""
        return {"code": self.code, "error_code": self.error_code, "reason": self.reason}

    @classmethod
    def timed_out(cls, reason: str) -> FlushStatus:
        """The status of a call whose deadline passed (``FlushTimeoutError``'s)."""
        return cls(code=1, error_code="FlushTimeout", reason=reason)


@dataclass(frozen=True)
class CollectionFlushState:
    """What the server said about one collection, and when it was done.

    Attributes:
        name: the collection.
        segment_ids: segments this Flush sealed (``coll_segIDs``); empty on Milvus Lite.
        flushed_segment_ids: segments already flushed before (``flush_coll_segIDs``).
        flush_ts: the flush timestamp the server waits on (``coll_flush_ts``); 0 on Lite.
        seal_time: the seal time the server returned (``coll_seal_times``); 0 on Lite.
        flushed: whether the server has reported this collection flushed.
        seconds: seconds from the start of the call until it was reported flushed,
            ``None`` while it is not.
        covered: another client's Flush had sealed it (its Flush was rate-limited):
            ``flush_ts`` is then a timestamp taken after the call began (or a
            ticket's, or a FlushAll's), and every row written before it, by any
            client, is persisted
            (docs/guarantees.md, "Independent processes share the window").
        indexes: how many indexes the collection has (``until="indexed"`` or
            ``"loaded"``; 0: none, nothing to build), ``None`` when not asked.
        indexed_seconds, loaded_seconds: seconds from the start of the call until
            every index covered its rows, and until the query nodes served its
            segments with their index; ``None`` while not reached (or not asked).
        visible_seconds: ``until="visible"``: seconds from the start of the call until
            its ticket was known (``None`` at other stages).
    """

    name: str
    segment_ids: tuple[int, ...] = ()
    flushed_segment_ids: tuple[int, ...] = ()
    flush_ts: int = 0
    seal_time: int = 0
    flushed: bool = False
    seconds: float | None = None
    covered: bool = False
    indexes: int | None = None
    indexed_seconds: float | None = None
    loaded_seconds: float | None = None
    visible_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {
            "name": self.name,
            "segment_ids": list(self.segment_ids),
            "flushed_segment_ids": list(self.flushed_segment_ids),
            "flush_ts": self.flush_ts,
            "seal_time": self.seal_time,
            "flushed": self.flushed,
            "seconds": self.seconds,
            "covered": self.covered,
            "indexes": self.indexes,
            "indexed_seconds": self.indexed_seconds,
            "loaded_seconds": self.loaded_seconds,
            "visible_seconds": self.visible_seconds,
        }


_V = TypeVar("_V")


def _frozen_mapping(value: Mapping[str, _V]) -> Mapping[str, _V]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class FlushSyncResponse:
    """The result of ``flush_sync``.

    Attributes:
        flushed: ``True`` when returned normally: every collection was reported flushed.
        status: code 0, error_code ``"Success"``, reason ``""`` on success.
        collections: collection name -> ``CollectionFlushState``, in the order asked.
        db_name: the database the call flushed in.
        elapsed: seconds the whole call took.
        polls: how many poll RPCs were sent: GetFlushState, and the later stages'
            DescribeIndex and GetQuerySegmentInfo (``until``), not their checks.
        stage: in a progress snapshot, the stage the call waits for now (the first
            some collection has not reached: ``"persisted"``, ``"indexed"``,
            ``"loaded"``); in the response, the last it waited for (``until``).
        ticket: the ``FlushTicket`` of what the call covered: a reader elsewhere
            that waits on it (``wait_flushed(ticket, until="visible")``) sees these
            rows; ``None`` in a progress snapshot, for ``flush_all_sync``'s
            databases, and where the server declined DescribeCollection.
    """

    flushed: bool
    collections: Mapping[str, CollectionFlushState]
    db_name: str
    elapsed: float
    polls: int
    status: FlushStatus = field(default_factory=FlushStatus)
    stage: str = "persisted"
    ticket: FlushTicket | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "collections", _frozen_mapping(self.collections))

    def __reduce__(self) -> tuple[Any, ...]:
        # the read-only mapping cannot be pickled; a plain dict is re-frozen on load
        return type(self), (
            self.flushed,
            dict(self.collections),
            self.db_name,
            self.elapsed,
            self.polls,
            self.status,
            self.stage,
            self.ticket,
        )

    def to_dict(self) -> dict[str, Any]:
        """The Node SDK's shape plus this package's details (JSON-ready)."""
        return {
            "flushed": self.flushed,
            "status": self.status.to_dict(),
            "db_name": self.db_name,
            "elapsed": self.elapsed,
            "polls": self.polls,
            "stage": self.stage,
            "collections": {name: state.to_dict() for name, state in self.collections.items()},
            "ticket": None if self.ticket is None else self.ticket.to_dict(),
        }

    def __repr__(self) -> str:
        done = sum(state.flushed for state in self.collections.values())
        names = ", ".join(self.collections)
        return (
            f"FlushSyncResponse(flushed={self.flushed}, db_name={self.db_name!r}, "
            f"collections=[{names}] ({done}/{len(self.collections)} flushed), "
            f"elapsed={self.elapsed:.3f}s, polls={self.polls}, status={self.status.error_code})"
        )


@dataclass(frozen=True)
class FlushAllSyncResponse:
    """The result of ``flush_all_sync``: every collection of every database flushed.

    Attributes:
        flushed: ``True`` when returned normally.
        databases: database name -> its ``FlushSyncResponse``, in the server's order.
        elapsed: seconds the whole call took.
        status: code 0, error_code ``"Success"``, reason ``""`` on success.
        broadcast: physical channel -> time tick of Milvus 2.6.8+'s cluster-wide
            FlushAll, when one sealed every database (``_call``); empty when each
            database was flushed on its own.
    """

    flushed: bool
    databases: Mapping[str, FlushSyncResponse]
    elapsed: float
    status: FlushStatus = field(default_factory=FlushStatus)
    broadcast: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "databases", _frozen_mapping(self.databases))
        object.__setattr__(self, "broadcast", _frozen_mapping(self.broadcast))

    def __reduce__(self) -> tuple[Any, ...]:
        fields = (self.flushed, dict(self.databases), self.elapsed, self.status)
        return type(self), (*fields, dict(self.broadcast))

    def to_dict(self) -> dict[str, Any]:
        """The Node SDK's shape plus one ``FlushSyncResponse.to_dict()`` per database."""
        return {
            "flushed": self.flushed,
            "status": self.status.to_dict(),
            "elapsed": self.elapsed,
            "databases": {name: one.to_dict() for name, one in self.databases.items()},
            "broadcast": dict(self.broadcast),
        }

    def __repr__(self) -> str:
        databases = ", ".join(
            f"{name} ({_count(len(one.collections), 'collection')})"
            for name, one in self.databases.items()
        )
        return (
            f"FlushAllSyncResponse(flushed={self.flushed}, databases=[{databases}], "
            f"elapsed={self.elapsed:.3f}s, status={self.status.error_code})"
        )


def _count(n: int, noun: str) -> str:
    """``1 collection``, ``2 collections``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


#: ``on_progress``: called with a snapshot (``flushed=False``) before every wait, and
#: once more with the final response when the call succeeds. What it raises goes up
#: to the caller unchanged, and the call ends there (as tenacity's ``before_sleep``).
ProgressHook = Callable[[FlushSyncResponse], object]
