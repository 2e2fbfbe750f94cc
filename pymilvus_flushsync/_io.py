"""What a call waits for, as values: the steps of its I/O, written once.

A call's I/O (its machine's RPCs, group commit's shared ones, ``flush_all_sync``'s
stages) is written once, as generators (``_protocol``, ``_group``) that yield an
``Io`` value wherever they must wait, and get its result back; they start RPCs
(``Start`` gives them a function that does, at once) and cancel them, but never
block. The sync driver (``_sync``) and the asyncio driver (``_async``) carry out
each ``Io`` in their own I/O model (threads and gRPC futures; tasks and
``grpc.aio``) and feed the result, or the exception, back: they hold no logic
of the call's own. ``drive``'s loop, in both::

    io = advance(steps)
    while not isinstance(io, Finished):
        io = advance(steps, outcome of carrying out io)   # a value, or Raised(error)
    return io.value
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, get_args

__all__ = [
    "KINDS",
    "Finished",
    "Io",
    "Joined",
    "Landed",
    "Lead",
    "Pause",
    "Raised",
    "RunAll",
    "Start",
    "Steps",
    "Wait",
    "advance",
    "carried",
    "raise_first_failure",
    "send",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Pause:
    """Wait ``seconds``; ``handoff``: only let the threads or tasks that were released
    together run first (a thread really sleeps ``seconds``, whatever sleep the driver
    was given; a task yields once)."""

    seconds: float
    handoff: bool = False


@dataclass(frozen=True)
class Start:
    """Give back a function that starts one ``method`` RPC with these options on the
    client's current stub, and returns its handle at once (``shared``: one that many
    calls can wait for: a task, for asyncio)."""

    method: str
    timeout: float
    metadata: tuple[tuple[str, str], ...] | None
    shared: bool = False


@dataclass(frozen=True)
class Wait:
    """Give back the results of ``handles``, in order (raising the first failure).
    With ``within`` (shared RPCs), within that many seconds: else ``_group.Unanswered``
    for ``what``, which ``callers[i]`` calls were waiting for."""

    handles: tuple[Any, ...]
    within: float | None = None
    what: str = ""
    callers: tuple[int, ...] = ()


@dataclass(frozen=True)
class Joined:
    """Give back the handle of ``batch``'s shared Flush once its leader sent it, within
    ``seconds`` (``_group.Batch``)."""

    batch: Any
    seconds: float


@dataclass(frozen=True)
class Landed:
    """Wait until ``batch``'s Flush was answered (or failed), at most ``seconds``."""

    batch: Any
    seconds: float


@dataclass(frozen=True)
class Lead:
    """Carry out ``steps``, the leader's part of a shared Flush, which return the
    Flush's started handle, and hand it to ``group.led(batch, handle)``: a thread
    inline, asyncio in a task of its own (the batch's handle then), which a member's
    cancellation does not cancel."""

    steps: Steps[Any]
    group: Any
    batch: Any


@dataclass(frozen=True)
class RunAll:
    """Drive these machines at once (a thread or task each); give back their responses.
    The first failure stops the others and is raised."""

    machines: tuple[Any, ...]


Io = Pause | Start | Wait | Joined | Landed | Lead | RunAll
Steps = Generator[Io, Any, T]
#: Every kind of ``Io``: a driver carries out each (``carried``).
KINDS: tuple[type, ...] = get_args(Io)


def carried(carry: Any) -> None:
    """Check that a driver's ``carry`` (a ``functools.singledispatch``) has a function
    registered for every kind of ``Io``: as the driver is imported, not at a call."""
    missing = [kind.__name__ for kind in KINDS if kind not in carry.registry]
    if missing:
        raise TypeError(f"no way to carry out {', '.join(missing)}")


@dataclass(frozen=True)
class Raised:
    """What carrying out an ``Io`` raised: it is thrown into the steps."""

    error: BaseException


@dataclass(frozen=True)
class Finished(Generic[T]):
    """The steps returned ``value``."""

    value: T


def advance(steps: Steps[T], outcome: Any = None) -> Io | Finished[T]:
    """Resume ``steps`` with the outcome of the last ``Io`` (a ``Raised`` is thrown
    in); the next ``Io``, or ``Finished``."""
    try:
        if isinstance(outcome, Raised):
            return steps.throw(outcome.error)
        return steps.send(outcome)
    except StopIteration as stop:
        return Finished(stop.value)


def send(action: Any) -> Steps[list[Any]]:
    """A machine's ``SendRpc``: every request at once; their replies, in order.
    Whatever happens, none is left in flight (a no-op for those already done)."""
    start = yield Start(action.method, action.timeout, action.metadata)
    calls = [start(request) for request in action.requests]
    try:
        replies: list[Any] = yield Wait(tuple(calls))
        return replies
    finally:
        for call in calls:
            call.cancel()


def raise_first_failure(handles: list[Any]) -> None:
    """Raise what the first of the finished ``handles`` (futures, tasks) that failed
    raised, in their order: the first failure of a ``RunAll``."""
    for handle in handles:
        if handle.done() and (error := handle.exception()) is not None:
            raise error
