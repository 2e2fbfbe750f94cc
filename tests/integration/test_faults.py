"""Fault injection on real Milvus 2.3.5 servers: rate limits, kill -9 and restart,
denied users. Each scenario needs a server config of its own, so these tests run
in turn, after those on the default server (``tests/conftest.py``); a hung server (the stalled
proxy) and many threads on one client are in ``test_flush_sync.py``.

Each test records its measured outcome with ``measure``: pytest's terminal summary
lists them under "measured".
"""

from __future__ import annotations

import asyncio
import functools
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from pymilvus.exceptions import MilvusException, MilvusUnavailableException
from pymilvus.grpc_gen import milvus_pb2

from pymilvus_flushsync import AsyncMilvusClient, FlushTimeoutError, MilvusClient
from pymilvus_flushsync._compat import async_handler

from ..helpers import TOLERANCE, Backend, Measure, async_flush, serving, unique
from ..servers import CRASHABLE, CRASHABLE_UNBUILT, Server, Servers
from .test_cli import CLI, QUIET

pytestmark = [pytest.mark.server, pytest.mark.faults, pytest.mark.own_server]

# Milvus 2.4.5+ limits Flush to 0.1/s per collection by default; 2.3.5 can limit
# it too, globally: a second Flush within 10 s answers status 8.
RATE_LIMITED = {
    "quotaAndLimits.flushRate.enabled": "true",
    "quotaAndLimits.flushRate.max": "0.1",
}
AUTHORIZATION = {"common.security.authorizationEnabled": "true"}
ROOT = "root:Milvus"

# Every deadline here gets the README's TOLERANCE (0.25 s), also under a rate limit,
# where the issue allows 0.3 s.


