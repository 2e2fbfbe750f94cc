"""What a process remembers per server endpoint of the Flushes it sent.

A rate-limited Flush answers status 8 with ``rate exceeded[rate=R]``: the
collection may be flushed once per ``1/R`` s. Each endpoint remembers when it
last sent an accepted Flush per collection, so a rejected one is retried just
after that one's ``1/R`` s have passed instead of on the blind back-off (which
would send several doomed Flush RPCs). Every call to the endpoint shares it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

__all__ = ["RATE_MARGIN", "FlushHistory", "history_for"]

#: How much later than ``last accepted + 1/rate`` a rate-limited Flush is retried:
#: the server admitted the last one a little after we sent it.
RATE_MARGIN = 0.1
#: Collections remembered per endpoint (oldest forgotten first).
_HISTORY_SIZE = 4096


class FlushHistory:
    """When this process last sent an accepted Flush per collection, for one endpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent: OrderedDict[tuple[str, str], float] = OrderedDict()

    def accepted(self, db_name: str, names: Iterable[str], sent_at: float) -> None:
        with self._lock:
            for name in names:
                self._sent[(db_name, name)] = sent_at
                self._sent.move_to_end((db_name, name))
            while len(self._sent) > _HISTORY_SIZE:
                self._sent.popitem(last=False)

    def retry_at(self, db_name: str, names: Iterable[str], rate: float) -> float | None:
        """When a Flush of ``names`` rejected at ``rate`` per second should pass
        (``None``: no accepted Flush of them is known)."""
        with self._lock:
            sent = [self._sent[(db_name, n)] for n in names if (db_name, n) in self._sent]
        return max(sent) + 1 / rate + RATE_MARGIN if sent and rate > 0 else None


_lock = threading.Lock()
_histories: dict[str, FlushHistory] = {}


def history_for(endpoint: str) -> FlushHistory:
    """The process-wide Flush history of one server endpoint."""
    with _lock:
        return _histories.setdefault(endpoint, FlushHistory())
