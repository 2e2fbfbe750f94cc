"""Ctrl-C (KeyboardInterrupt) in the middle of ``flush_sync``: nothing left running."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest
from pymilvus.exceptions import MilvusException

from pymilvus_flushsync import _sync
from pymilvus_flushsync._call import prepare
from pymilvus_flushsync._state import Phase

from ..helpers import Backend


class InterruptedCall:
    """A real gRPC future whose ``result()`` is interrupted by Ctrl-C."""

    def __init__(self, call: Any, cancelled: list[Any]) -> None:
        self._call, self._cancelled = call, cancelled

    def result(self, timeout: float | None = None) -> Any:
        raise KeyboardInterrupt

    def add_done_callback(self, callback: Any) -> None:
        self._call.add_done_callback(lambda _: callback(self))

    def cancel(self) -> bool:
        self._cancelled.append(self._call)
        return bool(self._call.cancel())


class InterruptingStub:
    def __init__(self, stub: Any, cancelled: list[Any]) -> None:
        self._stub, self._cancelled = stub, cancelled

    def __getattr__(self, method: str) -> Any:
        rpc = getattr(self._stub, method)
        outer = self

        class Method:
            def future(self, *args: Any, **kwargs: Any) -> InterruptedCall:
                return InterruptedCall(rpc.future(*args, **kwargs), outer._cancelled)

        return Method()


class StubClient:
    """A client whose connection's stub is ``stub``."""

    def __init__(self, stub: Any) -> None:
        self._handler = SimpleNamespace(_stub=stub)

    def _get_connection(self) -> Any:
        return self._handler


def test_ctrl_c_during_an_rpc_cancels_it_and_leaves_the_client_usable(lite: Backend) -> None:
    name = lite.collection(100)
    client = lite.client
    client.flush_sync(name)  # connected, and whatever threads gRPC keeps are running
    before = set(threading.enumerate())
    cancelled: list[Any] = []
    stub = InterruptingStub(client._get_connection()._stub, cancelled)
    machine = prepare(client, [name], None, 30.0, client.flush_sync_policy)
    with pytest.raises(KeyboardInterrupt):
        _sync.run(machine, StubClient(stub))
    assert len(cancelled) == 1  # the in-flight Flush was cancelled, not left running
    assert machine.phase is Phase.FAILED  # a half-done step is never resumed
    with pytest.raises(MilvusException, match="interrupted"):
        machine.next_action()
    for thread in set(threading.enumerate()) - before:  # gRPC's channel spin thread ends
        thread.join(timeout=5)  # once no call is in flight: cancelled, so at once
        assert not thread.is_alive(), thread
    assert client.flush_sync(name, timeout=30).flushed
