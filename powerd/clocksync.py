"""Clock offset of an agent, from NTP-style four-timestamp exchanges (pure: no clocks, no I/O).

The daemon sends a request at t1 (its clock), the agent stamps receipt t2 and reply t3 (its clock),
the daemon receives at t4. With the delays each way assumed equal, the agent's clock reads
``theta = ((t2 - t1) + (t3 - t4)) / 2`` ahead of the daemon's, and the exchange's round trip is
``(t4 - t1) - (t3 - t2)``; the true offset lies within half the round trip of the estimate.

The estimate keeps the exchanges of a sliding window, trusts the one with the least round trip
(queueing only ever adds delay), and tracks drift as the slope of the low-delay exchanges' offsets,
so a marker stamped between exchanges is corrected for the drift since the best one. Offsets here
are what to ADD to an agent's stamp to put it on the daemon's clock (``-theta``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

WINDOW_NS = 120_000_000_000
MAX_EXCHANGES = 512
DRIFT_MIN_SPAN_NS = 5_000_000_000


@dataclass(frozen=True)
class Exchange:
    t1_ns: int
    t2_ns: int
    t3_ns: int
    t4_ns: int

    @property
    def offset_ns(self) -> float:
        """What to add to the agent's clock to get the daemon's."""
        return ((self.t1_ns - self.t2_ns) + (self.t4_ns - self.t3_ns)) / 2

    @property
    def rtt_ns(self) -> int:
        return (self.t4_ns - self.t1_ns) - (self.t3_ns - self.t2_ns)


@dataclass(frozen=True)
class Offset:
    """An agent's offset at some time: add ``offset_ns`` to its stamps; ± ``uncertainty_ns``."""

    offset_ns: int
    uncertainty_ns: int
    drift_ppm: float
    exchanges: int


@dataclass
class OffsetEstimator:
    """Sliding window of exchanges for one agent."""

    window_ns: int = WINDOW_NS
    exchanges: deque[Exchange] = field(default_factory=lambda: deque(maxlen=MAX_EXCHANGES))
    rejected: int = 0
    # (best exchange, drift) of the current exchanges: computed once per change, not per stamp
    # placed (a daemon places every block of every agent with it; issue 16)
    _fit: tuple[Exchange, float] | None = field(default=None, repr=False, compare=False)

    def add(self, ex: Exchange) -> bool:
        """Keep a plausible exchange (non-negative round trip); drop those older than the window."""
        if ex.rtt_ns < 0 or ex.t4_ns < ex.t1_ns:
            self.rejected += 1
            return False
        self.exchanges.append(ex)
        self._fit = None
        while self.exchanges and self.exchanges[0].t4_ns < ex.t4_ns - self.window_ns:
            self.exchanges.popleft()
        return True

    def _drift(self, best: Exchange) -> float:
        """Slope (ns per ns) of the offsets of exchanges whose round trip is near the best."""
        good = [e for e in self.exchanges if e.rtt_ns <= 2 * best.rtt_ns + 200_000]
        if len(good) < 3 or good[-1].t4_ns - good[0].t4_ns < DRIFT_MIN_SPAN_NS:
            return 0.0
        t = np.array([e.t4_ns - best.t4_ns for e in good], np.float64)
        y = np.array([e.offset_ns for e in good], np.float64)
        slope = float(np.polyfit(t, y, 1)[0])
        return slope

    def estimate(self, at_ns: int | None = None) -> Offset | None:
        """Offset for a stamp taken at ``at_ns`` (daemon clock; default: the best exchange)."""
        if not self.exchanges:
            return None
        if self._fit is None:
            best = min(self.exchanges, key=lambda e: e.rtt_ns)
            self._fit = (best, self._drift(best))
        best, drift = self._fit
        dt = 0 if at_ns is None else at_ns - best.t4_ns
        offset = best.offset_ns + drift * dt
        uncertainty = best.rtt_ns / 2 + abs(drift) * abs(dt) * 0.5
        return Offset(round(offset), max(1, round(uncertainty)), drift * 1e6, len(self.exchanges))
