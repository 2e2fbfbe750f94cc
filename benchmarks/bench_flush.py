"""Side-by-side benchmark: flush_sync vs pymilvus's flush vs the Node SDK's flushSync
vs a 2 ms polling reference, on one real Milvus 2.3.5 standalone started here.

    python benchmarks/bench_flush.py [--trials 7] [--rows 2000] [--no-node]

Per trial, a watcher on its own gRPC channel polls GetPersistentSegmentInfo every
~2 ms to find the moment every inserted row is in a Flushed segment; a client's
overshoot is its return time minus that moment. A return before the watcher's
last "not yet" observation is counted as early. Trials are interleaved (clients
in a shuffled order each round), so machine noise hits every client alike.

Writes a table to stdout, JSON to benchmarks/results/latest.json and, when
matplotlib is installed, benchmarks/results/overshoot.png; exits 1 when a target
of ``TARGETS`` is missed. The method and the full tables: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from pymilvus import MilvusClient as PlainClient
from pymilvus.grpc_gen import common_pb2, milvus_pb2, milvus_pb2_grpc

from pymilvus_flushsync import Backoff, FlushPolicy, MilvusClient
from pymilvus_flushsync._call import prepare
from pymilvus_flushsync._sync import run

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the test helpers: rows, and the server they start
from tests.helpers import DIM, rows  # noqa: E402
from tests.servers import Standalone  # noqa: E402

RESULTS = HERE / "results"
FLUSHED = common_pb2.SegmentState.Flushed
POLL_2MS = FlushPolicy(poll=Backoff(0.002, 1.0, 0.002), tick_period=None)


# -- measurement helpers --------------------------------------------------------------


class CountingStub:
    """Wraps a sync gRPC stub and counts GetFlushState calls (whoever makes them): each
    call, direct or as a future, not each lookup of the attribute; ``by_name`` counts
    them per collection."""

    def __init__(self, stub: Any) -> None:
        self.stub, self.polls = stub, 0
        self.by_name: Counter[str] = Counter()

    def reset(self) -> None:
        self.polls = 0
        self.by_name.clear()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.stub, name)
        if name != "GetFlushState":
            return method
        outer = self

        def count(request: Any) -> None:
            outer.polls += 1
            outer.by_name[request.collection_name] += 1

        class Counted:
            def __call__(self, request: Any, *args: Any, **kwargs: Any) -> Any:
                count(request)
                return method(request, *args, **kwargs)

            def future(self, request: Any, *args: Any, **kwargs: Any) -> Any:
                count(request)
                return method.future(request, *args, **kwargs)

        return Counted()


class Watcher(threading.Thread):
    """Finds the moment every expected row is in a Flushed segment."""

    def __init__(self, address: str, expected: dict[str, int], period: float = 0.002) -> None:
        super().__init__(daemon=True)
        self.channel = grpc.insecure_channel(address)
        self.stub = milvus_pb2_grpc.MilvusServiceStub(self.channel)
        self.expected, self.period = expected, period
        self.last_not_done: tuple[float, float] | None = None  # (sent, replied)
        self.first_done: float | None = None  # sent
        self.stop_event = threading.Event()

    def _all_flushed(self) -> bool:
        futures = {
            name: self.stub.GetPersistentSegmentInfo.future(
                milvus_pb2.GetPersistentSegmentInfoRequest(collectionName=name), timeout=10
            )
            for name in self.expected
        }
        for name, future in futures.items():
            infos = future.result().infos
            if sum(i.num_rows for i in infos if i.state == FLUSHED) < self.expected[name]:
                return False
        return True

    def run(self) -> None:
        while not self.stop_event.is_set():
            sent = time.monotonic()
            done = self._all_flushed()
            replied = time.monotonic()
            if done:
                self.first_done = sent
                return
            self.last_not_done = (sent, replied)
            time.sleep(self.period)

    def moment(self) -> float:
        """Midpoint between the last "not yet" and the first "all flushed" observation."""
        assert self.first_done is not None and self.last_not_done is not None
        return (self.last_not_done[0] + self.first_done) / 2

    def close(self) -> None:
        self.stop_event.set()
        self.join(timeout=60)
        self.channel.close()


@dataclass
class Trial:
    client: str
    mode: str
    latency: float
    polls: int
    cpu: float
    overshoot: float | None = None
    early: bool = False


@dataclass
class Results:
    trials: list[Trial] = field(default_factory=list)

    def of(self, client: str, mode: str) -> list[Trial]:
        return [t for t in self.trials if t.client == client and t.mode == mode]


# -- the clients ----------------------------------------------------------------------


class Clients:
    """Each client: a callable (names) -> (polls, cpu seconds)."""

    def __init__(self, uri: str, node: subprocess.Popen[str] | None, before: Any = None) -> None:
        self.ours = MilvusClient(uri)
        self.plain = PlainClient(uri)
        self.node = node
        self.earlier: Any = None if before is None else before.MilvusClient(uri)

    def before(self, names: list[str]) -> tuple[int, float]:
        """``flush_sync`` of the package at ``--against`` (its own tick model)."""
        cpu = time.thread_time()
        response = self.earlier.flush_sync(names, timeout=120)
        return response.polls, time.thread_time() - cpu

    def flush_sync(self, names: list[str]) -> tuple[int, float]:
        cpu = time.thread_time()
        response = self.ours.flush_sync(names, timeout=120)
        return response.polls, time.thread_time() - cpu

    def poll_2ms(self, names: list[str]) -> tuple[int, float]:
        cpu = time.thread_time()
        response = run(prepare(self.ours, names, None, 120, POLL_2MS), self.ours)
        return response.polls, time.thread_time() - cpu

    def pymilvus(self, names: list[str]) -> tuple[int, float]:
        handler = self.plain._get_connection()
        counting = CountingStub(handler._stub)
        handler._stub = counting
        cpu = time.thread_time()
        try:
            for name in names:
                self.plain.flush(name)
        finally:
            handler._stub = counting.stub
        return counting.polls, time.thread_time() - cpu

    def node_sdk(self, names: list[str]) -> tuple[int, float]:
        assert self.node is not None and self.node.stdin and self.node.stdout
        self.node.stdin.write(json.dumps({"names": names}) + "\n")
        self.node.stdin.flush()
        reply = json.loads(self.node.stdout.readline())
        if not reply["ok"]:
            raise RuntimeError(f"node flushSync failed: {reply['error']}")
        return int(reply["polls"]), float(reply["cpu_s"])

    def table(self) -> dict[str, Callable[[list[str]], tuple[int, float]]]:
        clients: dict[str, Callable[[list[str]], tuple[int, float]]] = {
            "flush_sync": self.flush_sync,
            "pymilvus": self.pymilvus,
            "poll_2ms": self.poll_2ms,
        }
        if self.node is not None:
            clients["node_sdk"] = self.node_sdk
        if self.earlier is not None:
            clients["before"] = self.before
        return clients


def package_at(revision: str) -> Any:
    """The package as it was at ``revision`` (git), importable beside this one as
    ``pymilvus_flushsync_before``: a same-run A/B of two codes."""
    into = Path(tempfile.mkdtemp(prefix="flushsync-before-"))
    archive = subprocess.run(
        ["git", "archive", revision, "pymilvus_flushsync"],
        cwd=HERE.parent,
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / "pymilvus_flushsync").rename(into / "pymilvus_flushsync_before")
    sys.path.insert(0, str(into))
    return importlib.import_module("pymilvus_flushsync_before")


def start_node(address: str) -> subprocess.Popen[str] | None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        print("Node.js or npm not found: skipping the Node SDK peer", file=sys.stderr)
        return None
    if not (HERE / "node_modules" / "@zilliz" / "milvus2-sdk-node").exists():
        print("installing @zilliz/milvus2-sdk-node into benchmarks/node_modules ...")
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent"], cwd=HERE, check=True
        )
    return subprocess.Popen(
        [node, str(HERE / "node_flush.js"), address],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=HERE,
    )


# -- the runs -------------------------------------------------------------------------


class ServerBench:
    def __init__(self, uri: str, address: str, clients: Clients, rows_per: int) -> None:
        self.admin = PlainClient(uri)
        self.address, self.clients, self.rows_per = address, clients, rows_per
        self.inserted: dict[str, int] = {}
        self.results = Results()

    def collections(self, client: str, mode: str, count: int) -> list[str]:
        names = [f"b_{client}_{mode}_{i}" for i in range(count)]
        for name in names:
            if name not in self.inserted:
                self.admin.create_collection(name, dimension=DIM)
                self.inserted[name] = 0
        return names

    def insert(self, names: list[str]) -> None:
        for name in names:
            self.admin.insert(name, rows(self.inserted[name], self.rows_per))
            self.inserted[name] += self.rows_per

    def trial(self, client: str, mode: str) -> Trial:
        call = self.clients.table()[client]
        names = self.collections(client, mode, 8 if mode == "eight" else 1)
        new_rows = mode != "nothing"
        if new_rows:
            self.insert(names)
        else:  # make sure there is nothing new: flush and wait with pymilvus first
            for name in names:
                self.admin.flush(name)
        watcher = Watcher(self.address, {n: self.inserted[n] for n in names}) if new_rows else None
        if watcher is not None:
            watcher.start()
        began = time.monotonic()
        polls, cpu = call(names)
        returned = time.monotonic()
        trial = Trial(client, mode, returned - began, polls, cpu)
        if watcher is not None:
            watcher.join(timeout=60)
            moment = watcher.moment()
            trial.overshoot = returned - moment
            assert watcher.last_not_done is not None
            # early for sure: back before the server answered "not yet" to a request sent later
            trial.early = returned < watcher.last_not_done[0]
            watcher.close()
        self.results.trials.append(trial)
        return trial

    def run(self, trials: int, modes: list[str]) -> Results:
        rng = random.Random(0)
        clients = list(self.clients.table())
        for client in clients:  # warm up connections and collections
            self.trial(client, "nothing")
        self.results.trials.clear()
        for number in range(trials):
            for mode in modes:
                order = clients[:]
                rng.shuffle(order)
                for client in order:
                    t = self.trial(client, mode)
                    over = "-" if t.overshoot is None else f"{t.overshoot * 1000:6.1f} ms"
                    print(
                        f"  trial {number + 1}/{trials} {mode:8} {client:10} "
                        f"latency {t.latency * 1000:7.1f} ms  polls {t.polls:3}  "
                        f"overshoot {over}{'  EARLY' if t.early else ''}",
                        flush=True,
                    )
        return self.results


def lite_bench(trials: int, rows_per: int) -> dict[str, list[float]]:
    """Milvus Lite: insert rows_per rows + flush, flush_sync vs pymilvus's flush."""
    times: dict[str, list[float]] = {"flush_sync": [], "pymilvus": []}
    with tempfile.TemporaryDirectory() as tmp:
        uri = os.path.join(tmp, "bench.db")
        ours, plain = MilvusClient(uri), PlainClient(uri)
        for name in times:
            ours.create_collection(f"lite_{name}", dimension=DIM)
        inserted = 0
        for number in range(trials + 1):  # the first round warms up
            for name in random.Random(number).sample(list(times), 2):
                collection = f"lite_{name}"
                began = time.monotonic()
                if name == "flush_sync":
                    ours.insert(collection, rows(inserted, rows_per))
                    ours.flush_sync(collection, timeout=60)
                else:
                    plain.insert(collection, rows(inserted, rows_per))
                    plain.flush(collection)
                if number:
                    times[name].append(time.monotonic() - began)
                inserted += rows_per
        ours.close()
        plain.close()
    return times


