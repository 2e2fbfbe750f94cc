"""Write, then read from another process: is the read stale, and what does it cost? Five
ways side by side on one real Milvus 2.3.5 started here (#30).

    python benchmarks/bench_visibility.py [--trials 5] [--delays 0,0.2,0.5,1,2]

A writer process and a reader process, each with its own client; a quick-setup
collection (its default consistency: Bounded), loaded. Per trial, delay and mode (in a
shuffled order): the writer inserts 100 new rows, does what the mode says, the reader
waits ``delay`` seconds after the writer is done and counts those rows:

* ``default``: the collection's default level;
* ``session``: ``consistency_level="Session"`` (pymilvus keeps the last write per
  process: the reader has none, so eventually);
* ``strong``: ``consistency_level="Strong"``;
* ``flush``: the writer's ``flush_sync`` (persisted), then the default read;
* ``token``: the writer's ``flush_sync(until="visible")``; the reader's
  ``wait_flushed(ticket, until="visible")``, then a Session read.

Stale: fewer than 100 rows counted. Read: the reader's query, in milliseconds; wait:
the reader's ``wait_flushed`` before it (``token``: once per ticket, however many
reads follow); write: the writer's after its insert. Writes
``benchmarks/results/visibility.json``; exits 1 when a target of ``TARGETS`` is missed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the test helpers: the server, rows

from pymilvus import MilvusClient as PlainClient  # noqa: E402

from tests.helpers import DIM, rows  # noqa: E402
from tests.servers import Standalone  # noqa: E402

RESULTS = HERE / "results"
MODES = ("default", "session", "strong", "flush", "token")
ROWS = 100
NAME = "visibility"
#: The issue's targets for the token: no stale read; at most Strong's latency + 10% at
#: every delay; within 1.2x of the default's from 1 s on.
STRONG_BOUND, DEFAULT_BOUND, DEFAULT_FROM = 1.1, 1.2, 1.0


def _writer(uri: str, conn: Any) -> None:
    from pymilvus_flushsync import MilvusClient

    client = MilvusClient(uri)
    while (asked := conn.recv()) is not None:
        turn, mode = asked
        client.insert(NAME, rows(turn * ROWS, ROWS))
        began, ticket = time.monotonic(), None
        if mode == "flush":
            client.flush_sync([NAME], timeout=120)
        elif mode == "token":
            ticket = client.flush_sync([NAME], timeout=120, until="visible").ticket
        conn.send(((time.monotonic() - began) * 1000, ticket and ticket.to_json()))


def _reader(uri: str, conn: Any) -> None:
    from pymilvus_flushsync import FlushTicket, MilvusClient

    client = MilvusClient(uri)
    client.load_collection(NAME)
    levels = {"session": "Session", "strong": "Strong", "token": "Session"}
    while (asked := conn.recv()) is not None:
        turn, mode, ticket = asked
        began = time.monotonic()
        if ticket is not None:
            client.wait_flushed(FlushTicket.from_json(ticket), timeout=120, until="visible")
        waited = time.monotonic()
        level = {"consistency_level": levels[mode]} if mode in levels else {}
        found = client.query(
            NAME,
            filter=f"id >= {turn * ROWS} and id < {(turn + 1) * ROWS}",
            output_fields=["count(*)"],
            **level,
        )
        read, wait = (time.monotonic() - waited) * 1000, (waited - began) * 1000
        conn.send((int(found[0]["count(*)"]), read, wait))


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--delays", default="0,0.2,0.5,1,2")
    args = parser.parse_args()
    delays = [float(d) for d in args.delays.split(",")]
    server = Standalone({})
    cells: dict[tuple[str, float], list[tuple[int, float, float, float]]] = {
        (mode, delay): [] for mode in MODES for delay in delays
    }
    try:
        uri = f"http://127.0.0.1:{server.port}"
        PlainClient(uri).create_collection(NAME, dimension=DIM)
        context = multiprocessing.get_context("spawn")
        (to_writer, writer_end), (to_reader, reader_end) = context.Pipe(), context.Pipe()
        workers = [
            context.Process(target=_writer, args=(uri, writer_end)),
            context.Process(target=_reader, args=(uri, reader_end)),
        ]
        for worker in workers:
            worker.start()
        turn = 0
        for _ in range(args.trials):
            for delay in delays:
                for mode in random.sample(MODES, len(MODES)):
                    to_writer.send((turn, mode))
                    wrote, ticket = to_writer.recv()
                    time.sleep(delay)  # the delay measured, not a synchronisation
                    to_reader.send((turn, mode, ticket))
                    counted, read, wait = to_reader.recv()
                    cells[(mode, delay)].append((counted, read, wait, wrote))
                    turn += 1
        to_writer.send(None)
        to_reader.send(None)
        for worker in workers:
            worker.join(timeout=60)
    finally:
        server.stop()
    table: dict[str, dict[str, float]] = {}
    columns = "stale | read median ms | read p95 ms | wait median ms | write median ms"
    print(f"| mode | delay s | {columns} |")
    print("|---|---|---|---|---|---|---|")
    for (mode, delay), runs in cells.items():
        reads = [read for _, read, _, _ in runs]
        row = {
            "stale": sum(counted < ROWS for counted, _, _, _ in runs),
            "trials": len(runs),
            "read_median_ms": round(statistics.median(reads), 1),
            "read_p95_ms": round(_p95(reads), 1),
            "wait_median_ms": round(statistics.median(w for _, _, w, _ in runs), 1),
            "write_median_ms": round(statistics.median(w for _, _, _, w in runs), 1),
        }
        table[f"{mode}@{delay:g}"] = row
        print(
            f"| {mode} | {delay:g} | {row['stale']} of {row['trials']} | {row['read_median_ms']}"
            f" | {row['read_p95_ms']} | {row['wait_median_ms']} | {row['write_median_ms']} |"
        )
    ok = True
    for delay in delays:
        token, strong = table[f"token@{delay:g}"], table[f"strong@{delay:g}"]
        default, flush = table[f"default@{delay:g}"], table[f"flush@{delay:g}"]
        checks = [
            (f"{delay:g} s: token, no stale read", token["stale"] == 0),
            (
                f"{delay:g} s: token <= {STRONG_BOUND}x Strong",
                token["read_median_ms"] <= STRONG_BOUND * strong["read_median_ms"],
            ),
        ]
        if delay >= DEFAULT_FROM:
            checks.append(
                (
                    f"{delay:g} s: token <= {DEFAULT_BOUND}x the default",
                    token["read_median_ms"] <= DEFAULT_BOUND * default["read_median_ms"],
                )
            )
        for name, passed in checks:
            ok &= passed
            print(f"- {'PASS' if passed else 'FAIL'} {name}")
        whole = token["write_median_ms"] + token["wait_median_ms"] + token["read_median_ms"]
        ratio = whole / (flush["write_median_ms"] + flush["read_median_ms"])
        print(f"- {delay:g} s: token (write + read) / flush-then-read = {ratio:.3f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "visibility.json").write_text(json.dumps(table, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
