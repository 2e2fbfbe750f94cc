"""The ``pymilvus-flushsync`` command (also ``python -m pymilvus_flushsync``).

Exit codes: 0 flushed, 1 Milvus error, 2 usage error, 3 timeout.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from pymilvus.exceptions import MilvusException, ParamError

from ._core import FlushMachine
from ._errors import FlushTimeoutError
from ._params import check_timeout, start
from ._response import FlushSyncResponse
from ._sync import MilvusClient, run

EXIT_OK, EXIT_MILVUS, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3


def _timeout(text: str) -> float:
    try:
        seconds = check_timeout(float(text))
    except (ValueError, ParamError):
        raise argparse.ArgumentTypeError(
            f"invalid timeout {text!r}: a positive number of seconds"
        ) from None
    assert seconds is not None
    return seconds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pymilvus-flushsync",
        description="Flush Milvus collections and wait until they are persisted.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    flush = commands.add_parser("flush", help="flush collections and wait until persisted")
    flush.add_argument("names", nargs="*", metavar="NAME", help="collections to flush")
    flush.add_argument("--all", action="store_true", help="flush every collection of the database")
    flush.add_argument("--uri", default="./milvus.db", help="Milvus URI or Lite file (./milvus.db)")
    flush.add_argument("--token", default="", help="token, or user:password")
    flush.add_argument("--db-name", default=None, help="database (default: the client's)")
    flush.add_argument("--timeout", type=_timeout, default=None, help="seconds for the whole call")
    flush.add_argument("--json", action="store_true", help="print the response as JSON")
    demo = commands.add_parser("demo", help="flush a fresh Milvus Lite database end to end")
    demo.add_argument("--rows", type=int, default=3000, help="rows to insert (3000)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    _quiet_lite_logs()
    if args.command == "demo":
        return _demo(args.rows)
    if bool(args.names) == bool(args.all):
        parser.error("name one or more collections, or pass --all (not both)")
    try:
        client = MilvusClient(args.uri, token=args.token, db_name=args.db_name or "")
    except MilvusException as exc:
        print(f"cannot connect to {args.uri}: {exc.message}", file=sys.stderr)
        return EXIT_MILVUS
    try:
        return _flush(client, args)
    finally:
        client.close()


def _flush(client: MilvusClient, args: argparse.Namespace) -> int:
    names = args.names
    try:
        if args.all:
            names = client.list_collections()
            if not names:
                print("no collections to flush", file=sys.stderr)
                return EXIT_OK
        machine = start(client, names, None, args.timeout, client.flush_sync_policy)
        response = run(machine, client._get_connection(), sleep=_Progress(machine, sys.stderr))
    except FlushTimeoutError as exc:
        _clear(sys.stderr)
        print(f"timed out: {exc.message}", file=sys.stderr)
        _print(exc.response, args.json)
        return EXIT_TIMEOUT
    except MilvusException as exc:
        _clear(sys.stderr)
        print(
            f"error flushing {', '.join(names)}: {exc.message} (code {exc.code})", file=sys.stderr
        )
        return EXIT_MILVUS
    _clear(sys.stderr)
    _print(response, args.json)
    return EXIT_OK


class _Progress:
    """A ``sleep`` that keeps a live progress line on a terminal."""

    def __init__(self, machine: FlushMachine, stream: TextIO) -> None:
        self._machine = machine
        self._stream = stream if stream.isatty() else None

    def __call__(self, seconds: float) -> None:
        if self._stream is not None:
            progress = self._machine.progress()
            done = sum(state.flushed for state in progress.collections.values())
            self._stream.write(
                f"\rwaiting: {done}/{len(progress.collections)} flushed, "
                f"{progress.elapsed:.1f} s, {progress.polls} polls"
            )
            self._stream.flush()
        time.sleep(seconds)


def _clear(stream: TextIO) -> None:
    if stream.isatty():
        stream.write("\r\033[K")
        stream.flush()


def _print(response: FlushSyncResponse, as_json: bool) -> None:
    if as_json:
        print(json.dumps(response.to_dict(), indent=2))
        return
    verb = "flushed" if response.flushed else "NOT flushed"
    print(
        f"{verb}: {len(response.collections)} collection(s) in database {response.db_name!r} "
        f"in {response.elapsed:.3f} s ({response.polls} GetFlushState polls)"
    )
    for state in response.collections.values():
        when = f"{state.seconds:.3f} s" if state.seconds is not None else "pending"
        print(f"  {state.name}: {when}, {len(state.segment_ids)} segment(s) sealed")


def _demo(rows: int) -> int:
    with tempfile.TemporaryDirectory(prefix="flushsync-demo-") as tmp:
        uri = str(Path(tmp) / "demo.db")
        print(f"Milvus Lite database: {uri}")
        client = MilvusClient(uri)
        try:
            client.create_collection("demo", dimension=8)
            rng = random.Random(7)
            for start in range(0, rows, 1000):
                batch = range(start, min(start + 1000, rows))
                client.insert(
                    "demo", [{"id": i, "vector": [rng.random() for _ in range(8)]} for i in batch]
                )
            print(f"inserted {rows} rows into 'demo'; flush_sync(['demo'], timeout=30) ...")
            response = client.flush_sync(["demo"], timeout=30)
            print(repr(response))
            print(json.dumps(response.to_dict(), indent=2))
            count = _count(client, "demo")
            print(f"rows read back: {count}")
        finally:
            client.close()
    return EXIT_OK if count == rows and response.flushed else EXIT_MILVUS


def _count(client: MilvusClient, name: str) -> int:
    result: list[dict[str, Any]] = client.query(name, filter="", output_fields=["count(*)"])
    return int(result[0]["count(*)"])


def _quiet_lite_logs() -> None:
    # Milvus Lite's in-process gRPC server logs a traceback for every RPC it does
    # not implement (pymilvus's insert asks for AllocTimestamp); that is noise here.
    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
