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

from ._async import AsyncFlushSyncMixin, AsyncMilvusClient
from ._core import Backoff, FlushPolicy
from ._errors import FlushTimeoutError
from ._patch import patch, unpatch, wrap
from ._response import CollectionFlushState, FlushStatus, FlushSyncResponse
from ._sync import FlushSyncMixin, MilvusClient

__all__ = [
    "AsyncFlushSyncMixin",
    "AsyncMilvusClient",
    "Backoff",
    "CollectionFlushState",
    "FlushPolicy",
    "FlushStatus",
    "FlushSyncMixin",
    "FlushSyncResponse",
    "FlushTimeoutError",
    "MilvusClient",
    "patch",
    "unpatch",
    "wrap",
]
__version__ = "0.1.0"
