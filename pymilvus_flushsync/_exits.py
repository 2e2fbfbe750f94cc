"""The command line's exit codes (``--help`` says what each means): here, apart, so
that ``__main__`` has them before anything heavy is imported."""

from __future__ import annotations

import enum
import signal

__all__ = ["Exit"]


class Exit(enum.IntEnum):
    OK = 0
    MILVUS = 1  # the server refused, a missing collection, no connection, ...
    USAGE = 2
    TIMEOUT = 3
    INTERRUPTED = 128 + signal.SIGINT  # 130: the shell's status for Ctrl-C