# -- report ---------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarise(
    results: Results, lite: dict[str, list[float]], meta: dict[str, Any]
) -> dict[str, Any]:
    rows_out = []
    for mode in ("one", "eight", "nothing"):
        for client in ("flush_sync", "before", "poll_2ms", "pymilvus", "node_sdk"):
            trials = results.of(client, mode)
            if not trials:
                continue
            latencies = [t.latency for t in trials]
            overshoots = [t.overshoot for t in trials if t.overshoot is not None]
            rows_out.append(
                {
                    "mode": mode,
                    "client": client,
                    "trials": len(trials),
                    "latency_median_ms": median(latencies) * 1000,
                    "latency_min_ms": min(latencies) * 1000,
                    "latency_max_ms": max(latencies) * 1000,
                    "overshoot_median_ms": median(overshoots) * 1000 if overshoots else None,
                    "early_returns": sum(t.early for t in trials),
                    "polls_median": median([t.polls for t in trials]),
                    "polls_per_s": median([t.polls / t.latency for t in trials]),
                    "cpu_ms_per_s": median([t.cpu / t.latency * 1000 for t in trials]),
                }
            )
    return {
        "meta": meta,
        "server": rows_out,
        "lite": {k: {"median_ms": median(v) * 1000, "trials": len(v)} for k, v in lite.items()},
        "targets": targets(rows_out, lite),
    }


