"""One INFO line per ``FlushPolicy.heartbeat`` seconds for every call still waiting.

A call that waits without progress (a server that accepts and never answers, a
rate-limit window, a slow flush) would otherwise be silent until its per-RPC cap.
Every call a driver runs is watched (``_protocol.call``) by one process-wide
daemon thread that, at most every ``heartbeat`` seconds per call, logs the
machine's account of itself (``line``: the stage, what is
pending, what it awaits and since when, elapsed, polls). The thread only reads
the machine; the call and its I/O are unchanged, so a wait for an RPC's answer, a
sleep and a shared Flush are all covered, in both drivers. A call shorter than
the heartbeat logs nothing. After ``fork`` the child starts its own thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._state import Turn

__all__ = ["line", "watching"]

logger = logging.getLogger("pymilvus_flushsync")


def line(machine: Any) -> str:
    """One line on where a ``FlushMachine``'s call stands (read from any thread)."""
    state, work = machine.state, machine.work
    progress, action, now = work.progress, machine.in_flight, work.clock()
    pending = ", ".join(progress.behind) or "none"
    if state.turn is Turn.AWAIT and action is not None:
        what = machine.table.steps[state.phase].describe(action.requests)
        doing = f"awaiting {what} for {now - work.sent_at:.1f} s"
    else:
        doing = "sleeping before the next RPC" if state.turn is Turn.SLEEP else "sending"
    return (
        f"{machine.table.name}: still waiting after {now - progress.start:.1f} s; stage "
        f"{state.phase.value} ({doing}); {progress.stage} pending: {pending}; "
        f"polls: {progress.polled}"
    )


class _Watcher:
    """The calls being watched and the thread that beats for them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[int, tuple[Any, float, float]] = {}  # id -> machine, period, due
        self._thread: threading.Thread | None = None

    def add(self, machine: Any, period: float) -> None:
        with self._cond:
            self._due[id(machine)] = (machine, period, time.monotonic() + period)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="pymilvus_flushsync-heartbeat", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def remove(self, machine: Any) -> None:
        with self._cond:
            self._due.pop(id(machine), None)

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                beating = [(k, m, p) for k, (m, p, at) in self._due.items() if at <= now]
                if not beating:  # wait, in the same hold of the lock as the reading
                    nearest = min((at for _, _, at in self._due.values()), default=None)
                    self._cond.wait(None if nearest is None else nearest - now)
                    continue
                for key, machine, period in beating:
                    self._due[key] = (machine, period, now + period)
            for _, machine, _ in beating:
                try:
                    logger.info("%s", line(machine))
                except Exception:  # a call that ended meanwhile; never the thread's end
                    logger.debug("heartbeat skipped", exc_info=True)

    def forked(self) -> None:
        self.__init__()  # type: ignore[misc]  # the parent's thread is not the child's


_watcher = _Watcher()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_watcher.forked)


@contextmanager
def watching(machine: Any) -> Iterator[None]:
    """Beat for ``machine`` while the block runs (nothing if its policy has no
    heartbeat)."""
    period = machine.policy.heartbeat
    if period is None:
        yield
        return
    _watcher.add(machine, period)
    try:
        yield
    finally:
        _watcher.remove(machine)
