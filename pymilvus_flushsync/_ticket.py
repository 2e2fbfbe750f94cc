"""A flush ticket: what one call sealed and covered (``start_flush``'s, or any
``FlushSyncResponse``'s ``ticket``), for any process or host to wait on or read at.

A ticket names the database and, per collection, what identifies the collection
on its server (``collection_id`` and ``created_timestamp``, from
DescribeCollection) and what the Flush sealed (``segment_ids``, ``flush_ts``).
``wait_flushed`` checks the identity before and after its polls: Milvus counts a
segment it no longer knows as flushed, so a ticket whose collection was dropped,
recreated under its name, or that is used on another server must fail, not
report ``flushed=True`` (docs/guarantees.md, "Tickets"). A collection whose rows
another client's Flush had already sealed (the shared limit window) has no
segment IDs and, as ``flush_ts``, a timestamp taken after ``start_flush`` began.

Each collection also carries ``visible_ts``: a timestamp that covers every write
acknowledged before the call (``covers``: ``"all"``, by any client; ``"process"``:
only this process's, where the server gave no timestamp). A reader whose reads are
guaranteed that timestamp sees those writes (``until="visible"``). A version 1 ticket
reads with its ``flush_ts`` there: a Flush's timestamp covers every write before it.

Several writers' tickets ``combine`` into one: per collection the latest, as a wait on
all of them would need (docs/guarantees.md, "Visible").

The JSON form is plain (``to_json``/``from_json``): MPI broadcasts, queues,
files. Anything malformed is a ``ParamError``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pymilvus.exceptions import ParamError

__all__ = ["FlushTicket", "TicketCollection"]

#: The version of the JSON shape ``to_json`` writes; ``from_json`` reads it and 1.
TICKET_VERSION = 2
_V1_INTS = ("collection_id", "created_timestamp", "flush_ts")
#: Each version's integer fields of a collection entry (beside its name and segment IDs).
_INTS = {1: _V1_INTS, 2: (*_V1_INTS, "visible_ts")}
#: What a ticket's ``visible_ts`` covers: every write before the call, or this process's.
COVERS = ("all", "process")


@dataclass(frozen=True)
class TicketCollection:
    """One collection of a ticket: its identity on the server, what was sealed
    (``segment_ids``, ``flush_ts``: none after ``until="visible"``), and the timestamp
    a reader reads it at (``visible_ts``)."""

    name: str
    collection_id: int
    created_timestamp: int
    segment_ids: tuple[int, ...] = ()
    flush_ts: int = 0
    visible_ts: int = 0

    @property
    def identity(self) -> tuple[int, int]:
        return self.collection_id, self.created_timestamp

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "collection_id": self.collection_id,
            "created_timestamp": self.created_timestamp,
            "segment_ids": list(self.segment_ids),
            "flush_ts": self.flush_ts,
            "visible_ts": self.visible_ts,
        }

    @classmethod
    def from_dict(cls, raw: Any, version: int = TICKET_VERSION) -> TicketCollection:
        ints = _INTS[version]
        keys = ("name", "segment_ids", *ints)
        if not isinstance(raw, dict) or set(raw) != set(keys):
            raise _malformed(f"a collection entry must have exactly {sorted(keys)}")
        name, segments = raw["name"], raw["segment_ids"]
        if not isinstance(name, str) or not name:
            raise _malformed("a collection name must be a non-empty string")
        if not isinstance(segments, list) or not all(_is_uint(s) for s in segments):
            raise _malformed(f"segment_ids of {name!r} must be a list of integers >= 0")
        if not all(_is_uint(raw[key]) for key in ints):
            raise _malformed(f"{', '.join(ints)} of {name!r} must be integers >= 0")
        flush_ts = int(raw["flush_ts"])
        visible_ts = int(raw.get("visible_ts", flush_ts))  # version 1: the Flush's
        return cls(
            name, int(raw["collection_id"]), int(raw["created_timestamp"]),
            tuple(int(s) for s in segments), flush_ts, visible_ts,
        )  # fmt: skip

    def merged(self, other: TicketCollection) -> TicketCollection:
        """This collection's entry and ``other``'s (the same name) as one: the later
        identity's (an older one was dropped, and its rows with it); of the same, every
        sealed segment and the latest timestamps."""
        if self.identity != other.identity:
            return max(self, other, key=lambda one: one.created_timestamp)
        return TicketCollection(
            self.name, self.collection_id, self.created_timestamp,
            tuple(dict.fromkeys((*self.segment_ids, *other.segment_ids))),
            max(self.flush_ts, other.flush_ts), max(self.visible_ts, other.visible_ts),
        )  # fmt: skip


@dataclass(frozen=True)
class FlushTicket:
    """What one call sealed and covered: frozen, equal by value, picklable, and JSON.

    Attributes:
        db_name: the database, as the server named it.
        collections: one ``TicketCollection`` per collection, in the order asked.
        covers: whose writes each ``visible_ts`` covers: ``"all"`` (every client's,
            acknowledged before the call) or ``"process"`` (the server gave no
            timestamp: this process's, e.g. on Milvus Lite).
    """

    db_name: str
    collections: tuple[TicketCollection, ...]
    covers: str = "all"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(one.name for one in self.collections)

    @classmethod
    def combine(cls, *tickets: FlushTicket) -> FlushTicket:
        """Several writers' tickets of one database as one: per collection the latest
        (``TicketCollection.merged``); it covers "all" only if each of them does."""
        if not tickets or not all(isinstance(one, FlushTicket) for one in tickets):
            raise ParamError(message="combine takes one FlushTicket or more")
        if len({one.db_name for one in tickets}) > 1:
            raise ParamError(message="tickets of different databases do not combine")
        merged: dict[str, TicketCollection] = {}
        for ticket in tickets:
            for one in ticket.collections:
                merged[one.name] = merged[one.name].merged(one) if one.name in merged else one
        covers = "all" if all(one.covers == "all" for one in tickets) else "process"
        return cls(tickets[0].db_name, tuple(merged.values()), covers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "flush_ticket": TICKET_VERSION,
            "db_name": self.db_name,
            "collections": [one.to_dict() for one in self.collections],
            "covers": self.covers,
        }

    def to_json(self) -> str:
        """The ticket as one line of plain JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> FlushTicket:
        """The ticket ``to_json`` wrote; ``ParamError`` for anything else."""
        try:
            raw = json.loads(text)
        except (TypeError, ValueError) as exc:  # JSONDecodeError, bad bytes
            raise _malformed(f"not JSON ({exc})") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: Any) -> FlushTicket:
        version = raw.get("flush_ticket") if isinstance(raw, dict) else None
        if not isinstance(version, int) or isinstance(version, bool) or version not in _INTS:
            shown = "none" if version is None else repr(version)
            raise _malformed(f"unknown version {shown} (this one reads 1 and 2)")
        keys = {"flush_ticket", "db_name", "collections"} | ({"covers"} if version > 1 else set())
        if set(raw) != keys:
            raise _malformed(f"expected {sorted(keys)}")
        db, entries = raw["db_name"], raw["collections"]
        if not isinstance(db, str) or not db:
            raise _malformed("db_name must be a non-empty string")
        if not isinstance(entries, list) or not entries:
            raise _malformed("collections must be a non-empty list")
        covers = raw.get("covers", "all")
        if covers not in COVERS:
            raise _malformed(f"covers must be one of {list(COVERS)}")
        collections = tuple(TicketCollection.from_dict(one, version) for one in entries)
        if len({one.name for one in collections}) != len(collections):
            raise _malformed("a collection is named twice")
        return cls(db, collections, covers)


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _malformed(why: str) -> ParamError:
    return ParamError(message=f"malformed flush ticket: {why}")
