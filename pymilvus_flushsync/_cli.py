"""The ``pymilvus-flushsync`` command (entered through ``__main__``, which covers
Ctrl-C and ``$MILVUS_URI`` before this module imports pymilvus).

Exit codes, the default deadline and where the URI and token come from are in
``EPILOG`` (``--help`` prints it). No Python traceback reaches the user: every
failure is one line on stderr and an exit code (``EXIT_CODES``), and with
``--json`` the Node-shaped response (``flushed: false`` and the error's ``status``)
on stdout. A URI's userinfo and the token are redacted from everything printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn, TextIO
from urllib.parse import urlsplit

from pymilvus.exceptions import MilvusException, ParamError

from . import __version__
from ._call import prepare, prepare_seal, prepare_wait, ticket_of
from ._clients import MilvusClient
from ._compat import GRPC_MAX_TIMEOUT, release_lite
from ._core import FlushMachine
from ._errors import FlushTimeoutError, status_of
from ._exits import Exit
from ._params import UNTIL, check_db_name, check_names, check_timeout
from ._response import (
    CollectionFlushState,
    FlushAllSyncResponse,
    FlushStatus,
    FlushSyncResponse,
    ProgressHook,
)
from ._schedule import FlushPolicy
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

connection: --uri, else $MILVUS_URI, else {DEFAULT_URI} (Milvus Lite);
  --token, else $MILVUS_TOKEN (keeps the token out of `ps`), else none. A URI's
  user:password and the token are shown as *** in everything printed.
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


def _timeout(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        seconds = check_timeout(float(text))
    except (ValueError, ParamError):
        raise argparse.ArgumentTypeError(
            f"invalid timeout {text!r}: a positive number of seconds, or none"
        ) from None
    return seconds


def _rows(text: str) -> int:
    try:
        rows = int(text)
    except ValueError:
        rows = -1
    if rows <= 0:
        raise argparse.ArgumentTypeError(f"invalid row count {text!r}: a positive integer")
    return rows


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """argparse's usage and error line, as a ``Failed`` (exit 2; ``--json`` too)."""
        self.print_usage(sys.stderr)
        line = f"{self.prog}: error: {_shown(message)}"
        status = FlushStatus(code=1, error_code="IllegalArgument", reason=line)
        raise Failed(Exit.USAGE, line, _Job().failed(status))


def _parser() -> argparse.ArgumentParser:
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
        help="seal only, and print the flush ticket's JSON (for `wait`) on stdout",
    )
    wait = commands.add_parser(
        "wait", help="wait until a flush ticket's data is persisted", **formatting
    )
    wait.add_argument("ticket", metavar="FILE", help="the ticket's JSON: a file, or - for stdin")
    _connection_flags(wait)
    _deadline_flags(wait)
    demo = commands.add_parser("demo", help="flush a fresh Milvus Lite database end to end")
    demo.add_argument("--rows", type=_rows, default=3000, help="rows to insert (3000)")
    return parser


def _deadline_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=_timeout,
        default=DEFAULT_TIMEOUT,
        help=f"seconds for the whole call, or none (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--json", action="store_true", help="print the response as JSON")
    parser.add_argument(
        "--until",
        choices=UNTIL,
        default=UNTIL[0],
        help="wait until the rows are persisted (default), indexed, or loaded and served",
    )
    parser.add_argument(
        "--heartbeat",
        type=_timeout,
        metavar="SECONDS",
        default=FlushPolicy().heartbeat,
        help="seconds between the 'still waiting' lines on stderr, or none "
        "(default: FlushPolicy.heartbeat, %(default)g)",
    )


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--uri", help=f"Milvus URI or Lite file ($MILVUS_URI, else {DEFAULT_URI})")
    parser.add_argument("--token", help="token, or user:password ($MILVUS_TOKEN)")


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
        _out(json.dumps(failed.response.to_dict(), indent=2))
    return failed.code


