"""The blocking driver: carries out a call's steps (``_io``) with threads, gRPC
futures and ``time.sleep``. It decides nothing: the steps are ``_protocol``'s and
``_group``'s, the decisions ``_core``'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial, singledispatch
from typing import Any, TypeVar

import grpc
from pymilvus.exceptions import MilvusException

from . import _io
from ._call import AllDatabases
from ._core import FlushMachine
from ._errors import interrupted
from ._group import Unanswered
from ._io import Finished, Raised, Steps, advance, carried, raise_first_failure
from ._protocol import call
from ._protocol import flush_all as all_stages
from ._response import FlushAllSyncResponse, FlushSyncResponse
from ._schedule import FlushPolicy

__all__ = ["flush_all", "run"]

T = TypeVar("T")


@dataclass(frozen=True)
class Blocking:
    """What the steps of one client's calls are carried out with."""

    client: Any
    sleep: Callable[[float], object] = time.sleep


def run(
    machine: FlushMachine, client: Any, *, sleep: Callable[[float], object] = time.sleep
) -> FlushSyncResponse:
    """Drive ``machine`` to the end over ``client._get_connection()._stub``, read per
    RPC (pymilvus swaps it on reconnect; it raises once the client is closed)."""
    return drive(call(machine, client), Blocking(client, sleep))


def flush_all(
    client: Any,
    db_name: str | None,
    timeout: float | None,
    policy: FlushPolicy,
    *,
    since: float | None = None,
) -> FlushAllSyncResponse:
    """``flush_all_sync``, with its deadline counted from ``since`` (default: now)."""
    stages = AllDatabases(client, db_name, timeout, policy, since=since)
    return drive(all_stages(stages), Blocking(client))


#: At most this long, after a Ctrl-C, for gRPC to let go of the calls it cancelled.
LET_GO = 1.0


def drive(steps: Steps[T], blocking: Blocking) -> T:
    """Carry out ``steps`` to their end (``_io``); what they return."""
    io = advance(steps)
    while not isinstance(io, Finished):
        outcome = _outcome(io, blocking)
        try:
            io = advance(steps, outcome)
        except BaseException as exc:
            if isinstance(io, _io.Wait) and not isinstance(exc, Exception):
                let_go(io.handles)
            raise
    return io.value


def let_go(calls: tuple[Any, ...]) -> None:
    """Wait, ``LET_GO`` seconds at most, until gRPC has finished the cancelled
    ``calls``. A future call is finished by the channel's daemon thread; one still in
    its channel as the interpreter exits makes the channel's finaliser wait for that
    thread, which no longer runs: a Ctrl-C would hang the process at exit (about 1 in
    20 measured). ``_state.due`` is grpc's own set of the call's unfinished parts."""
    until = time.monotonic() + LET_GO
    for handle in calls:
        state: Any = getattr(handle, "_state", None)
        if hasattr(state, "due") and handle.cancelled():
            with state.condition:
                state.condition.wait_for(partial(_finished, state), until - time.monotonic())


def _finished(state: Any) -> bool:
    return not state.due


@singledispatch
def _carry(io: object, blocking: Blocking) -> Any:
    """Carry out ``io`` with this driver's function for its kind (``@_carry.register``)."""
    raise TypeError(f"no way to carry out {io!r}")


def _outcome(io: _io.Io, blocking: Blocking) -> Any:
    try:
        return _carry(io, blocking)
    except BaseException as error:  # thrown into the steps, which decide
        return Raised(error)


@_carry.register
def _pause(io: _io.Pause, blocking: Blocking) -> None:
    if io.handoff:  # really: the threads released with this one must get to run
        time.sleep(io.seconds)
    else:
        blocking.sleep(io.seconds)


@_carry.register
def _start(io: _io.Start, blocking: Blocking) -> Callable[[Any], Any]:
    stub = blocking.client._get_connection()._stub
    return partial(getattr(stub, io.method).future, timeout=io.timeout, metadata=io.metadata)


@_carry.register
def _wait(io: _io.Wait, blocking: Blocking) -> list[Any]:
    if io.within is None:
        return [call.result() for call in io.handles]
    until = time.monotonic() + io.within
    return [
        _result(call, until - time.monotonic(), io.what, callers)
        for call, callers in zip(io.handles, io.callers, strict=True)
    ]


def _result(call: Any, seconds: float, what: str, callers: int) -> Any:
    """A shared call's reply, if it comes within ``seconds``."""
    try:
        return call.result(timeout=max(seconds, 0.0))
    except grpc.FutureTimeoutError:
        raise Unanswered.late(what, callers) from None


@_carry.register
def _joined(io: _io.Joined, blocking: Blocking) -> Any:
    return io.batch.sent(io.seconds)


@_carry.register
def _landed(io: _io.Landed, blocking: Blocking) -> None:
    io.batch.wait_landed(io.seconds)


@_carry.register
def _lead(io: _io.Lead, blocking: Blocking) -> None:
    """The leader's part, in this thread; whatever happens, the members stop waiting."""
    sent = None
    try:
        sent = drive(io.steps, blocking)
    finally:
        io.group.led(io.batch, sent)


@_carry.register
def _run_all(io: _io.RunAll, blocking: Blocking) -> list[FlushSyncResponse]:
    """Drive every machine at once, a thread each; the first failure stops the rest."""
    machines = io.machines
    if len(machines) == 1:
        return [run(machines[0], blocking.client)]
    pool = ThreadPoolExecutor(len(machines), thread_name_prefix="flush_all_sync")
    futures = [pool.submit(run, machine, blocking.client) for machine in machines]
    try:
        wait(futures, return_when=FIRST_EXCEPTION)
        raise_first_failure(futures)
        return [future.result() for future in futures]
    except BaseException as exc:
        error = exc if isinstance(exc, MilvusException) else interrupted(exc)
        for machine in machines:
            machine.stop(error)
        raise
    finally:
        pool.shutdown(wait=False)


carried(_carry)
