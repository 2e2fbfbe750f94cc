"""The asyncio driver, and ``flush_sync`` on ``AsyncMilvusClient``.

The same ``FlushMachine`` as the blocking driver decides everything; this loop
only connects, starts the RPCs on the client's own ``grpc.aio`` stub, awaits
``asyncio.sleep`` and calls the progress hook. Cancelling the awaiting task
stops at once: nothing more is sent, the client stays usable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import grpc
from pymilvus.grpc_gen import milvus_pb2

from ._call import AllDatabases, connect_timeout, not_connected
from ._compat import async_handler, async_stub
from ._core import Done, FlushMachine, SendRpc, Sleep
from ._group import Batch, Flight, Group, Unanswered, alone, answers, for_client, split
from ._response import FlushAllSyncResponse, FlushSyncResponse
from ._schedule import FlushPolicy
from ._steps import Shared

__all__ = ["connected", "flush_all", "run", "run_all", "send"]


async def run(
    machine: FlushMachine,
    client: Any,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> FlushSyncResponse:
    """Connect (on a client's first call; under the deadline, or the retry budget
    without one), then drive ``machine`` to the end over the client's ``grpc.aio``
    stub, read per RPC."""
    policy = machine.policy
    group = for_client(client, machine.work.db) if policy.group_commit else None
    if group is not None:
        group.enter()
    try:
        if not await connected(client, connect_timeout(machine)):
            raise not_connected(machine)
        while not isinstance(action := machine.next_action(), Done):
            with machine.expect(action) as outcome:
                if isinstance(action, Sleep):
                    await sleep(action.seconds)
                    continue
                stub = await async_stub(client)
                if group is None or action.shared is None:
                    outcome.reply = await send(stub, action)
                elif action.shared is Shared.FLUSH:
                    outcome.reply = [await flush_shared(group, stub, action, policy.gather, sleep)]
                else:
                    outcome.reply = await poll_shared(group, stub, action, machine)
        return action.response
    finally:
        if group is not None:
            group.leave()


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


async def send(stub: Any, action: SendRpc) -> list[Any]:
    """Start every request of ``action`` at once (``grpc.aio`` calls); their replies in
    order. Whatever happens, none is left in flight."""
    start = getattr(stub, action.method)
    calls = [
        _cancellable(start(request, timeout=action.timeout, metadata=action.metadata))
        for request in action.requests
    ]
    try:
        return [await call for call in calls]
    finally:
        for call in calls:
            call.cancel()


async def flush_shared(
    group: Group,
    stub: Any,
    action: SendRpc,
    gather: float,
    sleep: Callable[[float], Awaitable[object]],
) -> Any:
    """The reply to this call's Flush, sent in a batch with the group's other calls
    by a task of its own: a member's cancellation does not cancel it."""
    began = loop_time()
    batch, leader = group.join(action.request, action.timeout)
    if leader:
        batch.io = asyncio.ensure_future(
            _lead(group, batch, stub, action, gather=gather, sleep=sleep)
        )
        batch.io.add_done_callback(_retrieved)
    try:
        reply = await _result(batch.io, action.timeout, "Flush", batch.members)
    except BaseException:  # cancelled, or no answer in time: so is the Flush, if alone
        if group.done_waiting(batch):
            batch.io.cancel()
        raise
    group.done_waiting(batch)
    if split(batch, reply):  # failed for good: this call's own names, alone
        return (await send(stub, alone(action, loop_time() - began)))[0]
    if isinstance(reply, milvus_pb2.FlushResponse) and not reply.status.code:
        group.sealed(batch, reply, time.monotonic())
    return reply


async def _lead(
    group: Group,
    batch: Batch,
    stub: Any,
    action: SendRpc,
    *,
    gather: float,
    sleep: Callable[[float], Awaitable[object]],
) -> Any:
    began = loop_time()
    try:
        await asyncio.sleep(0)  # tasks started together get to join (not a machine's wait)
        window = min(group.gather(gather), action.timeout)
        if window > 0:
            await sleep(window)
        previous = batch.after
        if previous is not None and previous.io is not None and not previous.io.done():
            left = action.timeout - (loop_time() - began)  # the previous Flush first
            await asyncio.wait([previous.io], timeout=max(left, 0.0))
    finally:
        request, timeout = group.seal(batch)
    try:
        return await stub.Flush(request, timeout=timeout, metadata=action.metadata)
    finally:
        group.landed(batch)


async def poll_shared(group: Group, stub: Any, action: SendRpc, asker: object) -> list[Any]:
    """The replies to a round of GetFlushState, asked through the group: a batch's
    lead stands in for its members (``_group.answers``)."""
    asked = group.stand_ins(action.requests, time.monotonic())
    replies, again = answers(action.requests, asked, await _ask(group, stub, action, asked, asker))
    if again:
        real = [action.requests[i] for i in again]
        for i, reply in zip(again, await _ask(group, stub, action, real, asker), strict=True):
            replies[i] = reply
    return replies


async def _ask(
    group: Group, stub: Any, action: SendRpc, requests: list[Any], asker: object
) -> list[Any]:
    """The replies to ``requests``; questions another call is asking already share
    its RPC (a task), known "flushed" answers are not asked again."""
    began = loop_time()
    start = partial(stub.GetFlushState, timeout=action.timeout, metadata=action.metadata)
    now = time.monotonic()
    waits = [group.flight(r, partial(_started, start, r), now, asker) for r in requests]

    async def reply(wait: Any) -> Any:  # a shared flight's reply, or one already known
        if not isinstance(wait, Flight):
            return wait
        left = action.timeout - (loop_time() - began)
        return await _result(wait.call, left, "GetFlushState", wait.waiters)

    try:
        return [await reply(wait) for wait in waits]
    finally:
        for call in group.release(waits):
            call.cancel()


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


def _started(start: Callable[[Any], Any], request: Any) -> asyncio.Future[Any]:
    """``start(request)`` (a ``grpc.aio`` call) as a task, which waiters can share."""

    async def awaited() -> Any:
        return await start(request)

    return asyncio.ensure_future(awaited())


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Mark a shared task's exception as seen: each member reports it, or none is left."""
    if not task.cancelled():
        task.exception()


def loop_time() -> float:
    return asyncio.get_running_loop().time()


def _cancellable(call: Any) -> Any:
    """A ``grpc.aio`` call as it is; any other awaitable (a stub wrapped in ``async
    def``, as interceptors and test doubles do) as a task, so that it can be cancelled."""
    return call if callable(getattr(call, "cancel", None)) else asyncio.ensure_future(call)


async def flush_all(
    client: Any, db_name: str | None, timeout: float | None, policy: FlushPolicy
) -> FlushAllSyncResponse:
    """``flush_all_sync``: ``AllDatabases``'s asks, then its stages of machines."""
    call = AllDatabases(client, db_name, timeout, policy)
    replies: list[Any] = []
    asks = call.asks()
    if asks and not await connected(client, connect_timeout(call.first)):
        raise not_connected(call.first)
    for ask in asks:
        try:
            replies.append((await send(await async_stub(client), ask))[0])
        except Exception as exc:
            replies.append(exc)
    machines = call.machines(replies)
    while machines:
        machines = call.then(await run_all(machines, client))
    return call.response()


async def run_all(machines: list[FlushMachine], client: Any) -> list[FlushSyncResponse]:
    """Drive every machine at once, a task each; the first failure cancels the rest."""
    tasks = [asyncio.ensure_future(run(machine, client)) for machine in machines]
    for task in tasks:
        task.add_done_callback(_retrieved)
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and (error := task.exception()) is not None:
                raise error
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
