"""The blocking driver, and ``flush_sync`` on ``MilvusClient``.

The driver only does I/O: it starts the RPCs ``FlushMachine`` asks for on the
client's own gRPC stub, sleeps when told to, and calls the progress hook. All
decisions live in ``_core``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pymilvus

from ._call import prepare
from ._core import Done, FlushMachine, FlushPolicy, SendRpc, Sleep
from ._response import FlushSyncResponse

__all__ = ["FlushSyncMixin", "MilvusClient", "ProgressHook", "run"]

#: Called with a progress snapshot (``flushed=False``) before every wait.
ProgressHook = Callable[[FlushSyncResponse], object]


def run(
    machine: FlushMachine,
    client: Any,
    *,
    on_progress: ProgressHook | None = None,
    sleep: Callable[[float], object] = time.sleep,
) -> FlushSyncResponse:
    """Drive ``machine`` to the end over ``client._get_connection()._stub``, read per
    RPC (pymilvus swaps it on reconnect; it raises once the client is closed)."""
    while not isinstance(action := machine.next_action(), Done):
        with machine.expect(action) as outcome:
            if isinstance(action, Sleep):
                if on_progress is not None:
                    on_progress(machine.progress())
                sleep(action.seconds)
            else:
                outcome.reply = send(client._get_connection()._stub, action)
    return action.response


def send(stub: Any, action: SendRpc) -> list[Any]:
    """Start every request of ``action`` at once (gRPC futures); their replies in order.
    Whatever happens, none is left in flight (a no-op for those already done)."""
    start = getattr(stub, action.method).future
    calls = [
        start(request, timeout=action.timeout, metadata=action.metadata)
        for request in action.requests
    ]
    try:
        return [call.result() for call in calls]
    finally:
        for call in calls:
            call.cancel()


class FlushSyncMixin:
    """Adds ``flush_sync`` to ``pymilvus.MilvusClient`` (or any class with its
    ``_get_connection()``). ``flush_sync_policy`` tunes polling and retries, on the
    class or on one client."""

    flush_sync_policy: FlushPolicy = FlushPolicy()

    def flush_sync(
        self,
        collection_names: str | Sequence[str],
        db_name: str | None = None,
        timeout: float | None = None,
        *,
        on_progress: ProgressHook | None = None,
    ) -> FlushSyncResponse:
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
                (``flushed=False``) before every wait, e.g. to draw a progress bar.

        Returns:
            A frozen ``FlushSyncResponse`` with ``flushed=True``.

        Raises:
            ParamError: invalid arguments (before any RPC).
            FlushTimeoutError: the deadline passed first; ``.pending`` names what
                was not flushed, ``.response`` the progress.
            MilvusException: the server refused (e.g. code 100 for a missing
                collection), with the server's code and reason.
        """
        machine = prepare(self, collection_names, db_name, timeout, self.flush_sync_policy)
        return run(machine, self, on_progress=on_progress)


class MilvusClient(FlushSyncMixin, pymilvus.MilvusClient):  # type: ignore[misc]
    """``pymilvus.MilvusClient`` with ``flush_sync``; everything else is unchanged."""
