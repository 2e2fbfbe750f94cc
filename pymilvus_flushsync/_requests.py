"""The requests a call sends and what their replies say: one builder per question.

Calls that ask the same question build it here, so they send the same bytes
(``_group`` shares an RPC by those bytes).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pymilvus.grpc_gen import milvus_pb2

from ._response import CollectionFlushState

__all__ = [
    "DEFAULT_DB",
    "broadcast_ticks",
    "collection_names",
    "flush_request",
    "flush_state_request",
    "sealed_state",
]

#: The name the server gives its default database (``""`` in a request).
DEFAULT_DB = "default"
#: The property of a Milvus 2.6 WAL message that holds its time tick, in base 36
#: (``pkg/streaming/util/message``: ``_tt``, ``EncodeUint64``).
_TIME_TICK = "_tt"


def flush_request(db_name: str, names: list[str] | tuple[str, ...]) -> Any:
    """The Flush that seals ``names`` in ``db_name`` (``""``: the default)."""
    return milvus_pb2.FlushRequest(db_name=db_name, collection_names=list(names))


def flush_state_request(db_name: str, state: CollectionFlushState) -> Any:
    """The GetFlushState that asks whether ``state``'s Flush is done."""
    return milvus_pb2.GetFlushStateRequest(
        segmentIDs=state.segment_ids,
        flush_ts=state.flush_ts,
        db_name=db_name,
        collection_name=state.name,
    )


def sealed_state(state: CollectionFlushState, reply: Any) -> CollectionFlushState:
    """``state`` once the FlushResponse ``reply``, which names its collection, sealed it."""
    name = state.name
    return replace(
        state,
        segment_ids=_ids(reply.coll_segIDs, name),
        flushed_segment_ids=_ids(reply.flush_coll_segIDs, name),
        flush_ts=int(reply.coll_flush_ts.get(name, 0)),
        seal_time=int(reply.coll_seal_times.get(name, 0)),
    )


def broadcast_ticks(reply: Any) -> dict[str, int]:
    """A FlushAllResponse's ``flush_all_msgs`` as ``flush_all_tss``: physical channel ->
    its message's time tick (``ValueError`` if a message has none). A reply that
    carries ``flush_all_tss`` itself (so does one revision of Milvus's own FlushAll
    test) gives those."""
    given = getattr(reply, "flush_all_tss", None)
    if given:
        return {channel: int(tick) for channel, tick in given.items()}
    ticks: dict[str, int] = {}
    for channel, message in (getattr(reply, "flush_all_msgs", None) or {}).items():
        tick = message.properties.get(_TIME_TICK)
        if tick is None:
            raise ValueError(f"the FlushAll message of {channel} has no time tick")
        ticks[channel] = int(tick, 36)
    return ticks


def collection_names(requests: tuple[Any, ...]) -> list[str]:
    """The collections a round of per-collection requests asks about (some requests
    spell the field ``collectionName``)."""
    return [
        request.collection_name if hasattr(request, "collection_name") else request.collectionName
        for request in requests
    ]


def _ids(segment_map: Any, name: str) -> tuple[int, ...]:
    return tuple(int(i) for i in segment_map[name].data) if name in segment_map else ()
