"""The ``pymilvus-flushsync`` command (also ``python -m pymilvus_flushsync``).

Exit codes, the default deadline and where the URI and token come from are in
``EPILOG`` (``--help`` prints it). No Python traceback reaches the user: every
failure is one line on stderr and an exit code.
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
from pathlib import Path
from typing import Any, TextIO

from pymilvus.exceptions import MilvusException, ParamError

from . import __version__
from ._call import prepare
from ._compat import release_lite
from ._core import FlushMachine
from ._errors import FlushTimeoutError
from ._params import check_db_name, check_names, check_timeout
from ._response import FlushAllSyncResponse, FlushSyncResponse
from ._response import ProgressHook
from ._sync import MilvusClient, flush_all, run

EXIT_OK, EXIT_MILVUS, EXIT_USAGE, EXIT_TIMEOUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: Seconds the ``flush`` command waits by default (``--timeout none``: no deadline).
DEFAULT_TIMEOUT = 600.0
#: Where the URI comes from: ``--uri``, else ``$MILVUS_URI``, else a Lite file.
DEFAULT_URI = "./milvus.db"
_PROG = "pymilvus-flushsync"

EPILOG = f"""\
exit codes:
  0    flushed (and, for demo: every row read back)
  1    Milvus error: the server refused, a collection is missing, no
       connection, no Milvus Lite database at the path, a locked database
  2    usage error: bad arguments, names or timeout
  3    timeout: the deadline passed (connecting included)
  130  interrupted (Ctrl-C)

deadline: flush waits at most {DEFAULT_TIMEOUT:g} s unless --timeout says otherwise
  (--timeout none: no deadline). Connecting, listing (--all, --server), the Flush, every
  poll and every retry share it. Each retry is reported on stderr.

connection: --uri, else $MILVUS_URI, else {DEFAULT_URI} (Milvus Lite);
  --token, else $MILVUS_TOKEN (keeps the token out of `ps`), else none.
