"""Learning *when* a Milvus server completes flushes, to poll only then.

Theory
======
Milvus completes a flush when the channel's time tick passes the flush
timestamp, and time ticks come on a fixed period (``proxy.timeTickInterval``,
200 ms by default). Measured on Milvus 2.3.5 with a 1 ms poller: every
GetFlushState flip (new rows or nothing new, one collection or eight) fell at
the same phase modulo 200 ms, within a few milliseconds, for the life of the
server. So once a client has seen a flip or two it knows when the next one can
happen, and need only ask just after each tick instead of every few
milliseconds all the time.

The model is a *window* on the circle of one tick period: the phases where
flips happen (the work after a tick varies: on a loaded 2.3.5 server, flips
spread over 20 to 40 ms of phase). Every completed wait gives a *bracket*: the
send time of the last "not flushed" poll and the reply time of the "flushed"
one; the flip lies in between. The window is the shortest interval that meets
each of the last ``keep`` brackets, all moved onto one period: so early, wide
brackets do not stretch it, and a flip outside it does. A bracket that would
stretch it past 30% of a period (``_MAX_WINDOW``) drops the oldest brackets
until the rest agree with it (the server restarted, or its phase moved); one
bracket alone is not trusted. Brackets older than ``max_age`` are forgotten
whenever the model is read, so a model learned long ago never schedules a poll.

Once trusted, each tick is polled at the window's start, at even steps (at
most three, ``spacing`` apart at most) through it, the last just after its end,
and once more ``late`` after that. Nothing is polled in between. A flip later still
(or just before the window) is caught at the next tick; two such misses in a row
make the model forget and start over, so a server that is not periodic keeps the
plain back-off schedule, while one outlier does not cost the next calls their
schedule (what that gains, replayed: benchmarks/README.md, "Rules measured").
Correctness never depends on the model: ``flush_sync`` returns only on a
"flushed" answer.

The model holds no I/O; it is shared by all calls to one endpoint in a process
(``for_endpoint``) and guarded by a lock.
"""

from __future__ import annotations

import math
import threading
from collections import deque

__all__ = ["TickModel", "for_endpoint"]

_MIN_GAP = 0.001  # never offer a poll time within 1 ms of the last one
_AFTER = 0.002  # the window's last poll, this long after its end
_MAX_IN_WINDOW = 3
_MAX_WINDOW = 0.3  # of a period: a wider spread of flips is not worth tracking
_MISSES = 2  # misses in a row that make a trusted model forget


class TickModel:
    """When one server's flushes complete, modulo its tick period (module docstring).

    Args:
        period: the server's tick period in seconds.
        spacing: seconds between polls inside the window (at most three of them).
        late: one more poll this long after the window's last one.
        keep: how many recent brackets make up the window.
        max_age: brackets older than this many seconds are forgotten (clock drift,
            server restarts).
    """

    def __init__(
        self,
        period: float = 0.2,
        spacing: float = 0.013,
        late: float = 0.025,
        keep: int = 16,
        max_age: float = 120.0,
    ) -> None:
        self.period = period
        self.spacing = spacing
        self.late = late
        self.max_age = max_age
        self._lock = threading.Lock()
        self._brackets: deque[tuple[float, float]] = deque(maxlen=keep)
        self._misses = 0  # misses in a row while trusted

    def trusted(self, now: float) -> bool:
        """Whether the brackets still fresh at ``now`` agree on a window no wider than
        30% of a period."""
        return self.window(now) is not None

    def window(self, now: float) -> tuple[float, float] | None:
        """The window instance that starts last at or before ``now``; ``None`` if untrusted."""
        with self._lock:
            self._expire(now)
            window = self._window()
        if window is None:
            return None
        lo, hi = window
        shift = math.floor((now - lo) / self.period) * self.period
        return lo + shift, hi + shift

    def _window(self) -> tuple[float, float] | None:
        """The shortest phase interval that meets every recent bracket: wide, early
        brackets do not stretch it; flips outside it do."""
        if len(self._brackets) < 2:
            return None
        ref = self._brackets[-1][0]
        los, his = [], []
        for lo, hi in self._brackets:  # every bracket moved to the period of the newest
            shift = round((lo - ref) / self.period) * self.period
            los.append(lo - shift)
            his.append(hi - shift)
        lo, hi = sorted((min(his), max(los)))
        return (lo, hi) if hi - lo <= _MAX_WINDOW * self.period else None

    def observe(self, lo: float, hi: float) -> None:
        """Record that a flip happened within ``[lo, hi]`` (monotonic seconds)."""
        if hi <= lo:
            return
        with self._lock:
            if hi - lo >= self.period / 2:
                # Says nothing about the phase; but if the window was trusted, the
                # flip fell outside it. Once may be an outlier (or a flip just before
                # the window); twice in a row, forget it all rather than keep missing.
                if self._window() is not None:
                    self._misses += 1
                    if self._misses >= _MISSES:
                        self._brackets.clear()
                        self._misses = 0
                return
            self._misses = 0
            self._expire(hi)
            self._brackets.append((lo, hi))
            while self._window() is None and len(self._brackets) > 1:
                self._brackets.popleft()  # disagrees: drop the oldest until the rest agree

    def _expire(self, now: float) -> None:
        while self._brackets and self._brackets[0][1] < now - self.max_age:
            self._brackets.popleft()

    def next_poll(self, now: float) -> float | None:
        """When to poll next, after ``now``; ``None`` while the model is not trusted."""
        window = self.window(now)
        if window is None:
            return None
        lo, hi = window
        span = hi - lo + _AFTER  # the last in-window poll just after the latest flip seen
        count = min(_MAX_IN_WINDOW, max(1, math.ceil(span / self.spacing)))
        # at the window's start (so a flip there gives a narrow bracket, not a miss),
        # even steps through it, and once more a little later
        offsets = [0.0] + [span * j / count for j in range(1, count + 1)] + [span + self.late]
        for k in range(3):
            for offset in offsets:
                at = lo + k * self.period + offset
                if at > now + _MIN_GAP:
                    return at
        return None  # unreachable: offsets stay below one period


_models: dict[tuple[str, float], TickModel] = {}
_models_lock = threading.Lock()


def for_endpoint(endpoint: str, period: float) -> TickModel:
    """The process-wide model for one server endpoint and tick period."""
    with _models_lock:
        return _models.setdefault((endpoint, period), TickModel(period))
