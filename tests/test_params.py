"""Bad arguments raise ParamError before any RPC."""

from __future__ import annotations

import math

import pytest
from pymilvus.exceptions import ParamError

from pymilvus_flushsync import FlushSyncMixin
from pymilvus_flushsync._params import check_names

from .helpers import Backend

BAD_NAMES = [None, [], (), "", [""], ["a", ""], [1], ["a", None], {"a"}, {"a": 1}, 5, b"a"]
BAD_TIMEOUTS = [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf, True, False, "5", [5], object()]
BAD_DB_NAMES = [5, b"db", ["db"], object()]


class NoRpcClient(FlushSyncMixin):
    """Fails the test if flush_sync reaches for a connection."""

    def _get_connection(self) -> None:
        raise AssertionError("an RPC was attempted")


@pytest.mark.parametrize("names", BAD_NAMES)
def test_bad_names(names: object) -> None:
    with pytest.raises(ParamError):
        NoRpcClient().flush_sync(names)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", BAD_TIMEOUTS)
def test_bad_timeouts(timeout: object) -> None:
    with pytest.raises(ParamError):
        NoRpcClient().flush_sync(["a"], timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize("db_name", BAD_DB_NAMES)
def test_bad_db_names(db_name: object) -> None:
    with pytest.raises(ParamError):
        NoRpcClient().flush_sync(["a"], db_name=db_name)  # type: ignore[arg-type]


def test_names_are_normalised() -> None:
    assert check_names("a") == ("a",)
    assert check_names(["b", "a", "b", "c", "a"]) == ("b", "a", "c")
    assert check_names(("x",)) == ("x",)


@pytest.mark.parametrize("names", [None, [], "", [""], [1]])
def test_bad_names_on_a_real_client(backend: Backend, names: object) -> None:
    with pytest.raises(ParamError):
        backend.client.flush_sync(names)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [0, -1, math.nan, math.inf, True, "1"])
def test_bad_timeouts_on_a_real_client(backend: Backend, timeout: object) -> None:
    name = backend.collection()
    with pytest.raises(ParamError):
        backend.client.flush_sync([name], timeout=timeout)  # type: ignore[arg-type]
