"""The command line's entry point: ``pymilvus-flushsync`` and ``python -m pymilvus_flushsync``.

This module imports nothing heavy itself, so that two things hold from the first
moment of ``main``:

* Ctrl-C at any moment is exit 130 and one line, even while pymilvus is imported
  (about 0.8 s: it is held back until the import is over, ``_exits.held_interrupts``);
  once the command is over, a Ctrl-C ends the process quietly by SIGINT
  (interpreter shutdown joins threads).
* ``$MILVUS_URI`` may name a Milvus Lite file, as the command documents: pymilvus
  parses that variable when it is imported and rejects a Lite path ("Illegal uri"),
  so it is hidden from pymilvus while pymilvus loads; the command reads it itself.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

from ._exits import Exit, held_interrupts, stuck


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (``_cli.main``); returns the exit code."""
    try:
        milvus_uri = os.environ.pop("MILVUS_URI", None)
        try:
            with held_interrupts() as held:
                from . import _cli  # imports pymilvus
        finally:
            if milvus_uri is not None:
                os.environ["MILVUS_URI"] = milvus_uri
        if held:
            raise KeyboardInterrupt
        return _cli.main(argv)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return Exit.INTERRUPTED


def run() -> int:
    """The installed command: ``main()``, after which Ctrl-C kills quietly; a connection
    whose close got stuck (``_exits.close_within``) does not hold the exit."""
    code = main()
    if stuck():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not if ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    return code


if __name__ == "__main__":
    sys.exit(run())
