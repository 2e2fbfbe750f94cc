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
        TicketCollection("a", 446, 449, (1, 2), 5000, 5100),
        TicketCollection("b", 447, 450, (), 6000, 6100),
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
        "visible_ts": 5100,
    }
    assert json.loads(text)["flush_ticket"] == 2 and json.loads(text)["covers"] == "all"
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
        _with(flush_ticket=3),
        _with(flush_ticket=True),
        _with(flush_ticket=[]),
        _with(covers="some"),
        _with(flush_ticket=1),  # a version 1 ticket has no covers, nor visible_ts
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


def test_a_version_1_ticket_still_reads_its_flush_timestamp_as_visible() -> None:
    v1 = {
        "flush_ticket": 1,
        "db_name": "default",
        "collections": [
            {"name": "a", "collection_id": 446, "created_timestamp": 449,
             "segment_ids": [1], "flush_ts": 5000}
        ],
    }  # fmt: skip
    ticket = FlushTicket.from_json(json.dumps(v1))
    assert ticket == FlushTicket(
        "default", (TicketCollection("a", 446, 449, (1,), 5000, 5000),), "all"
    )


def test_tickets_combine_to_the_latest_per_collection() -> None:
    other = FlushTicket(
        "default",
        (
            TicketCollection("b", 447, 450, (3,), 7000, 7100),
            TicketCollection("c", 448, 451, (4,), 7000, 7100),
        ),
        "process",
    )
    recreated = FlushTicket("default", (TicketCollection("a", 900, 901, (9,), 8000, 8100),))
    combined = FlushTicket.combine(TICKET, other, recreated)
    assert combined == FlushTicket(
        "default",
        (
            TicketCollection("a", 900, 901, (9,), 8000, 8100),  # the later identity alone
            TicketCollection("b", 447, 450, (3,), 7000, 7100),
            TicketCollection("c", 448, 451, (4,), 7000, 7100),
        ),
        "process",  # one of them covers only its process's writes
    )
    same = FlushTicket("default", (TicketCollection("a", 446, 449, (2, 3), 4000, 5200),))
    assert FlushTicket.combine(TICKET, same).collections[0] == TicketCollection(
        "a", 446, 449, (1, 2, 3), 5000, 5200
    )
    assert FlushTicket.combine(TICKET) == TICKET
    with pytest.raises(ParamError):
        FlushTicket.combine(TICKET, FlushTicket("x", TICKET.collections))
    with pytest.raises(ParamError):
        FlushTicket.combine()
