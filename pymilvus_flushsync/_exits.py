"""The command line's exit codes (``--help`` says what each means), and how it holds a
Ctrl-C back: here, apart, so that ``__main__`` has them before anything heavy is
imported."""

from __future__ import annotations

import enum
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

__all__ = ["CLOSE_WITHIN", "Exit", "close_within", "held_interrupts", "stuck"]

#: At most this long for the command's connection to close at its end.
CLOSE_WITHIN = 2.0
_STUCK = threading.Event()


class Exit(enum.IntEnum):
    OK = 0
    MILVUS = 1  # the server refused, a missing collection, no connection, ...
    USAGE = 2
    TIMEOUT = 3
    INTERRUPTED = 128 + signal.SIGINT  # 130: the shell's status for Ctrl-C


@contextmanager
def held_interrupts() -> Iterator[list[int]]:
    """Hold a Ctrl-C back for the block, to act on it after (the list it yields is not
    empty then): while pymilvus loads (a library that catches everything at import,
    as protobuf's bare ``except:``, would swallow the ``KeyboardInterrupt``, and the
    command would run on), and while ``demo`` removes its database. Not where Ctrl-C
    is ignored, nor off the main thread."""
    held: list[int] = []
    holding = False
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        with suppress(ValueError):  # not the main thread
            signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
            holding = True
    try:
        yield held
    finally:
        if holding:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def close_within(close: Callable[[], object], seconds: float = CLOSE_WITHIN) -> None:
    """Run ``close`` (the command's connection's) for ``seconds`` at most. After a
    Ctrl-C, gRPC may not have let go of the call it cancelled (``_sync.LET_GO``), and
    closing its channel then waits for it without end: 1 in 9 runs of the Ctrl-C tests
    on pymilvus 2.5 under load. Past ``seconds`` the close is left on its daemon thread
    and the process ends at once once the command is over (``stuck``, ``__main__``)."""
    closer = threading.Thread(target=close, name="pymilvus-flushsync close", daemon=True)
    closer.start()
    closer.join(seconds)
    if closer.is_alive():
        _STUCK.set()


def stuck() -> bool:
    """Whether a close outlived ``close_within``: the interpreter's shutdown would wait
    on the same channel, so ``__main__`` ends the process without it."""
    return _STUCK.is_set()
