"""One call's ``FlushMachine``, made from a client and the caller's arguments.

The one internal entry point: the clients' ``flush_sync``, the command line and
the benchmark all start a call here and hand it to a driver (``_sync.run``,
``_async.run``).

``flush_all_sync`` is one machine per database (``every=True``: each lists its
collections, flushes them and waits), all driven at once under one deadline,
after ``ListDatabases`` (``AllDatabases``). FlushAll is not
used: on Milvus 2.3.5, FlushAll + GetFlushAllState reported "flushed" while rows
inserted before the call were not in Flushed segments (measured; see
docs/guarantees.md), and a Flush per database seals exactly what it names on
every server line.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
from pymilvus.exceptions import MilvusException
from pymilvus.grpc_gen import milvus_pb2

from ._compat import current_db_name, endpoint
from ._core import FlushMachine, FlushPolicy, SendRpc
from ._errors import classify_exception, classify_rpc_error, classify_status, undecodable
from ._group import history_for
from ._params import check_db_name, check_names, check_timeout
from ._response import FlushAllSyncResponse, FlushSyncResponse
from ._ticks import for_endpoint

__all__ = ["AllDatabases", "prepare"]


def prepare(
    client: Any,
    collection_names: Any,
    db_name: Any,
    timeout: Any,
    policy: FlushPolicy,
    *,
    every: bool = False,
    since: float | None = None,
) -> FlushMachine:
    """Check the arguments (``ParamError`` before any RPC), resolve the database and
    the endpoint's tick model, and start the deadline (now, or at ``since``).

    ``every=True`` (the CLI's ``--all``) ignores ``collection_names`` and flushes
    every collection of the database, listed under the same deadline.
    """
    names = None if every else check_names(collection_names)
    seconds = check_timeout(timeout)
    db = check_db_name(db_name)
    period = policy.tick_period
    address = endpoint(client)
    return FlushMachine(
        names,
        current_db_name(client) if db is None else db,
        seconds,
        policy,
        ticks=None if period is None else for_endpoint(address, period),
        since=since,
        history=history_for(address),
    )


class AllDatabases:
    """One ``flush_all_sync`` call: its deadline, the ``ListDatabases`` to send first
    (unless ``db_name`` names the one database), then one machine per database.

    A driver sends ``listing()`` when ``lists``, hands the reply (or what the RPC
    raised) to ``machines``, drives those machines at once and gives their responses
    to ``response``.
    """

    def __init__(
        self,
        client: Any,
        db_name: Any,
        timeout: Any,
        policy: FlushPolicy,
        *,
        since: float | None = None,
    ) -> None:
        self._client, self._timeout, self._policy = client, timeout, policy
        self._started = time.monotonic() if since is None else since
        #: the deadline holder, and the machine of ``db_name`` when it is given
        self.first = prepare(
            client, None, db_name, timeout, policy, every=True, since=self._started
        )
        self.lists = db_name is None

    def listing(self) -> SendRpc:
        """``ListDatabases``, under the call's deadline (built when it is sent)."""
        left = self.first.remaining()
        cap = self._policy.rpc_timeout
        return SendRpc(
            "ListDatabases",
            (milvus_pb2.ListDatabasesRequest(),),
            cap if left is None else min(left, cap),
            None,
        )

    def machines(self, reply: Any = None) -> list[FlushMachine]:
        """One machine per database: of ``ListDatabases``'s reply (raises its failure,
        a ``FlushTimeoutError`` once the deadline has passed), or ``db_name``'s."""
        if not self.lists:
            return [self.first]
        return [
            prepare(
                self._client, None, db, self._timeout, self._policy, every=True,
                since=self._started,
            )
            for db in self._databases(reply)
        ]  # fmt: skip

    def response(self, responses: list[FlushSyncResponse]) -> FlushAllSyncResponse:
        return FlushAllSyncResponse(
            flushed=True,
            databases={r.db_name: r for r in responses},
            elapsed=time.monotonic() - self._started,
        )

    def _databases(self, reply: Any) -> list[str]:
        what = "ListDatabases"
        if isinstance(reply, milvus_pb2.ListDatabasesResponse):
            failure = classify_status(reply.status, what)
            if failure is None:
                return list(dict.fromkeys(reply.db_names))
        elif isinstance(reply, grpc.RpcError):
            failure = classify_rpc_error(reply, what)
        else:
            failure = classify_exception(reply, what) if isinstance(reply, Exception) else None
            failure = failure or undecodable(what)
        if self.first.remaining() == 0.0:
            error: MilvusException = self.first.timeout_error()
            error.__cause__ = failure.error
            raise error
        raise failure.error
