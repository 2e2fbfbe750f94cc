"""FlushTicket: frozen, equal by value, pickles, plain JSON; anything else is a ParamError."""

from __future__ import annotations

import json
import pickle

import pytest
from pymilvus.exceptions import ParamError

from pymilvus_flushsync import FlushTicket, TicketCollection

TICKET = FlushTicket(
    "default",
    (
        TicketCollection("a", 446, 449, (1, 2), 5000),
        TicketCollection("b", 447, 450, (), 6000),
    ),
)


def test_a_ticket_round_trips_through_json_and_pickle() -> None:
    text = TICKET.to_json()
    assert json.loads(text)["collections"][0] == {
        "name": "a",
        "collection_id": 446,
        "created_timestamp": 449,
        "segment_ids": [1, 2],
        "flush_ts": 5000,
    }
    assert FlushTicket.from_json(text) == TICKET == pickle.loads(pickle.dumps(TICKET))
    assert FlushTicket.from_json(text.encode()) == TICKET
    assert hash(FlushTicket.from_json(text)) == hash(TICKET)
    with pytest.raises(AttributeError):
        TICKET.db_name = "x"  # type: ignore[misc]


def _with(**changes: object) -> str:
    raw = TICKET.to_dict()
    raw.update(changes)
    return json.dumps(raw)


def _entry(**changes: object) -> str:
    raw = TICKET.to_dict()
    raw["collections"] = [{**raw["collections"][0], **changes}]
    return json.dumps(raw)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[]",
        "null",
        '"ticket"',
        _with(flush_ticket=2),
        _with(flush_ticket=True),
        _with(db_name=""),
        _with(db_name=3),
        _with(collections=[]),
        _with(collections={}),
        _with(extra=1),
        _entry(name=""),
        _entry(collection_id=-1),
        _entry(collection_id="446"),
        _entry(flush_ts=1.5),
        _entry(segment_ids=[1, "2"]),
        _entry(segment_ids=None),
        _entry(extra=0),
        json.dumps({**TICKET.to_dict(), "collections": [TICKET.collections[0].to_dict()] * 2}),
    ],
)
def test_a_malformed_ticket_is_a_param_error(text: str) -> None:
    with pytest.raises(ParamError, match="malformed flush ticket"):
        FlushTicket.from_json(text)
