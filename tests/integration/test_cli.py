"""The pymilvus-flushsync command: JSON, exit codes, --all, demo."""

from __future__ import annotations

import asyncio
import importlib.metadata
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymilvus.exceptions import MilvusException

import pymilvus_flushsync
from pymilvus_flushsync import AsyncMilvusClient
from pymilvus_flushsync._cli import DEFAULT_TIMEOUT, _clear, _parser, _progress_line, main
from pymilvus_flushsync._compat import OWN_CONNECTION, release_lite
from pymilvus_flushsync._core import FlushMachine

from ..helpers import Backend, broadcast_only, server_only
from ..hostile import FakeMilvus, hostile
from ..interposer import BroadcastingInterposer

CLI = [sys.executable, "-m", "pymilvus_flushsync"]
#: The CLI with Ctrl-C raising KeyboardInterrupt, as at a terminal, even where this
#: test runs as a background job (CI), which starts with SIGINT ignored.
AT_A_TERMINAL = [
    sys.executable,
    "-c",
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('pymilvus_flushsync', run_name='__main__', alter_sys=True)",
]
#: ``AT_A_TERMINAL`` that writes "main" on stderr as ``main`` begins: the command's
#: promises about Ctrl-C hold from there (``pymilvus_flushsync.__main__``); a loaded
#: machine may take longer than a Ctrl-C's moment to get there.
MAIN_AT_A_TERMINAL = [
    sys.executable,
    "-c",
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "import pymilvus_flushsync.__main__ as entry; "
    "sys.stderr.write('main\\n'); sys.stderr.flush(); sys.exit(entry.run())",
]
#: Children run quiet: milvus-lite 2.5 warns on import (pkg_resources) on stderr.
QUIET = {**os.environ, "PYTHONWARNINGS": "ignore"}


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


