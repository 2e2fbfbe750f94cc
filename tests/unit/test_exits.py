"""The command line's end: its connection's close never holds the process."""

from __future__ import annotations

import threading
import time

from pymilvus_flushsync import _exits


def test_a_close_that_never_returns_leaves_the_process_free_to_end() -> None:
    """The command's close (``_exits.close_within``): one that returns is waited for; one
    stuck (gRPC waiting on a call it cancelled) is left after its time, and ``stuck()``
    tells ``__main__`` to end the process without waiting on it."""
    closed = threading.Event()
    _exits.close_within(closed.set, 5.0)
    assert closed.is_set() and not _exits.stuck()
    release = threading.Event()
    started = time.monotonic()
    try:
        _exits.close_within(release.wait, 0.2)
        assert _exits.stuck() and time.monotonic() - started < 0.2 + 2.0
    finally:
        release.set()
        _exits._STUCK.clear()
