"""kill -9 right after flush_sync on a Milvus Lite file: every row is still there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from pymilvus_flushsync import MilvusClient

from ..helpers import rows

ROWS = 3000

WRITER = textwrap.dedent(
    f"""
    import sys, time
    sys.path.insert(0, {os.path.dirname(os.path.dirname(__file__))!r})
    from pymilvus_flushsync import MilvusClient
    from tests.helpers import rows
    client = MilvusClient(sys.argv[1])
    client.create_collection("durable", dimension=8)
    for start in range(0, {ROWS}, 1000):
        client.insert("durable", rows(start, 1000))
    response = client.flush_sync("durable", timeout=60)
    print("FLUSHED", response.flushed, flush=True)
    time.sleep(600)  # killed long before
    """
)


def test_kill_9_right_after_flush_sync_loses_nothing(lite_uri: str) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, lite_uri], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "FLUSHED True"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    client = MilvusClient(lite_uri)
    try:
        assert client.has_collection("durable")
        client.load_collection("durable")
        result = client.query("durable", filter="", output_fields=["count(*)"])
        assert result[0]["count(*)"] == ROWS
        got = client.get("durable", ids=[0, ROWS - 1])
        assert sorted(r["id"] for r in got) == [0, ROWS - 1]
        assert got[0]["vector"] == __import__("pytest").approx(rows(0, 1)[0]["vector"], rel=1e-6)
    finally:
        client.close()
