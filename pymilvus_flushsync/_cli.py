"""The ``pymilvus-flushsync`` command (entered through ``__main__``, which covers
Ctrl-C and ``$MILVUS_URI`` before this module imports pymilvus).

Exit codes, the default deadline and where the URI and token come from are in
``EPILOG`` (``--help`` prints it). No Python traceback reaches the user: every
failure is one line on stderr and an exit code (``EXIT_CODES``), and with
``--json`` the Node-shaped response (``flushed: false`` and the error's ``status``)
on stdout. A URI's userinfo and the token are removed from every message printed,
never from data (``_redact``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn, TextIO

from pymilvus.exceptions import MilvusException, ParamError

from . import __version__
from ._call import prepare, prepare_seal, prepare_wait, ticket_of
from ._clients import MilvusClient
from ._compat import GRPC_MAX_TIMEOUT, OWN_CONNECTION, release_lite
from ._connection import (
    TLS_FLAGS,
    NotConnected,
    Target,
    is_lite,
    left_of,
    login_refused,
    reach,
)
from ._core import FlushMachine
from ._errors import FlushTimeoutError, status_of
from ._exits import Exit, close_within, held_interrupts
from ._params import UNTIL, check_db_name, check_names, check_timeout
from ._redact import Redactor
from ._response import (
    CollectionFlushState,
    FlushAllSyncResponse,
    FlushStatus,
    FlushSyncResponse,
    ProgressHook,
)
from ._schedule import FlushPolicy
from ._stages import LOADED, PERSISTED, VISIBLE, stage_named
from ._sync import flush_all, run
from ._ticket import FlushTicket

#: Seconds the ``flush`` command waits by default (``--timeout none``: no deadline).
DEFAULT_TIMEOUT = 600.0
#: Where the URI comes from: ``--uri``, else ``$MILVUS_URI``, else a Lite file.
DEFAULT_URI = "./milvus.db"
_PROG = "pymilvus-flushsync"
#: Each error of the library -> the command's exit code (the first that matches).
EXIT_CODES: tuple[tuple[type[MilvusException], Exit], ...] = (
    (FlushTimeoutError, Exit.TIMEOUT),
    (ParamError, Exit.USAGE),
    (MilvusException, Exit.MILVUS),
)

EPILOG = f"""\
exit codes:
  {Exit.OK:<4} flushed (and, for demo: every row read back)
  {Exit.MILVUS:<4} Milvus error: the server refused, a collection is missing, no
       connection, no Milvus Lite database at the path, a locked database
  {Exit.USAGE:<4} usage error: bad arguments, names or timeout
  {Exit.TIMEOUT:<4} timeout: the deadline passed (connecting included)
  {Exit.INTERRUPTED:<4} interrupted (Ctrl-C)
  With --json, a failure also prints {{"flushed": false, "status": {{...}}, ...}} on stdout.

deadline: flush waits at most {DEFAULT_TIMEOUT:g} s unless --timeout says otherwise
  (--timeout none: no deadline). Connecting, listing (--all, --server), the Flush, every
  poll and every retry share it. Each retry is reported on stderr, and so is a wait
  still going after each --heartbeat seconds.

connection: --uri, else $MILVUS_URI, else {DEFAULT_URI} (Milvus Lite); every other
  connection flag, else its variable: $MILVUS_TOKEN, $MILVUS_USER, $MILVUS_PASSWORD
  (they keep secrets out of `ps`), $MILVUS_SECURE=1, $MILVUS_SERVER_PEM_PATH, ... A
  port where nothing listens is retried until the deadline; a failed TLS handshake or
  a refused login is final. A URI's user:password and the token are shown as *** in
  every message; data (the response, a ticket) is printed as it is.
