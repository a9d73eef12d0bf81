"""The monotonic→UTC anchor: samples are stamped from ``time.monotonic_ns()`` and mapped to UTC.

A wall-clock step (NTP, an operator) must not tear the timeline, so per-sample stamps never read the
wall clock. ``TimeAnchor.check()`` compares the wall clock with the mapping now and then.

Step or drift. On Linux, NTP and ``adjtime`` slewing move CLOCK_MONOTONIC and CLOCK_REALTIME alike
(clock_getres(2): CLOCK_MONOTONIC "is affected by the incremental adjustments performed by
adjtime(3) and NTP"); the wall − monotonic difference changes only when the wall clock is *set*
(settimeofday, clock_settime, a leap second): a discontinuous step. A slow steady divergence comes
from elsewhere (libfaketime with a rate, a VM's guest agent nudging the clock, other kernels), and
it is not a step: treating it as one re-anchors every second or two, starts a new clock epoch on an
agent each time and flags ``clock_step`` on ordinary runs. So ``check`` tells them apart:

- a *step* is a change of the offset between two checks beyond ``step_threshold_ns`` plus what the
  drift seen so far explains (its rate, learned over the checks since the last step or re-anchor,
  with ``drift_tolerance_ppm`` of slack for a rate not learned yet): re-anchored, recorded in
  ``steps`` (a report flags phases that span one);
- *drift* is followed only if ``follow_drift`` (the daemon's own clock, ``powerd measure``): the
  mapping is re-anchored at each check without a jump, as a continuous line whose slope is the
  learned drift plus what works the remaining difference off over ``SLEW_HORIZON_NS`` (a slew,
  as NTP does to the wall clock), so stamps stay continuous and increasing and within a few ms of
  the wall clock; counted in ``drift_reanchors``, never recorded as a step (only a difference
  beyond ``drift_jump_ns`` is taken at once). An agent's EpochAnchor does not follow: its stamps
  stay ``monotonic + anchor`` for the whole epoch, which is what the daemon's clock exchanges
  measure (drift included) and what links its epochs (see agent/epoch.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], int]

# Slack for a drift rate not learned yet: 1 % (10 ms per second between two checks).
DRIFT_TOLERANCE_PPM = 10_000.0
# The rate is learned only from spans at least this long (shorter ones: read noise dominates).
DRIFT_MIN_SPAN_NS = 2_000_000_000
# A followed drift's remaining difference is worked off over this long (a slew, not a jump).
SLEW_HORIZON_NS = 2_000_000_000
# A difference this small (a few bracketed reads' noise) leaves the mapping as it is: a host
# without drift keeps one constant offset, as before.
SLEW_DEADBAND_NS = 200_000


@dataclass(frozen=True)
class ClockStep:
    """A re-anchor: at host monotonic ``mono_ns`` the mapping moved by ``step_ns``."""

    mono_ns: int
    utc_ns: int
    step_ns: int


@dataclass
class TimeAnchor:
    """Maps monotonic ns to UTC ns by an offset taken at start (bracketed wall-clock read)."""

    mono: Clock = time.monotonic_ns
    wall: Clock = time.time_ns
    step_threshold_ns: int = 5_000_000
    offset_ns: int = 0
    read_uncertainty_ns: int = 0
    steps: list[ClockStep] = field(default_factory=list)
    # drift (see the module docstring): followed or not, its rate, re-anchors on it
    follow_drift: bool = True
    drift_jump_ns: int = 50_000_000
    drift_tolerance_ppm: float = DRIFT_TOLERANCE_PPM
    drift_ppm: float = 0.0
    drift_reanchors: int = 0
    # offset and monotonic time of the last check, and where the current drift span started
    _last: tuple[int, int] = field(default=(0, 0), repr=False)
    _span0: tuple[int, int] = field(default=(0, 0), repr=False)
    # the mapping: UTC = mono + offset + (mono - ref_mono) × slope; one tuple, replaced at once
    # (read by other threads without a lock)
    _line: tuple[int, int, float] = field(default=(0, 0, 0.0), repr=False)

    def __post_init__(self) -> None:
        self.offset_ns, self.read_uncertainty_ns = self._take()
        self._last = self._span0 = (self.mono(), self.offset_ns)
        self._line = (self._last[0], self.offset_ns, 0.0)

    def _take(self) -> tuple[int, int]:
        """Offset wall − mono from the tightest of a few bracketed reads, and its half-width."""
        best: tuple[int, int] | None = None
        for _ in range(5):
            m0 = self.mono()
            w = self.wall()
            m1 = self.mono()
            half = (m1 - m0) // 2
            if best is None or half < best[1]:
                best = (w - (m0 + half), half)
        assert best is not None
        return best

    def utc_ns(self, mono_ns: int | None = None) -> int:
        """UTC ns of a monotonic stamp (now if None)."""
        m = self.mono() if mono_ns is None else mono_ns
        ref_mono, offset, slope = self._line
        return m + offset if slope == 0.0 else m + offset + round((m - ref_mono) * slope)

    def wall_disagreement_ns(self) -> int:
        """Wall clock minus the mapping now (what drift not followed has accumulated)."""
        return self._last[1] - self.offset_ns

    def check(self) -> ClockStep | None:
        """Re-anchor on a step (returned, recorded) or, if ``follow_drift``, on drift (not a
        step: counted in ``drift_reanchors``); None unless a step."""
        offset, half = self._take()
        now_mono = self.mono()
        last_mono, last_offset = self._last
        dt_ns = max(0, now_mono - last_mono)
        self._last = (now_mono, offset)
        explained = self.drift_ppm * 1e-6 * dt_ns
        slack = self.step_threshold_ns + self.drift_tolerance_ppm * 1e-6 * dt_ns
        jump = offset - last_offset - explained
        if abs(jump) > slack:
            step = ClockStep(now_mono, now_mono + offset, offset - self.utc_ns(now_mono) + now_mono)
            self.offset_ns, self.read_uncertainty_ns = offset, half
            self._line = (now_mono, offset, self._line[2])
            self._span0 = (now_mono, offset)
            self.steps.append(step)
            return step
        span_mono, span_offset = self._span0
        if now_mono - span_mono >= DRIFT_MIN_SPAN_NS:
            self.drift_ppm = (offset - span_offset) / (now_mono - span_mono) * 1e6
        elif dt_ns > 0:
            self.drift_ppm = (offset - last_offset) / dt_ns * 1e6  # a first guess
        if self.follow_drift:
            self._slew(now_mono, offset, half)
        return None

    def _slew(self, now_mono: int, offset: int, half: int) -> None:
        """Follow drift: a new line through the mapping's own value now (no jump), sloped to
        the drift plus the difference left over SLEW_HORIZON_NS (see the module docstring)."""
        mapped = self.utc_ns(now_mono) - now_mono
        error = offset - mapped
        if abs(error) <= SLEW_DEADBAND_NS + half:
            return
        if abs(error) > self.drift_jump_ns:  # too far to slew: taken at once (still no step)
            mapped, error = offset, 0
        limit = self.drift_tolerance_ppm * 1e-6
        slope = min(limit, max(-limit, self.drift_ppm * 1e-6 + error / SLEW_HORIZON_NS))
        if mapped != self.offset_ns or slope != self._line[2]:
            self.drift_reanchors += 1
        self._line = (now_mono, mapped, slope)
        self.offset_ns, self.read_uncertainty_ns = mapped, half
