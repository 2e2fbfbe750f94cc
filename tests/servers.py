"""Real Milvus 2.3.5 standalones for the tests (the ``milvus`` wheel), shared by every
process of one test run.

Only one server can run per machine (its embedded etcd's peer port is fixed). So one
process, pytest's own or pytest-xdist's controller, holds a ``Broker``: it owns the
run's one server and hands out *leases* on it over a Unix socket, whose path it puts
in ``$FLUSHSYNC_SERVERS`` for the workers. A lease names a config:

- a lease on the default config is shared: the tests on the default server use it
  side by side, each with collections of its own;
- a lease on any other config is exclusive (a rate limit, authorization, TLS, a
  ``kill -9``): the test owns the server until it returns the lease;
- a lease *alone* on the default config is shared only with other leases alone, with
  no restart: for a test that seals every collection of the server (a FlushAll:
  ``flush_all_sync``, the command line's ``--server``), which would upset the shared
  tests beside it that time their own flushes, but not another such test;
- an *exclusive* lease on the default config is shared with no other, with no restart:
  for a test that drops collections throughout, which would fail the FlushAlls beside it,
  or one that times a FlushAll, which the proxy runs one at a time.

To grant a lease on another config, the broker waits until every lease is returned,
then stops the server and starts one with that config. It prefers requests for the
running config, so the server is restarted only when no one asks for it any more; the
tests of a config of their own run last, on one worker (``tests/conftest.py``), so
each config starts once. A lease is returned when its socket closes, also when its
process dies. The broker stops its server when it closes, and at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

#: Where a test process finds the run's broker (its Unix socket).
BROKER_ENV = "FLUSHSYNC_SERVERS"
#: How long the broker keeps an unleased server for another lease on its config,
#: before it restarts it with a config another test waits for: test after test, a
#: worker asks again within milliseconds.
GRACE = 1.0
#: The kinds of lease on the default config (module docstring).
SHARED, ALONE, EXCLUSIVE = "shared", "alone", "exclusive"


#: The tests' servers seal and persist in about 1 s instead of 2.5 s: Milvus flushes a
#: sealed segment only once every allocation of rows to it has expired, 2 s after it
#: was made by default (docs/milvus.md, "How long a flush takes"). What a flush
#: guarantees does not depend on it; a test that needs the slow flush sets the default.
FAST_FLUSH = {"dataCoord.segment.assignmentExpiration": "200"}


#: The server config of two tests that need one of their own, shared so that they take
#: one start, in a row (their ``own_server`` marker names it: ``tests/conftest.py``):
#: ``test_faults``'s ``kill -9`` and ``test_stages``'s unbuilt indexes.
#:
#: - A killed server's etcd session must expire before the restarted one serves; 10 s
#:   instead of the default 30 s keeps the restart short (measured 8 s vs 54 s).
#: - Milvus's own 2 s allocations (not ``FAST_FLUSH``'s) keep the kill well inside the
#:   flush.
#: - Index builds never start: the index coordinator is bound to an index node at a
#:   loopback port where nothing listens (``bindIndexNodeMode``; port 9, discard).
CRASHABLE_UNBUILT = {
    "common.session.ttl": "10",
    "dataCoord.segment.assignmentExpiration": "2000",
    "indexCoord.bindIndexNodeMode.enable": "true",
    "indexCoord.bindIndexNodeMode.address": "127.0.0.1:9",
    "indexCoord.bindIndexNodeMode.nodeID": "9999",
}
#: The ``own_server`` marker's name for it.
CRASHABLE = "crashable"


def base_config() -> dict[str, str]:
    """milvus.yaml keys for every test server: ``FAST_FLUSH``, then any from
    ``$FLUSHSYNC_MILVUS_CONFIG``, e.g. ``"a.b=1,c.d=x"``."""
    pairs = os.environ.get("FLUSHSYNC_MILVUS_CONFIG", "")
    return FAST_FLUSH | dict(pair.split("=", 1) for pair in pairs.split(",") if pair)


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


class Standalone:
    """One Milvus standalone process on a temporary data directory (the benchmarks
    start theirs directly; the tests lease the broker's).

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


class Broker:
    """The run's one server, leased to the tests of every process (module docstring).

    Args:
        base_config: the default config's ``milvus.yaml`` keys; a lease's keys go on top.
    """

    def __init__(self, base_config: Mapping[str, str]) -> None:
        self._base = dict(base_config)
        self._changed = threading.Condition()
        self._server: Standalone | None = None
        self._holders = 0
        self._switching = False
        self._closed = False
        self._idle_since = time.monotonic()
        self._kind = SHARED  # of the leases held
        self._waiting: list[tuple[dict[str, str], str]] = []  # (config, kind), in order
        self._dir = tempfile.mkdtemp(prefix="flushsync-broker-")
        self.path = os.path.join(self._dir, "socket")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(64)
        atexit.register(self.close)
        threading.Thread(target=self._accept, name="milvus-broker", daemon=True).start()

    def close(self) -> None:
        """Stop taking leases and stop the server (those still leased fail)."""
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._changed:
            self._closed = True
            server, self._server = self._server, None
            self._changed.notify_all()
        if server is not None:
            server.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        """One lease: the request, the grant, then kill/restart orders until it closes."""
        with connection, connection.makefile("rw", encoding="utf-8") as stream:
            request = json.loads(stream.readline())
            wanted, kind = {**self._base, **request["config"]}, str(request["kind"])
            try:
                server = self._acquire(wanted, kind)
            except Exception as error:  # the test that asked raises it
                _send(stream, {"error": f"{type(error).__name__}: {error}"})
                return
            try:
                _send(stream, {"port": server.port})
                for line in stream:
                    order = json.loads(line)["order"]
                    (server.kill if order == "kill" else server.restart)()
                    _send(stream, {"done": True})
            except OSError:  # the test process went away: its lease is returned
                pass
            finally:
                self._release()

    def _acquire(self, wanted: dict[str, str], kind: str) -> Standalone:
        with self._changed:
            self._waiting.append((wanted, kind))
            try:
                while self._closed or not self._grantable(wanted, kind):
                    if self._closed:  # never a server after close (the unit tests' fake)
                        raise RuntimeError("the broker has closed")
                    self._changed.wait(GRACE / 4)
            finally:
                self._waiting.remove((wanted, kind))
            self._holders += 1
            self._kind = kind
            if self._server is not None and self._server.config == wanted:
                return self._server
            self._switching, old, self._server = True, self._server, None
        try:  # a restart (about 10 s): every other request waits for it
            if old is not None:
                old.stop()
            server = Standalone(wanted)
        except BaseException:
            with self._changed:
                self._switching, self._holders = False, self._holders - 1
                self._changed.notify_all()
            raise
        with self._changed:
            self._server, self._switching = server, False
            self._changed.notify_all()
        return server

    def _grantable(self, wanted: dict[str, str], kind: str) -> bool:
        """Whether a lease of ``kind`` may be granted now (module docstring; the config's
        server may have to be started first)."""
        running = self._server.config if self._server is not None else None
        if self._switching:
            return False
        if self._holders:  # only the default config is shared, by leases of one kind
            if EXCLUSIVE in (kind, self._kind):
                return False
            # Once another kind waits for this server, no more of this kind pass it.
            other = any(c == running and k != kind for c, k in self._waiting)
            return wanted == running == self._base and kind == self._kind and not other
        if wanted == running:  # the kind that asked first for it goes first
            return kind == next(k for c, k in self._waiting if c == running)
        # A restart: only once no one wants the running config, after a grace, in order.
        idle = time.monotonic() - self._idle_since
        return (
            not any(c == running for c, _ in self._waiting)
            and (running is None or idle >= GRACE)
            and self._waiting[0] == (wanted, kind)
        )

    def _release(self) -> None:
        with self._changed:
            self._holders -= 1
            if not self._holders:
                self._idle_since = time.monotonic()
            self._changed.notify_all()


def _send(stream: Any, message: dict[str, object]) -> None:
    stream.write(json.dumps(message) + "\n")
    stream.flush()


class Server:
    """A lease on the run's server (``Broker``): its address, and ``kill``/``restart``
    for a test that holds it alone. ``close`` returns it."""

    def __init__(self, broker: str, config: Mapping[str, str], kind: str = SHARED) -> None:
        self.config = dict(config)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.connect(broker)
        self._stream = self._socket.makefile("rw", encoding="utf-8")
        reply = self._ask({"config": self.config, "kind": kind})
        if "error" in reply:
            self.close()
            raise RuntimeError(f"the Milvus server did not start: {reply['error']}")
        self.port = int(reply["port"])

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """``kill -9`` the server process, as a crash would."""
        self._ask({"order": "kill"})

    def restart(self) -> None:
        """Start again on the same data directory and port (after ``kill``)."""
        self._ask({"order": "restart"})

    def close(self) -> None:
        self._stream.close()
        self._socket.close()

    def _ask(self, message: dict[str, object]) -> dict[str, Any]:
        _send(self._stream, message)
        line = self._stream.readline()
        if not line:
            raise RuntimeError("the Milvus broker went away")
        reply: dict[str, Any] = json.loads(line)
        return reply


class Servers:
    """Leases on the run's server, for fixtures: ``with servers.lease(config) as server``
    (``alone``: the default config's server, beside leases alone only; ``exclusive``:
    beside no other lease)."""

    def __init__(self, broker: str) -> None:
        self._broker = broker

    @contextlib.contextmanager
    def lease(
        self,
        config: Mapping[str, str] | None = None,
        *,
        alone: bool = False,
        exclusive: bool = False,
    ) -> Iterator[Server]:
        kind = EXCLUSIVE if exclusive else ALONE if alone else SHARED
        server = Server(self._broker, config or {}, kind)
        try:
            yield server
        finally:
            server.close()
