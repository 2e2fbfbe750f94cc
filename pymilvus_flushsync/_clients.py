"""The clients: pymilvus's own, with ``flush_sync`` and ``flush_all_sync`` added.

``FlushSyncMixin`` and ``AsyncFlushSyncMixin`` add the two methods to any class
with pymilvus's ``_get_connection()`` (the ``wrap`` proxies and ``patch`` use them
too); ``MilvusClient`` and ``AsyncMilvusClient`` are pymilvus's clients with them.
Each method checks its arguments, makes the call's machine (``_call``) and hands
it to its driver (``_sync``, ``_async``).
"""

from __future__ import annotations

from collections.abc import Sequence

import pymilvus

from . import _async, _sync
from ._call import prepare
from ._response import FlushAllSyncResponse, FlushSyncResponse, ProgressHook
from ._schedule import FlushPolicy

__all__ = ["AsyncFlushSyncMixin", "AsyncMilvusClient", "FlushSyncMixin", "MilvusClient"]


class FlushSyncMixin:
    """Adds ``flush_sync`` to ``pymilvus.MilvusClient`` (or any class with its
    ``_get_connection()``). ``flush_sync_policy`` tunes polling and retries, on the
    class or on one client."""

    flush_sync_policy: FlushPolicy = FlushPolicy()

    # fmt: off
    def flush_sync(
        self, collection_names: str | Sequence[str], db_name: str | None = None,
        timeout: float | None = None, *, on_progress: ProgressHook | None = None,
    ) -> FlushSyncResponse:
        # fmt: on
        """Flush collections and wait until Milvus reports them persisted.

        One Flush RPC seals every collection's growing segments; then
        GetFlushState is polled until each is flushed. ``timeout`` bounds the
        whole call: every RPC, retry back-off and sleep share one deadline.

        Args:
            collection_names: a collection name, or a list or tuple of them
                (duplicates are collapsed, order kept).
            db_name: the database; ``None`` for the client's current one. It is
                used for this call only; the client's database does not change.
            timeout: seconds for the whole call; ``None`` waits without a deadline.
            on_progress: called with a ``FlushSyncResponse`` snapshot
                (``flushed=False``) before every wait, and with the final response
                on success, e.g. to draw a progress bar (``ProgressHook``).

        Returns:
            A frozen ``FlushSyncResponse`` with ``flushed=True``.

        Raises:
            ParamError: invalid arguments (before any RPC).
            FlushTimeoutError: the deadline passed first; ``.pending`` names what
                was not flushed, ``.response`` the progress.
            MilvusException: the server refused (e.g. code 100 for a missing
                collection), with the server's code and reason.
        """
        policy = self.flush_sync_policy
        machine = prepare(self, collection_names, db_name, timeout, policy, on_progress=on_progress)
        return _sync.run(machine, self)

    def flush_all_sync(
        self, timeout: float | None = None, db_name: str | None = None
    ) -> FlushAllSyncResponse:
        """Flush every collection of every database (or of ``db_name``) and wait until
        Milvus reports them persisted: pymilvus's ``flush_all`` with ``flush_sync``'s
        contract. ``ListDatabases``, then per database ShowCollections, one Flush
        and the polls, every database at once, all under one deadline.

        Args:
            timeout: seconds for the whole call; ``None`` waits without a deadline.
            db_name: only this database; ``None`` for every database of the server.

        Returns:
            A frozen ``FlushAllSyncResponse``: one ``FlushSyncResponse`` per database.

        Raises:
            ParamError, FlushTimeoutError, MilvusException: as ``flush_sync``; the
            first database's failure ends the call (the others stop).
        """
        return _sync.flush_all(self, db_name, timeout, self.flush_sync_policy)


class AsyncFlushSyncMixin:
    """Adds ``async flush_sync`` to ``pymilvus.AsyncMilvusClient`` (or any class with
    its ``async _get_connection()``). ``flush_sync_policy`` tunes polling and retries."""

    flush_sync_policy: FlushPolicy = FlushPolicy()

    # fmt: off
    async def flush_sync(
        self, collection_names: str | Sequence[str], db_name: str | None = None,
        timeout: float | None = None, *, on_progress: ProgressHook | None = None,
    ) -> FlushSyncResponse:
        # fmt: on
        """Flush collections and wait until Milvus reports them persisted.

        The asyncio twin of ``FlushSyncMixin.flush_sync``: same arguments, same
        ``FlushSyncResponse``, same errors. Connecting (on a client's first
        call) counts against ``timeout`` too. Works with pymilvus 2.6+'s async
        client and with 2.5's (whose ``_get_connection()`` is not a coroutine).

        Args:
            collection_names: a collection name, or a list or tuple of them.
            db_name: the database; ``None`` for the client's current one.
            timeout: seconds for the whole call; ``None`` waits without a deadline.
            on_progress: called with a ``FlushSyncResponse`` snapshot
                (``flushed=False``) before every wait, and with the final response
                on success (``ProgressHook``).

        Returns:
            A frozen ``FlushSyncResponse`` with ``flushed=True``.

        Raises:
            ParamError: invalid arguments (before any RPC).
            FlushTimeoutError: the deadline passed first (``.pending``, ``.response``).
            MilvusException: the server refused, with its code and reason.
        """
        policy = self.flush_sync_policy
        machine = prepare(self, collection_names, db_name, timeout, policy, on_progress=on_progress)
        return await _async.run(machine, self)

    async def flush_all_sync(
        self, timeout: float | None = None, db_name: str | None = None
    ) -> FlushAllSyncResponse:
        """Flush every collection of every database (or of ``db_name``) and wait until
        Milvus reports them persisted: the asyncio twin of
        ``FlushSyncMixin.flush_all_sync`` (same arguments, response and errors)."""
        return await _async.flush_all(self, db_name, timeout, self.flush_sync_policy)


class MilvusClient(FlushSyncMixin, pymilvus.MilvusClient):  # type: ignore[misc]
    """``pymilvus.MilvusClient`` with ``flush_sync``; everything else is unchanged."""


class AsyncMilvusClient(AsyncFlushSyncMixin, pymilvus.AsyncMilvusClient):  # type: ignore[misc]
    """``pymilvus.AsyncMilvusClient`` with ``async flush_sync``; everything else is unchanged."""
