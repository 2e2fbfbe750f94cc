"""What a new user meets on the command line: every malformed URI and every usage
error is exit 2 with the command's own usage; a folder that is not a Lite database is
never written into; names from a file; one ticket for a whole database; Lite waits
until loaded."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pymilvus_flushsync import FlushTicket

from ..helpers import Backend
from .test_cli import CLI, QUIET, run_cli

FLUSH_USAGE = "usage: pymilvus-flushsync flush "


@pytest.mark.parametrize(
    "uri",
    [
        "http://u:p@127.0.0.1:notaport",
        "ftp://127.0.0.1:1",
        "./no-suffix",  # neither a server nor a Lite file
        "http://127.0.0.1:70000",
        "http://",
        "",
    ],
)
def test_every_malformed_uri_is_a_usage_error(
    uri: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "flush", "--uri", uri, "--timeout", "5", "a")
    assert (code, out) == (2, "") and err.startswith("invalid --uri "), err
    assert err.count("\n") == 1 and "p@" not in err
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_a_folder_that_is_not_a_lite_database_is_refused_and_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = tmp_path / "photos.db"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    for args in (["flush", "a"], ["flush", "--all"], ["flush", "--no-wait", "a"]):
        code, out, err = run_cli(capsys, *args, "--uri", str(photos))
        assert (code, out) == (2, "") and "is a folder that is not a Milvus Lite database" in err
    assert [p.name for p in photos.iterdir()] == ["cat.jpg"]


@pytest.mark.parametrize(
    "args",
    [
        ["flush", "--until", "indexed", "--server"],
        ["flush", "--no-wait", "--server"],
        ["flush", "--db-name", "数据库", "a"],
        ["flush", ""],
        ["flush", "--all", "a"],
        ["flush"],
    ],
)
def test_a_usage_error_of_flush_prints_flush_usage(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and err.startswith(FLUSH_USAGE), err


def test_heartbeat_says_heartbeat(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "flush", "--heartbeat", "0", "a")
    last = err.splitlines()[-1]
    assert code == 2 and "invalid heartbeat '0'" in last and "timeout" not in last


def test_wait_on_a_closed_stdin_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = subprocess.run(
        ["sh", "-c", 'exec "$@" <&-', "sh", *CLI, "wait", "-"],
        capture_output=True, text=True, env=QUIET, timeout=120, check=False,
    )  # fmt: skip
    assert closed.returncode == 2, closed.stderr
    assert closed.stderr == "cannot read the ticket -: standard input is closed\n"


def test_names_from_a_file_and_from_stdin(
    lite: Backend,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = [lite.collection(5) for _ in range(3)]
    listed = tmp_path / "names.txt"
    listed.write_text(f"# to flush\n{names[0]}\n\n  {names[1]}  \n")
    flags = ["--uri", lite.uri, "--json"]
    code, out, _ = run_cli(capsys, "flush", names[2], "--names-from", str(listed), *flags)
    assert code == 0 and list(json.loads(out)["collections"]) == [names[2], *names[:2]]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(names)))
    code, out, _ = run_cli(capsys, "flush", "--names-from", "-", *flags)
    assert code == 0 and list(json.loads(out)["collections"]) == names
    code, _, err = run_cli(capsys, "flush", "--names-from", str(tmp_path / "nope"), *flags)
    assert code == 2 and err.startswith(FLUSH_USAGE) and "cannot read --names-from" in err
    listed.write_text("\n# nothing\n")
    code, _, err = run_cli(capsys, "flush", "--names-from", str(listed), *flags)
    assert code == 2 and "name one or more collections" in err


def test_no_wait_all_gives_one_ticket_for_the_whole_database(
    backend: Backend, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, empty = backend.database(), backend.database()  # before the CLI releases Lite
    names = {backend.collection(20, db_name=db), backend.collection(20, db_name=db)}
    flags = ["--uri", backend.uri, "--db-name", db, "--timeout", "60"]
    code, out, err = run_cli(capsys, "flush", "--no-wait", "--all", *flags)
    assert code == 0, err
    ticket = FlushTicket.from_json(out)
    assert set(ticket.names) == names and ticket.db_name == db
    monkeypatch.setattr(sys, "stdin", io.StringIO(out))
    code, out, err = run_cli(capsys, "wait", "-", "--uri", backend.uri, "--json")
    assert code == 0 and all(c["flushed"] for c in json.loads(out)["collections"].values())
    code, out, err = run_cli(capsys, "flush", "--no-wait", "--all", *flags[:2], "--db-name", empty)
    assert (code, out) == (1, "") and "no collections to seal" in err


def test_until_loaded_on_lite_loads_what_a_fresh_process_has_not(
    lite: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    name = lite.collection(50)
    lite.client.release_collection(name)  # as a freshly opened Lite file reports it
    flags = ["--uri", lite.uri, "--until", "loaded", "--json"]
    code, out, err = run_cli(capsys, "flush", name, *flags)
    assert code == 0, err
    assert json.loads(out)["collections"][name]["loaded_seconds"] is not None