@dataclass(frozen=True)
class _Job:
    """What a ``flush`` command asked for, to describe its failure (``--json``)."""

    names: tuple[str, ...] = ()
    db_name: str | None = None
    server: bool = False
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
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args.rows)
    if args.command == "wait":
        return _wait(args, lite_errors)
    if args.no_wait and args.until != UNTIL[0]:
        parser.error("--no-wait seals only: --until applies to flush and wait")
    if args.server and args.until != UNTIL[0]:
        parser.error("--until applies to named collections and --all, not --server")
    if args.no_wait and not args.names:
        parser.error("--no-wait seals named collections: name them (not --all or --server)")
    if [bool(args.names), args.all, args.server].count(True) != 1:
        parser.error("name one or more collections, or pass --all or --server (one of them)")
    if args.server and args.db_name is not None:
        parser.error("--server flushes every database: --db-name does not apply")
    try:
        names = None if args.all or args.server else check_names(args.names)
        db_name = check_db_name(args.db_name)
    except ParamError as exc:
        parser.error(exc.message)
    job = _Job(names or (), db_name, args.server, started=time.monotonic())
    with _connected(args, job, lite_errors) as client:
        if args.server:
            return _flush_server(client, job, timeout=args.timeout, as_json=args.json)
        if args.no_wait:
            return _seal(client, job, timeout=args.timeout)
        return _flush(client, job, timeout=args.timeout, as_json=args.json, until=args.until)


@contextmanager
def _connected(
    args: argparse.Namespace, job: _Job, lite_errors: list[BaseException]
) -> Iterator[MilvusClient]:
    """The client of ``--uri``/``--token``, connected under the deadline; closed after."""
    uri, token = _connection(args)
    if uri.endswith(".db") and not Path(uri).exists():  # pymilvus's test for a Lite URI
        raise _failure(Exit.MILVUS, f"no Milvus Lite database at {_shown(uri)}", job)
    try:
        # the connection's own wait, under the deadline, in what gRPC can take
        connecting = None if args.timeout is None else min(args.timeout, GRPC_MAX_TIMEOUT)
        client = MilvusClient(uri, token=token, db_name=job.db_name or "", timeout=connecting)
    except ValueError as exc:  # the URI does not parse (e.g. a port that is not a number)
        raise _failure(
            Exit.USAGE, f"invalid --uri {_shown(uri)}: {_shown(str(exc))}", job
        ) from None
    except Exception as exc:
        raise _not_connected(uri, exc, lite_errors, args.timeout, job) from None
    client.flush_sync_policy = replace(client.flush_sync_policy, heartbeat=args.heartbeat)
    try:
        yield client
    finally:
        client.close()
        release_lite(uri)


def _wait(args: argparse.Namespace, lite_errors: list[BaseException]) -> int:
    """``wait FILE|-``: the ticket, then ``flush``'s wait, deadline and exit codes."""
    started = time.monotonic()
    try:
        text = sys.stdin.read() if args.ticket == "-" else Path(args.ticket).read_text()
        ticket = FlushTicket.from_json(text)
    except OSError as exc:
        line = f"cannot read the ticket {_shown(args.ticket)}: {_shown(exc.strerror or str(exc))}"
        raise _failure(Exit.USAGE, line, _Job()) from None
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
    """``flush --no-wait``: seal, and print the ticket's JSON on stdout."""
    machine = prepare_seal(
        client, job.names, job.db_name, timeout, client.flush_sync_policy, since=job.started
    )
    _run(client, machine, job)
    _out(ticket_of(machine).to_json())
    return Exit.OK


def _connection(args: argparse.Namespace) -> tuple[str, str]:
    """The URI and token: flags, else the environment, else the Lite default."""
    uri = args.uri or os.environ.get("MILVUS_URI") or DEFAULT_URI
    token = args.token if args.token is not None else os.environ.get("MILVUS_TOKEN", "")
    return uri, token


def _failure(code: Exit, line: str, job: _Job) -> Failed:
    """A failure that is no server's status: the deadline, or this command's own."""
    timed_out = code is Exit.TIMEOUT
    status = FlushStatus.timed_out(line) if timed_out else FlushStatus(1, "UnexpectedError", line)
    return Failed(code, line, job.failed(status))


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
        line = f"timed out: no connection to {_shown(uri)} within {timeout:g} s"
        return _failure(Exit.TIMEOUT, line, job)
    line = f"cannot connect to {_shown(uri)}: {_shown(str(reason))}"
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
        every=names is None, since=job.started, on_progress=hook, until=until,
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
        word = "flushed" if stage == "persisted" else stage
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


#: What no line may show (``_redacting``): a URI's userinfo, the token, their passwords.
_SECRETS: list[str] = []


