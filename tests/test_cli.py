"""The pymilvus-flushsync command: JSON, exit codes, --all, demo."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from pymilvus_flushsync._cli import _clear, _Progress, main
from pymilvus_flushsync._core import FlushMachine

from .helpers import Backend


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_json_output(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    names = [backend.collection(300), backend.collection(10)]
    code, out, _ = run_cli(
        capsys, "flush", "--uri", backend.uri, "--json", "--timeout", "60", *names
    )
    assert code == 0
    data = json.loads(out)
    assert data["flushed"] is True
    assert data["status"] == {"code": 0, "error_code": "Success", "reason": ""}
    assert list(data["collections"]) == names
    assert all(c["flushed"] for c in data["collections"].values())


def test_human_summary(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    name = backend.collection(10)
    code, out, _ = run_cli(capsys, "flush", "--uri", backend.uri, name)
    assert code == 0
    assert out.startswith("flushed: 1 collection(s) in database 'default'")
    assert name in out


def test_all_flushes_every_collection_of_the_database(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    db = backend.database()
    names = {backend.collection(20, db_name=db), backend.collection(20, db_name=db)}
    code, out, _ = run_cli(
        capsys, "flush", "--uri", backend.uri, "--db-name", db, "--all", "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert set(data["collections"]) == names and data["db_name"] == db


def test_missing_collection_exits_1_naming_it(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "flush", "--uri", backend.uri, "ghost_collection")
    assert code == 1
    assert "ghost_collection" in err and "code 100" in err
    assert out == ""


@pytest.mark.parametrize(
    "args",
    [
        ["flush"],  # no names, no --all
        ["flush", "--all", "a"],  # both
        ["flush", "--timeout", "0", "a"],
        ["flush", "--timeout", "-1", "a"],
        ["flush", "--timeout", "nan", "a"],
        ["flush", "--timeout", "soon", "a"],
        ["frobnicate"],
        [],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    assert "usage:" in err


@pytest.mark.server
def test_timeout_exits_3(server: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    name = server.collection(2000)
    code, out, err = run_cli(
        capsys, "flush", "--uri", server.uri, "--timeout", "0.2", "--json", name
    )
    assert code == 3
    assert "timed out" in err and name in err
    assert json.loads(out)["flushed"] is False


def test_module_entry_point_and_demo(tmp_path: object) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pymilvus_flushsync", "demo", "--rows", "2500"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=str(tmp_path),
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 0, result.stderr
    assert "FlushSyncResponse(flushed=True" in result.stdout
    assert "rows read back: 2500" in result.stdout
    assert '"error_code": "Success"' in result.stdout


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_only_on_a_terminal() -> None:
    machine = FlushMachine(("a", "b"), "", 10.0, clock=lambda: 5.0)
    tty, pipe = FakeTerminal(), io.StringIO()
    _Progress(machine, tty)(0)
    _Progress(machine, pipe)(0)
    assert tty.getvalue() == "\rwaiting: 0/2 flushed, 0.0 s, 0 polls"
    assert pipe.getvalue() == ""
    _clear(tty)
    assert tty.getvalue().endswith("\r\033[K")
