"""The command line connects inside its deadline, the same on every pymilvus line: a
port where nothing listens (a server restarting) is retried with the back-off until
the deadline (exit 3), and a server that starts listening meanwhile is flushed."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from ..helpers import TOLERANCE, Backend, server_only
from ..proxy import StallingProxy
from .test_cli import CLI, QUIET, run_cli


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refused_port_is_retried_until_the_deadline(capsys: pytest.CaptureFixture[str]) -> None:
    port = _free_port()
    started = time.monotonic()
    code, out, err = run_cli(
        capsys, "flush", "--uri", f"http://127.0.0.1:{port}", "--timeout", "2", "--json", "a"
    )
    took = time.monotonic() - started
    assert code == 3 and 2 - 0.01 <= took <= 2 + TOLERANCE, (took, err)
    lines = err.strip().splitlines()
    assert len([line for line in lines if "refused; next try in" in line]) >= 3
    where = f"127.0.0.1:{port}"
    assert lines[-1] == f"timed out: nothing listens at {where} (http://{where}) within 2 s"
    assert '"error_code": "FlushTimeout"' in out


@server_only
def test_a_server_that_starts_listening_meanwhile_is_flushed(backend: Backend) -> None:
    name, port = backend.collection(20), _free_port()
    process = subprocess.Popen(
        [*CLI, "flush", "--uri", f"http://127.0.0.1:{port}", "--timeout", "60", name],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=QUIET,
    )  # fmt: skip
    assert process.stderr is not None
    retried = process.stderr.readline()  # the first retry: nothing listened then
    proxy = StallingProxy(int(backend.uri.rsplit(":", 1)[1]), port=port)  # now it does
    try:
        out, err = process.communicate(timeout=60)
    finally:
        proxy.close()
    assert "refused; next try in" in retried
    assert process.returncode == 0, retried + err
    assert out.startswith("flushed: 1 collection(s)")
