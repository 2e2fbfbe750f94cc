"""The clients: pymilvus's own, with ``flush_sync`` and ``flush_all_sync`` added.

``FlushSyncMixin`` and ``AsyncFlushSyncMixin`` add the two methods to any class
with pymilvus's ``_get_connection()`` (the ``wrap`` proxies and ``patch`` use them
too); ``MilvusClient`` and ``AsyncMilvusClient`` are pymilvus's clients with them.
Each method checks its arguments, makes the call's machine (``_call``) and hands
it to its driver (``_sync``, ``_async``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import pymilvus

from . import _async, _sync
from ._call import prepare, prepare_seal, prepare_wait, reads_see, ticket_of
from ._compat import async_handler
from ._params import Until
from ._response import FlushAllSyncResponse, FlushSyncResponse, ProgressHook
from ._schedule import FlushPolicy
from ._ticket import FlushTicket

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
        until: Until = "persisted",
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
            until: ``"visible"`` (no Flush: a ticket whose readers see every write
                acknowledged before the call), ``"persisted"`` (the default),
                ``"indexed"`` (every index of each collection covers its rows) or
                ``"loaded"`` (indexed, and the query nodes serve its segments with
                their index), under the one deadline (docs/guarantees.md, "Visible" and
                "Beyond persisted").

        Returns:
            A frozen ``FlushSyncResponse`` with ``flushed=True`` and ``ticket``: hand
            it to readers anywhere (``wait_flushed(ticket, until="visible")``).

        Raises:
            ParamError: invalid arguments (before any RPC).
            FlushTimeoutError: the deadline passed first; ``.pending`` names what
                was not flushed, ``.response`` the progress.
            MilvusException: the server refused (e.g. code 100 for a missing
                collection), with the server's code and reason.
        """
        policy = self.flush_sync_policy
        machine = prepare(
            self, collection_names, db_name, timeout, policy, on_progress=on_progress,
            until=until, identify=True,
        )  # fmt: skip
        return _sync.run(machine, self)

    # fmt: off
    def start_flush(
        self, collection_names: str | Sequence[str], db_name: str | None = None,
        timeout: float | None = None,
    ) -> FlushTicket:
        # fmt: on
        """Seal collections and return at once with a ticket that any client of the same
        server, in any process or host, can wait on (``wait_flushed``).

        The Flush is shared, retried and bounded as ``flush_sync``'s: group commit,
        rate limits (a Flush refused because another client flushed within the
        window is covered by that one when it persisted every row written before
        the call began, by any client) and
        restarts, all inside ``timeout``.

        Returns:
            A frozen ``FlushTicket``: per collection its identity on the server, the
            sealed segment IDs and the flush timestamp, and the database.

        Raises:
            MilvusException: as ``flush_sync`` (``ParamError``, ``FlushTimeoutError``).
        """
        machine = prepare_seal(self, collection_names, db_name, timeout, self.flush_sync_policy)
        _sync.run(machine, self)
        return ticket_of(machine)

    # fmt: off
    def wait_flushed(
        self, ticket: FlushTicket, timeout: float | None = None, *,
        on_progress: ProgressHook | None = None, until: Until = "persisted",
    ) -> FlushSyncResponse:
        # fmt: on
        """Wait under one deadline until ``ticket``'s data is persisted (or ``until``
        another stage): the completion rule, response, errors, progress hook and polls
        of ``flush_sync``. Then this client's reads at ``consistency_level="Session"``
        see every write the ticket covers; ``until="visible"`` only checks the
        collections' identities for that (no wait).

        Raises:
            ParamError: not a ``FlushTicket``, or a bad ``timeout``.
            MilvusException: code 100 when the ticket's collection is gone, was
                recreated under its name, or the ticket is for another server.
            FlushTimeoutError: the deadline passed first.
        """
        policy = self.flush_sync_policy
        machine = prepare_wait(self, ticket, timeout, policy, on_progress, until=until)
        response = _sync.run(machine, self)
        reads_see(cast(Any, self)._get_connection(), ticket)
        return response

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
            MilvusException: as ``flush_sync`` (``ParamError``, ``FlushTimeoutError``);
                the first database's failure ends the call (the others stop).
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
        until: Until = "persisted",
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
        machine = prepare(
            self, collection_names, db_name, timeout, policy, on_progress=on_progress,
            until=until, identify=True,
        )  # fmt: skip
        return await _async.run(machine, self)

    # fmt: off
    async def start_flush(
        self, collection_names: str | Sequence[str], db_name: str | None = None,
        timeout: float | None = None,
    ) -> FlushTicket:
        # fmt: on
        """The asyncio twin of ``FlushSyncMixin.start_flush``."""
        machine = prepare_seal(self, collection_names, db_name, timeout, self.flush_sync_policy)
        await _async.run(machine, self)
        return ticket_of(machine)

    # fmt: off
    async def wait_flushed(
        self, ticket: FlushTicket, timeout: float | None = None, *,
        on_progress: ProgressHook | None = None, until: Until = "persisted",
    ) -> FlushSyncResponse:
        # fmt: on
        """The asyncio twin of ``FlushSyncMixin.wait_flushed``."""
        policy = self.flush_sync_policy
        machine = prepare_wait(self, ticket, timeout, policy, on_progress, until=until)
        response = await _async.run(machine, self)
        reads_see(await async_handler(self), ticket)
        return response

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
