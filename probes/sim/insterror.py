"""Simulated instrument error for the meter simulators: one gain and offset per run, seeded.

The simulators serve exact waveform means, so without this the uncertainty's instrument term (the
meter's datasheet accuracy) has nothing to cover. ``error_seed=N`` (a simulator option, off by
default) draws a gain error and an offset each from a normal distribution whose 95 % bound is the
datasheet's (σ = bound / 1.96), clipped to that bound, so every drawn meter is within its spec
and about 5 % of drawn meters sit beyond the bound's 95 % core, as a batch of real ones would.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

Z95 = 1.96


@dataclass(frozen=True)
class InstrumentError:
    """Reading = truth × (1 + gain) + offset_w (power); energy gets offset_w × duration."""

    gain: float = 0.0
    offset_w: float = 0.0

    @classmethod
    def draw(cls, seed: int, gain_bound: float, offset_bound_w: float) -> InstrumentError:
        """A meter drawn within its spec: ±``gain_bound`` (fraction) and ±``offset_bound_w``."""
        rng = random.Random(seed)

        def one(bound: float) -> float:
            return max(-bound, min(bound, rng.gauss(0.0, bound / Z95)))

        return cls(one(gain_bound), one(offset_bound_w))

    def wrap(self, waveform: Any) -> ErredWaveform:
        return ErredWaveform(waveform, self)


class ErredWaveform:
    """A waveform as an erring meter reads it (``energy_j`` and ``power_w``; the rest delegated)."""

    def __init__(self, waveform: Any, error: InstrumentError) -> None:
        self.inner = waveform
        self.error = error

    def energy_j(self, t_begin_ns: int, t_end_ns: int) -> float:
        e = self.error
        true_j = float(self.inner.energy_j(t_begin_ns, t_end_ns))
        return true_j * (1.0 + e.gain) + e.offset_w * (t_end_ns - t_begin_ns) / 1e9

    def power_w(self, t_ns: Any) -> Any:
        return self.inner.power_w(t_ns) * (1.0 + self.error.gain) + self.error.offset_w

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def parse_seed(options: dict[str, str], who: str) -> int | None:
    """The ``error_seed`` option (an integer), or None when absent (no instrument error)."""
    from powerd.errors import SpecError

    if "error_seed" not in options:
        return None
    try:
        return int(options["error_seed"])
    except ValueError:
        raise SpecError(f"{who}: error_seed must be an integer") from None
