"""The blocking driver, and ``flush_sync`` on ``MilvusClient``.

The driver only does I/O: it sends what ``FlushMachine`` asks for on the
client's own gRPC stub and sleeps when told to. All decisions live in ``_core``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pymilvus

from ._core import Done, FlushMachine, FlushPolicy, Sleep
from ._params import start
from ._response import FlushSyncResponse

__all__ = ["FlushSyncMixin", "MilvusClient", "run"]


def run(
    machine: FlushMachine,
    stub: Callable[[], Any],
    sleep: Callable[[float], object] = time.sleep,
) -> FlushSyncResponse:
    """Drive ``machine`` to the end over the gRPC stub that ``stub()`` returns (called
    per RPC: pymilvus swaps it on reconnect, and it raises once the client is closed);
    a round of several RPCs goes out at once as futures."""
    while not isinstance(action := machine.next_action(), Done):
        with machine.expect(action) as outcome:
            if isinstance(action, Sleep):
                sleep(action.seconds)
            else:
                calls = action.invoke(stub(), future=True)
                try:
                    outcome.reply = [call.result() for call in calls]
                finally:  # a no-op once done; on Ctrl-C, nothing is left in flight
                    for call in calls:
                        call.cancel()
    return action.response


class FlushSyncMixin:
    """Adds ``flush_sync`` to ``pymilvus.MilvusClient`` (or any class with its
    ``_get_connection()``). ``flush_sync_policy`` tunes polling and retries."""

    flush_sync_policy: ClassVar[FlushPolicy] = FlushPolicy()

    def flush_sync(
        self,
        collection_names: str | Sequence[str],
        db_name: str | None = None,
        timeout: float | None = None,
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

        Returns:
            A frozen ``FlushSyncResponse`` with ``flushed=True``.

        Raises:
            ParamError: invalid arguments (before any RPC).
            FlushTimeoutError: the deadline passed first; ``.pending`` names what
                was not flushed, ``.response`` the progress.
            MilvusException: the server refused (e.g. code 100 for a missing
                collection), with the server's code and reason.
        """
        machine = start(self, collection_names, db_name, timeout, self.flush_sync_policy)
        return run(machine, lambda: self._get_connection()._stub)  # type: ignore[attr-defined]


class MilvusClient(FlushSyncMixin, pymilvus.MilvusClient):  # type: ignore[misc]
    """``pymilvus.MilvusClient`` with ``flush_sync``; everything else is unchanged."""
