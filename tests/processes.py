"""Independent processes that flush one collection (the shared limit window).

Each worker is its own interpreter (``spawn``) with its own client; they share
nothing but a barrier that starts their calls at the same moment. ``together``:
every worker inserts, then all meet and flush (another's accepted Flush seals
everyone's rows); otherwise they meet first, then each inserts and flushes at
once (some rows come after the first accepted Flush: one more window).
Used by ``tests/integration/test_processes.py`` and ``benchmarks/bench_processes.py``.
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass
from typing import Any

ROWS = 200  # per worker
#: Milvus 2.3.5's only Flush limit: one Flush per ``WINDOW`` s, server-wide.
LIMITED = {"quotaAndLimits.flushRate.enabled": "true", "quotaAndLimits.flushRate.max": "0.1"}
WINDOW = 10.0


@dataclass(frozen=True)
class Returned:
    """One worker's call: seconds from the barrier, and what the server said at return."""

    index: int
    seconds: float
    covered: bool
    checkpoint_passed: bool  # GetFlushState(flush_ts = its last write) right at return
    unflushed_rows: int  # rows in Growing or Sealed segments right at return


def _worker(  # noqa: PLR0917  # a Process target takes its arguments positionally
    direct: str, uri: str, name: str, index: int, together: bool, barrier: Any, out: Any
) -> None:
    from pymilvus.grpc_gen import common_pb2, milvus_pb2

    from pymilvus_flushsync import MilvusClient
    from pymilvus_flushsync._compat import write_timestamps

    from .helpers import rows

    writer, client = MilvusClient(direct), MilvusClient(uri)  # uri: the limit's side
    data = rows(100_000 + index * ROWS, ROWS)
    if together:
        writer.insert(name, data)
    barrier.wait()
    started = time.monotonic()
    if not together:
        writer.insert(name, data)
    response = client.flush_sync(name, timeout=120)
    seconds = time.monotonic() - started
    stub = client._get_connection()._stub
    written = write_timestamps((name,), "").get(name, 0)
    state = stub.GetFlushState(
        milvus_pb2.GetFlushStateRequest(flush_ts=written, collection_name=name), timeout=10
    )
    infos = stub.GetPersistentSegmentInfo(
        milvus_pb2.GetPersistentSegmentInfoRequest(collectionName=name), timeout=10
    ).infos
    open_states = (common_pb2.SegmentState.Growing, common_pb2.SegmentState.Sealed)
    unflushed = sum(i.num_rows for i in infos if i.state in open_states)
    covered = response.collections[name].covered
    out.put(Returned(index, seconds, covered, bool(state.flushed and written), unflushed))
    client.close()
    writer.close()


def run(direct: str, uri: str, name: str, processes: int, *, together: bool) -> list[Returned]:
    """Start ``processes`` workers on collection ``name``, each inserting through the
    server's ``direct`` URI and flushing through ``uri``; what each returned, in order."""
    context = multiprocessing.get_context("spawn")
    barrier, out = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_worker, args=(direct, uri, name, i, together, barrier, out))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        results = [out.get(timeout=300) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    return sorted(results, key=lambda r: r.index)
