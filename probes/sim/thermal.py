"""A device temperature that settles, or never does: a first-order model for the ``sim`` source.

Why: ``powerd verify``'s stability criterion uses the device temperature where a probe reports
one (issue 14 item 1), and the tests need a temperature with a known settling time. T(t) is a
pure function of the seconds since the probe's first read: an exponential approach from
``start_c`` to ``settle_c`` with time constant ``tau_s``, plus ``drift_c_per_s`` × t (a device
that keeps heating: never settles).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ThermalModel:
    """Temperature (°C) against seconds since the device started working."""

    settle_c: float
    start_c: float
    tau_s: float
    drift_c_per_s: float = 0.0

    def at(self, elapsed_s: float) -> float:
        e = max(0.0, elapsed_s)
        gap = self.start_c - self.settle_c
        return self.settle_c + gap * math.exp(-e / self.tau_s) + self.drift_c_per_s * e
