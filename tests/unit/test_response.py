"""The typed, frozen response."""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest
from pymilvus.exceptions import MilvusException

from pymilvus_flushsync import (
    CollectionFlushState,
    FlushAllSyncResponse,
    FlushStatus,
    FlushSyncResponse,
)
from pymilvus_flushsync._core import FlushMachine

from ..fakes import FakeClock


def response() -> FlushSyncResponse:
    states = {
        "a": CollectionFlushState("a", (1, 2), (3,), 99, 7, True, 0.5),
        "b": CollectionFlushState("b", flushed=True, seconds=0.6),
    }
    return FlushSyncResponse(
        flushed=True, collections=states, db_name="default", elapsed=0.61, polls=4
    )


def test_to_dict_has_the_node_sdk_shape() -> None:
    d = response().to_dict()
    assert d["flushed"] is True
    assert d["status"] == {"code": 0, "error_code": "Success", "reason": ""}
    assert d["collections"]["a"]["segment_ids"] == [1, 2]
    assert d["polls"] == 4 and d["db_name"] == "default"
    json.dumps(d)


def test_frozen_all_the_way_down() -> None:
    r = response()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.flushed = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        r.collections["c"] = CollectionFlushState("c")  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.collections["a"].flushed = False  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.status.code = 1  # type: ignore[misc]


def test_collections_keep_the_order_asked() -> None:
    assert list(response().collections) == ["a", "b"]


def test_repr_is_readable() -> None:
    text = repr(response())
    assert text.startswith("FlushSyncResponse(flushed=True")
    assert "[a, b] (2/2 flushed)" in text and "polls=4" in text
    assert FlushStatus().to_dict() == {"code": 0, "error_code": "Success", "reason": ""}


def test_a_response_survives_pickle_and_stays_frozen() -> None:
    original = response()
    copy: FlushSyncResponse = pickle.loads(pickle.dumps(original))
    assert copy == original and copy.to_dict() == original.to_dict()
    assert list(copy.collections) == ["a", "b"]
    with pytest.raises(TypeError):
        copy.collections["c"] = CollectionFlushState("c")  # type: ignore[index]


def test_a_timeout_error_survives_pickle_with_its_response_and_cause() -> None:
    clock = FakeClock()
    machine = FlushMachine(("a", "b"), "", 1.0, clock=clock)
    clock.advance(1.0)
    error = machine.timeout_error()
    error.__cause__ = MilvusException(code=8, message="rate limit exceeded[rate=0.1]")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    assert (copy.code, copy.message, copy.pending) == (error.code, error.message, ("a", "b"))
    assert copy.response == error.response and not copy.response.flushed
    assert isinstance(copy.__cause__, MilvusException)
    assert (copy.__cause__.code, copy.__cause__.message) == (8, "rate limit exceeded[rate=0.1]")


def test_the_all_databases_response_is_frozen_pickles_and_has_nodes_shape() -> None:
    original = FlushAllSyncResponse(
        flushed=True,
        databases={"default": response(), "db2": response()},
        elapsed=0.7,
        broadcast={"dml_0": 11, "dml_1": 12},
    )
    with pytest.raises(TypeError):
        original.databases["x"] = response()  # type: ignore[index]
    with pytest.raises(TypeError):
        original.broadcast["dml_2"] = 13  # type: ignore[index]
    copy: FlushAllSyncResponse = pickle.loads(pickle.dumps(original))
    assert copy == original and list(copy.databases) == ["default", "db2"]
    assert dict(copy.broadcast) == {"dml_0": 11, "dml_1": 12}
    d = json.loads(json.dumps(original.to_dict()))
    assert d["flushed"] is True and d["status"]["error_code"] == "Success"
    assert d["broadcast"] == {"dml_0": 11, "dml_1": 12}
    assert d["databases"]["db2"]["collections"]["a"]["segment_ids"] == [1, 2]
    assert repr(original).startswith("FlushAllSyncResponse(flushed=True, databases=[default (2")


def test_reprs_count_in_good_english() -> None:
    one = dataclasses.replace(response(), collections={"a": response().collections["a"]})
    text = repr(FlushAllSyncResponse(True, {"x": one, "y": response()}, 1.0))
    assert "x (1 collection)" in text and "y (2 collections)" in text
