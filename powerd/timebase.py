"""The monotonic→UTC anchor: samples are stamped from ``time.monotonic_ns()`` and mapped to UTC.

A wall-clock step (NTP, an operator) must not tear the timeline, so per-sample stamps never read the
wall clock. ``TimeAnchor.check()`` compares the wall clock with the mapping now and then; a
disagreement beyond ``step_threshold_ns`` re-anchors and is recorded as a step, so a report can flag
phases that span one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], int]


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

    def __post_init__(self) -> None:
        self.offset_ns, self.read_uncertainty_ns = self._take()

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
        return (self.mono() if mono_ns is None else mono_ns) + self.offset_ns

    def check(self) -> ClockStep | None:
        """Re-anchor if the wall clock stepped; return the recorded step, if any."""
        offset, half = self._take()
        delta = offset - self.offset_ns
        if abs(delta) <= self.step_threshold_ns:
            return None
        now_mono = self.mono()
        self.offset_ns, self.read_uncertainty_ns = offset, half
        step = ClockStep(now_mono, now_mono + offset, delta)
        self.steps.append(step)
        return step
