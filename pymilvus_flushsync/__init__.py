"""pymilvus-flushsync: ``flush_sync`` for pymilvus.

Seal collections and wait, under one deadline, until Milvus reports them
persisted::

    from pymilvus_flushsync import MilvusClient

    client = MilvusClient("./milvus.db")
    response = client.flush_sync(["a", "b"], timeout=30.0)

    # asyncio: the same contract, awaited
    from pymilvus_flushsync import AsyncMilvusClient
    response = await AsyncMilvusClient("./milvus.db").flush_sync(["a"], timeout=30.0)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Only ``patch``/``unpatch``/``wrap`` load eagerly: they do not import pymilvus, so
# ``import pymilvus_flushsync; pymilvus_flushsync.patch()`` really runs before pymilvus
# is imported. Every other name loads on first use (PEP 562).
from ._patch import patch, unpatch, wrap

if TYPE_CHECKING:
    from ._clients import AsyncFlushSyncMixin, AsyncMilvusClient, FlushSyncMixin, MilvusClient
    from ._errors import FlushTimeoutError
    from ._params import Until
    from ._response import (
        CollectionFlushState,
        FlushAllSyncResponse,
        FlushStatus,
        FlushSyncResponse,
    )
    from ._schedule import Backoff, FlushPolicy
    from ._ticket import FlushTicket, TicketCollection

_LAZY = {
    "AsyncFlushSyncMixin": "._clients",
    "AsyncMilvusClient": "._clients",
    "Backoff": "._schedule",
    "CollectionFlushState": "._response",
    "FlushAllSyncResponse": "._response",
    "FlushPolicy": "._schedule",
    "FlushStatus": "._response",
    "FlushSyncMixin": "._clients",
    "FlushSyncResponse": "._response",
    "FlushTicket": "._ticket",
    "FlushTimeoutError": "._errors",
    "MilvusClient": "._clients",
    "TicketCollection": "._ticket",
    "Until": "._params",
}

__all__ = [
    "AsyncFlushSyncMixin",
    "AsyncMilvusClient",
    "Backoff",
    "CollectionFlushState",
    "FlushAllSyncResponse",
    "FlushPolicy",
    "FlushStatus",
    "FlushSyncMixin",
    "FlushSyncResponse",
    "FlushTicket",
    "FlushTimeoutError",
    "MilvusClient",
    "TicketCollection",
    "Until",
    "patch",
    "unpatch",
    "wrap",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
