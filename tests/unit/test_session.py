"""``_compat.session_reads_at``: pymilvus's own Session reads then carry the ticket's
timestamp as their guarantee (``ts_utils.construct_guarantee_ts``), on every line."""

from __future__ import annotations

import inspect
import itertools
from typing import Any

import pytest
from pymilvus.client import ts_utils

from pymilvus_flushsync._compat import session_reads_at

_NEXT = itertools.count(10**15)
ADDRESS = "127.0.0.1:19530"


def guarantee(name: str, level: str | None, db_name: str = "") -> int:
    """The guarantee timestamp pymilvus sends for a read of ``name`` at ``level``."""
    kwargs: dict[str, Any] = {} if level is None else {"consistency_level": level}
    takes = inspect.signature(ts_utils.construct_guarantee_ts).parameters
    extra = (ADDRESS, db_name) if "endpoint" in takes else ()
    ts_utils.construct_guarantee_ts(name, kwargs, *extra)
    return int(kwargs["guarantee_timestamp"])


@pytest.mark.parametrize("db_name", ["", "default"])
def test_a_session_read_is_guaranteed_the_tickets_timestamp(db_name: str) -> None:
    name, ts = f"c{next(_NEXT)}", next(_NEXT)
    assert guarantee(name, "Session", db_name) == ts_utils.get_eventually_ts()
    session_reads_at(ADDRESS, "default", {name: ts})
    assert guarantee(name, "Session", db_name) == ts
    session_reads_at(ADDRESS, "default", {name: ts - 5})  # an older ticket lowers nothing
    assert guarantee(name, "Session", db_name) == ts
    assert guarantee(name, "Strong", db_name) == 0  # no level is made less fresh
    assert guarantee(name, "Bounded", db_name) == ts_utils.get_bounded_ts()


def test_another_database_is_not_touched() -> None:
    name, ts = f"c{next(_NEXT)}", next(_NEXT)
    session_reads_at(ADDRESS, "x", {name: ts})
    if "endpoint" in inspect.signature(ts_utils.construct_guarantee_ts).parameters:
        assert guarantee(name, "Session", "") == ts_utils.get_eventually_ts()
        assert guarantee(name, "Session", "x") == ts
    else:  # pymilvus 2.5 keys the timestamp by name alone
        assert guarantee(name, "Session") == ts