"""

__all__ = ["DEFAULT_TIMEOUT", "DEFAULT_URI", "EXIT_CODES", "Failed", "exit_code", "main"]

Response = FlushSyncResponse | FlushAllSyncResponse


class Failed(Exception):
    """The command failed, as said: its exit code, its one line for stderr, and the
    response that ``--json`` prints."""

    def __init__(self, code: Exit, line: str, response: Response) -> None:
        super().__init__(line)
        self.code, self.line, self.response = code, line, response


def exit_code(error: MilvusException) -> Exit:
    return next(code for kind, code in EXIT_CODES if isinstance(error, kind))


def _seconds(what: str) -> Callable[[str], float | None]:
    """An argparse type: a positive number of seconds, or ``none``; ``what`` names the
    flag's value in its error (``timeout``, ``heartbeat``)."""

    def parse(text: str) -> float | None:
        if text.strip().lower() == "none":
            return None
        try:
            return check_timeout(float(text))
        except (ValueError, ParamError):
            raise argparse.ArgumentTypeError(
                f"invalid {what} {text!r}: a positive number of seconds, or none"
            ) from None

    return parse


def _rows(text: str) -> int:
    try:
        rows = int(text)
    except ValueError:
        rows = -1
    if rows <= 0:
        raise argparse.ArgumentTypeError(f"invalid row count {text!r}: a positive integer")
    return rows


class _Parser(argparse.ArgumentParser):
    commands: dict[str, _Parser]  # the top level's: each command's own parser

    def error(self, message: str) -> NoReturn:
        """argparse's usage and error line, as a ``Failed`` (exit 2; ``--json`` too)."""
        self.print_usage(sys.stderr)
        line = f"{self.prog}: error: {_shown(message)}"
        status = FlushStatus(code=1, error_code="IllegalArgument", reason=line)
        raise Failed(Exit.USAGE, line, _Job().failed(status))


