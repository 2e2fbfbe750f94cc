"""One call's ``FlushMachine``, made from a client and the caller's arguments.

The one internal entry point: the clients' ``flush_sync``, the command line and
the benchmark all start a call here and hand it to a driver (``_sync.run``,
``_async.run``).

``flush_all_sync`` is one machine per database (``every=True``: each lists its
collections, flushes them and waits), all driven at once under one deadline,
after ``ListDatabases`` (``databases_rpc``, ``databases_from``). FlushAll is not
used: on Milvus 2.3.5, FlushAll + GetFlushAllState reported "flushed" while rows
inserted before the call were not in Flushed segments (measured; see
docs/guarantees.md), and a Flush per database seals exactly what it names on
every server line.
"""

from __future__ import annotations

from typing import Any

import grpc
from pymilvus.exceptions import MilvusException
from pymilvus.grpc_gen import milvus_pb2

from ._compat import current_db_name, endpoint
from ._core import FlushMachine, FlushPolicy, SendRpc
from ._errors import classify_exception, classify_rpc_error, classify_status, undecodable
from ._group import history_for
from ._params import check_db_name, check_names, check_timeout
from ._ticks import for_endpoint

__all__ = ["databases_from", "databases_rpc", "prepare"]


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


def databases_rpc(machine: FlushMachine) -> SendRpc:
    """``ListDatabases``, under ``machine``'s deadline (``flush_all_sync``'s first step)."""
    left = machine.remaining()
    timeout = machine.policy.rpc_timeout if left is None else min(left, machine.policy.rpc_timeout)
    return SendRpc("ListDatabases", (milvus_pb2.ListDatabasesRequest(),), timeout, None)


def databases_from(machine: FlushMachine, reply: Any) -> list[str]:
    """The database names of ``ListDatabases``'s reply, or a ``grpc.RpcError`` it raised;
    raises the failure (``FlushTimeoutError`` once the deadline has passed)."""
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
    if machine.remaining() == 0.0:
        error: MilvusException = machine.timeout_error()
        error.__cause__ = failure.error
        raise error
    raise failure.error
