"""Where each pymilvus version keeps the client's current database."""

from __future__ import annotations

import importlib.metadata
from types import SimpleNamespace

import pymilvus
import pytest
from pymilvus.client import interceptor
from pymilvus.exceptions import MilvusException

from pymilvus_flushsync import _compat
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


@pytest.mark.parametrize(
    ("pymilvus_version", "lite_version", "refused"),
    [("2.5.18", "3.2.2", True), ("2.5.18", "2.5.1", False), ("2.6.17", "3.2.2", False)],
)
def test_a_lite_client_is_refused_where_milvus_lite_cannot_serve_this_pymilvus(
    monkeypatch: pytest.MonkeyPatch, pymilvus_version: str, lite_version: str, refused: bool
) -> None:
    monkeypatch.setattr(pymilvus, "__version__", pymilvus_version)
    monkeypatch.setattr(importlib.metadata, "version", lambda name: lite_version)
    _compat._lite_mismatch.cache_clear()
    try:
        lite = SimpleNamespace(_using="/tmp/x.db")  # pymilvus 2.5 keeps the Lite path here
        if refused:
            with pytest.raises(MilvusException) as info:
                _compat.check_lite(lite)
            assert info.value.message.count("\n") == 0
            assert f"milvus-lite {lite_version}" in info.value.message
            assert '"milvus-lite>=2.4,<3"' in info.value.message
        else:
            _compat.check_lite(lite)
        _compat.check_lite(SimpleNamespace(_using="cm-1"))  # a server: never refused
    finally:
        monkeypatch.undo()
        _compat._lite_mismatch.cache_clear()
