"""The public surface: exports, the drop-in subclass, an ordinary pymilvus workflow."""

from __future__ import annotations

import math
from typing import Literal, get_args, get_origin

import pymilvus
import pytest
from pymilvus.exceptions import ParamError

import pymilvus_flushsync
from pymilvus_flushsync import FlushSyncMixin, FlushTimeoutError, MilvusClient

from ..helpers import Backend, rows


def test_exports_are_complete_and_sorted() -> None:
    exported = pymilvus_flushsync.__all__
    assert exported == sorted(exported)
    lazy = pymilvus_flushsync._LAZY
    assert set(exported) == set(lazy) | {"patch", "unpatch", "wrap"}  # nothing unreachable
    for name in exported:
        value = getattr(pymilvus_flushsync, name)
        if get_origin(value) is Literal:  # a type alias (Until): its values are the API
            assert get_args(value) == pymilvus_flushsync._params.UNTIL
            continue
        assert value.__doc__
        assert value.__module__ == f"pymilvus_flushsync{lazy.get(name, '._patch')}"
        assert value.__name__ == name


def test_drop_in_subclass() -> None:
    assert issubclass(MilvusClient, pymilvus.MilvusClient)
    assert issubclass(MilvusClient, FlushSyncMixin)
    assert issubclass(FlushTimeoutError, pymilvus.MilvusException)
    assert issubclass(FlushTimeoutError, TimeoutError)


def test_ordinary_pymilvus_workflow(backend: Backend) -> None:
    client = backend.client
    assert isinstance(client, pymilvus.MilvusClient)
    name = backend.collection()
    assert name in client.list_collections()
    client.insert(name, rows(0, 100))
    client.flush(name)  # pymilvus's own flush is untouched
    response = client.flush_sync(name)
    assert response.flushed
    hits = client.search(name, data=[rows(5, 1)[0]["vector"]], limit=3)
    assert len(hits[0]) == 3
    got = client.get(name, ids=[1, 2])
    assert sorted(r["id"] for r in got) == [1, 2]
    assert backend.count(name) == 100


@pytest.mark.parametrize("names", [None, [], "", [""], [1]])
def test_bad_names_on_a_real_client(backend: Backend, names: object) -> None:
    with pytest.raises(ParamError):
        backend.client.flush_sync(names)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [0, -1, math.nan, math.inf, True, "1"])
def test_bad_timeouts_on_a_real_client(backend: Backend, timeout: object) -> None:
    name = backend.collection()
    with pytest.raises(ParamError):
        backend.client.flush_sync([name], timeout=timeout)  # type: ignore[arg-type]