#: The targets, in one place: (name, mode, metric, bound, reference client or None).
#: With a reference, the bound is a ratio of flush_sync's metric to the reference's.
TARGETS: list[tuple[str, str, str, float, str | None]] = [
    ("overshoot one <= 30 ms", "one", "overshoot_median_ms", 30, None),
    ("overshoot eight <= 40 ms", "eight", "overshoot_median_ms", 40, None),
    ("polls/s one <= 25", "one", "polls_per_s", 25, None),
    ("polls/s eight <= 25", "eight", "polls_per_s", 25, None),
    ("nothing new <= 1.3x poll_2ms", "nothing", "latency_median_ms", 1.3, "poll_2ms"),
    ("nothing new <= 0.8x pymilvus", "nothing", "latency_median_ms", 0.8, "pymilvus"),
    ("eight <= 0.5x pymilvus", "eight", "latency_median_ms", 0.5, "pymilvus"),
]
LITE_TARGET = 1.15  # Milvus Lite insert + flush_sync, against pymilvus's flush


def targets(rows_out: list[dict[str, Any]], lite: dict[str, list[float]]) -> dict[str, bool]:
    def get(mode: str, client: str, key: str) -> float:
        for row in rows_out:
            if row["mode"] == mode and row["client"] == client and row[key] is not None:
                return float(row[key])
        return float("nan")

    checks = {
        name: get(mode, "flush_sync", metric)
        <= bound * (1.0 if reference is None else get(mode, reference, metric))
        for name, mode, metric, bound, reference in TARGETS
    }
    checks["no early returns"] = all(
        r["early_returns"] == 0 for r in rows_out if r["client"] == "flush_sync"
    )
    checks[f"lite <= {LITE_TARGET}x pymilvus"] = median(lite["flush_sync"]) <= LITE_TARGET * median(
        lite["pymilvus"]
    )
    return checks


