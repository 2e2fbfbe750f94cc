"""The command line over TLS, on the real Milvus 2.3.5 started with server TLS
(``common.security.tlsMode`` 1) and with mutual TLS (2), with certificates made here
(``tests/certs.py``). Each case runs in a fresh process: pymilvus reuses one connection
per address within a process, so a second client there would prove nothing."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pymilvus_flushsync import MilvusClient

from ..certs import Certs, make
from ..helpers import forget_connections, rows, unique
from ..servers import Server, Servers
from .test_cli import CLI, QUIET

pytestmark = [pytest.mark.server, pytest.mark.faults, pytest.mark.own_server]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make(tmp_path_factory.mktemp("certs"))


def _tls_server(
    servers: Servers, certs: Certs, mode: int, **tls: object
) -> Iterator[tuple[Server, str]]:
    """A lease on a server in TLS ``mode``, and a collection of 50 rows made there."""
    config = {"common.security.tlsMode": str(mode), "tls.serverKeyPath": certs.server_key}
    if mode == 1:
        config["tls.serverPemPath"] = certs.self_signed
    else:
        config |= {"tls.serverPemPath": certs.server, "tls.caPemPath": certs.ca}
    with servers.lease(config) as server:
        forget_connections()  # no plain connection to this address may be reused
        client = MilvusClient(server.uri, **tls)
        name = unique("tls")
        client.create_collection(name, dimension=8)
        client.insert(name, rows(0, 50))
        client.close()
        forget_connections()
        yield server, name


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=120, check=False,
        env={**QUIET, **(env or {})},
    )  # fmt: skip


def _refused_in_one_line(result: subprocess.CompletedProcess[str], *said: str) -> None:
    assert result.returncode == 1, result
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert all(words in result.stderr for words in said), result.stderr


@pytest.fixture
def server_tls(milvus_servers: Servers, certs: Certs) -> Iterator[tuple[Server, str]]:
    tls = {"secure": True, "server_pem_path": certs.self_signed, "server_name": "localhost"}
    yield from _tls_server(milvus_servers, certs, 1, **tls)


@pytest.fixture
def mutual_tls(milvus_servers: Servers, certs: Certs) -> Iterator[tuple[Server, str]]:
    tls = {
        "secure": True,
        "ca_pem_path": certs.ca,
        "client_pem_path": certs.client,
        "client_key_path": certs.client_key,
        "server_name": "localhost",
    }
    yield from _tls_server(milvus_servers, certs, 2, **tls)


def test_server_tls_with_flags_and_with_the_environment(
    server_tls: tuple[Server, str], certs: Certs
) -> None:
    server, name = server_tls
    flags = ["--uri", server.uri, "--timeout", "60", "--server-name", "localhost"]
    ok = _cli("flush", name, *flags, "--secure", "--server-pem-path", certs.self_signed)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("flushed: 1 collection(s)")
    env = {"MILVUS_SECURE": "1", "MILVUS_CA_PEM_PATH": certs.self_signed}
    assert _cli("flush", name, *flags, env=env).returncode == 0
    wrong_ca = _cli("flush", name, *flags, "--server-pem-path", certs.other_ca)
    _refused_in_one_line(wrong_ca, "TLS handshake failed", "certificate verify failed")
    plaintext = _cli("flush", name, "--uri", server.uri, "--timeout", "60")
    _refused_in_one_line(plaintext, "the server speaks TLS: pass --secure")


def test_mutual_tls_needs_the_client_certificate(
    mutual_tls: tuple[Server, str], certs: Certs
) -> None:
    server, name = mutual_tls
    flags = ["--uri", server.uri, "--timeout", "60", "--ca-pem-path", certs.ca]
    client = ["--client-pem-path", certs.client, "--client-key-path", certs.client_key]
    ok = _cli("flush", name, *flags, *client, "--server-name", "localhost", "--json")
    assert ok.returncode == 0, ok.stderr
    no_client = _cli("flush", name, *flags)
    _refused_in_one_line(no_client, "TLS handshake failed")
    plaintext = _cli("flush", name, "--uri", server.uri, "--timeout", "60")
    _refused_in_one_line(plaintext, "the server speaks TLS")


def test_tls_flags_that_cannot_work_are_usage_errors(tmp_path: Path, certs: Certs) -> None:
    uri = ["--uri", "http://127.0.0.1:9", "--timeout", "5", "a"]
    client = ["--client-pem-path", certs.client, "--client-key-path", certs.client_key]
    for flags in (
        ["--client-pem-path", certs.client],  # no key, no CA
        ["--server-pem-path", certs.ca, *client],  # mutual TLS takes the CA
        ["--ca-pem-path", str(tmp_path / "missing.pem")],
        ["--token", "a:b", "--user", "a", "--password", "b"],
    ):
        result = _cli("flush", *uri, *flags)
        assert result.returncode == 2, (flags, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
