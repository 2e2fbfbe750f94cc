"""flush_sync on clients built by someone else: wrap() and patch()/unpatch(), on Milvus Lite."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pymilvus
import pytest

import pymilvus_flushsync
from pymilvus_flushsync import (
    Backoff,
    FlushPolicy,
    FlushSyncResponse,
    MilvusClient,
    patch,
    unpatch,
    wrap,
)

from ..helpers import Backend


@pytest.fixture
def unpatched() -> Iterator[None]:
    unpatch()
    try:
        yield
    finally:
        unpatch()


def test_wrap_a_plain_client(lite: Backend) -> None:
    plain = pymilvus.MilvusClient(lite.uri)
    try:
        proxy = wrap(plain)
        assert isinstance(proxy, pymilvus.MilvusClient)
        assert not hasattr(plain, "flush_sync")  # the client itself is untouched
        name = lite.collection(30)
        response = proxy.flush_sync([name])
        assert isinstance(response, FlushSyncResponse)
        assert response.flushed
        assert proxy.list_collections() == plain.list_collections()  # forwarded
    finally:
        plain.close()


def test_wrap_a_plain_async_client(lite: Backend) -> None:
    name = lite.collection(30)

    async def call() -> FlushSyncResponse:
        plain = pymilvus.AsyncMilvusClient(lite.uri)
        try:
            proxy = wrap(plain)
            assert isinstance(proxy, pymilvus.AsyncMilvusClient)
            response = await proxy.flush_sync(name)
            assert isinstance(response, FlushSyncResponse)
            return response
        finally:
            await plain.close()

    assert asyncio.run(call()).flushed


def test_wrap_refuses_anything_else() -> None:
    with pytest.raises(TypeError):
        wrap(object())


@pytest.mark.usefixtures("unpatched")
def test_patch_unpatch_cycles(lite: Backend) -> None:
    before = dict(vars(pymilvus.MilvusClient)), dict(vars(pymilvus.AsyncMilvusClient))
    assert not hasattr(pymilvus.MilvusClient, "flush_sync")
    for _ in range(2):
        patch()
        patch()  # twice = once
        assert hasattr(pymilvus.MilvusClient, "flush_sync")
        assert hasattr(pymilvus.AsyncMilvusClient, "flush_sync")
        plain = pymilvus.MilvusClient(lite.uri)
        try:
            assert plain.flush_sync(lite.collection(10)).flushed
        finally:
            plain.close()
        unpatch()
        unpatch()
        assert dict(vars(pymilvus.MilvusClient)) == before[0]
        assert dict(vars(pymilvus.AsyncMilvusClient)) == before[1]
    # our own subclass keeps its method
    assert (
        pymilvus_flushsync.MilvusClient.flush_sync is pymilvus_flushsync.FlushSyncMixin.flush_sync
    )


def test_patch_is_applied_by_the_import_hook_in_a_fresh_process() -> None:
    script = textwrap.dedent(
        """
        import sys
        import pymilvus_flushsync
        pymilvus_flushsync.patch()
        assert "pymilvus" not in sys.modules  # really before pymilvus is imported
        import pymilvus
        assert callable(pymilvus.MilvusClient.flush_sync)
        assert callable(pymilvus.AsyncMilvusClient.flush_sync)
        pymilvus_flushsync.unpatch()
        assert not hasattr(pymilvus.MilvusClient, "flush_sync")
        pymilvus_flushsync.patch()  # now pymilvus is loaded: applied at once
        assert callable(pymilvus.MilvusClient.flush_sync)
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.usefixtures("unpatched")
def test_unpatch_removes_only_what_patch_added() -> None:
    def their_own(self: object, *args: object) -> str:  # as if pymilvus shipped one
        return "theirs"

    patch()
    pymilvus.MilvusClient.flush_sync = their_own
    try:
        unpatch()
        assert vars(pymilvus.MilvusClient)["flush_sync"] is their_own  # kept
        assert "flush_sync" not in vars(pymilvus.AsyncMilvusClient)  # ours: removed
    finally:
        del pymilvus.MilvusClient.flush_sync


def test_the_policy_can_be_set_on_one_client(lite: Backend) -> None:
    slow = FlushPolicy(poll=Backoff(0.05, 1.0, 0.05), tick_period=None)
    client = MilvusClient(lite.uri)
    try:
        client.flush_sync_policy = slow  # the README's way; mypy accepts it too
        assert client.flush_sync_policy is slow
        assert MilvusClient.flush_sync_policy is not slow  # the class keeps its own
        assert client.flush_sync(lite.collection(10)).flushed
    finally:
        client.close()


METHODS = ("flush_sync", "flush_all_sync", "start_flush", "wait_flushed")


@pytest.mark.usefixtures("unpatched")
def test_patch_adds_what_wrap_adds_tickets_included(lite: Backend) -> None:
    patch()
    for cls in (pymilvus.MilvusClient, pymilvus.AsyncMilvusClient):
        assert all(callable(getattr(cls, method, None)) for method in METHODS), cls
    plain = pymilvus.MilvusClient(lite.uri)
    try:
        for client in (plain, wrap(plain)):
            ticket = client.start_flush(lite.collection(10), timeout=30)
            assert client.wait_flushed(ticket, timeout=30).flushed
    finally:
        plain.close()