def _parser() -> _Parser:
    formatting: dict[str, Any] = {
        "epilog": EPILOG,
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
    parser = _Parser(
        prog=_PROG,
        description="Flush Milvus collections and wait until they are persisted.",
        **formatting,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    flush = commands.add_parser(
        "flush", help="flush collections and wait until persisted", **formatting
    )
    flush.add_argument("names", nargs="*", metavar="NAME", help="collections to flush")
    flush.add_argument(
        "--names-from",
        metavar="FILE",
        help="more collections, one per line, from a file or - for stdin",
    )
    flush.add_argument("--all", action="store_true", help="flush every collection of the database")
    flush.add_argument(
        "--server", action="store_true", help="flush every collection of every database"
    )
    _connection_flags(flush)
    flush.add_argument("--db-name", default=None, help="database (default: the server's)")
    _deadline_flags(flush)
    flush.add_argument(
        "--no-wait",
        action="store_true",
        help="seal only, and print the flush ticket's JSON (for `wait`) on stdout "
        "(named collections, or every one of the database with --all)",
    )
    wait = commands.add_parser(
        "wait", help="wait until a flush ticket's data is persisted", **formatting
    )
    wait.add_argument("ticket", metavar="FILE", help="the ticket's JSON: a file, or - for stdin")
    _connection_flags(wait)
    _deadline_flags(wait)
    demo = commands.add_parser("demo", help="flush a fresh Milvus Lite database end to end")
    demo.add_argument("--rows", type=_rows, default=3000, help="rows to insert (3000)")
    parser.commands = {"flush": flush, "wait": wait, "demo": demo}
    return parser


def _deadline_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=_seconds("timeout"),
        default=DEFAULT_TIMEOUT,
        help=f"seconds for the whole call, or none (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--json", action="store_true", help="print the response as JSON")
    parser.add_argument(
        "--until",
        choices=UNTIL,
        default=PERSISTED.name,
        help="wait until the rows are visible to readers at the printed ticket (no Flush), "
        "persisted (default), indexed, or loaded and served",
    )
    parser.add_argument(
        "--heartbeat",
        type=_seconds("heartbeat"),
        metavar="SECONDS",
        default=FlushPolicy().heartbeat,
        help="seconds between the 'still waiting' lines on stderr, or none "
        "(default: FlushPolicy.heartbeat, %(default)g)",
    )


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--uri", help=f"Milvus URI or Lite file ($MILVUS_URI, else {DEFAULT_URI})")
    parser.add_argument("--token", help="token, or user:password ($MILVUS_TOKEN)")
    parser.add_argument("--user", help="user, with --password ($MILVUS_USER)")
    parser.add_argument("--password", help="password ($MILVUS_PASSWORD: keeps it out of `ps`)")
    tls = parser.add_argument_group("TLS (pymilvus's MilvusClient arguments)")
    tls.add_argument(
        "--secure",
        action="store_true",
        default=None,
        help="connect with TLS ($MILVUS_SECURE=1); any certificate below implies it",
    )
    for flag, what in TLS_FLAGS.items():
        metavar = "NAME" if flag == "server_name" else "PATH"
        tls.add_argument(f"--{flag.replace('_', '-')}", metavar=metavar, help=what)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    with _quiet_lite() as lite_errors, _retries_on(sys.stderr), _redacting(argv):
        try:
            return _main(argv, lite_errors)
        except Failed as failed:
            return _failed(failed, as_json="--json" in argv)
        except KeyboardInterrupt:
            _clear(sys.stderr)
            _err("interrupted")
            return Exit.INTERRUPTED
        except MilvusException as exc:  # e.g. demo: Milvus Lite failed
            line = f"error: {_shown(str(exc.message))} (code {exc.code})"
            return _failed(Failed(exit_code(exc), line, _Job().failed(status_of(exc))), False)
        except Exception as exc:  # the last line of defence: no traceback for users
            _err(f"error: {type(exc).__name__}: {_shown(str(exc))}")
            return Exit.MILVUS


def _failed(failed: Failed, as_json: bool) -> int:
    _clear(sys.stderr)
    _err(failed.line)
    if as_json:
        shown = failed.response.to_dict()
        shown["status"]["reason"] = _REDACTOR[0](shown["status"]["reason"])  # a message
        _out(json.dumps(shown, indent=2))
    return failed.code


@dataclass(frozen=True)
class _Job:
    """What a ``flush`` command asked for, to describe its failure (``--json``)."""

    names: tuple[str, ...] = ()
    db_name: str | None = None
    server: bool = False
    every: bool = False  # --all
    started: float | None = None

    def failed(self, status: FlushStatus, machine: FlushMachine | None = None) -> Response:
        """The response of a call that failed with ``status``: what it got to, if a
        machine ran; else its collections, none flushed."""
        elapsed = 0.0 if self.started is None else time.monotonic() - self.started
        if self.server:
            return FlushAllSyncResponse(flushed=False, databases={}, elapsed=elapsed, status=status)
        if machine is not None:
            return replace(machine.progress(), flushed=False, status=status)
        collections = {name: CollectionFlushState(name) for name in self.names}
        db_name = self.db_name or "default"
        return FlushSyncResponse(False, collections, db_name, elapsed, polls=0, status=status)


def _main(argv: list[str], lite_errors: list[BaseException]) -> int:
    started = time.monotonic()  # flush's --timeout counts from here (_flush_job)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args.rows)
    if args.command == "wait":
        return _wait(args, lite_errors)
    job = _flush_job(args, parser.commands["flush"], started)
    with _connected(args, job, lite_errors) as client:
        if args.server:
            return _flush_server(client, job, timeout=args.timeout, as_json=args.json)
        if args.no_wait:
            return _seal(client, job, timeout=args.timeout)
        return _flush(client, job, timeout=args.timeout, as_json=args.json, until=args.until)


def _flush_job(args: argparse.Namespace, parser: _Parser, started: float) -> _Job:
    """What ``flush`` asks for, checked: a usage error prints ``flush``'s usage. Its
    deadline counts from ``started``, the command's start (CI run 28: 0.22 s went by
    on a loaded machine before the job was made), or from when names read from
    standard input came (another command may be writing them)."""
    if args.names_from is not None:
        args.names += _names_from(args.names_from, parser)
        started = time.monotonic() if args.names_from == "-" else started
    staged = args.until != PERSISTED.name
    conflicts = [
        (args.no_wait and staged, "--no-wait seals only: --until applies to flush and wait"),
        (args.server and staged, "--until applies to named collections and --all, not --server"),
        (args.no_wait and args.server, "--no-wait seals one database: name collections, or --all"),
        ([bool(args.names), args.all, args.server].count(True) != 1,
         "name one or more collections (or --names-from), or pass --all or --server (one of them)"),
        (args.server and args.db_name is not None,
         "--server flushes every database: --db-name does not apply"),
    ]  # fmt: skip
    for wrong, message in conflicts:
        if wrong:
            parser.error(message)
    try:
        names = None if args.all or args.server else check_names(args.names)
        db_name = check_db_name(args.db_name)
    except ParamError as exc:
        parser.error(exc.message)
    return _Job(names or (), db_name, args.server, every=args.all, started=started)


def _names_from(source: str, parser: _Parser) -> list[str]:
    """``--names-from FILE|-``: one name per line; blank lines and ``#`` comments skipped."""
    text = _read_input(source, parser, "--names-from")
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _read_input(source: str, parser: _Parser | None, flag: str) -> str:
    """The text of ``source``: a file, or ``-`` for stdin. Unreadable (stdin closed
    included): a usage error, through ``parser`` when given."""
    try:
        if source != "-":
            return Path(source).read_text()
        if sys.stdin is None or sys.stdin.closed:
            raise OSError("standard input is closed")
        return sys.stdin.read()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        line = f"cannot read {flag} {_shown(source)}: {_shown(why)}"
        if parser is not None:
            parser.error(line)
        raise _failure(Exit.USAGE, line, _Job()) from None


@contextmanager
def _connected(
    args: argparse.Namespace, job: _Job, lite_errors: list[BaseException]
) -> Iterator[MilvusClient]:
    """The client of ``--uri`` and the other connection flags, connected under the
    deadline (``_connection``'s module docstring); closed after."""
    target = _connection(args)
    uri = target.uri
    started = time.monotonic() if job.started is None else job.started
    try:
        target.check()
        reach(target, args.timeout, started, FlushPolicy())
    except NotConnected as exc:
        raise _failure(exc.code, _shown(exc.line), job) from None
    left = left_of(args.timeout, started)
    if left is not None and left <= 0:  # a silent server's TLS probe took it all
        raise _no_connection_within(uri, args.timeout, job)
    try:
        # the connection's own wait, under what is left of the deadline
        connecting = None if left is None else min(left, GRPC_MAX_TIMEOUT)
        with _quiet_pymilvus():
            client = MilvusClient(
                uri, user=target.user, password=target.password, token=target.token,
                db_name=job.db_name or "", timeout=connecting, **target.tls.kwargs(),
                **OWN_CONNECTION,
            )  # fmt: skip
    except ValueError as exc:  # the URI does not parse (e.g. a port that is not a number)
        raise _failure(
            Exit.USAGE, f"invalid --uri {_shown(uri)}: {_shown(str(exc))}", job
        ) from None
    except Exception as exc:
        raise _not_connected(uri, exc, lite_errors, args.timeout, job) from None
    client.flush_sync_policy = replace(client.flush_sync_policy, heartbeat=args.heartbeat)
    try:
        if args.until == LOADED.name and is_lite(uri):
            _load_on_lite(client, job.names)
        yield client
    finally:
        close_within(client.close)
        release_lite(uri)


def _load_on_lite(client: MilvusClient, names: tuple[str, ...]) -> None:
    """``--until loaded`` on Milvus Lite: load the collections (every one with ``--all``)
    first. A Lite file opened by a new process (this command) has every collection
    NotLoad, and Lite serves a loaded collection from its own store at once; a failure
    here is left to the wait, which names it."""
    for name in names or client.list_collections():
        with suppress(MilvusException):
            client.load_collection(name)


def _wait(args: argparse.Namespace, lite_errors: list[BaseException]) -> int:
    """``wait FILE|-``: the ticket, then ``flush``'s wait, deadline and exit codes."""
    started = time.monotonic()
    try:
        ticket = FlushTicket.from_json(_read_input(args.ticket, None, "the ticket"))
    except ParamError as exc:
        raise _failure(Exit.USAGE, f"error: {_shown(exc.message)}", _Job()) from None
    job = _Job(ticket.names, ticket.db_name, started=started)
    with _connected(args, job, lite_errors) as client:
        hook = _progress_line(sys.stderr)
        policy = client.flush_sync_policy
        machine = prepare_wait(
            client, ticket, args.timeout, policy, hook, since=started, until=args.until
        )
        return _finish(client, machine, job, as_json=args.json)


def _seal(client: MilvusClient, job: _Job, *, timeout: float | None) -> int:
    """``flush --no-wait``: seal, and print the ticket's JSON on stdout; with ``--all``,
    every collection of the database, listed under the same deadline."""
    policy, names = client.flush_sync_policy, job.names
    if job.every:
        listing = prepare(client, None, job.db_name, timeout, policy, every=True, seal=False,
                          since=job.started)  # fmt: skip
        listed = _run(client, listing, job)
        names = tuple(listed.collections)
        if not names:
            line = f"no collections to seal in database {_shown(listed.db_name)!r}"
            raise _failure(Exit.MILVUS, line, job)
        job = replace(job, names=names)
    machine = prepare_seal(client, names, job.db_name, timeout, policy, since=job.started)
    _run(client, machine, job)
    _out(ticket_of(machine).to_json())
    return Exit.OK


def _connection(args: argparse.Namespace) -> Target:
    """Where and how to connect: the flags, else the environment (``Target.of``)."""
    return Target.of(lambda name: getattr(args, name, None), DEFAULT_URI)


def _failure(code: Exit, line: str, job: _Job) -> Failed:
    """A failure that is no server's status: the deadline, or this command's own."""
    timed_out = code is Exit.TIMEOUT
    status = FlushStatus.timed_out(line) if timed_out else FlushStatus(1, "UnexpectedError", line)
    return Failed(code, line, job.failed(status))


def _no_connection_within(uri: str, timeout: float, job: _Job) -> Failed:
    """The deadline passed before the connection was made."""
    line = f"timed out: no connection to {_shown(uri)} within {timeout:g} s"
    return _failure(Exit.TIMEOUT, line, job)


def _not_connected(
    uri: str, exc: Exception, lite_errors: list[BaseException], timeout: float | None, job: _Job
) -> Failed:
    # milvus-lite's DataDirLockedError is not importable from a public module (nor the
    # same across its lines), and pymilvus reports it as a generic failure: it is
    # recognised by its class name among the exceptions Lite logged.
    locked = [e for e in lite_errors if type(e).__name__ == "DataDirLockedError"]
    if locked:
        line = f"another process holds the lock on {_shown(str(Path(uri).resolve()))}"
        return _failure(Exit.MILVUS, line, job)
    reason = exc.message if isinstance(exc, MilvusException) else f"{type(exc).__name__}: {exc}"
    # pymilvus says "Fail connecting" both for a refusal and for its own timeout: the
    # clock tells them apart (its wait ends at the timeout, not before).
    took = 0.0 if job.started is None else time.monotonic() - job.started
    if timeout is not None and took >= timeout - 0.01:
        return _no_connection_within(uri, timeout, job)
    line = f"cannot connect to {_shown(uri)}: {_shown(str(reason))}"
    refusal = login_refused(exc)
    if refusal is not None:
        line = f"cannot connect to {_shown(uri)}: the server refused the login ({_shown(refusal)})"
    if isinstance(exc, MilvusException):
        return Failed(Exit.MILVUS, line, job.failed(status_of(exc)))
    return _failure(Exit.MILVUS, line, job)


def _flush(
    client: MilvusClient, job: _Job, *, timeout: float | None, as_json: bool, until: str
) -> int:
    policy = client.flush_sync_policy
    names = job.names or None
    hook = _progress_line(sys.stderr)
    machine = prepare(
        client, names, job.db_name, timeout, policy,
        every=names is None, since=job.started, on_progress=hook, until=until, identify=True,
    )  # fmt: skip
    return _finish(client, machine, job, as_json=as_json)


def _run(client: MilvusClient, machine: FlushMachine, job: _Job) -> FlushSyncResponse:
    """Drive ``machine``; its failure as a ``Failed`` (exit code, line, response)."""
    try:
        return run(machine, client)
    except FlushTimeoutError as exc:
        raise Failed(Exit.TIMEOUT, f"timed out: {_shown(exc.message)}", exc.response) from None
    except MilvusException as exc:
        line = (
            f"error flushing {_subject(machine, job.db_name)}: {_shown(str(exc.message))} "
            f"(code {exc.code})"
        )
        raise Failed(exit_code(exc), line, job.failed(status_of(exc), machine)) from None


def _finish(client: MilvusClient, machine: FlushMachine, job: _Job, *, as_json: bool) -> int:
    response = _run(client, machine, job)
    _clear(sys.stderr)
    if not response.collections:
        _err(f"no collections to flush in database {_shown(response.db_name)!r}")
    _print(response, as_json)
    return Exit.OK


def _flush_server(client: MilvusClient, job: _Job, *, timeout: float | None, as_json: bool) -> int:
    try:
        response = flush_all(client, None, timeout, client.flush_sync_policy, since=job.started)
    except FlushTimeoutError as exc:
        raise Failed(Exit.TIMEOUT, f"timed out: {_shown(exc.message)}", exc.response) from None
    except MilvusException as exc:
        line = f"error flushing every database: {_shown(str(exc.message))} (code {exc.code})"
        raise Failed(exit_code(exc), line, job.failed(status_of(exc))) from None
    _print(response, as_json)
    return Exit.OK


def _subject(machine: FlushMachine, db_name: str | None) -> str:
    """What a failed call tried: its names; for ``--all``, the database and those listed."""
    names = ", ".join(_shown(name) for name in machine.progress().collections)
    if machine.every:
        database = db_name or "default"
        return f"every collection of database {_shown(database)!r} ({names or 'none listed yet'})"
    return names


def _progress_line(stream: TextIO) -> ProgressHook | None:
    """An ``on_progress`` hook that keeps a live progress line on a terminal."""
    if not stream.isatty():
        return None

    def draw(progress: FlushSyncResponse) -> None:
        stage, states = progress.stage, progress.collections.values()
        done = sum(_reached(state, stage) for state in states)
        word = stage_named(stage).done
        stream.write(
            f"\rwaiting: {done}/{len(states)} {word}, "
            f"{progress.elapsed:.1f} s, {progress.polls} polls"
        )
        stream.flush()

    return draw


def _clear(stream: TextIO) -> None:
    if stream.isatty():
        stream.write("\r\033[K")
        stream.flush()


#: What removes this command's secrets from its messages (``_redacting``).
_REDACTOR = [Redactor()]


@contextmanager
def _redacting(argv: list[str]) -> Iterator[None]:
    """Keep the secrets of this command (``--uri``'s userinfo, ``--token``, their
    environment variables) out of every line it prints, from the first line on."""
    known = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    _connection_flags(known)
    try:
        args, _ = known.parse_known_args(argv)
    except (argparse.ArgumentError, SystemExit):  # a flag without its value: the real
        args, _ = known.parse_known_args([])  # parser says so; the environment's still count
    target = _connection(args)
    _REDACTOR[0] = Redactor((target.uri, os.environ.get("MILVUS_URI", "")), target.secrets)
    # pymilvus 2.5 logs its connection alias, which holds the userinfo, through its own
    # stderr handler: every handler redacts too
    loggers = [logging.root, *logging.root.manager.loggerDict.values()]
    handlers = {h for log in loggers if isinstance(log, logging.Logger) for h in log.handlers}
    for handler in handlers:
        handler.addFilter(_redact_record)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(_redact_record)
        _REDACTOR[0] = Redactor()


def _redact_record(record: logging.LogRecord) -> bool:
    """A log record's message with the secrets as ``***`` (a ``logging`` filter)."""
    if _REDACTOR[0]:
        record.msg, record.args = _REDACTOR[0](record.getMessage()), None
    return True


def _shown(text: str) -> str:
    """A message safe to print: secrets as ``***`` (``_redact``), control characters
    and undecodable bytes escaped."""
    return _printable(_REDACTOR[0](text))


def _printable(text: str) -> str:
    """Data (a name) safe to print: control characters and undecodable bytes escaped."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape", "backslashreplace").decode()
        for ch in text
    )


def _err(line: str) -> None:
    print(_REDACTOR[0](line), file=sys.stderr)


def _out(text: str) -> None:
    """Print data to stdout, as it is; a reader that went away (``| head``) is not an
    error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python would report the broken pipe again when it flushes stdout at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _print(response: Response, as_json: bool) -> None:
    if as_json:
        _out(json.dumps(response.to_dict(), indent=2))
        return
    if not isinstance(response, FlushAllSyncResponse):
        _out("\n".join(_lines(response)))
        return
    lines = [line for one in response.databases.values() for line in _lines(one)]
    if response.broadcast:
        channels = len(response.broadcast)
        lines.insert(0, f"sealed by one FlushAll, broadcast on {channels} channel(s)")
    _out("\n".join(lines))


#: What a Milvus Lite collection's line says: Lite reports no segments (below).
LITE_SEALED = "no segments reported (Milvus Lite persists at once and reports none)"


def _lines(response: FlushSyncResponse) -> list[str]:
    if response.stage == VISIBLE.name and response.flushed:
        return _visible_lines(response)
    verb = "flushed" if response.flushed else "NOT flushed"
    lines = [_headline(verb, response, f"{response.polls} {_polled(response)} polls")]
    for state in response.collections.values():
        when = f"{state.seconds:.3f} s" if state.seconds is not None else "pending"
        # Milvus Lite's Flush is synchronous and its FlushResponse maps are empty:
        # no segment IDs, flush_ts 0, whatever was inserted.
        sealed = (
            LITE_SEALED
            if state.flushed and not state.flush_ts and not state.segment_ids
            else f"{len(state.segment_ids)} segment(s) sealed"
        )
        lines.append(f"  {_printable(state.name)}: {when}, {sealed}{_stages(state)}")
    return lines


def _headline(verb: str, response: FlushSyncResponse, aside: str) -> str:
    """A response's first line: what became of its collections, where, how fast."""
    return (
        f"{verb}: {len(response.collections)} collection(s) in database "
        f"{_printable(response.db_name)!r} in {response.elapsed:.3f} s ({aside})"
    )


def _visible_lines(response: FlushSyncResponse) -> list[str]:
    """``--until visible``: no Flush; each collection, and the ticket's JSON for readers
    (``wait_flushed(FlushTicket.from_json(line), until="visible")``)."""
    ticket = response.ticket
    process = ticket is not None and ticket.covers == "process"
    covers = "; the ticket covers this process's writes" if process else ""
    lines = [_headline(VISIBLE.done, response, f"no Flush{covers}")]
    for state in response.collections.values():
        seconds = state.visible_seconds
        when = f"{seconds:.3f} s" if seconds is not None else "pending"
        lines.append(f"  {_printable(state.name)}: visible at {when}")
    if ticket is not None:
        lines.append(f"ticket: {ticket.to_json()}")
    return lines


def _reached(state: CollectionFlushState, stage: str) -> bool:
    """Has the collection reached ``stage`` (``FlushSyncResponse.stage``)?"""
    return getattr(state, stage_named(stage).seconds) is not None


def _polled(response: FlushSyncResponse) -> str:
    """What ``polls`` counted: GetFlushState, and the later stages' polls (--until)."""
    states = response.collections.values()
    if any(state.loaded_seconds is not None for state in states):
        return "GetFlushState/DescribeIndex/GetQuerySegmentInfo"
    if any(state.indexes is not None for state in states):
        return "GetFlushState/DescribeIndex"
    return "GetFlushState"


def _stages(state: CollectionFlushState) -> str:
    """The later stages a collection reached (``--until``), for its line."""
    parts = []
    if state.indexed_seconds is not None:
        built = "no index" if state.indexes == 0 else f"{state.indexes} index(es) built"
        parts.append(f"indexed at {state.indexed_seconds:.3f} s ({built})")
    if state.loaded_seconds is not None:
        parts.append(f"served at {state.loaded_seconds:.3f} s")
    return "".join(f", {part}" for part in parts)


class _RetryLines(logging.Handler):
    """Every retry (INFO on our logger) as one line on stderr, after the progress line."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.INFO)
        self._stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        _clear(self._stream)
        self._stream.write(f"{_PROG}: {_shown(record.getMessage())}\n")
        self._stream.flush()


@contextmanager
def _retries_on(stream: TextIO) -> Iterator[None]:
    logger = logging.getLogger("pymilvus_flushsync")
    handler, level = _RetryLines(stream), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class _Collect(logging.Handler):
    def __init__(self, add: Callable[[BaseException], None]) -> None:
        super().__init__(logging.DEBUG)
        self._add = add

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self._add(record.exc_info[1])


@contextmanager
def _quiet_pymilvus() -> Iterator[None]:
    """pymilvus 2.5 logs a failed connection itself, on lines of its own: the command
    says it in one (``_not_connected``)."""
    names = [name for name in logging.root.manager.loggerDict if name.split(".")[0] == "pymilvus"]
    loggers = [logging.getLogger(name) for name in {"pymilvus", *names}]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


@contextmanager
def _quiet_lite() -> Iterator[list[BaseException]]:
    """Milvus Lite's in-process server logs tracebacks (a locked database, RPCs it
    does not implement, work cut short at exit): keep them off the terminal, and
    collect the exceptions so that a locked database can be named in one line."""
    errors: list[BaseException] = []
    loggers = [logging.getLogger(name) for name in ("milvus_lite", "grpc._server")]
    saved = [log.propagate for log in loggers]
    handler = _Collect(errors.append)
    for log in loggers:
        log.propagate = False
        log.addHandler(handler)
    try:
        yield errors
    finally:
        for log, propagate in zip(loggers, saved, strict=True):
            log.removeHandler(handler)
            log.propagate = propagate


def _demo(rows: int) -> int:
    """Insert ``rows`` into a fresh Lite database, flush, read back; leave nothing behind.

    A Ctrl-C ends it between two steps, never inside one: Lite's server would finish a
    write in flight after the folder is gone, and write it again."""
    folder = Path(tempfile.mkdtemp(prefix="flushsync-demo-"))
    uri = str(folder / "demo.db")
    with held_interrupts() as held:
        client: MilvusClient | None = None
        try:
            _out(f"Milvus Lite database: {uri}")
            client = MilvusClient(uri, **OWN_CONNECTION)
            code = _demo_in(client, rows, held)
        finally:
            if client is not None:
                with suppress(Exception):
                    client.close()
            release_lite(uri)  # stops Lite's background work before the folder goes
            shutil.rmtree(folder, ignore_errors=True)
    if held:
        raise KeyboardInterrupt
    return code


def _demo_in(client: MilvusClient, rows: int, held: list[int]) -> int:
    def step() -> None:  # a Ctrl-C held during the step before ends the demo here
        if held:
            raise KeyboardInterrupt

    step()
    client.create_collection("demo", dimension=8)
    rng = random.Random(7)
    for start_row in range(0, rows, 1000):
        step()
        batch = range(start_row, min(start_row + 1000, rows))
        client.insert(
            "demo", [{"id": i, "vector": [rng.random() for _ in range(8)]} for i in batch]
        )
    _out(f"inserted {rows} rows into 'demo'; flush_sync(['demo'], timeout=30) ...")
    step()
    response = client.flush_sync(["demo"], timeout=30)
    _out(repr(response))
    _out(json.dumps(response.to_dict(), indent=2))
    _out(f"(segment_ids [] and flush_ts 0: {LITE_SEALED})")
    _out("flush_all_sync(timeout=30) ...")
    step()
    everything = client.flush_all_sync(timeout=30)
    _out(repr(everything))
    step()
    count = _count(client, "demo")
    _out(f"rows read back: {count}")
    flushed = response.flushed and everything.flushed
    return Exit.OK if count == rows and flushed else Exit.MILVUS


def _count(client: MilvusClient, name: str) -> int:
    result: list[dict[str, Any]] = client.query(name, filter="", output_fields=["count(*)"])
    return int(result[0]["count(*)"])