@contextmanager
def _redacting(argv: list[str]) -> Iterator[None]:
    """Keep the secrets of this command (``--uri``'s userinfo, ``--token``, their
    environment variables) out of every line it prints, from the first line on."""
    known = argparse.ArgumentParser(add_help=False)
    _connection_flags(known)
    args, _ = known.parse_known_args(argv)
    secrets: set[str] = set()
    for uri, token in [_connection(args), (os.environ.get("MILVUS_URI", ""), "")]:
        userinfo = urlsplit(uri).netloc.rpartition("@")[0] if "://" in uri else ""
        for secret in (userinfo, token):
            secrets.update({secret, secret.partition(":")[2]} - {""})
    _SECRETS[:] = sorted(secrets, key=len, reverse=True)
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
        _SECRETS.clear()


def _redact_record(record: logging.LogRecord) -> bool:
    """A log record's message with the secrets as ``***`` (a ``logging`` filter)."""
    if _SECRETS:
        record.msg, record.args = _redacted(record.getMessage()), None
    return True


def _shown(text: str) -> str:
    """``text`` safe to print: secrets as ``***``, control characters and undecodable
    bytes escaped."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape", "backslashreplace").decode()
        for ch in _redacted(text)
    )


def _err(line: str) -> None:
    print(_redacted(line), file=sys.stderr)


def _out(text: str) -> None:
    """Print to stdout; a reader that went away (``| head``) is not an error."""
    try:
        print(_redacted(text), flush=True)
    except BrokenPipeError:
        # Python would report the broken pipe again when it flushes stdout at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _redacted(text: str) -> str:
    for secret in _SECRETS:
        text = text.replace(secret, "***")
    return text


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
    verb = "flushed" if response.flushed else "NOT flushed"
    lines = [
        f"{verb}: {len(response.collections)} collection(s) in database "
        f"{_shown(response.db_name)!r} in {response.elapsed:.3f} s "
        f"({response.polls} {_polled(response)} polls)"
    ]
    for state in response.collections.values():
        when = f"{state.seconds:.3f} s" if state.seconds is not None else "pending"
        # Milvus Lite's Flush is synchronous and its FlushResponse maps are empty:
        # no segment IDs, flush_ts 0, whatever was inserted.
        sealed = (
            LITE_SEALED
            if state.flushed and not state.flush_ts and not state.segment_ids
            else f"{len(state.segment_ids)} segment(s) sealed"
        )
        lines.append(f"  {_shown(state.name)}: {when}, {sealed}{_stages(state)}")
    return lines


def _reached(state: CollectionFlushState, stage: str) -> bool:
    """Has the collection reached ``stage`` (``FlushSyncResponse.stage``)?"""
    if stage == "indexed":
        return state.indexed_seconds is not None
    if stage == "loaded":
        return state.loaded_seconds is not None
    return state.flushed


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
    with tempfile.TemporaryDirectory(prefix="flushsync-demo-") as tmp:
        uri = str(Path(tmp) / "demo.db")
        _out(f"Milvus Lite database: {uri}")
        client = MilvusClient(uri)
        try:
            client.create_collection("demo", dimension=8)
            rng = random.Random(7)
            for start_row in range(0, rows, 1000):
                batch = range(start_row, min(start_row + 1000, rows))
                client.insert(
                    "demo", [{"id": i, "vector": [rng.random() for _ in range(8)]} for i in batch]
                )
            _out(f"inserted {rows} rows into 'demo'; flush_sync(['demo'], timeout=30) ...")
            response = client.flush_sync(["demo"], timeout=30)
            _out(repr(response))
            _out(json.dumps(response.to_dict(), indent=2))
            _out(f"(segment_ids [] and flush_ts 0: {LITE_SEALED})")
            _out("flush_all_sync(timeout=30) ...")
            everything = client.flush_all_sync(timeout=30)
            _out(repr(everything))
            count = _count(client, "demo")
            _out(f"rows read back: {count}")
        finally:
            client.close()
            release_lite(uri)  # stops Lite's background work before the directory goes
    flushed = response.flushed and everything.flushed
    return Exit.OK if count == rows and flushed else Exit.MILVUS


def _count(client: MilvusClient, name: str) -> int:
    result: list[dict[str, Any]] = client.query(name, filter="", output_fields=["count(*)"])
    return int(result[0]["count(*)"])