@pytest.mark.alone  # a FlushAll of every database (tests/servers.py)
def test_server_flushes_every_database(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    db = backend.database()
    here, there = backend.collection(20), backend.collection(20, db_name=db)
    code, out, _ = run_cli(capsys, "flush", "--uri", backend.uri, "--server", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["flushed"] is True and {"default", db} <= set(data["databases"])
    assert here in data["databases"]["default"]["collections"]
    assert list(data["databases"][db]["collections"]) == [there]


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
        ["flush", "--all", "--server"],
        ["flush", "--server", "--db-name", "x"],  # every database: no --db-name
        ["flush", "--timeout", "0", "a"],
        ["flush", "--timeout", "-1", "a"],
        ["flush", "--timeout", "nan", "a"],
        ["flush", "--timeout", "soon", "a"],
        ["frobnicate"],
        [],
        ["flush", ""],  # an empty name
        ["flush", "a", "\udcff"],  # a byte that is not UTF-8, as argv decodes it
        ["flush", "--db-name", "数据库", "a"],  # not sendable as gRPC metadata
        ["demo", "--rows", "-5"],
        ["demo", "--rows", "0"],
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
    draw = _progress_line(tty)
    assert draw is not None and _progress_line(pipe) is None
    draw(machine.progress())
    assert tty.getvalue() == "\rwaiting: 0/2 flushed, 0.0 s, 0 polls"
    _clear(tty)
    assert tty.getvalue().endswith("\r\033[K")


def test_help_lists_exit_codes_and_the_default_deadline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_cli(capsys, "flush", "--help")
    assert code == 0
    for line in ("0    flushed", "1    Milvus error", "2    usage error", "3    timeout", "130"):
        assert line in out
    assert f"at most {DEFAULT_TIMEOUT:g} s" in out and "--timeout none" in out
    assert "$MILVUS_URI" in out and "$MILVUS_TOKEN" in out
    code, out, _ = run_cli(capsys, "--version")
    assert (code, out) == (0, f"pymilvus-flushsync {pymilvus_flushsync.__version__}\n")


def test_the_default_deadline_is_finite_and_none_waits_forever() -> None:
    assert _parser().parse_args(["flush", "a"]).timeout == DEFAULT_TIMEOUT < float("inf")
    assert _parser().parse_args(["flush", "--timeout", "none", "a"]).timeout is None


def test_names_with_control_characters_are_printed_escaped(
    lite: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "flush", "--uri", lite.uri, "\x1b[2Jghost")
    assert code == 1
    assert "\\x1b[2Jghost" in err and "\x1b" not in err


def test_all_with_nothing_to_flush_still_prints_json(
    lite: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "flush", "--uri", lite.uri, "--all", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["flushed"] is True and data["collections"] == {}
    assert "no collections to flush" in err


def test_a_lite_path_that_does_not_exist_is_an_error_and_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "typo.db"
    code, out, err = run_cli(capsys, "flush", "--uri", str(typo), "--all")
    assert (code, out) == (1, "")
    assert err == f"no Milvus Lite database at {typo}\n"
    assert not typo.exists()


def test_an_invalid_uri_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "flush", "--uri", "http://127.0.0.1:abc", "a")
    assert code == 2 and err.startswith("invalid --uri http://127.0.0.1:abc")


def for_a_child(lite: Backend, rows: int = 10) -> str:
    """A new collection of ``rows`` rows, with this process's hold on the Lite database
    released so that a child process opens it (Lite locks its file per process)."""
    name = lite.collection(rows)
    lite.client.close()
    release_lite(lite.uri)
    return name


def run_process(
    *args: str, env: dict[str, str] | None = None, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**QUIET, **(env or {})},
        cwd=cwd,
    )


LITE_3 = int(importlib.metadata.version("milvus-lite").split(".")[0]) >= 3


@pytest.mark.skipif(not LITE_3, reason="milvus-lite 2.x locks inside a server process of its own")
def test_a_locked_lite_database_says_so_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, pymilvus; pymilvus.MilvusClient(sys.argv[1]); print('held', flush=True);"
            " sys.stdin.read()",
            str(db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        result = run_process("flush", "--uri", str(db), "c0")
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    assert result.stderr == f"another process holds the lock on {db}\n"


#: Moments after ``main`` begins at which Ctrl-C lands: importing pymilvus (about
#: 0.8 s), connecting, the Flush in flight.
CTRL_C_AT = (0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.3, 1.7)


def test_ctrl_c_at_any_moment_is_130_and_one_line_or_death_by_sigint() -> None:
    with hostile("never_answers") as server:
        for delay in CTRL_C_AT:
            process = subprocess.Popen(
                [*MAIN_AT_A_TERMINAL, "flush", "--uri", server.uri, "--timeout", "20", "c0"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=QUIET,
            )
            assert process.stderr is not None and process.stderr.readline() == "main\n"
            time.sleep(delay)  # not a synchronisation: the moment of the Ctrl-C
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=30)
            outcome = (process.returncode, out, err)
            assert outcome in [(130, "", "interrupted\n"), (-signal.SIGINT, "", "")], delay


#: A child whose import of the command's module meets a Ctrl-C inside a bare
#: ``except:``, as libraries pymilvus imports have (protobuf's descriptor pool).
SWALLOWING_IMPORT = """
import builtins, os, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
import pymilvus_flushsync.__main__ as entry
real_import = builtins.__import__
def importing(name, globals=None, locals=None, fromlist=(), level=0):
    if fromlist and "_cli" in fromlist:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
        except:
            pass
    return real_import(name, globals, locals, fromlist, level)
builtins.__import__ = importing
sys.exit(entry.main(["--version"]))
"""


def test_a_ctrl_c_while_pymilvus_loads_is_not_lost_to_a_bare_except() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SWALLOWING_IMPORT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=QUIET,
    )
    assert (result.returncode, result.stdout, result.stderr) == (130, "", "interrupted\n")


def test_ctrl_c_exits_130_with_one_line() -> None:
    with hostile("never_answers") as server:
        assert isinstance(server, FakeMilvus)
        process = subprocess.Popen(
            [*AT_A_TERMINAL, "flush", "--uri", server.uri, "c0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=QUIET,
        )
        started = time.monotonic()
        while not server.calls and time.monotonic() - started < 30:  # the Flush is in flight
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert server.calls
    assert (process.returncode, out, err) == (130, "", "interrupted\n")


@pytest.mark.skipif(not OWN_CONNECTION, reason="pymilvus 2.5: close() closes the connection")
def test_the_command_closes_its_connection(capsys: pytest.CaptureFixture[str]) -> None:
    """pymilvus 2.6+ keeps a closed client's connection open for the life of the process;
    one still open at exit can hang it (``_compat.OWN_CONNECTION``): the command's is
    closed as it ends."""
    from pymilvus.client.connection_manager import ConnectionManager

    manager = ConnectionManager.get_instance()
    with hostile("flush_refused") as server:
        assert isinstance(server, FakeMilvus)
        code, _, _ = run_cli(capsys, "flush", "--uri", server.uri, "c0")
        port = f":{server.port}"
        with manager._lock:
            handlers = [
                managed.handler
                for managed in [*manager._registry.values(), *manager._dedicated.values()]
                if port in managed.config.key
            ]
    assert code == 1 and server.calls == ["Flush"]
    assert all(handler._channel is None for handler in handlers)


def test_a_reader_that_went_away_is_not_an_error(lite: Backend) -> None:
    name = for_a_child(lite)
    process = subprocess.Popen(
        [*CLI, "flush", "--uri", lite.uri, "--json", name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=QUIET,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # like `| head -c 10` that has exited: every write is EPIPE
    err = process.stderr.read()
    assert process.wait(timeout=120) == 0  # the flush succeeded
    assert err == b""


def test_demo_leaves_nothing_behind(tmp_path: Path) -> None:
    result = run_process("demo", "--rows", "1200", env={"TMPDIR": str(tmp_path)}, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "rows read back: 1200" in result.stdout
    # (milvus-lite 2.5's C++ server also writes glog files into $TMPDIR: not the demo's)
    assert list(tmp_path.glob("flushsync-demo-*")) == []
    assert not list(tmp_path.glob("**/*.db"))


#: Lines of ``demo`` at which a Ctrl-C comes: connecting, inserting, flushing, reading.
DEMO_MOMENTS = ("Milvus Lite database", "inserted", "flush_all_sync(timeout=30)", "rows read")


@pytest.mark.parametrize("moment", DEMO_MOMENTS)
def test_demo_leaves_nothing_behind_after_a_ctrl_c(tmp_path: Path, moment: str) -> None:
    process = subprocess.Popen(
        [*AT_A_TERMINAL, "demo", "--rows", "2500"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**QUIET, "TMPDIR": str(tmp_path)},
        cwd=str(tmp_path),
    )
    assert process.stdout is not None
    for line in process.stdout:  # the Ctrl-C comes as the demo says it got there
        if line.startswith(moment):
            process.send_signal(signal.SIGINT)
            break
    _, err = process.communicate(timeout=60)
    assert process.returncode in {130, -signal.SIGINT, 0}, err
    assert "Traceback" not in err
    assert list(tmp_path.glob("flushsync-demo-*")) == []


@pytest.mark.alone  # a FlushAll of every database (tests/servers.py)
@broadcast_only
def test_server_says_when_one_flush_all_sealed_everything(
    server: Backend, broadcasting: BroadcastingInterposer, capsys: pytest.CaptureFixture[str]
) -> None:
    name = server.collection(20)
    code, out, _ = run_cli(capsys, "flush", "--uri", broadcasting.uri, "--server")
    assert code == 0
    assert out.startswith("sealed by one FlushAll, broadcast on 16 channel(s)\n")
    assert f"  {name}: " in out
    assert broadcasting.flush_alls == 1


def test_a_lite_path_in_milvus_uri_works_for_every_command(lite: Backend) -> None:
    """pymilvus rejects a Lite path in ``$MILVUS_URI`` when imported; the command does not."""
    name = for_a_child(lite)
    env = {"MILVUS_URI": lite.uri}
    assert run_process("--version", env=env).returncode == 0
    help_ = run_process("flush", "--help", env=env)
    assert (help_.returncode, help_.stderr) == (0, "") and "MILVUS_URI" in help_.stdout
    result = run_process("flush", name, env=env)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.startswith("flushed: 1 collection(s)")


@pytest.mark.parametrize("timeout", ["1e9", "1e10", "1e300", "none"])
def test_any_timeout_the_library_takes_works(lite: Backend, timeout: str) -> None:
    name = for_a_child(lite)  # a process's first connection is the one that failed
    result = run_process("flush", "--uri", lite.uri, "--timeout", timeout, name)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.startswith("flushed: ")


def _json_failure(out: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(out)
    assert data["flushed"] is False
    status = data["status"]
    assert isinstance(status, dict) and set(status) == {"code", "error_code", "reason"}
    return data


#: A refused connection, retried until the deadline on every pymilvus line: the exit
#: code, and with --json the status's code and error_code
REFUSED_EXIT = 3
REFUSED_JSON = (3, 1, "FlushTimeout")
#: (arguments, exit code, the status's code and error_code)
JSON_FAILURES = [
    (["ghost"], 1, 100, "CollectionNotExists"),  # the server's own refusal
    # no connection (pymilvus 2.5 retries a refusal until the deadline)
    (["--uri", "http://127.0.0.1:9", "--timeout", "3", "c"], *REFUSED_JSON),
    (["--uri", "./typo.db", "c"], 1, 1, "UnexpectedError"),  # no Lite database there
    (["--uri", "http://127.0.0.1:abc", "c"], 2, 1, "UnexpectedError"),  # not a URI
    (["--timeout", "soon", "c"], 2, 1, "IllegalArgument"),  # argparse's usage error
    (["--all", "c"], 2, 1, "IllegalArgument"),
]


@pytest.mark.parametrize("case", JSON_FAILURES, ids=[" ".join(c[0]) for c in JSON_FAILURES])
def test_json_on_an_error_prints_the_node_shaped_object(
    lite: Backend, capsys: pytest.CaptureFixture[str], case: tuple[list[str], int, int, str]
) -> None:
    args, exit_code, code, error_code = case
    uri = [] if "--uri" in args else ["--uri", lite.uri]
    got, out, err = run_cli(capsys, "flush", "--json", *uri, *args)
    assert got == exit_code
    status = _json_failure(out)["status"]
    assert isinstance(status, dict) and (status["code"], status["error_code"]) == (code, error_code)
    assert err.strip().splitlines()[-1]  # the stderr line is still there


def test_json_on_a_timeout_and_on_server_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with hostile("never_answers") as server:
        got, out, err = run_cli(
            capsys, "flush", "--json", "--uri", server.uri, "--timeout", "0.5", "c0"
        )
        assert got == 3 and "timed out" in err
        assert _json_failure(out)["status"]["error_code"] == "FlushTimeout"  # type: ignore[index]
    with hostile("denied") as server:
        got, out, err = run_cli(capsys, "flush", "--json", "--uri", server.uri, "--all")
        assert got == 1 and "PERMISSION_DENIED" in err
        data = _json_failure(out)
        assert data["status"]["code"] == 7  # type: ignore[index]
        got, out, err = run_cli(capsys, "flush", "--json", "--uri", server.uri, "--server")
        assert got == 1
        assert _json_failure(out)["databases"] == {}  # flush_all_sync's shape


SECRET = "s3cr3tpw"


def _no_secret(result: subprocess.CompletedProcess[str], *secrets: str) -> None:
    for secret in secrets:
        assert secret not in result.stdout and secret not in result.stderr, result


def test_a_secret_appears_in_no_output(lite: Backend) -> None:
    name = for_a_child(lite)
    uri_secret, token_secret, env_secret = f"{SECRET}u", f"{SECRET}t", f"{SECRET}e"
    closed = f"http://root:{uri_secret}@127.0.0.1:9"
    runs: list[subprocess.CompletedProcess[str]] = [
        run_process("flush", "--uri", closed, "--timeout", "3", "a"),
        run_process("flush", "--uri", closed, "--json", "--timeout", "3", "a"),
        run_process(
            "flush", "--uri", closed, "--timeout", "3", "--token", f"root:{token_secret}", "a"
        ),
        run_process(
            "flush",
            "--uri",
            closed,
            "--timeout",
            "3",
            "a",
            env={"MILVUS_TOKEN": f"root:{env_secret}"},
        ),
        run_process("flush", "--uri", closed, "--timeout", "soon", "a"),
        # succeeding: Lite takes (and ignores) a token
        run_process("flush", "--uri", lite.uri, "--token", f"root:{token_secret}", "--json", name),
        run_process("flush", "--uri", lite.uri, name, env={"MILVUS_TOKEN": env_secret}),
    ]
    with hostile("not_ready") as server:  # retried: one stderr line per retry
        retried = server.uri.replace("://", f"://root:{uri_secret}@")
        runs.append(run_process("flush", "--uri", retried, "--timeout", "1.5", "c0"))
    assert [r.returncode for r in runs] == [*[REFUSED_EXIT] * 4, 2, 0, 0, 3]
    assert "***@127.0.0.1:9" in runs[0].stderr
    assert "not ready" in runs[-1].stderr  # the retry lines were printed, redacted
    for result in runs:
        _no_secret(result, uri_secret, token_secret, env_secret)


@server_only
def test_a_secret_in_a_uri_that_works_appears_in_no_output(backend: Backend) -> None:
    name = backend.collection(10)
    uri = backend.uri.replace("://", f"://root:{SECRET}@")
    result = run_process("flush", "--uri", uri, "--json", name, env={"MILVUS_TOKEN": SECRET})
    assert result.returncode == 0, result.stderr
    _no_secret(result, SECRET)


def test_lite_says_what_it_reports(lite: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    name = lite.collection(1000)
    code, out, _ = run_cli(capsys, "flush", "--uri", lite.uri, name)
    assert code == 0
    assert f"  {name}: " in out and "Milvus Lite persists at once and reports none" in out


def test_a_missing_database_is_one_code_and_one_message_everywhere(
    lite: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    """Milvus Lite answers code 6 to Flush and 1 to ShowCollections; a real server 800."""
    lite.database()  # skips on a Lite without databases
    name = lite.collection(10)
    said = "database not found[database=nodb]"
    client = lite.client

    async def in_asyncio() -> list[MilvusException]:
        aclient = AsyncMilvusClient(lite.uri)
        errors = []
        try:
            for call in (
                lambda: aclient.flush_sync(name, db_name="nodb", timeout=10),
                lambda: aclient.flush_all_sync(db_name="nodb", timeout=10),
            ):
                with pytest.raises(MilvusException) as info:
                    await call()
                errors.append(info.value)
        finally:
            await aclient.close()
        return errors

    errors = []
    for sync_call in (
        lambda: client.flush_sync(name, db_name="nodb", timeout=10),
        lambda: client.flush_all_sync(db_name="nodb", timeout=10),
    ):
        with pytest.raises(MilvusException) as info:
            sync_call()
        errors.append(info.value)
    errors += asyncio.run(in_asyncio())
    assert [(e.code, e.message) for e in errors] == [(800, said)] * 4
    for args in (["--all"], [name]):
        code, _, err = run_cli(capsys, "flush", "--uri", lite.uri, "--db-name", "nodb", *args)
        assert code == 1 and f"{said} (code 800)" in err
