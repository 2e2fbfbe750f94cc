"""The command line's exit codes (``--help`` says what each means), and how it holds a
Ctrl-C back: here, apart, so that ``__main__`` has them before anything heavy is
imported."""

from __future__ import annotations

import enum
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress

__all__ = ["Exit", "held_interrupts"]


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
