"""Bad arguments raise ParamError before any RPC."""

from __future__ import annotations

import asyncio
import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from pymilvus.exceptions import ParamError

from pymilvus_flushsync import AsyncFlushSyncMixin, FlushSyncMixin
from pymilvus_flushsync._params import check_names, check_timeout

BAD_NAMES = [
    *(None, [], (), "", [""], ["a", ""], [1], ["a", None], {"a"}, {"a": 1}, 5, b"a"),
    "\udcff",  # a lone surrogate: argv's undecodable byte; cannot be sent as UTF-8
    ["ok", "a\udcffb"],
]
BAD_TIMEOUTS = [
    *(0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf, True, False, "5", [5], object()),
    10**400,  # no float holds it
    -(10**400),
    Decimal("1"),  # not a numbers.Real
    np.float32("nan"),
    np.bool_(True),
    Fraction(-1, 2),
]
BAD_DB_NAMES = [5, b"db", ["db"], object(), "数据库", "\udcff", "a\nb"]  # metadata: ASCII
GOOD_TIMEOUTS = [2, 2.0, np.float32(2), np.int64(2), np.float64(2), np.int8(2), Fraction(2)]


class NoRpcClient(FlushSyncMixin):
    """Fails the test if flush_sync reaches for a connection."""

    def _get_connection(self) -> None:
        raise AssertionError("an RPC was attempted")


class AsyncNoRpcClient(AsyncFlushSyncMixin):
    async def _get_connection(self) -> None:
        raise AssertionError("an RPC was attempted")


def flush_both(**kwargs: object) -> None:
    """flush_sync with these arguments, on the sync and on the async mixin: each must raise."""
    names = kwargs.pop("names", ["a"])
    with pytest.raises(ParamError):
        NoRpcClient().flush_sync(names, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ParamError):
        asyncio.run(AsyncNoRpcClient().flush_sync(names, **kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize("names", BAD_NAMES)
def test_bad_names(names: object) -> None:
    flush_both(names=names)


@pytest.mark.parametrize("timeout", BAD_TIMEOUTS)
def test_bad_timeouts(timeout: object) -> None:
    flush_both(timeout=timeout)


@pytest.mark.parametrize("db_name", BAD_DB_NAMES)
def test_bad_db_names(db_name: object) -> None:
    flush_both(db_name=db_name)


@pytest.mark.parametrize("timeout", GOOD_TIMEOUTS)
def test_every_real_number_type_is_a_timeout(timeout: object) -> None:
    seconds = check_timeout(timeout)
    assert type(seconds) is float and seconds == 2.0


def test_names_are_normalised() -> None:
    assert check_names("a") == ("a",)
    assert check_names(["b", "a", "b", "c", "a"]) == ("b", "a", "c")
    assert check_names(("x",)) == ("x",)
