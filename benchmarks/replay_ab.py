"""Replay this package's machine and the one at ``--against REV`` against one simulated
periodic server on a fake clock: every decision (RPC, names, sleep to the nanosecond,
polls) must be the same.

    python benchmarks/replay_ab.py --against REV [--seeds 40] [--calls 80]

Each seed is a server (a flip phase on a 200 ms tick, flips that land a tick after
some work, 4 ms of jitter) and a sequence of calls of 1 or 8 collections, each
machine with its own tick model. Exits 1 if any trace differs.
"""

from __future__ import annotations

import argparse
import importlib
import random
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from bench_flush import package_at  # noqa: E402

from pymilvus_flushsync import FlushPolicy  # noqa: E402
from tests.fakes import flush_reply, state_reply  # noqa: E402

PERIOD = 0.2


def trace(core: Any, ticks: Any, seed: int, calls: int) -> list[tuple[Any, ...]]:
    """Every decision of ``calls`` calls of ``core``'s machine on the seed's server."""
    rng = random.Random(seed)
    now = [1000.0]
    model = ticks.TickModel(PERIOD)
    phase = rng.uniform(0, PERIOD)
    out: list[tuple[Any, ...]] = []
    for _ in range(calls):
        names = tuple(f"c{i}" for i in range(rng.choice([1, 1, 8])))
        machine = core.FlushMachine(
            names,
            "",
            30.0,
            FlushPolicy(),
            clock=lambda: now[0],
            ticks=model,
            rng=random.Random(seed),
        )
        start = now[0]
        after_work = start + rng.uniform(0.0, 0.6)
        done_at = phase + (int((after_work - phase) // PERIOD) + 1) * PERIOD + rng.gauss(0, 0.004)
        while not isinstance(action := machine.next_action(), core.Done):
            if isinstance(action, core.Sleep):
                out.append(("sleep", round(action.seconds, 9)))
                now[0] += action.seconds
                continue
            out.append(
                (action.method, [getattr(r, "collection_name", "") for r in action.requests])
            )
            sent, now[0] = now[0], now[0] + 0.001
            if action.method == "Flush":
                names_sent = action.request.collection_names
                machine.on_reply(flush_reply({n: [i] for i, n in enumerate(names_sent)}))
            else:
                machine.on_reply([state_reply(sent >= done_at) for _ in action.requests])
        out.append(("done", round(now[0] - start, 9), action.response.polls))
        now[0] += rng.uniform(0.5, 3.0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", metavar="REV", required=True)
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=80)
    args = parser.parse_args()
    package_at(args.against)
    old, new = (
        (importlib.import_module(f"{package}._core"), importlib.import_module(f"{package}._ticks"))
        for package in ("pymilvus_flushsync_before", "pymilvus_flushsync")
    )
    differ = [
        seed
        for seed in range(args.seeds)
        if trace(*old, seed, args.calls) != trace(*new, seed, args.calls)
    ]
    print(f"{args.seeds - len(differ)}/{args.seeds} seeds x {args.calls} calls: identical traces")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
