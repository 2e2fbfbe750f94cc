"""``flush_sync(until="indexed")`` and ``until="loaded"`` beside pymilvus's chain and a
5 ms reference poller, on one real Milvus 2.3.5 started here (issue #21).

    python benchmarks/bench_stages.py [--trials 3] [--rows 3000]

Each trial makes a fresh quick-setup collection (AUTOINDEX, loaded) per client, inserts
``--rows`` rows, and times from the start of the flush:

* ``flush_sync``: ``flush_sync(name, until=...)``;
* ``pymilvus``: ``flush`` + ``utility.wait_for_index_building_complete`` (+
  ``refresh_load``, which waits for the refresh's loading progress, for "loaded");
* ``pymilvus-progress`` ("loaded" only): the same with
  ``utility.wait_for_loading_complete`` in place of ``refresh_load``;
* ``reference``: ``flush_sync`` to persisted, then the same server fields as ours every
  5 ms (DescribeIndex counts; GetPersistentSegmentInfo and GetQuerySegmentInfo), with
  the same one ``LoadCollection(refresh=True)`` once indexed, for "loaded".

A watcher on its own channel polls those fields every 5 ms from the flush's start and
records when the server reached the stage; *overshoot* is a return minus that moment.
RPCs per second: what the client sent through a counting interposer, per second of
its call (not for pymilvus, which talks to the server directly: "n/a"; its source
polls every 0.5 s while an index builds and every 0.2 s while loading). Writes a
table, and JSON to benchmarks/results/stages.json; exits 1 if a target of ``TARGETS``
is missed.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import grpc  # noqa: E402
import pymilvus  # noqa: E402
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc  # noqa: E402

from pymilvus_flushsync import MilvusClient, Until  # noqa: E402
from tests.helpers import rows, unique  # noqa: E402
from tests.interposer import Interposer  # noqa: E402
from tests.servers import Standalone  # noqa: E402

RESULTS = HERE / "results"
STAGES: tuple[Until, ...] = ("indexed", "loaded")
CLIENTS = ("flush_sync", "pymilvus", "pymilvus-progress", "reference")
WATCH = 0.005  # the watcher's and the reference's period
#: (what, key of ``_excesses``, bound): each stage's median overshoot within 30 ms of
#: the reference's and not above pymilvus's chain's; at most 25 RPCs a second (the
#: persisted stage's budget, ``bench_flush.TARGETS``), one collection.
TARGETS: list[tuple[str, str, float]] = (
    [
        (f"{stage}: overshoot <= reference + 30 ms", f"{stage}_vs_reference_ms", 30.0)
        for stage in STAGES
    ]
    + [
        (f"{stage}: overshoot <= pymilvus's chain's", f"{stage}_vs_pymilvus_ms", 0.0)
        for stage in STAGES
    ]
    + [(f"{stage}: flush_sync RPCs/s <= 25", f"{stage}_rpcs_per_s", 25.0) for stage in STAGES]
)


def _reached(stub: Any, name: str, stage: str, rows_in: int) -> bool:
    index = stub.DescribeIndex(milvus_pb2.DescribeIndexRequest(collection_name=name), timeout=5)
    counts = list(index.index_descriptions)
    if not counts or not all(
        i.pending_index_rows == 0 and i.indexed_rows >= i.total_rows >= rows_in for i in counts
    ):
        return False
    if stage == "indexed":
        return True
    segments = stub.GetPersistentSegmentInfo(
        milvus_pb2.GetPersistentSegmentInfoRequest(collectionName=name), timeout=5
    ).infos
    flushed = {i.segmentID for i in segments if i.state == 4 and i.num_rows > 0}
    served = stub.GetQuerySegmentInfo(
        milvus_pb2.GetQuerySegmentInfoRequest(collectionName=name), timeout=5
    ).infos
    return bool(flushed) and flushed <= {i.segmentID for i in served if i.index_name}


class Watcher:
    """Polls ``_reached`` every 5 ms on a channel of its own; ``at``: when first true."""

    def __init__(self, target: str, name: str, stage: str, rows_in: int) -> None:
        self._channel = grpc.insecure_channel(target)
        self._stub = milvus_pb2_grpc.MilvusServiceStub(self._channel)
        self._args = (name, stage, rows_in)
        self.at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self.at is None:
            if _reached(self._stub, *self._args):
                self.at = time.monotonic()
            self._stop.wait(WATCH)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._channel.close()


def _one(server: Standalone, client: str, stage: Until, rows_in: int) -> dict[str, float | None]:
    interposer = Interposer(f"127.0.0.1:{server.port}")
    direct = MilvusClient(server.uri)
    name = unique("bench")
    direct.create_collection(name, dimension=8)
    for start in range(0, rows_in, 1000):
        direct.insert(name, rows(start, min(1000, rows_in - start)))
    watcher = Watcher(f"127.0.0.1:{server.port}", name, stage, rows_in)
    ours = MilvusClient(interposer.uri)
    before = sum(interposer.calls.values())
    started = time.monotonic()
    watcher.start()
    if client == "flush_sync":
        ours.flush_sync(name, timeout=300, until=stage)
    elif client.startswith("pymilvus"):
        # pymilvus 3.0's own RPCs time out at once through the interposer (its Insert
        # too, tests/processes.py): it talks to the server, its RPCs are not counted.
        plain = pymilvus.MilvusClient(server.uri)
        plain.flush(name)
        # utility.wait_for_index_building_complete / wait_for_loading_complete, on this
        # client's handler (pymilvus 3.0's MilvusClient registers no ORM alias)
        handler = plain._get_connection()
        handler.wait_for_creating_index(name, "", timeout=300)
        if stage == "loaded" and client == "pymilvus":
            plain.refresh_load(name, timeout=300)
        elif stage == "loaded":
            handler.wait_for_loading_collection(name, timeout=300)
        plain.close()
    else:
        ours.flush_sync(name, timeout=300)
        stub = ours._get_connection()._stub
        if stage == "loaded":  # as flush_sync does: refresh once indexed
            while not _reached(stub, name, "indexed", rows_in):
                time.sleep(WATCH)
            request = milvus_pb2.LoadCollectionRequest(collection_name=name, refresh=True)
            stub.LoadCollection(request, timeout=30)
        while not _reached(stub, name, stage, rows_in):
            time.sleep(WATCH)
    returned = time.monotonic()
    took = returned - started
    deadline = returned + 120
    while watcher.at is None and time.monotonic() < deadline:
        time.sleep(0.05)
    watcher.stop()
    rpcs = sum(interposer.calls.values()) - before  # pymilvus's are not counted
    ours.close()
    direct.drop_collection(name)
    direct.close()
    interposer.close()
    reached = watcher.at if watcher.at is not None else returned
    rate = None if client.startswith("pymilvus") else rpcs / took
    return {"seconds": took, "overshoot_ms": (returned - reached) * 1000, "rpcs_per_s": rate}


def _median(values: Iterable[float | None]) -> float | None:
    """The median, rounded; ``None`` when not measured (pymilvus's RPCs)."""
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--rows", type=int, default=3000)
    args = parser.parse_args()
    server = Standalone({})
    measured: dict[str, dict[str, list[dict[str, float | None]]]] = {
        stage: {client: [] for client in CLIENTS} for stage in STAGES
    }
    try:
        for _ in range(args.trials):
            for stage in STAGES:
                clients = [c for c in CLIENTS if stage == "loaded" or c != "pymilvus-progress"]
                for client in random.sample(clients, len(clients)):
                    measured[stage][client].append(_one(server, client, stage, args.rows))
    finally:
        server.stop()
    table: dict[str, Any] = {}
    print("| until | client | seconds | overshoot ms | RPCs/s |\n|---|---|---|---|---|")
    for stage in STAGES:
        for client in CLIENTS:
            runs = measured[stage][client]
            if not runs:
                continue
            row = {key: _median(r[key] for r in runs) for key in runs[0]}
            table[f"{stage}/{client}"] = row
            rate = "n/a" if row["rpcs_per_s"] is None else row["rpcs_per_s"]
            print(f"| {stage} | {client} | {row['seconds']} | {row['overshoot_ms']} | {rate} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stages.json").write_text(json.dumps({"medians": table, "runs": measured}, indent=2))
    excesses = _excesses(table)
    missed = False
    for what, key, bound in TARGETS:
        over = excesses[key] > bound
        missed = missed or over
        print(f"{'MISSED' if over else 'ok':6} {what}: {round(excesses[key], 3)} (bound {bound})")
    return 1 if missed else 0


def _excesses(table: dict[str, Any]) -> dict[str, float]:
    """What ``TARGETS`` bounds, from the medians."""
    out: dict[str, float] = {}
    for stage in STAGES:
        ours = table[f"{stage}/flush_sync"]
        out[f"{stage}_vs_reference_ms"] = (
            ours["overshoot_ms"] - table[f"{stage}/reference"]["overshoot_ms"]
        )
        out[f"{stage}_vs_pymilvus_ms"] = (
            ours["overshoot_ms"] - table[f"{stage}/pymilvus"]["overshoot_ms"]
        )
        out[f"{stage}_rpcs_per_s"] = ours["rpcs_per_s"]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
