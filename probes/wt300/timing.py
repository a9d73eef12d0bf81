"""When did each meter update end? Update numbers and the host clock, without the reply jitter.

The WT300 updates its readings every interval T on its own crystal and has no timestamps. The
host sees a reply some latency after each update ends (meter processing, the first byte on the
wire, USB-serial adapter latency, scheduling); the latency varies but is never negative. So update
k ended at ``offset + k*T`` where ``offset`` is the smallest ``t_rx - k*T`` seen over a recent
window (the least-delayed reply, as NTP keeps the exchange with the least round trip), and the
window is short enough that crystal drift does not matter.

Which update a reply belongs to is not guessed from its arrival time alone (a reply delayed by more
than T/2 on a loaded host would be taken for the next update, and every later one with it). The
reply to ``:COMM:WAIT 1;:NUM:NORM:VAL?`` is for the first update that ended after the meter
cleared EESR, and that clear happened between sending ``:STAT:EESR?`` and its reply: on the update
grid that brackets the update number, usually to exactly one. Only when an update ended during the
EESR exchange does the arrival time choose, within the bracket. A skipped update (the clear came
after the next update had already ended) is counted, never merged.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

WINDOW_S = 10.0
MIN_WINDOW_UPDATES = 8


@dataclass(frozen=True)
class Update:
    """One update: its number since (re)connect, when it ended (host UTC ns), updates skipped
    since the previous one, and this reply's latency beyond the least-delayed one."""

    k: int
    t_end_ns: int
    skipped: int
    excess_latency_ns: int


@dataclass
class UpdateClock:
    """Feed reply arrival times (and the EESR clear bracket), get update numbers and end times."""

    interval_ns: int
    _k: int = -1
    _offsets: deque[tuple[int, int]] = field(default_factory=deque)

    @property
    def window_updates(self) -> int:
        return max(MIN_WINDOW_UPDATES, math.ceil(WINDOW_S * 1e9 / self.interval_ns))

    def reset(self) -> None:
        """Forget the grid (after a reconnect the meter's phase is unknown again)."""
        self._k = -1
        self._offsets.clear()

    def _offset(self) -> int:
        return min(o for _, o in self._offsets)

    def _first_end_after(self, t_ns: int) -> int:
        return (t_ns - self._offset()) // self.interval_ns + 1

    def feed(
        self, t_rx_ns: int, cleared_after_ns: int | None = None, cleared_by_ns: int | None = None
    ) -> Update:
        """A reply that began to arrive at ``t_rx_ns``, for the first update ending after an
        EESR clear that happened within [``cleared_after_ns``, ``cleared_by_ns``] (if known)."""
        t = self.interval_ns
        if self._k < 0:
            k, skipped = 0, 0
        else:
            lo = self._k + 1
            hi = None
            if cleared_after_ns is not None:
                lo = max(lo, self._first_end_after(cleared_after_ns))
            if cleared_by_ns is not None:
                hi = max(lo, self._first_end_after(cleared_by_ns))
            k = max(lo, round((t_rx_ns - self._offset()) / t))
            if hi is not None:
                k = min(k, hi)
            skipped = k - self._k - 1
        self._k = k
        self._offsets.append((k, t_rx_ns - k * t))
        while self._offsets and self._offsets[0][0] <= k - self.window_updates:
            self._offsets.popleft()
        t_end = self._offset() + k * t
        return Update(k, t_end, skipped, t_rx_ns - t_end)
