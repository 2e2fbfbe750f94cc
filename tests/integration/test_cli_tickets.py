"""The CLI's tickets: ``flush --no-wait`` prints one, ``wait FILE|-`` waits on it, with
``flush``'s deadline flags and exit codes; a ticket passed between two processes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pymilvus_flushsync import FlushTicket

from ..helpers import Backend
from ..hostile import hostile
from .test_cli import CLI, QUIET, run_cli, run_process


def test_no_wait_prints_a_ticket_that_wait_waits_on(
    backend: Backend, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    name = backend.collection(100)
    code, out, _ = run_cli(capsys, "flush", "--no-wait", "--uri", backend.uri, name)
    assert code == 0
    ticket = FlushTicket.from_json(out)
    assert ticket.names == (name,)
    path = tmp_path / "ticket.json"
    path.write_text(out)
    code, out, _ = run_cli(capsys, "wait", str(path), "--uri", backend.uri, "--json")
    assert code == 0 and json.loads(out)["collections"][name]["flushed"] is True


def test_until_visible_prints_a_ticket_that_wait_takes(
    backend: Backend, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``flush --until visible``: no Flush, each collection, and the ticket's JSON on the
    last line; ``wait --until visible`` takes it (the identities checked) at once."""
    name = backend.collection(100)
    code, out, err = run_cli(capsys, "flush", "--until", "visible", "--uri", backend.uri, name)
    assert code == 0, err
    first, line, last = out.splitlines()
    assert first.startswith("visible: 1 collection(s)") and "(no Flush" in first
    assert line.startswith(f"  {name}: visible at ")
    ticket = FlushTicket.from_json(last.removeprefix("ticket: "))
    assert ticket.names == (name,)
    # the server stamps the ticket; Milvus Lite gives no timestamp: this process's writes
    assert ticket.covers == ("all" if backend.kind == "server" else "process")
    assert ("this process's writes" in first) == (ticket.covers == "process")
    path = tmp_path / "ticket.json"
    path.write_text(ticket.to_json())
    code, out, err = run_cli(
        capsys, "wait", str(path), "--until", "visible", "--uri", backend.uri, "--json"
    )
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["flushed"], shown["stage"], shown["polls"]) == (True, "visible", 0)
    assert FlushTicket.from_dict(shown["ticket"]) == ticket


def test_a_ticket_from_one_process_is_waited_on_in_another(lite: Backend) -> None:
    name = lite.collection(10)
    lite.client.close()
    from pymilvus_flushsync._compat import release_lite

    release_lite(lite.uri)  # the Lite file lock: each process below holds it in turn
    flush = [*CLI, "flush", "--no-wait", "--uri", lite.uri, name]
    sealed = subprocess.run(
        flush, check=False, capture_output=True, text=True, env=QUIET, timeout=120
    )
    assert sealed.returncode == 0, sealed.stderr
    wait = [*CLI, "wait", "-", "--uri", lite.uri, "--timeout", "60"]
    waited = subprocess.run(
        wait,
        check=False,
        input=sealed.stdout,
        capture_output=True,
        text=True,
        env=QUIET,
        timeout=120,
    )
    assert waited.returncode == 0, waited.stderr
    assert "flushed: 1 collection(s)" in waited.stdout


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        '{"flush_ticket": 1}',
        '{"flush_ticket": 9, "db_name": "d", "collections": []}',
    ],
)
def test_a_malformed_ticket_exits_2_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str
) -> None:
    path = tmp_path / "ticket.json"
    path.write_text(text)
    code, out, err = run_cli(capsys, "wait", str(path), "--uri", str(tmp_path / "none.db"))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "malformed flush ticket" in err and "Traceback" not in err


def test_a_missing_ticket_file_and_no_wait_without_names_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_cli(capsys, "wait", str(tmp_path / "nowhere.json"))
    assert code == 2 and "cannot read the ticket" in err
    code, _, err = run_cli(capsys, "flush", "--no-wait", "--server")
    assert code == 2 and "--no-wait" in err


def test_wait_on_another_servers_ticket_exits_1(
    lite: Backend, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    name = lite.collection(10)
    foreign = {
        "flush_ticket": 1,
        "db_name": "default",
        "collections": [
            {"name": name, "collection_id": 7, "created_timestamp": 8, "segment_ids": [],
             "flush_ts": 0}
        ],
    }  # fmt: skip
    path = tmp_path / "ticket.json"
    path.write_text(json.dumps(foreign))
    lite.client.close()
    from pymilvus_flushsync._compat import release_lite

    release_lite(lite.uri)
    code, _, err = run_cli(capsys, "wait", str(path), "--uri", lite.uri)
    assert code == 1 and "another server" in err


def test_the_heartbeat_shows_on_stderr_that_is_no_terminal() -> None:
    """A server that accepts and never answers: one 'still waiting' line per
    ``--heartbeat`` on stderr (a pipe here), then the deadline's exit 3."""
    with hostile("never_answers") as server:
        flush = ["flush", "--uri", server.uri, "--timeout", "2", "--heartbeat", "0.5", "c0"]
        done = run_process(*flush)
    beats = [line for line in done.stderr.splitlines() if "still waiting" in line]
    assert done.returncode == 3, done.stderr
    assert 2 <= len(beats) <= 4 and "awaiting Flush ['c0']" in beats[0]
    assert "Traceback" not in done.stderr


def test_no_heartbeat_without_one(capsys: pytest.CaptureFixture[str]) -> None:
    with hostile("never_answers") as server:
        flush = ["flush", "--uri", server.uri, "--timeout", "1", "--heartbeat", "none", "c0"]
        code, _, err = run_cli(capsys, *flush)
    assert code == 3 and "still waiting" not in err
