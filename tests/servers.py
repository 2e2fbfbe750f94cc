"""Real Milvus 2.3.5 standalones for the tests (the ``milvus`` wheel), shared by every
process of one test run.

Each ``Standalone`` runs on ports of its own, its embedded etcd's included: left to
itself, that etcd listens on the fixed ports 2379 and 2380, so that one server at most
could run per machine (and none beside anyone else's). So servers run side by side
(docs/milvus.md, "Several 2.3.5 standalones on one machine").

One process, pytest's own or pytest-xdist's controller, holds a ``Broker``: it owns the
run's servers and hands out *leases* on them over a Unix socket, whose path it puts in
``$FLUSHSYNC_SERVERS`` for the workers. It runs two servers: one on the default config,
for most tests, and one for the configs of their own, one config at a time. A lease
names a config:

- a lease on the default config is shared: the tests on the default server use it
  side by side, each with collections of its own;
- a lease on any other config is exclusive (a rate limit, authorization, TLS, a
  ``kill -9``): the test owns that server until it returns the lease;
- a lease *alone* on the default config is shared only with other leases alone: for a
  test that seals every collection of the server (a FlushAll: ``flush_all_sync``, the
  command line's ``--server``), which would upset the shared tests beside it that time
  their own flushes, but not another such test;
- an *exclusive* lease on the default config is shared with no other: for a test that
  drops collections throughout, which would fail the FlushAlls beside it, or one that
  times a FlushAll, which the proxy runs one at a time.

To grant a lease on another config than the one its server runs, the broker waits until
every lease on that server is returned, then stops it and starts one with that config.
It prefers requests for the running config, so a server is restarted only when no one
asks for it any more; the tests of a config of their own run on one worker, each config's
in a row (``tests/conftest.py``), so each config starts once, while the other workers
use the default server. A lease is returned when its socket closes, also when its
process dies. The broker stops its servers when it closes, and at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
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


#: The environment variable through which Milvus reads ``etcd.config.path``: the
#: wheel's config template has no line for that key.
ETCD_CONFIG = "ETCD_CONFIG_PATH"
#: Starts of one server before its config is given up on (``Standalone._bound_alone``).
STARTS = 5
#: What the proxy logs once it serves, and how long after the wheel's start it may take.
PROXY_HEALTHY = '["update state code"] [role=proxy] [State=Healthy]'
SERVING_WITHIN = 60.0
#: One start at a time in a process: the wheel picks its ports by probing from the same
#: defaults, and the etcd config reaches the server through this process's environment.
_starting = threading.Lock()


#: Linux's ephemeral ports (``ip_local_port_range``'s default): where an outgoing
#: connection's local port, or a bind to port 0, can take a port between a probe and the
#: server's bind. A server whose port was taken so dies as it starts (measured: its
#: embedded etcd's port held by a connected socket, SIGABRT in ``InitEtcdServer`` 5 s
#: after the start; CI stop 35 waited out the wheel's 180 s on it). So the ports the
#: wheel or etcd would take from that range come from below it (``_quiet_port``).
EPHEMERAL = range(32_768, 61_000)
QUIET = range(24_000, EPHEMERAL.start)
#: The quiet ports this process gave out: each once, as a server may not bind them yet.
_given: set[int] = set()


def _quiet_port() -> int:
    """A free port outside the ephemeral range (``EPHEMERAL``), from a random place in
    ``QUIET`` (another process picking at the same moment starts elsewhere)."""
    start = random.randrange(len(QUIET))
    for port in itertools.chain(QUIET[start:], QUIET[:start]):
        sock = None if port in _given else _bind_reusing_address(port)
        if sock is not None:
            sock.close()
            _given.add(port)
            return port
    raise RuntimeError(f"no free port in {QUIET}")


def _embedded_etcd(base_dir: str) -> str:
    """A config for the server's embedded etcd, on quiet ports (module docstring); its
    path. A restart on the same data directory finds it again."""
    client, peer = (f"http://127.0.0.1:{_quiet_port()}" for _ in range(2))
    path = os.path.join(base_dir, "embedEtcd.yaml")
    with open(path, "w", encoding="utf-8") as file:
        file.write(
            f"listen-client-urls: {client}\nadvertise-client-urls: {client}\n"
            f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
            f"initial-cluster: default={peer}\n"
        )
    return path


class Standalone:
    """One Milvus standalone process on a temporary data directory and ports of its own
    (the benchmarks start theirs directly; the tests lease the broker's).

    Args:
        config: extra ``milvus.yaml`` keys (``"quotaAndLimits.flushRate.max": "0.1"``).
    """

    def __init__(self, config: Mapping[str, str]) -> None:
        from milvus import MilvusServer

        self.config = dict(config)
        self.base_dir = tempfile.mkdtemp(prefix="flushsync-milvus-")
        self.server: Any = MilvusServer(wait_for_started=False)  # waited on in _serving
        self.server.config.try_bind_port = _bind_reusing_address
        for key, value in self.config.items():
            self.server.config.set(key, value)
        self._etcd = self._placed()
        atexit.register(self.stop)  # also when pytest is interrupted
        self._start(fresh=True)
        self.port = int(self.server.listen_port)

    def _placed(self) -> str:
        """An empty data directory, the etcd config's path in it, and a quiet port for the
        root coordinator (the wheel's default, 53100, is an ephemeral port)."""
        shutil.rmtree(self.base_dir, ignore_errors=True)
        self.server.set_base_dir(self.base_dir)  # makes it again, with its folders
        self.server.config.set("root_coord_port", _quiet_port())
        return _embedded_etcd(self.base_dir)

    def _start(self, fresh: bool) -> None:
        """Start, until the server serves as its config says (``_serving``,
        ``_bound_alone``); after a start that failed, a fresh server starts on new ports
        (a restart keeps its data and ports)."""
        failed: str | None = None
        for _ in range(STARTS):
            with _starting:  # until it serves: the next start's probes must see its ports
                os.environ[ETCD_CONFIG] = self._etcd
                try:
                    self.server.start()
                finally:
                    del os.environ[ETCD_CONFIG]
                failed = self._serving()
            if failed is None and self._bound_alone():
                return
            self.server.stop()  # failed, or started as its config does not say: again
            if failed is not None and fresh:
                self._etcd = self._placed()
        raise RuntimeError(f"no start of {STARTS} served as configured; the last: {failed}")

    def _serving(self) -> str | None:
        """Wait until the proxy says it serves; else why not. The wheel's own wait asks
        ``/healthz``, which can say OK before the proxy is Healthy (a client then got
        "Milvus Proxy is not ready yet": CI run 21), and goes on for 180 s after the
        server exited (CI stop 35)."""
        log = Path(self.base_dir, "logs", "milvus-stdout.log")
        until = time.monotonic() + SERVING_WITHIN
        while PROXY_HEALTHY not in log.read_text(errors="replace"):
            process = self.server.server_proc
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                return f"the server exited ({code}): {self._last_words()}"
            if time.monotonic() > until:
                return f"the proxy did not serve within {SERVING_WITHIN} s: {self._last_words()}"
            time.sleep(0.05)
        try:
            self.server.wait_started(timeout=SERVING_WITHIN * 1000)  # /healthz, + 1 s
        except (TimeoutError, RuntimeError) as error:
            return f"{error}: {self._last_words()}"
        return None

    def _last_words(self, size: int = 1500) -> str:
        """The end of the server's logs, for the error of a start that failed."""
        logs = Path(self.base_dir, "logs")
        return " | ".join(
            f"{name}: ...{(logs / name).read_text(errors='replace')[-size:]}"
            for name in ("milvus-stdout.log", "milvus-stderr.log")
            if (logs / name).exists()
        )

    def _bound_alone(self) -> bool:
        """Whether a server bound to one index node (``CRASHABLE_UNBUILT``) added no
        other. 2.3.5's data coordinator also adds the index nodes it finds registered
        as it starts, in a race: the embedded one, which builds (measured: 1 start in 3)."""
        if self.config.get("indexCoord.bindIndexNodeMode.enable") != "true":
            return True
        bound = self.config["indexCoord.bindIndexNodeMode.nodeID"]
        log = Path(self.base_dir, "logs", "milvus-stdout.log").read_text(errors="replace")
        added = set(re.findall(r'"add IndexNode"\] \[nodeID=(\d+)\]', log))
        return added == {bound}

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
        self._start(fresh=False)
        if int(self.server.listen_port) != self.port:
            raise RuntimeError(f"restarted on port {self.server.listen_port}, not {self.port}")

    def stop(self) -> None:
        if self.server.running:
            self.server.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)


class _Seat:
    """One of the broker's servers, and its leases."""

    def __init__(self) -> None:
        self.server: Standalone | None = None
        self.holders = 0
        self.switching = False
        self.idle_since = time.monotonic()
        self.kind = SHARED  # of the leases held
        self.waiting: list[tuple[dict[str, str], str]] = []  # (config, kind), in order

    def grantable(self, wanted: dict[str, str], kind: str, default: dict[str, str]) -> bool:
        """Whether a lease of ``kind`` may be granted now (module docstring; the config's
        server may have to be started first)."""
        running = self.server.config if self.server is not None else None
        if self.switching:
            return False
        if self.holders:  # only the default config is shared, by leases of one kind
            if EXCLUSIVE in (kind, self.kind):
                return False
            # Once another kind waits for this server, no more of this kind pass it.
            other = any(c == running and k != kind for c, k in self.waiting)
            return wanted == running == default and kind == self.kind and not other
        if wanted == running:  # the kind that asked first for it goes first
            return kind == next(k for c, k in self.waiting if c == running)
        # A restart: only once no one wants the running config, after a grace, in order.
        idle = time.monotonic() - self.idle_since
        return (
            not any(c == running for c, _ in self.waiting)
            and (running is None or idle >= GRACE)
            and self.waiting[0] == (wanted, kind)
        )


class Broker:
    """The run's servers, leased to the tests of every process (module docstring).

    Args:
        base_config: the default config's ``milvus.yaml`` keys; a lease's keys go on top.
    """

    def __init__(self, base_config: Mapping[str, str]) -> None:
        self._base = dict(base_config)
        self._changed = threading.Condition()
        self._default, self._own = _Seat(), _Seat()  # the default config's; the others'
        self._closed = False
        self._dir = tempfile.mkdtemp(prefix="flushsync-broker-")
        self.path = os.path.join(self._dir, "socket")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(64)
        atexit.register(self.close)
        threading.Thread(target=self._accept, name="milvus-broker", daemon=True).start()

    def close(self) -> None:
        """Stop taking leases and stop the servers (those still leased fail)."""
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._changed:
            self._closed = True
            running = [seat.server for seat in (self._default, self._own) if seat.server]
            self._default.server = self._own.server = None
            self._changed.notify_all()
        for server in running:
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
            seat = self._default if wanted == self._base else self._own
            try:
                server = self._acquire(seat, wanted, kind)
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
                self._release(seat)

    def _acquire(self, seat: _Seat, wanted: dict[str, str], kind: str) -> Standalone:
        with self._changed:
            seat.waiting.append((wanted, kind))
            try:
                while self._closed or not seat.grantable(wanted, kind, self._base):
                    if self._closed:  # never a server after close (the unit tests' fake)
                        raise RuntimeError("the broker has closed")
                    self._changed.wait(GRACE / 4)
            finally:
                seat.waiting.remove((wanted, kind))
            seat.holders += 1
            seat.kind = kind
            if seat.server is not None and seat.server.config == wanted:
                return seat.server
            seat.switching, old, seat.server = True, seat.server, None
        try:  # a restart (about 10 s): every other request for this seat waits for it
            if old is not None:
                old.stop()
            server = Standalone(wanted)
        except BaseException:
            with self._changed:
                seat.switching, seat.holders = False, seat.holders - 1
                self._changed.notify_all()
            raise
        with self._changed:
            seat.server, seat.switching = server, False
            self._changed.notify_all()
        return server

    def _release(self, seat: _Seat) -> None:
        with self._changed:
            seat.holders -= 1
            if not seat.holders:
                seat.idle_since = time.monotonic()
            self._changed.notify_all()


def _send(stream: Any, message: dict[str, object]) -> None:
    stream.write(json.dumps(message) + "\n")
    stream.flush()


class Server:
    """A lease on one of the run's servers (``Broker``): its address, and ``kill``/``restart``
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
    """Leases on the run's servers, for fixtures: ``with servers.lease(config) as server``
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
