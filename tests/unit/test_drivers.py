"""The sync and asyncio drivers over one in-memory fake server, as httpcore tests its
two halves over one ``MockStream``: same RPCs, same answer, same cancellations."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from pymilvus.exceptions import MilvusException, ParamError

from pymilvus_flushsync import (
    AsyncFlushSyncMixin,
    FlushSyncMixin,
    FlushSyncResponse,
    _async,
    _sync,
)
from pymilvus_flushsync._core import FlushMachine
from pymilvus_flushsync._state import Phase

from ..fakes import POLICY, Answer, FakeRpcError, FakeServer, flush_reply, state_reply
from ..helpers import TOLERANCE


def drive(
    flavor: str, server: FakeServer, names: tuple[str, ...]
) -> tuple[Any, list[FlushSyncResponse]]:
    """flush_sync of ``names`` through one driver; (response or error, progress calls)."""
    progress: list[FlushSyncResponse] = []
    machine = FlushMachine(names, "", 10.0, POLICY, on_progress=progress.append)

    async def no_sleep(seconds: float) -> None:
        pass

    try:
        if flavor == "sync":
            outcome: Any = _sync.run(machine, server.client(), sleep=lambda seconds: None)
        else:
            outcome = asyncio.run(_async.run(machine, server.client(), sleep=no_sleep))
    except MilvusException as error:
        outcome = error
        assert machine.phase is Phase.FAILED
    return outcome, progress


def flipping(flips_at: Callable[[str], int]) -> Answer:
    """Seals on Flush; a collection reports flushed from the ``flips_at(name)``-th poll
    on (counting every poll the server answered)."""
    polls = 0

    def answer(method: str, request: Any) -> Any:
        nonlocal polls
        if method == "Flush":
            return flush_reply({name: [i] for i, name in enumerate(request.collection_names)})
        polls += 1
        return state_reply(polls >= flips_at(request.collection_name))

    return answer


def waits_then_flushes(polls_before_flushed: int) -> Answer:
    """Seals on Flush; every collection flips after that many polls in all."""
    return flipping(lambda name: polls_before_flushed + 1)


def test_both_drivers_send_the_same_rpcs_and_return_the_same_answer() -> None:
    results = {}
    for flavor in ("sync", "async"):
        server = FakeServer(waits_then_flushes(3))
        response, progress = drive(flavor, server, ("a", "b", "c"))
        assert isinstance(response, FlushSyncResponse) and response.flushed
        assert [s.flushed for s in progress] == [False, False, False, True]
        assert progress[-1] is response  # once more at the end, with the final response
        results[flavor] = (server.sent, response.polls, len(progress), server.cancelled_in_flight)
    assert results["sync"] == results["async"]
    sent, polls, hooked, cancelled = results["sync"]
    assert sent[0] == ("Flush", ("a", "b", "c"))
    assert sent[1:5] == [("GetFlushState", ("a",))] * 4  # the watched one, alone
    assert sent[5:] == [("GetFlushState", ("b",)), ("GetFlushState", ("c",))]  # one round
    assert (polls, hooked, cancelled) == (6, 3 + 1, 0)  # 3 waits, then the final snapshot


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_a_progress_bar_reaches_its_total(flavor: str) -> None:
    """The guide's progress hook over a server whose collections flip at polls 1, 3, 5."""
    answer = flipping({"a": 1, "b": 3, "c": 5}.__getitem__)
    response, progress = drive(flavor, FakeServer(answer), ("a", "b", "c"))
    assert isinstance(response, FlushSyncResponse) and response.flushed
    bar = [sum(state.flushed for state in s.collections.values()) for s in progress]
    assert bar[-1] == 3 and bar == sorted(bar)  # it ends at 3/3, never going back


