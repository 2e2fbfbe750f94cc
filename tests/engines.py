"""The recipes of docs/engines.md, as ``tests/integration/test_engines.py`` runs them
against the real server: workers insert, one place seals, every worker waits.

Workers insert through ``direct`` (the server) and seal and wait through ``uri`` (a
counting interposer in front of it), so the test sees every Flush the job sent.
"""

from __future__ import annotations

import json
import sys

from pymilvus_flushsync import FlushTicket, MilvusClient

from .helpers import rows

ROWS = 300  # per worker


def insert(direct: str, name: str, part: int) -> int:
    """A worker's share: ``ROWS`` rows of its own, with a client of its own."""
    client = MilvusClient(direct)
    client.insert(name, rows(part * ROWS, ROWS))
    client.close()
    return ROWS


def seal(uri: str, name: str) -> FlushTicket:
    """The one place that seals: one Flush for the whole job."""
    client = MilvusClient(uri)
    try:
        return client.start_flush(name, timeout=60)
    finally:
        client.close()


def wait(uri: str, ticket: FlushTicket) -> bool:
    """Any worker, on any host of the same server: wait on the job's one Flush."""
    client = MilvusClient(uri)
    try:
        return client.wait_flushed(ticket, timeout=120).flushed
    finally:
        client.close()


def mpi_job(direct: str, uri: str, name: str) -> None:
    """``mpiexec -n N python -m tests.engines DIRECT URI NAME``: rank 0 seals, ``bcast``
    the ticket's JSON, every rank waits; rank 0 prints what each rank saw, as JSON."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    inserted = insert(direct, name, comm.rank)
    comm.Barrier()  # every rank has inserted
    text = seal(uri, name).to_json() if comm.rank == 0 else None
    ticket = FlushTicket.from_json(comm.bcast(text, root=0))
    seen = comm.gather((inserted, wait(uri, ticket)), root=0)
    if comm.rank == 0:
        print(json.dumps({"ranks": comm.size, "seen": seen}), flush=True)


if __name__ == "__main__":
    mpi_job(*sys.argv[1:4])
