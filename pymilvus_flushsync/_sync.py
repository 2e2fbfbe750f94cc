"""The blocking driver, and ``flush_sync`` on ``MilvusClient``.

The driver only does I/O: it starts the RPCs ``FlushMachine`` asks for on the
client's own gRPC stub, sleeps when told to, and calls the progress hook. All
decisions live in ``_core``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from functools import partial
from typing import Any

import grpc
from pymilvus.exceptions import MilvusException
from pymilvus.grpc_gen import milvus_pb2

from ._call import AllDatabases
from ._core import Done, FlushMachine, SendRpc, Sleep
from ._errors import interrupted
from ._group import HANDOFF, Flight, Group, Unanswered, alone, answers, for_client, split
from ._response import FlushAllSyncResponse, FlushSyncResponse
from ._schedule import FlushPolicy
from ._steps import Shared

__all__ = ["flush_all", "run", "run_all", "send"]


def run(
    machine: FlushMachine,
    client: Any,
    *,
    sleep: Callable[[float], object] = time.sleep,
) -> FlushSyncResponse:
    """Drive ``machine`` to the end over ``client._get_connection()._stub``, read per
    RPC (pymilvus swaps it on reconnect; it raises once the client is closed); with
    ``policy.group_commit``, Flush and GetFlushState are shared with the client's
    other calls (``_group``)."""
    policy = machine.policy
    group = for_client(client, machine.work.db) if policy.group_commit else None
    if group is not None:
        group.enter()
    try:
        while not isinstance(action := machine.next_action(), Done):
            with machine.expect(action) as outcome:
                if isinstance(action, Sleep):
                    sleep(action.seconds)
                    continue
                stub = client._get_connection()._stub
                if group is None or action.shared is None:
                    outcome.reply = send(stub, action)
                elif action.shared is Shared.FLUSH:
                    outcome.reply = [flush_shared(group, stub, action, policy.gather, sleep)]
                else:
                    outcome.reply = poll_shared(group, stub, action, machine)
        return action.response
    finally:
        if group is not None:
            group.leave()


def send(stub: Any, action: SendRpc) -> list[Any]:
    """Start every request of ``action`` at once (gRPC futures); their replies in order.
    Whatever happens, none is left in flight (a no-op for those already done)."""
    start = getattr(stub, action.method).future
    calls = [
        start(request, timeout=action.timeout, metadata=action.metadata)
        for request in action.requests
    ]
    try:
        return [call.result() for call in calls]
    finally:
        for call in calls:
            call.cancel()


def flush_shared(
    group: Group, stub: Any, action: SendRpc, gather: float, sleep: Callable[[float], object]
) -> Any:
    """The reply to this call's Flush, sent in a batch with the group's other calls."""
    began = time.monotonic()
    batch, leader = group.join(action.request, action.timeout)
    if leader:
        try:
            time.sleep(HANDOFF)  # threads released together get to join (not a machine's wait)
            window = min(group.gather(gather), action.timeout)
            if window > 0:
                sleep(window)
            if batch.after is not None:  # the previous Flush first
                batch.after.landed.wait(action.timeout - (time.monotonic() - began))
            request, timeout = group.seal(batch)
            batch.io = stub.Flush.future(request, timeout=timeout, metadata=action.metadata)
            batch.io.add_done_callback(lambda _: group.landed(batch))
        finally:  # whatever happened, the others stop waiting for this leader
            group.seal(batch)
            batch.ready.set()
            if batch.io is None:
                group.landed(batch)
    elif not batch.ready.wait(action.timeout):
        raise Unanswered(f"the shared Flush was not sent within {action.timeout:.3g} s")
    if batch.io is None:
        raise Unanswered("the shared Flush was not sent: its leader stopped")
    try:
        left = action.timeout - (time.monotonic() - began)
        reply = _result(batch.io, left, "Flush", batch.members)
    except BaseException:  # Ctrl-C, or no answer in time: cancelled if no one else waits
        if group.done_waiting(batch):
            batch.io.cancel()
        raise
    group.done_waiting(batch)
    if split(batch, reply):  # failed for good: this call's own names, alone
        return send(stub, alone(action, time.monotonic() - began))[0]
    if isinstance(reply, milvus_pb2.FlushResponse) and not reply.status.code:
        group.sealed(batch, reply, time.monotonic())
    return reply


def poll_shared(group: Group, stub: Any, action: SendRpc, asker: object) -> list[Any]:
    """The replies to a round of GetFlushState, asked through the group: a batch's
    lead stands in for its members (``_group.answers``)."""
    asked = group.stand_ins(action.requests, time.monotonic())
    replies, again = answers(action.requests, asked, _ask(group, stub, action, asked, asker))
    if again:
        real = [action.requests[i] for i in again]
        for i, reply in zip(again, _ask(group, stub, action, real, asker), strict=True):
            replies[i] = reply
    return replies


def _ask(group: Group, stub: Any, action: SendRpc, requests: list[Any], asker: object) -> list[Any]:
    """The replies to ``requests``; questions another call is asking already share
    its RPC, and known "flushed" answers are not asked again."""
    began = time.monotonic()
    start = stub.GetFlushState.future
    waits = [
        group.flight(
            r,
            partial(start, r, timeout=action.timeout, metadata=action.metadata),
            began,  # time.monotonic(), as the group's clock
            asker,
        )
        for r in requests
    ]
    try:
        return [
            _result(w.call, action.timeout - (time.monotonic() - began), "GetFlushState", w.waiters)
            if isinstance(w, Flight)
            else w
            for w in waits
        ]
    finally:
        for call in group.release(waits):
            call.cancel()


def _result(call: Any, seconds: float, what: str, callers: int) -> Any:
    """A shared call's reply, if it comes within ``seconds``."""
    try:
        return call.result(timeout=max(seconds, 0.0))
    except grpc.FutureTimeoutError:
        raise Unanswered.late(what, callers) from None


def flush_all(
    client: Any,
    db_name: str | None,
    timeout: float | None,
    policy: FlushPolicy,
    *,
    since: float | None = None,
) -> FlushAllSyncResponse:
    """``flush_all_sync``, with its deadline counted from ``since`` (default: now)."""
    call = AllDatabases(client, db_name, timeout, policy, since=since)
    replies: list[Any] = []
    for ask in call.asks():
        try:
            replies.append(send(client._get_connection()._stub, ask)[0])
        except Exception as exc:
            replies.append(exc)
    machines = call.machines(replies)
    while machines:
        machines = call.then(run_all(machines, client))
    return call.response()


def run_all(machines: list[FlushMachine], client: Any) -> list[FlushSyncResponse]:
    """Drive every machine at once, a thread each; the first failure stops the rest."""
    if len(machines) == 1:
        return [run(machines[0], client)]
    pool = ThreadPoolExecutor(len(machines), thread_name_prefix="flush_all_sync")
    futures = [pool.submit(run, machine, client) for machine in machines]
    try:
        wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            if future.done() and (error := future.exception()) is not None:
                raise error
        return [future.result() for future in futures]
    except BaseException as exc:
        error = exc if isinstance(exc, MilvusException) else interrupted(exc)
        for machine in machines:
            machine.stop(error)
        raise
    finally:
        pool.shutdown(wait=False)
