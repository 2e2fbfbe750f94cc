"""Where each pymilvus version keeps the client's current database."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pymilvus.client import interceptor

from pymilvus_flushsync._compat import current_db_name


def client_with(handler: object) -> SimpleNamespace:
    """A client without ``_config`` (pymilvus 2.5) whose connection is ``handler``."""
    return SimpleNamespace(_get_connection=lambda: handler)


def test_from_the_config_on_pymilvus_26_and_later() -> None:
    assert current_db_name(SimpleNamespace(_config=SimpleNamespace(db_name="db2"))) == "db2"
    assert current_db_name(SimpleNamespace(_config=SimpleNamespace(db_name=None))) == ""


@pytest.mark.parametrize("db", ["db2", ""])
def test_from_the_sync_handler_interceptor_on_pymilvus_25(db: str) -> None:
    handler = SimpleNamespace(
        _db_interceptor=interceptor.header_adder_interceptor(["dbname"], [db])
    )
    assert current_db_name(client_with(handler)) == db


def test_from_the_async_handler_on_pymilvus_25() -> None:
    assert current_db_name(client_with(SimpleNamespace(_db_name="db2"))) == "db2"


def test_default_when_the_handler_has_no_database() -> None:
    assert current_db_name(client_with(SimpleNamespace(_db_interceptor=None))) == ""
    other = interceptor.header_adder_interceptor(["authorization"], ["x"])
    assert current_db_name(client_with(SimpleNamespace(_db_interceptor=other))) == ""


def test_default_when_the_interceptor_layout_is_unknown() -> None:
    def only_keys() -> object:
        keys = ["dbname"]
        return lambda: keys  # a closure over the header names and nothing else

    for add_headers in (only_keys(), lambda: None):
        handler = SimpleNamespace(_db_interceptor=SimpleNamespace(_fn=add_headers))
        assert current_db_name(client_with(handler)) == ""
