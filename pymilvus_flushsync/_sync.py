"""The blocking driver, and ``flush_sync`` on ``MilvusClient``.

The driver only does I/O: it sends what ``FlushMachine`` asks for on the
client's own gRPC stub and sleeps when told to. All decisions live in ``_core``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import grpc
import pymilvus

from ._core import Done, FlushMachine, FlushPolicy, Sleep
from ._params import check_db_name, check_names, check_timeout
from ._response import FlushSyncResponse

__all__ = ["FlushSyncMixin", "MilvusClient", "run"]


def run(
    machine: FlushMachine, handler: Any, sleep: Callable[[float], object] = time.sleep
) -> FlushSyncResponse:
    """Drive ``machine`` to the end over ``handler``'s gRPC stub."""
    while True:
        action = machine.next_action()
        if isinstance(action, Done):
            return action.response
        if isinstance(action, Sleep):
            sleep(action.seconds)
            continue
        rpc = getattr(handler._stub, action.method)  # fresh: pymilvus swaps it on reconnect
        try:
            reply = rpc(action.request, timeout=action.timeout, metadata=action.metadata)
        except grpc.RpcError as exc:
            machine.fail(exc)
        else:
            machine.receive(reply)


def current_db_name(client: Any) -> str:
    """The client's current database (``""``: the server's default)."""
    config = getattr(client, "_config", None)
    return str(getattr(config, "db_name", "") or "")


def new_machine(
    client: Any,
    collection_names: str | Sequence[str],
    db_name: str | None,
    timeout: float | None,
    policy: FlushPolicy,
) -> FlushMachine:
    """Check the arguments (``ParamError``, before any RPC) and start a call's state."""
    names = check_names(collection_names)
    seconds = check_timeout(timeout)
    db = check_db_name(db_name)
    return FlushMachine(names, current_db_name(client) if db is None else db, seconds, policy)


class FlushSyncMixin:
    """Adds ``flush_sync`` to a ``pymilvus.MilvusClient`` (or any class with its
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
        machine = new_machine(self, collection_names, db_name, timeout, self.flush_sync_policy)
        return run(machine, self._get_connection())  # type: ignore[attr-defined]


class MilvusClient(FlushSyncMixin, pymilvus.MilvusClient):  # type: ignore[misc]
    """``pymilvus.MilvusClient`` with ``flush_sync``; everything else is unchanged."""
