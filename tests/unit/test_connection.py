"""Where the command line connects, checked before anything is opened (``_connection``)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from pymilvus.exceptions import MilvusException

from pymilvus_flushsync._connection import Tls, address, lite_problem, login_refused, uri_problem
from pymilvus_flushsync._exits import Exit

from ..fakes import FakeRpcError


@pytest.mark.parametrize(
    "uri", ["http://h:1", "https://u:p@h", "tcp://h:19530", "unix:/tmp/m.sock", "./a.db", "a.db"]
)
def test_uris_that_connect(uri: str) -> None:
    assert uri_problem(uri) is None


@pytest.mark.parametrize(
    "uri", ["", "ftp://h:1", "./a", "http://h:x", "http://h:70000", "http://", "grpc://h:1"]
)
def test_uris_that_never_do(uri: str) -> None:
    assert uri_problem(uri)


def test_addresses_take_pymilvus_defaults() -> None:
    assert address("http://h") == ("h", 19530) and address("https://h") == ("h", 443)
    assert address("./a.db") is None and address("unix:/s") is None


def test_a_lite_path_is_a_database_or_refused(tmp_path: Path) -> None:
    assert lite_problem(str(tmp_path / "none.db"))[0] is Exit.MILVUS  # type: ignore[index]
    (tmp_path / "photos.db").mkdir()
    assert lite_problem(str(tmp_path / "photos.db"))[0] is Exit.USAGE  # type: ignore[index]
    (tmp_path / "lite.db" / "collections").mkdir(parents=True)
    assert lite_problem(str(tmp_path / "lite.db")) is None
    (tmp_path / "lite2.db").write_bytes(b"")  # Milvus Lite 2 keeps a file: Lite decides
    assert lite_problem(str(tmp_path / "lite2.db")) is None


def test_tls_arguments_as_pymilvus_takes_them(tmp_path: Path) -> None:
    pem = tmp_path / "a.pem"
    pem.write_text("x")
    assert Tls().kwargs() == {} and not Tls().on
    assert Tls(ca_pem_path=str(pem)).kwargs() == {"secure": True, "server_pem_path": str(pem)}
    mutual = Tls(ca_pem_path=str(pem), client_pem_path=str(pem), client_key_path=str(pem))
    assert mutual.problem() is None and mutual.kwargs()["ca_pem_path"] == str(pem)
    assert Tls(client_pem_path=str(pem)).problem()  # no key, no CA
    assert Tls(server_pem_path=str(tmp_path / "missing.pem")).problem()


def test_a_refused_login_is_found_in_a_chain_that_loops() -> None:
    refused = FakeRpcError(grpc.StatusCode.UNAUTHENTICATED, "auth check failure")
    error = MilvusException(code=2, message="Fail connecting")
    error.__cause__ = refused
    assert login_refused(error) == "UNAUTHENTICATED: auth check failure"
    looping = MilvusException(code=2, message="Fail connecting")
    looping.__cause__ = looping  # pymilvus 2.5: ``raise ex from ex``
    assert login_refused(looping) is None