def table(summary: dict[str, Any]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    lines = [
        "| mode | client | latency median (min-max) ms | overshoot median ms | early "
        "| GetFlushState median | polls/s | CPU ms/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["server"]:
        lines.append(
            f"| {r['mode']} | {r['client']} | {ms(r['latency_median_ms'])} "
            f"({ms(r['latency_min_ms'])}-{ms(r['latency_max_ms'])}) | "
            f"{ms(r['overshoot_median_ms'])} | {r['early_returns']} | {r['polls_median']:.0f} | "
            f"{r['polls_per_s']:.1f} | {r['cpu_ms_per_s']:.1f} |"
        )
    lite = summary["lite"]
    lines.append("")
    lines.append(
        f"Milvus Lite, insert + flush: flush_sync {lite['flush_sync']['median_ms']:.1f} ms, "
        f"pymilvus flush {lite['pymilvus']['median_ms']:.1f} ms (medians of "
        f"{lite['flush_sync']['trials']})"
    )
    lines.append("")
    lines += [f"- {'PASS' if ok else 'FAIL'} {name}" for name, ok in summary["targets"].items()]
    return "\n".join(lines)


def plot(results: Results, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    clients = [
        c for c in ("flush_sync", "poll_2ms", "pymilvus", "node_sdk") if results.of(c, "one")
    ]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, mode in zip(axes, ("one", "eight"), strict=True):
        data = [
            [t.overshoot * 1000 for t in results.of(c, mode) if t.overshoot is not None]
            for c in clients
        ]
        ax.boxplot(data, tick_labels=clients)
        ax.set_title(f"new rows, {'1 collection' if mode == 'one' else '8 collections'}")
        ax.set_ylabel("overshoot after the server is done (ms)")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=7)
    parser.add_argument("--rows", type=int, default=2000, help="rows per collection per trial")
    parser.add_argument("--no-node", action="store_true", help="skip the Node SDK peer")
    parser.add_argument(
        "--against", metavar="REV", help="also run flush_sync as it was at this git revision"
    )
    args = parser.parse_args()
    before = None if args.against is None else package_at(args.against)

    print("starting Milvus 2.3.5 standalone ...", flush=True)
    server = Standalone({})  # the tests' server: a temporary data dir, always stopped
    node = None
    try:
        address = f"127.0.0.1:{server.port}"
        node = None if args.no_node else start_node(address)
        clients = Clients(f"http://{address}", node, before)
        bench = ServerBench(f"http://{address}", address, clients, args.rows)
        results = bench.run(args.trials, ["one", "eight", "nothing"])
    finally:
        if node is not None:
            node.terminate()
        server.stop()
    print("Milvus Lite ...", flush=True)
    lite = lite_bench(args.trials, args.rows)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "python": platform.python_version(),
        "pymilvus": __import__("pymilvus").__version__,
        "server": "Milvus 2.3.5 standalone (milvus wheel)",
        "trials": args.trials,
        "rows_per_collection": args.rows,
    }
    summary = summarise(results, lite, meta)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(summary, indent=2))
    plot(results, RESULTS / "overshoot.png")
    print(table(summary))
    return 0 if all(summary["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