"""


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Flush Milvus collections and wait until they are persisted.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    flush = commands.add_parser(
        "flush",
        help="flush collections and wait until persisted",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    flush.add_argument("names", nargs="*", metavar="NAME", help="collections to flush")
    flush.add_argument("--all", action="store_true", help="flush every collection of the database")
    flush.add_argument(
        "--server", action="store_true", help="flush every collection of every database"
    )
    flush.add_argument("--uri", help=f"Milvus URI or Lite file ($MILVUS_URI, else {DEFAULT_URI})")
    flush.add_argument("--token", help="token, or user:password ($MILVUS_TOKEN)")
    flush.add_argument("--db-name", default=None, help="database (default: the server's)")
    flush.add_argument(
        "--timeout",
        type=_timeout,
        default=DEFAULT_TIMEOUT,
        help=f"seconds for the whole call, or none (default {DEFAULT_TIMEOUT:g})",
    )
    flush.add_argument("--json", action="store_true", help="print the response as JSON")
    demo = commands.add_parser("demo", help="flush a fresh Milvus Lite database end to end")
    demo.add_argument("--rows", type=_rows, default=3000, help="rows to insert (3000)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    with _quiet_lite() as lite_errors, _retries_on(sys.stderr):
        try:
            return _main(argv, lite_errors)
        except KeyboardInterrupt:
            _clear(sys.stderr)
            _err("interrupted")
            return EXIT_INTERRUPTED
        except MilvusException as exc:  # e.g. demo: Milvus Lite failed
            _err(f"error: {_shown(str(exc.message))} (code {exc.code})")
            return EXIT_MILVUS
        except Exception as exc:  # the last line of defence: no traceback for users
            _err(f"error: {type(exc).__name__}: {_shown(str(exc))}")
            return EXIT_MILVUS


def _main(argv: Sequence[str] | None, lite_errors: list[BaseException]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args.rows)
    if [bool(args.names), args.all, args.server].count(True) != 1:
        parser.error("name one or more collections, or pass --all or --server (one of them)")
    if args.server and args.db_name is not None:
        parser.error("--server flushes every database: --db-name does not apply")
    try:
        names = None if args.all or args.server else check_names(args.names)
        db_name = check_db_name(args.db_name)
    except ParamError as exc:
        parser.error(_shown(exc.message))
    uri = args.uri or os.environ.get("MILVUS_URI") or DEFAULT_URI
    token = args.token if args.token is not None else os.environ.get("MILVUS_TOKEN", "")
    if uri.endswith(".db") and not Path(uri).exists():  # pymilvus's test for a Lite URI
        _err(f"no Milvus Lite database at {_shown(uri)}")
        return EXIT_MILVUS
    started = time.monotonic()
    try:
        client = MilvusClient(uri, token=token, db_name=db_name or "", timeout=args.timeout)
    except ValueError as exc:  # the URI does not parse (e.g. a port that is not a number)
        _err(f"invalid --uri {_shown(uri)}: {_shown(str(exc))}")
        return EXIT_USAGE
    except Exception as exc:
        return _not_connected(uri, exc, lite_errors, args.timeout, time.monotonic() - started)
    try:
        if args.server:
            return _flush_server(client, timeout=args.timeout, started=started, as_json=args.json)
        return _flush(
            client, names, db_name, timeout=args.timeout, started=started, as_json=args.json
        )
    finally:
        client.close()
        release_lite(uri)


def _not_connected(
    uri: str, exc: Exception, lite_errors: list[BaseException], timeout: float | None, took: float
) -> int:
    locked = [e for e in lite_errors if type(e).__name__ == "DataDirLockedError"]
    if locked:
        _err(f"another process holds the lock on {_shown(str(Path(uri).resolve()))}")
        return EXIT_MILVUS
    reason = exc.message if isinstance(exc, MilvusException) else f"{type(exc).__name__}: {exc}"
    # pymilvus says "Fail connecting" both for a refusal and for its own timeout: the
    # clock tells them apart (its wait ends at the timeout, not before).
    if timeout is not None and took >= timeout - 0.01:
        _err(f"timed out: no connection to {_shown(uri)} within {timeout:g} s")
        return EXIT_TIMEOUT
    _err(f"cannot connect to {_shown(uri)}: {_shown(str(reason))}")
    return EXIT_MILVUS


def _flush(
    client: MilvusClient,
    names: tuple[str, ...] | None,
    db_name: str | None,
    *,
    timeout: float | None,
    started: float,
    as_json: bool,
) -> int:
    policy = client.flush_sync_policy
    machine = prepare(client, names, db_name, timeout, policy, every=names is None, since=started)
    try:
        response = run(machine, client, on_progress=_progress_line(sys.stderr))
    except FlushTimeoutError as exc:
        _clear(sys.stderr)
        _err(f"timed out: {_shown(exc.message)}")
        _print(exc.response, as_json)
        return EXIT_TIMEOUT
    except MilvusException as exc:
        _clear(sys.stderr)
        _err(
            f"error flushing {_subject(machine, db_name)}: {_shown(str(exc.message))} "
            f"(code {exc.code})"
        )
        return EXIT_MILVUS
    _clear(sys.stderr)
    if not response.collections:
        _err(f"no collections to flush in database {_shown(response.db_name)!r}")
    _print(response, as_json)
    return EXIT_OK


def _flush_server(
    client: MilvusClient, *, timeout: float | None, started: float, as_json: bool
) -> int:
    try:
        response = flush_all(client, None, timeout, client.flush_sync_policy, since=started)
    except FlushTimeoutError as exc:
        _err(f"timed out: {_shown(exc.message)}")
        _print(exc.response, as_json)
        return EXIT_TIMEOUT
    except MilvusException as exc:
        _err(f"error flushing every database: {_shown(str(exc.message))} (code {exc.code})")
        return EXIT_MILVUS
    _print(response, as_json)
    return EXIT_OK


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
        done = sum(state.flushed for state in progress.collections.values())
        stream.write(
            f"\rwaiting: {done}/{len(progress.collections)} flushed, "
            f"{progress.elapsed:.1f} s, {progress.polls} polls"
        )
        stream.flush()

    return draw


def _clear(stream: TextIO) -> None:
    if stream.isatty():
        stream.write("\r\033[K")
        stream.flush()


def _shown(text: str) -> str:
    """``text`` safe for a terminal: control characters and undecodable bytes escaped."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape", "backslashreplace").decode()
        for ch in text
    )


def _err(line: str) -> None:
    print(line, file=sys.stderr)


def _out(text: str) -> None:
    """Print to stdout; a reader that went away (``| head``) is not an error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python would report the broken pipe again when it flushes stdout at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _print(response: FlushSyncResponse | FlushAllSyncResponse, as_json: bool) -> None:
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


def _lines(response: FlushSyncResponse) -> list[str]:
    verb = "flushed" if response.flushed else "NOT flushed"
    lines = [
        f"{verb}: {len(response.collections)} collection(s) in database "
        f"{_shown(response.db_name)!r} in {response.elapsed:.3f} s "
        f"({response.polls} GetFlushState polls)"
    ]
    for state in response.collections.values():
        when = f"{state.seconds:.3f} s" if state.seconds is not None else "pending"
        lines.append(f"  {_shown(state.name)}: {when}, {len(state.segment_ids)} segment(s) sealed")
    return lines


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
            count = _count(client, "demo")
            _out(f"rows read back: {count}")
        finally:
            client.close()
            release_lite(uri)  # stops Lite's background work before the directory goes
    return EXIT_OK if count == rows and response.flushed else EXIT_MILVUS


def _count(client: MilvusClient, name: str) -> int:
    result: list[dict[str, Any]] = client.query(name, filter="", output_fields=["count(*)"])
    return int(result[0]["count(*)"])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
