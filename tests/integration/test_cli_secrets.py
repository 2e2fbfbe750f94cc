"""The command line removes a URI's userinfo and the token from its messages, and never
changes a character of its data: the response, its JSON, a ticket (``_redact``). Each
password below spells something the output holds (a number, ``true``, ``default``,
``Milvus``, a letter of "cannot")."""

from __future__ import annotations

import io
import json
import secrets
import subprocess
import sys

import pytest

from ..helpers import Backend, server_only
from .test_cli import CLI, QUIET, run_cli

#: The last one is random: its id is fixed, so that every pytest-xdist worker collects
#: the same tests.
PASSWORDS = [
    *("0", "1", "a", "true", "default", "Milvus", "root"),
    pytest.param(secrets.token_urlsafe(32), id="random"),
]


def _flags(backend: Backend, password: str) -> list[str]:
    """The URI with ``root:password`` as its userinfo (a server), and the same token."""
    uri = (
        backend.uri
        if backend.kind == "lite"
        else backend.uri.replace("://", f"://root:{password}@")
    )
    return ["--uri", uri, "--token", f"root:{password}", "--timeout", "60"]


def _nothing_secret(password: str, *outputs: str) -> None:
    for output in outputs:
        assert f"root:{password}" not in output and "***" not in output, output


@pytest.mark.parametrize("password", PASSWORDS)
def test_data_is_printed_as_it_is_whatever_the_password_spells(
    backend: Backend,
    password: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, flags = backend.collection(10), _flags(backend, password)
    code, out, err = run_cli(capsys, "flush", name, *flags, "--json")
    data = json.loads(out)
    assert code == 0 and data["flushed"] is True and data["db_name"] == "default"
    assert data["status"] == {"code": 0, "error_code": "Success", "reason": ""}
    _nothing_secret(password, out, err)
    code, out, err = run_cli(capsys, "flush", name, *flags)
    assert code == 0 and out.startswith("flushed: 1 collection(s) in database 'default' in ")
    if backend.kind == "lite":
        assert "(Milvus Lite persists at once and reports none)" in out
    _nothing_secret(password, out, err)
    code, ticket, err = run_cli(capsys, "flush", "--no-wait", name, *flags)
    assert code == 0 and json.loads(ticket)["collections"][0]["name"] == name
    _nothing_secret(password, ticket, err)
    monkeypatch.setattr(sys, "stdin", io.StringIO(ticket))
    code, out, err = run_cli(capsys, "wait", "-", *flags, "--json")
    assert code == 0 and json.loads(out)["collections"][name]["flushed"] is True, err
    _nothing_secret(password, out, err)


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_message_loses_the_userinfo_and_the_token_and_nothing_else(
    password: str, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"http://root:{password}@127.0.0.1:9"  # nothing listens on port 9 (discard)
    code, out, err = run_cli(
        capsys,
        "flush",
        "c",
        "--uri",
        uri,
        "--token",
        f"root:{password}",
        "--timeout",
        "2",
        "--json",
    )
    assert code in {1, 3}
    assert "http://***@127.0.0.1:9" in err and "connect" in err
    assert "***" not in err.replace("http://***@", "") and f"root:{password}" not in err
    reason = json.loads(out)["status"]["reason"]
    assert "***" not in reason.replace("http://***@", "") and f"root:{password}" not in out


@server_only
def test_a_ticket_piped_from_flush_to_wait_in_two_processes(backend: Backend) -> None:
    name, flags = backend.collection(10), _flags(backend, "0")
    sealed = subprocess.run(
        [*CLI, "flush", "--no-wait", name, *flags],
        capture_output=True, text=True, env=QUIET, timeout=120, check=False,
    )  # fmt: skip
    assert sealed.returncode == 0, sealed.stderr
    waited = subprocess.run(
        [*CLI, "wait", "-", *flags, "--json"],
        input=sealed.stdout, capture_output=True, text=True, env=QUIET, timeout=120, check=False,
    )  # fmt: skip
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["collections"][name]["flushed"] is True
    _nothing_secret("0", sealed.stdout, sealed.stderr, waited.stdout, waited.stderr)
