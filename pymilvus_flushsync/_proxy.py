"""The proxies ``wrap`` returns; a module of their own because the mixins import pymilvus."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import wrapt

from ._clients import AsyncFlushSyncMixin, FlushSyncMixin

__all__ = ["AsyncClientProxy", "SyncClientProxy"]

if TYPE_CHECKING:  # generic in wrapt's stubs only; wrapt 1.x is not subscriptable at runtime
    _Proxy = wrapt.ObjectProxy[Any]
else:
    _Proxy = wrapt.ObjectProxy


class SyncClientProxy(FlushSyncMixin, _Proxy):
    """A ``pymilvus.MilvusClient`` with ``flush_sync``; every other attribute is the client's."""


class AsyncClientProxy(AsyncFlushSyncMixin, _Proxy):
    """A ``pymilvus.AsyncMilvusClient`` with ``async flush_sync``; the rest is the client's."""
