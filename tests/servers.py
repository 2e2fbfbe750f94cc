"""Real Milvus 2.3.5 standalones for the tests (the ``milvus`` wheel).

Only one can run per machine (its embedded etcd's peer port is fixed), so a
``Servers`` pool holds at most one: asking for a server with another config
stops the running one first. Every server is stopped at exit, even when pytest
is interrupted.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Mapping
from typing import Any


def _bind_reusing_address(port: int) -> socket.socket | None:
    """The wheel's port probe, with SO_REUSEADDR: connections of a killed server
    in TIME_WAIT must not push its restart onto another port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError:
        sock.close()
        return None
    return sock


class Server:
    """One Milvus standalone on a temporary data directory.

    Args:
        config: extra ``milvus.yaml`` keys (``"quotaAndLimits.flushRate.max": "0.1"``).
    """

    def __init__(self, config: Mapping[str, str]) -> None:
        from milvus import MilvusServer

        self.config = dict(config)
        self.base_dir = tempfile.mkdtemp(prefix="flushsync-milvus-")
        self.server: Any = MilvusServer()
        self.server.config.try_bind_port = _bind_reusing_address
        self.server.set_base_dir(self.base_dir)
        for key, value in self.config.items():
            self.server.config.set(key, value)
        atexit.register(self.stop)  # also when pytest is interrupted
        self.server.start()
        self.port = int(self.server.listen_port)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """``kill -9`` the server process, as a crash would, and reap it."""
        process = self.server.server_proc
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        self.server.stop()  # closes the log files; the process is already gone

    def restart(self) -> None:
        """Start again on the same data directory and port (after ``kill``)."""
        self.server.listen_port = self.port
        self.server.start()
        if int(self.server.listen_port) != self.port:
            raise RuntimeError(f"restarted on port {self.server.listen_port}, not {self.port}")

    def stop(self) -> None:
        if self.server.running:
            self.server.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)


class Servers:
    """At most one running ``Server``; ``get`` (re)starts one with the config asked for."""

    def __init__(self, base_config: Mapping[str, str]) -> None:
        self._base = dict(base_config)
        self._current: Server | None = None

    def get(self, config: Mapping[str, str] | None = None) -> Server:
        wanted = {**self._base, **(config or {})}
        if self._current is not None and self._current.config != wanted:
            self.stop()
        if self._current is None:
            self._current = Server(wanted)
        return self._current

    def stop(self) -> None:
        if self._current is not None:
            self._current.stop()
            self._current = None