@pytest.mark.parametrize("flavor", ["sync", "async"])
@pytest.mark.parametrize("hook", [42, "print", object()])
def test_a_hook_that_is_not_callable_is_a_param_error_before_any_rpc(
    flavor: str, hook: Any
) -> None:
    server = FakeServer(waits_then_flushes(0))

    def flush() -> object:
        if flavor == "sync":
            return FlushSyncMixin.flush_sync(server.client(), "a", on_progress=hook)
        return asyncio.run(AsyncFlushSyncMixin.flush_sync(server.client(), "a", on_progress=hook))

    with pytest.raises(ParamError, match="on_progress"):
        flush()
    assert server.sent == []


def test_both_drivers_cancel_the_rest_of_a_round_when_one_rpc_fails() -> None:
    def answer(method: str, request: Any) -> Any:
        if method == "Flush":
            return flush_reply({name: [1] for name in request.collection_names})
        if request.collection_name == "b":
            raise FakeRpcError(grpc.StatusCode.PERMISSION_DENIED, "denied")
        return state_reply(True)

    for flavor in ("sync", "async"):
        server = FakeServer(answer)
        server.held = {"c", "d"}  # still in flight when b fails (sync: not yet read)
        error, _ = drive(flavor, server, ("a", "b", "c", "d"))
        assert type(error) is MilvusException and error.code == 7
        # the sweep after "a": b failed, so c and d were cancelled, not left running
        assert server.sent[-3:] == [("GetFlushState", (n,)) for n in "bcd"]
        assert server.cancelled_in_flight == 2, flavor


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_an_exception_of_the_callers_hook_fails_the_machine_and_goes_up(flavor: str) -> None:
    class Stop(Exception):
        pass

    def hook(snapshot: FlushSyncResponse) -> None:
        raise Stop

    server = FakeServer(waits_then_flushes(5))
    machine = FlushMachine(("a",), "", 10.0, POLICY, on_progress=hook)

    def run() -> None:
        if flavor == "sync":
            _sync.run(machine, server.client(), sleep=lambda seconds: None)
        else:
            asyncio.run(_async.run(machine, server.client()))

    with pytest.raises(Stop):
        run()
    assert machine.phase is Phase.FAILED
    with pytest.raises(MilvusException, match="interrupted"):
        machine.next_action()


class CoroutineStub:
    """A ``grpc.aio`` stub wrapped in ``async def`` (as interceptors and test doubles do):
    its methods return coroutines, which have no ``cancel()``."""

    def __init__(self, server: FakeServer) -> None:
        self._server = server

    def __getattr__(self, method: str) -> Any:
        async def call(request: Any, timeout: float, metadata: Any) -> Any:
            return await self._server.start(method, request)

        return call


def test_the_async_driver_takes_a_stub_that_returns_coroutines() -> None:
    server = FakeServer(waits_then_flushes(2))
    handler = SimpleNamespace(_async_stub=CoroutineStub(server))
    client = SimpleNamespace(_get_connection=lambda: handler)
    machine = FlushMachine(("a", "b"), "", 10.0, POLICY)

    async def no_sleep(seconds: float) -> None:
        pass

    response = asyncio.run(_async.run(machine, client, sleep=no_sleep))
    assert response.flushed and server.sent[0] == ("Flush", ("a", "b"))


class Cancelled:
    """A cancelled gRPC future as grpc keeps it: ``_state.due`` holds its unfinished
    parts until the channel's thread finishes it (``finish``)."""

    def __init__(self) -> None:
        self._state = SimpleNamespace(due={"receive_status"}, condition=threading.Condition())

    def cancelled(self) -> bool:
        return True

    def finish(self) -> None:
        with self._state.condition:
            self._state.due.clear()
            self._state.condition.notify_all()


def test_after_a_ctrl_c_the_sync_driver_waits_for_grpc_to_let_go_and_no_longer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_sync, "LET_GO", 0.3)
    finished, never = Cancelled(), Cancelled()
    threading.Thread(target=finished.finish).start()
    started = time.monotonic()
    _sync.let_go((finished, never, SimpleNamespace()))  # a future of no gRPC: skipped
    took = time.monotonic() - started
    assert not finished._state.due and never._state.due
    assert 0.3 <= took < 0.3 + TOLERANCE