class _Retries(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "; next try in " in message:
            self.messages.append(message)


@pytest.fixture
def retries() -> Iterator[list[str]]:
    """The INFO retry messages ``flush_sync`` logs during the test, as they come."""
    logger = logging.getLogger("pymilvus_flushsync")
    handler, level = _Retries(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


# -- rate limited -------------------------------------------------------------------


@pytest.fixture
def limited(milvus_servers: Servers) -> Iterator[Backend]:
    with milvus_servers.lease(RATE_LIMITED) as server:
        yield from serving(MilvusClient(server.uri), server.uri)


def spend_the_flush_token(backend: Backend) -> None:
    """Flush once (waiting out a limit left by an earlier test): the next Flush
    within 10 s is then rate limited."""
    assert backend.client.flush_sync(backend.collection(10), timeout=30).flushed


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_rate_limited_until_the_deadline_times_out_with_the_limit_as_cause(
    limited: Backend, flavor: str, measure: Measure
) -> None:
    spend_the_flush_token(limited)
    name = limited.collection(100)
    flush = limited.client.flush_sync if flavor == "sync" else async_flush(limited.uri)
    with pytest.raises(FlushTimeoutError) as info:
        flush(name, timeout=2.0)
    elapsed = info.value.response.elapsed
    measure("elapsed_s", round(elapsed, 3))
    assert 2.0 <= elapsed <= 2.0 + TOLERANCE
    cause = info.value.__cause__
    assert isinstance(cause, MilvusException)
    assert cause.code == 8 and "rate limit" in cause.message
    assert info.value.pending == (name,)


def test_rate_limited_then_flushed_within_the_deadline(
    limited: Backend, retries: list[str], measure: Measure
) -> None:
    spend_the_flush_token(limited)
    name = limited.collection(2000)
    started = time.monotonic()
    response = limited.client.flush_sync(name, timeout=30)
    measure("elapsed_s", round(time.monotonic() - started, 3))
    assert response.flushed
    assert limited.persisted_rows(name) == (2000, 0)
    measure("retries", len(retries))
    assert retries and all("code=8" in message for message in retries)


# -- denied ---------------------------------------------------------------------------


@pytest.fixture
def secured(milvus_servers: Servers) -> Iterator[Backend]:
    with milvus_servers.lease(AUTHORIZATION) as server:
        yield from serving(MilvusClient(server.uri, token=ROOT), server.uri)


DENIED = {
    "unprivileged": (grpc.StatusCode.PERMISSION_DENIED, "permission deny"),
    "dropped": (grpc.StatusCode.UNAUTHENTICATED, "auth check failure"),
}


def until_unauthenticated(client: MilvusClient, name: str, within: float = 30.0) -> None:
    """Wait until the server has dropped the cached credentials of ``client``'s user
    (Milvus invalidates its proxy cache asynchronously: until then, a dropped user
    with no roles is PERMISSION_DENIED)."""
    stub = client._get_connection()._stub
    request = milvus_pb2.HasCollectionRequest(collection_name=name)
    give_up = time.monotonic() + within
    while time.monotonic() < give_up:
        try:
            stub.HasCollection(request, timeout=5)
        except grpc.RpcError as error:
            if error.code() is grpc.StatusCode.UNAUTHENTICATED:
                return
        time.sleep(0.05)  # polling the server's state, not ordering threads
    pytest.fail(f"the server still knew the dropped user after {within} s")


@pytest.fixture(params=list(DENIED))
def account(secured: Backend, request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A new user with no roles at all, and how it is denied (a ``DENIED`` key);
    dropped after, if still there."""
    login = unique("user")
    secured.client.create_user(login, "password123")
    try:
        yield login, request.param
    finally:
        if login in secured.client.list_users():
            secured.client.drop_user(login)


def flush_as(
    uri: str, token: str, name: str, flavor: str, connected: Callable[[], None]
) -> tuple[Exception | None, float]:
    """flush_sync with a client of ``token``'s user; calls ``connected`` once the client
    is connected. Returns what flush_sync raised, and how long it took."""
    took: list[float] = []

    def call_sync() -> None:
        client = MilvusClient(uri, token=token)
        try:
            connected()
            started = time.monotonic()
            try:
                client.flush_sync(name, timeout=30)
            finally:
                took.append(time.monotonic() - started)
        finally:
            client.close()

    async def call_async() -> None:
        client = AsyncMilvusClient(uri, token=token)
        try:
            await async_handler(client)
            connected()
            started = time.monotonic()
            try:
                await client.flush_sync(name, timeout=30)
            finally:
                took.append(time.monotonic() - started)
        finally:
            await client.close()

    try:
        call_sync() if flavor == "sync" else asyncio.run(call_async())
    except Exception as error:  # the test checks its type
        return error, took[0]
    return None, took[0]


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_denied_or_unauthenticated_is_a_typed_error_at_once(
    secured: Backend, account: tuple[str, str], flavor: str, retries: list[str], measure: Measure
) -> None:
    """A user with no privileges (PERMISSION_DENIED), or one dropped after its
    client connected (UNAUTHENTICATED): a MilvusException at once, not retried."""
    login, user = account
    name = secured.collection(100)
    token = f"{login}:password123"

    def connected() -> None:  # the client is connected: now deny it
        if user == "dropped":
            probe = MilvusClient(secured.uri, token=token)
            try:
                secured.client.drop_user(login)
                until_unauthenticated(probe, name)
            finally:
                probe.close()

    error, took = flush_as(secured.uri, token, name, flavor, connected)
    measure("elapsed_s", round(took, 3))
    code, reason = DENIED[user]
    assert type(error) is MilvusException  # not a timeout, not a bare grpc.RpcError
    denied: Any = error  # pymilvus is untyped: isinstance() does not narrow for mypy
    assert denied.code == code.value[0]
    assert code.name in denied.message and reason in denied.message
    assert took < 1.0  # the deadline was 30 s
    assert retries == []


def test_the_command_line_logs_in_and_a_refused_login_is_final(secured: Backend) -> None:
    """``--user`` and ``--password`` (or ``$MILVUS_PASSWORD``), each in a fresh process:
    a wrong password is one line and exit 1 at once, never retried to the deadline."""
    name = secured.collection(10)
    flags = ["flush", name, "--uri", secured.uri, "--user", "root", "--timeout", "60"]
    run = functools.partial(
        subprocess.run, capture_output=True, text=True, timeout=120, check=False
    )
    ok = run([*CLI, *flags], env={**QUIET, "MILVUS_PASSWORD": ROOT.split(":", 1)[1]})
    assert ok.returncode == 0, ok.stderr
    started = time.monotonic()
    wrong = run([*CLI, *flags, "--password", "not-the-password"], env=QUIET)
    took = time.monotonic() - started
    assert wrong.returncode == 1 and took < 30, (took, wrong.stderr)
    assert len(wrong.stderr.strip().splitlines()) == 1 and "Traceback" not in wrong.stderr
    assert "not-the-password" not in wrong.stderr


# -- kill -9 and restart --------------------------------------------------------------


class WatchedStub:
    """A stub whose GetFlushState futures set ``not_yet`` on a "not flushed" answer."""

    def __init__(self, stub: Any, not_yet: threading.Event) -> None:
        self._stub, self._not_yet = stub, not_yet

    def __getattr__(self, method: str) -> Any:
        rpc = getattr(self._stub, method)
        if method != "GetFlushState":
            return rpc
        not_yet = self._not_yet

        class Watched:
            def future(self, *args: Any, **kwargs: Any) -> Any:
                call = rpc.future(*args, **kwargs)

                def seen(done: Any) -> None:
                    if done.exception() is None and not done.result().flushed:
                        not_yet.set()

                call.add_done_callback(seen)
                return call

        return Watched()


class WatchedHandler:
    def __init__(self, handler: Any, not_yet: threading.Event) -> None:
        self._handler, self._not_yet = handler, not_yet

    @property
    def _stub(self) -> WatchedStub:  # read per RPC, as pymilvus may swap it
        return WatchedStub(self._handler._stub, self._not_yet)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handler, name)


class WatchedClient(MilvusClient):
    """Tells when one of its ``flush_sync`` calls is mid-wait (the server said "not yet")."""

    def __init__(self, uri: str) -> None:
        self.not_yet = threading.Event()
        super().__init__(uri)

    def _get_connection(self) -> Any:
        return WatchedHandler(super()._get_connection(), self.not_yet)


@pytest.fixture
def crashable(milvus_servers: Servers) -> Iterator[Server]:
    with milvus_servers.lease(CRASHABLE_UNBUILT) as server:
        yield server


@pytest.fixture
def watched(crashable: Server) -> Iterator[Backend]:
    yield from serving(WatchedClient(crashable.uri), crashable.uri)


@pytest.mark.own_server(CRASHABLE)  # its config, in a row with test_stages's unbuilt
def test_kill_9_and_restart_mid_wait_persists_every_row(
    crashable: Server, watched: Backend, retries: list[str], measure: Measure
) -> None:
    """kill -9 while a flush_sync waits on 3000 rows; while the server is down a
    second call on the same client times out cleanly; after the restart (same data
    directory and port) the first call re-sends Flush and every row is persisted.
    The first call has no deadline: the outage and restart fit in the retry budget."""
    client = watched.client
    assert isinstance(client, WatchedClient)
    name = watched.collection(3000)
    other = watched.collection(10)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(client.flush_sync, name)  # no deadline: the retry budget
        assert client.not_yet.wait(timeout=60)  # a poll said "not yet": mid-wait
        crashable.kill()
        killed = time.monotonic()

        with pytest.raises(FlushTimeoutError) as info:  # down: a clean timeout
            client.flush_sync(other, timeout=2.0)
        assert 2.0 <= info.value.response.elapsed <= 2.0 + TOLERANCE
        assert isinstance(info.value.__cause__, MilvusUnavailableException)

        crashable.restart()
        restarted = time.monotonic()
        response = waiting.result()
        done = time.monotonic()
    measure("serving_again_after_kill_s", round(restarted - killed, 1))
    measure("flushed_after_restart_s", round(done - restarted, 1))
    measure("flushed_after_kill_s", round(done - killed, 1))
    measure("retries", len(retries))
    assert response.flushed
    assert watched.persisted_rows(name) == (3000, 0)
    measure("rows_persisted", 3000)
    assert any("UNAVAILABLE" in message for message in retries)
    assert client.flush_sync(other, timeout=60).flushed  # the client is fine afterwards
