"""The asyncio driver: carries out a call's steps (``_io``) with tasks, ``grpc.aio``
and ``asyncio.sleep``. It decides nothing: the steps are ``_protocol``'s and
``_group``'s, the decisions ``_core``'s. Cancelling the awaiting task stops at once:
nothing more is sent, the client stays usable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial, singledispatch
from typing import Any, TypeVar

import grpc

from . import _io
from ._call import AllDatabases, connect_timeout, not_connected
from ._compat import async_handler, async_stub
from ._core import FlushMachine
from ._group import Unanswered
from ._io import Finished, Raised, Steps, advance, carried, raise_first_failure
from ._protocol import call
from ._protocol import flush_all as all_stages
from ._response import FlushAllSyncResponse, FlushSyncResponse
from ._schedule import FlushPolicy

__all__ = ["connected", "flush_all", "run"]

T = TypeVar("T")
Sleeper = Callable[[float], Awaitable[object]]


@dataclass(frozen=True)
class Tasks:
    """What the steps of one client's calls are carried out with, on its event loop."""

    client: Any
    sleep: Sleeper = asyncio.sleep


async def run(
    machine: FlushMachine, client: Any, *, sleep: Sleeper = asyncio.sleep
) -> FlushSyncResponse:
    """Connect (on a client's first call; under the deadline, or the retry budget
    without one), then drive ``machine`` to the end over the client's ``grpc.aio``
    stub, read per RPC."""
    if not await connected(client, connect_timeout(machine)):
        raise not_connected(machine)
    return await drive(call(machine, client), Tasks(client, sleep))


async def flush_all(
    client: Any, db_name: str | None, timeout: float | None, policy: FlushPolicy
) -> FlushAllSyncResponse:
    """``flush_all_sync``: ``AllDatabases``'s asks, then its stages of machines."""
    stages = AllDatabases(client, db_name, timeout, policy)
    if stages.asks() and not await connected(client, connect_timeout(stages.first)):
        raise not_connected(stages.first)
    return await drive(all_stages(stages), Tasks(client))


async def connected(client: Any, seconds: float | None) -> bool:
    """Connect the client (a no-op once it is); ``False`` when ``seconds`` ran out first.
    A cancellation of the caller always arrives (``_result`` says why not ``wait_for``)."""
    task = asyncio.ensure_future(async_handler(client))
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    finally:
        task.cancel()  # a no-op once it is done
    if done:
        task.result()  # what connecting raised
    return bool(done)


async def drive(steps: Steps[T], tasks: Tasks) -> T:
    """Carry out ``steps`` to their end (``_io``); what they return."""
    io = advance(steps)
    while not isinstance(io, Finished):
        io = advance(steps, await _outcome(io, tasks))
    return io.value


@singledispatch
def _carry(io: object, tasks: Tasks) -> Any:
    """Carry out ``io`` with this driver's function for its kind (``@_carry.register``)."""
    raise TypeError(f"no way to carry out {io!r}")


async def _outcome(io: _io.Io, tasks: Tasks) -> Any:
    try:
        return await _carry(io, tasks)
    except BaseException as error:  # cancellation too: thrown into the steps
        return Raised(error)


@_carry.register
async def _pause(io: _io.Pause, tasks: Tasks) -> None:
    if io.handoff:  # one turn of the loop runs every task released with this one
        await asyncio.sleep(0)
    else:
        await tasks.sleep(io.seconds)


@_carry.register
async def _start(io: _io.Start, tasks: Tasks) -> Callable[[Any], Any]:
    method = getattr(await async_stub(tasks.client), io.method)
    start = partial(method, timeout=io.timeout, metadata=io.metadata)
    return partial(_task, start) if io.shared else lambda request: _cancellable(start(request))


@_carry.register
async def _wait(io: _io.Wait, tasks: Tasks) -> list[Any]:
    if io.within is None:
        return [await call for call in io.handles]
    until = time.monotonic() + io.within
    return [
        await _result(task, until - time.monotonic(), io.what, callers)
        for task, callers in zip(io.handles, io.callers, strict=True)
    ]


async def _result(task: asyncio.Future[Any], seconds: float, what: str, callers: int) -> Any:
    """A shared task's result, if it comes within ``seconds``; never cancels it.
    (``asyncio.wait``, not ``wait_for``: before Python 3.12, ``wait_for`` drops a
    cancellation that arrives as the awaited task completes.)"""
    done, _ = await asyncio.wait({task}, timeout=max(seconds, 0.0))
    if not done:
        raise Unanswered.late(what, callers)
    if task.cancelled():  # not by this call (that arrives at the wait): a closed channel
        raise Unanswered(f"the shared {what} was cancelled", grpc.StatusCode.CANCELLED)
    return task.result()


@_carry.register
async def _joined(io: _io.Joined, tasks: Tasks) -> Any:
    return io.batch.sent()  # the leader's task, made as it joined


@_carry.register
async def _landed(io: _io.Landed, tasks: Tasks) -> None:
    await asyncio.wait({io.batch.sent()}, timeout=max(io.seconds, 0.0))


@_carry.register
async def _lead(io: _io.Lead, tasks: Tasks) -> None:
    """The leader's part, in a task of its own: a member's cancellation does not
    cancel the Flush the others wait for (the task is the batch's handle)."""

    async def leading() -> Any:
        return await (await drive(io.steps, tasks))

    task = asyncio.ensure_future(leading())
    task.add_done_callback(_retrieved)
    io.group.led(io.batch, task)


@_carry.register
async def _run_all(io: _io.RunAll, tasks: Tasks) -> list[FlushSyncResponse]:
    """Drive every machine at once, a task each; the first failure cancels the rest."""
    running = [asyncio.ensure_future(run(machine, tasks.client)) for machine in io.machines]
    for task in running:
        task.add_done_callback(_retrieved)
    try:
        await asyncio.wait(running, return_when=asyncio.FIRST_EXCEPTION)
        raise_first_failure(running)
        return [task.result() for task in running]
    finally:
        for task in running:
            task.cancel()


def _task(start: Callable[[Any], Any], request: Any) -> asyncio.Future[Any]:
    """``start(request)`` (a ``grpc.aio`` call) as a task, which waiters can share."""

    async def awaited() -> Any:
        return await start(request)

    return asyncio.ensure_future(awaited())


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Mark a shared task's exception as seen: each member reports it, or none is left."""
    if not task.cancelled():
        task.exception()


def _cancellable(call: Any) -> Any:
    """A ``grpc.aio`` call as it is; any other awaitable (a stub wrapped in ``async
    def``, as interceptors and test doubles do) as a task, so that it can be cancelled."""
    return call if callable(getattr(call, "cancel", None)) else asyncio.ensure_future(call)


carried(_carry)
