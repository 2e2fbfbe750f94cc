"""Independent processes behind Milvus's Flush limit, and the ticket path's overhead, on
one real Milvus 2.3.5 started here.

    python benchmarks/bench_processes.py [--trials 5] [--modes processes,ticket]

* ``processes``: 1, 6 and 16 spawned processes (``tests/processes.py``: each its own
  client, 200 rows, inserted before a shared barrier, then ``flush_sync`` at once)
  behind the 2.3 global ``flushRate.max`` 0.1 and behind ``tests/interposer.py``'s
  2.4.5+ per-collection rule: the slowest return, the Flush RPCs that reached the
  server (through a counting interposer; under the 2.3 rule the server refuses the
  extra ones itself, under 2.4.5's the interposer does, counted apart), GetFlushState
  per second in total.
* ``ticket``: ``flush_sync`` against ``start_flush`` + ``wait_flushed`` on fresh
  collections of 2000 rows, alternating, on the default server: the ratio of medians
  (target <= 1.05).

Writes a table to stdout and JSON to benchmarks/results/processes.json; exits 1 when a
target of ``TARGETS`` is missed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the test helpers: workers, the server, rows

from pymilvus_flushsync import MilvusClient  # noqa: E402
from tests.helpers import Backend  # noqa: E402
from tests.interposer import Interposer, RateLimitingInterposer  # noqa: E402
from tests.processes import LIMITED, WINDOW, run  # noqa: E402
from tests.servers import Standalone  # noqa: E402

RESULTS = HERE / "results"
#: (name, measured key, bound): each measured value must be at most its bound.
TARGETS: list[tuple[str, str, float]] = [
    ("6 processes, 2.3 rule: slowest <= 1.5 x 1 process + 1 s", "p6_2.3_excess", 0.0),
    ("16 processes, 2.3 rule: slowest <= 1.5 x 1 process + 1 s", "p16_2.3_excess", 0.0),
    ("6 processes, 2.4.5 rule: slowest <= 1.5 x 1 process + 1 s", "p6_2.4.5_excess", 0.0),
    ("16 processes, 2.4.5 rule: slowest <= 1.5 x 1 process + 1 s", "p16_2.4.5_excess", 0.0),
    ("ticket path / flush_sync, median ratio <= 1.05", "ticket_ratio", 1.05),
]


def _processes(server: Standalone, rule: str, trials: int) -> dict[str, Any]:
    """Per process count: the slowest return (median of trials), Flush RPCs and
    GetFlushState per second that reached the server."""
    measured: dict[str, Any] = {}
    for count in (1, 6, 16):
        slowest, flushes, refused, polls_per_s = [], [], [], []
        for _ in range(trials):
            interposer: Interposer = (
                RateLimitingInterposer(f"127.0.0.1:{server.port}")
                if rule == "2.4.5"
                else Interposer(f"127.0.0.1:{server.port}")
            )
            backend = Backend("server", server.uri, MilvusClient(server.uri))
            name = backend.collection()
            backend.client.close()
            time.sleep(WINDOW + 0.5)  # a whole window for this trial
            returned = run(server.uri, interposer.uri, name, count, together=True)
            took = max(r.seconds for r in returned)
            slowest.append(took)
            flushes.append(interposer.calls["Flush"])
            # 2.4.5's rule refuses in the interposer: those never reach the server
            refused.append(len(getattr(interposer, "rejected", ())))
            polls_per_s.append(interposer.calls["GetFlushState"] / took)
            interposer.close()
        measured[f"p{count}"] = {
            "slowest_s": round(statistics.median(slowest), 3),
            "flush_rpcs": statistics.median(flushes),
            "flush_rpcs_refused_in_interposer": statistics.median(refused),
            "get_flush_state_per_s": round(statistics.median(polls_per_s), 1),
        }
    lone = measured["p1"]["slowest_s"]
    for count in (6, 16):
        excess = measured[f"p{count}"]["slowest_s"] - (1.5 * lone + 1.0)
        measured[f"p{count}_{rule}_excess"] = round(max(excess, 0.0), 3)
    return measured


def _ticket(server: Standalone, trials: int) -> dict[str, Any]:
    backend = Backend("server", server.uri, MilvusClient(server.uri))
    client = MilvusClient(server.uri)
    plain, split = [], []
    for trial in range(2 * trials):
        name = backend.collection(2000)
        started = time.monotonic()
        if trial % 2:
            assert client.wait_flushed(client.start_flush(name, timeout=60), timeout=60).flushed
            split.append(time.monotonic() - started)
        else:
            assert client.flush_sync(name, timeout=60).flushed
            plain.append(time.monotonic() - started)
    client.close()
    backend.client.close()
    ratio = statistics.median(split) / statistics.median(plain)
    return {
        "flush_sync_s": round(statistics.median(plain), 3),
        "ticket_s": round(statistics.median(split), 3),
        "ticket_ratio": round(ratio, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--modes", default="processes,ticket")
    args = parser.parse_args()
    modes = set(args.modes.split(","))
    results: dict[str, Any] = {}
    if "ticket" in modes:
        server = Standalone({})
        try:
            results["ticket"] = _ticket(server, args.trials)
            if "processes" in modes:
                results["2.4.5"] = _processes(server, "2.4.5", args.trials)
        finally:
            server.stop()
    if "processes" in modes:
        server = Standalone(LIMITED)
        try:
            results["2.3"] = _processes(server, "2.3", args.trials)
        finally:
            server.stop()
    flat = {k: v for part in results.values() for k, v in part.items() if not isinstance(v, dict)}
    print(json.dumps(results, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "processes.json").write_text(json.dumps(results, indent=2))
    missed = [name for name, key, bound in TARGETS if key in flat and flat[key] > bound]
    for name, key, bound in TARGETS:
        if key in flat:
            print(f"{'MISSED' if flat[key] > bound else 'ok':6} {name}: {flat[key]} (<= {bound})")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
