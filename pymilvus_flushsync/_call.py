"""One call's ``FlushMachine``, made from a client and the caller's arguments.

The one internal entry point: the clients' ``flush_sync``, the command line and
the benchmark all start a call here and hand it to a driver (``_sync.run``,
``_async.run``).
"""

from __future__ import annotations

from typing import Any

from ._compat import current_db_name, endpoint
from ._core import FlushMachine, FlushPolicy
from ._group import history_for
from ._params import check_db_name, check_names, check_timeout
from ._ticks import for_endpoint

__all__ = ["prepare"]


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
