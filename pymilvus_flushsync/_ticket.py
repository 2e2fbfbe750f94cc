"""A flush ticket: what one ``start_flush`` sealed, for any process or host to wait on.

A ticket names the database and, per collection, what identifies the collection
on its server (``collection_id`` and ``created_timestamp``, from
DescribeCollection) and what the Flush sealed (``segment_ids``, ``flush_ts``).
``wait_flushed`` checks the identity before and after its polls: Milvus counts a
segment it no longer knows as flushed, so a ticket whose collection was dropped,
recreated under its name, or that is used on another server must fail, not
report ``flushed=True`` (docs/guarantees.md, "Tickets"). A collection whose rows
another client's Flush had already sealed (the shared limit window) has no
segment IDs and, as ``flush_ts``, a timestamp taken after ``start_flush`` began.

The JSON form is plain (``to_json``/``from_json``): MPI broadcasts, queues,
files. Anything malformed is a ``ParamError``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pymilvus.exceptions import ParamError

__all__ = ["FlushTicket", "TicketCollection"]

#: The version of the JSON shape; ``from_json`` refuses any other.
TICKET_VERSION = 1
_INT_FIELDS = ("collection_id", "created_timestamp", "flush_ts")
_KEYS = ("name", "segment_ids", *_INT_FIELDS)


@dataclass(frozen=True)
class TicketCollection:
    """One collection of a ticket: its identity on the server and what was sealed."""

    name: str
    collection_id: int
    created_timestamp: int
    segment_ids: tuple[int, ...] = ()
    flush_ts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "collection_id": self.collection_id,
            "created_timestamp": self.created_timestamp,
            "segment_ids": list(self.segment_ids),
            "flush_ts": self.flush_ts,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> TicketCollection:
        if not isinstance(raw, dict) or set(raw) != set(_KEYS):
            raise _malformed(f"a collection entry must have exactly {sorted(_KEYS)}")
        name, segments = raw["name"], raw["segment_ids"]
        if not isinstance(name, str) or not name:
            raise _malformed("a collection name must be a non-empty string")
        if not isinstance(segments, list) or not all(_is_uint(s) for s in segments):
            raise _malformed(f"segment_ids of {name!r} must be a list of integers >= 0")
        if not all(_is_uint(raw[key]) for key in _INT_FIELDS):
            raise _malformed(f"{', '.join(_INT_FIELDS)} of {name!r} must be integers >= 0")
        ints = [int(raw[key]) for key in _INT_FIELDS]
        return cls(name, ints[0], ints[1], tuple(int(s) for s in segments), ints[2])


@dataclass(frozen=True)
class FlushTicket:
    """What one ``start_flush`` sealed: frozen, equal by value, picklable, and JSON.

    Attributes:
        db_name: the database, as the server named it.
        collections: one ``TicketCollection`` per collection, in the order asked.
    """

    db_name: str
    collections: tuple[TicketCollection, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(one.name for one in self.collections)

    def to_dict(self) -> dict[str, Any]:
        return {
            "flush_ticket": TICKET_VERSION,
            "db_name": self.db_name,
            "collections": [one.to_dict() for one in self.collections],
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
        if not isinstance(raw, dict) or set(raw) != {"flush_ticket", "db_name", "collections"}:
            raise _malformed('expected {"flush_ticket", "db_name", "collections"}')
        if raw["flush_ticket"] != TICKET_VERSION or isinstance(raw["flush_ticket"], bool):
            raise _malformed(f"unknown version {raw['flush_ticket']!r} (this one reads 1)")
        db, entries = raw["db_name"], raw["collections"]
        if not isinstance(db, str) or not db:
            raise _malformed("db_name must be a non-empty string")
        if not isinstance(entries, list) or not entries:
            raise _malformed("collections must be a non-empty list")
        collections = tuple(TicketCollection.from_dict(one) for one in entries)
        if len({one.name for one in collections}) != len(collections):
            raise _malformed("a collection is named twice")
        return cls(db, collections)


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _malformed(why: str) -> ParamError:
    return ParamError(message=f"malformed flush ticket: {why}")
