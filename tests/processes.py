"""Independent processes that flush one collection (the shared limit window).

Each worker is a process of its own with its own client (sync or asyncio); they share
nothing but a barrier that starts their calls at the same moment. They are forked from
a ``forkserver`` that has imported pymilvus and holds no connection, so sixteen start
in well under a second, not in sixteen imports' time.
``together``: every worker inserts, then all meet and flush (another's accepted Flush
seals everyone's rows); otherwise they meet first, then each inserts and flushes at
once (some rows come after the first accepted Flush: one more window). At its return,
each worker asks the server whether every row acknowledged before its call began, by
any client, is persisted: the checkpoint has passed a timestamp taken just before the
call. ``insert_elsewhere``: a process that only inserts, then exits.
Used by ``tests/integration/test_processes.py`` and ``benchmarks/bench_processes.py``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from .interposer import Interposer, RateLimitingInterposer
from .servers import Server, Servers

T = TypeVar("T")
ROWS = 200  # per worker
#: The modules a worker needs, imported once by the forkserver.
_PRELOAD = ["pymilvus_flushsync", "pymilvus.grpc_gen.milvus_pb2", "tests.helpers"]


def limited(rate: float) -> dict[str, str]:
    """Milvus 2.3.5's only Flush limit: ``rate`` Flushes per second, server-wide."""
    return {"quotaAndLimits.flushRate.enabled": "true", "quotaAndLimits.flushRate.max": f"{rate:g}"}


#: Milvus's own rate, 0.1/s (2.4.5+ applies it per collection): the benchmark's, and
#: ``test_faults.py``'s, which proves it on the real server.
LIMITED, WINDOW = limited(0.1), 10.0
#: The global rule's tests run it at 0.25/s: who pays a window and who shares one does
#: not depend on its length, and a 4 s window still stands out from the tests' servers'
#: 1 s flush (``tests/servers.FAST_FLUSH``).
GLOBAL_LIMITED, GLOBAL_WINDOW = limited(0.25), 4.0
#: The two Flush limits: Milvus 2.3.5's own global one (a server config of its own),
#: and 2.4.5+'s per-collection one (``tests/interposer.py``, on the default server).
GLOBAL, PER_COLLECTION = "2.3 global", "2.4.5 per collection"


def window(rule: str) -> float:
    """Seconds of one window under ``rule``, as ``behind`` sets it up."""
    return GLOBAL_WINDOW if rule == GLOBAL else WINDOW


def whole_window(interposer: Interposer) -> None:
    """Under the global rule, sleep until a whole window has passed since the server last
    accepted a Flush (through an interposer: the tests' only way), so that the next
    Flush is accepted. Not a synchronisation: a window is a length of time."""
    last = interposer.last_accepted_flush()
    if last is not None:
        time.sleep(max(0.0, last + GLOBAL_WINDOW + 0.3 - time.monotonic()))


@contextlib.contextmanager
def behind(
    servers: Servers, rule: str, *, alone: bool = False
) -> Iterator[tuple[Server, Interposer]]:
    """A lease on a server behind ``rule`` (``GLOBAL`` or ``PER_COLLECTION``), and a
    counting interposer in front of it (the per-collection rule's own). ``alone``: no
    other test on the default server meanwhile (``tests/servers.py``)."""
    with servers.lease(GLOBAL_LIMITED if rule == GLOBAL else None, alone=alone) as server:
        kind = Interposer if rule == GLOBAL else RateLimitingInterposer
        with kind(f"127.0.0.1:{server.port}") as interposer:
            yield server, interposer


@dataclass(frozen=True)
class Returned:
    """One worker's call: seconds from the barrier, and what the server said at return."""

    index: int
    seconds: float
    covered: bool
    checkpoint_passed: bool  # GetFlushState(flush_ts = a timestamp before the call), at return
    unflushed_rows: int  # rows in Growing or Sealed segments right at return


def _worker(  # noqa: PLR0917  # a Process target takes its arguments positionally
    direct: str, uri: str, name: str, index: int, together: bool, flavor: str, barrier: Any,
    out: Any,
) -> None:  # fmt: skip
    from pymilvus.grpc_gen import common_pb2, milvus_pb2

    from pymilvus_flushsync import MilvusClient

    from .helpers import async_flush, rows

    writer = MilvusClient(direct)  # uri: the limit's side
    flush = MilvusClient(uri).flush_sync if flavor == "sync" else async_flush(uri)
    data = rows(100_000 + index * ROWS, ROWS)
    if together:
        writer.insert(name, data)
    barrier.wait()
    started = time.monotonic()
    if not together:
        writer.insert(name, data)
    stub = writer._get_connection()._stub
    before = stub.AllocTimestamp(milvus_pb2.AllocTimestampRequest(), timeout=10).timestamp
    response = flush(name, timeout=120)
    seconds = time.monotonic() - started
    state = stub.GetFlushState(
        milvus_pb2.GetFlushStateRequest(flush_ts=before, collection_name=name), timeout=10
    )
    infos = stub.GetPersistentSegmentInfo(
        milvus_pb2.GetPersistentSegmentInfoRequest(collectionName=name), timeout=10
    ).infos
    open_states = (common_pb2.SegmentState.Growing, common_pb2.SegmentState.Sealed)
    unflushed = sum(i.num_rows for i in infos if i.state in open_states)
    covered = response.collections[name].covered
    out.put(Returned(index, seconds, covered, bool(state.flushed), unflushed))
    writer.close()


def _insert(uri: str, name: str, start: int, count: int) -> None:
    from pymilvus import MilvusClient

    from .helpers import rows

    client = MilvusClient(uri)
    client.insert(name, rows(start, count))
    client.close()


def _context() -> Any:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return context


def ended(worker: Any, within: float = 60) -> None:
    """Wait for ``worker`` (a process) to exit, ``within`` seconds at most; then kill it."""
    worker.join(timeout=within)
    if worker.exitcode is None:
        worker.kill()


def returned_elsewhere(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in another process (forked from the forkserver, so with
    clients of its own): what it returned, within two minutes."""
    context = _context()
    out = context.Queue()
    worker = context.Process(target=_return_into, args=(function, args, out))
    worker.start()
    try:
        returned: T = out.get(timeout=120)
    finally:
        ended(worker)
    return returned


def _return_into(function: Callable[..., Any], args: tuple[Any, ...], out: Any) -> None:
    out.put(function(*args))


def insert_elsewhere(uri: str, name: str, start: int, count: int) -> None:
    """Insert ``count`` rows into ``name`` from another process, with its own plain
    pymilvus client, and wait until that process has exited."""
    worker = _context().Process(target=_insert, args=(uri, name, start, count))
    worker.start()
    worker.join(timeout=120)
    if worker.exitcode != 0:
        worker.kill()
        raise RuntimeError(f"the inserting process ended with {worker.exitcode}")


def run(
    direct: str, uri: str, name: str, processes: int, *, together: bool, flavor: str = "sync"
) -> list[Returned]:
    """Start ``processes`` workers on collection ``name``, each inserting through the
    server's ``direct`` URI and flushing through ``uri`` (``flavor``: with the sync or
    the asyncio client); what each returned, in order."""
    context = _context()
    barrier, out = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_worker, args=(direct, uri, name, i, together, flavor, barrier, out))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        results = [out.get(timeout=300) for _ in workers]
    finally:
        for worker in workers:
            ended(worker, within=30)
    return sorted(results, key=lambda r: r.index)
