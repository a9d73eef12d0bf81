"""Places the shield's sample grid on the host's UTC timeline (pure: read times are passed in).

The shield samples on its own crystal: slot k of an acquisition is at k × period after its start,
and the decoder keeps k right across lost bytes (timestamp frames re-anchor it). The host only has
to find where slot 0 sits on its clock. Every chunk read gives an upper bound: the last sample it
brought cannot have been taken after the read, so ``offset ≤ read_ns − last_slot × period``
(``observe``; the decoder may hand samples out later, ``stamp`` places them). The least
of the bounds over the last ``window`` seconds is the chunk that came through fastest (the same
idea as NTP's minimum-delay filter); it follows a crystal that runs fast or slow against the host
within that window. The offset in use moves toward that target by at most ``slew`` of the chunk's
duration, spread over the chunk's samples, so stamps stay strictly increasing and never jump.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from powerd.block import I64

WINDOW_NS = 10_000_000_000
SLEW = 0.01


class SampleClock:
    """Maps grid slots of one acquisition to host UTC ns; ``restart`` for the next acquisition."""

    def __init__(self, period_ns: int, window_ns: int = WINDOW_NS, slew: float = SLEW) -> None:
        self.period_ns = period_ns
        self.window_ns = window_ns
        self.slew = slew
        self.offset_ns: int | None = None
        self.last_t_ns: int | None = None
        self.latest_bound_ns: int | None = None
        self.target_ns: int | None = None
        self._bounds: deque[tuple[int, int]] = deque()

    def restart(self) -> None:
        """A new acquisition: slot 0 is somewhere new; earlier stamps still bound later ones."""
        self.offset_ns = None
        self.target_ns = None
        self._bounds.clear()

    def _target(self, read_ns: int, bound: int) -> int:
        q = self._bounds
        while q and q[-1][1] >= bound:
            q.pop()
        q.append((read_ns, bound))
        while q[0][0] < read_ns - self.window_ns:
            q.popleft()
        return q[0][1]

    def observe(self, last_slot: int, read_ns: int) -> None:
        """Slot ``last_slot`` had arrived by ``read_ns``: a bound on where slot 0 sits."""
        bound = read_ns - last_slot * self.period_ns
        self.latest_bound_ns = bound
        self.target_ns = self._target(read_ns, bound)

    def stamp(self, slots: I64) -> tuple[I64, int]:
        """Host UTC ns of samples at ``slots`` (increasing; observed before).

        Returns the stamps and how many leading samples fall at or before an earlier stamp (a
        defect upstream; the caller drops them rather than break the time order).
        """
        n = int(slots.size)
        if n == 0 or self.target_ns is None:
            return np.empty(0, np.int64), n
        if self.offset_ns is None:
            self.offset_ns = self.target_ns
        max_step = int(self.slew * n * self.period_ns)
        step = max(-max_step, min(max_step, self.target_ns - self.offset_ns))
        t = self.offset_ns + slots * np.int64(self.period_ns)
        if step:
            t += (np.arange(1, n + 1, dtype=np.int64) * step) // n
        self.offset_ns += step
        skip = 0
        if self.last_t_ns is not None and t[0] <= self.last_t_ns:
            skip = int(np.searchsorted(t, self.last_t_ns, "right"))
        if skip < n:
            self.last_t_ns = int(t[-1])
        return t, skip
