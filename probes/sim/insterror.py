"""Simulated instrument error for the meter simulators: one gain and offset per run, seeded.

The simulators serve exact waveform means, so without this the uncertainty's instrument term (the
meter's datasheet accuracy) has nothing to cover. ``error_seed=N`` (a simulator option, off by
default) draws a gain error and an offset for the whole run, each from a normal distribution whose
95 % bound is the datasheet's (σ = bound / 1.96): powerd reads a datasheet accuracy as a 95 %
bound (``powerd.channel.Accuracy``), so a batch of drawn meters is within spec as a batch of real
ones is, about 5 % of them per component beyond it. Both components together stay within the
root-sum-square of their bounds (the instrument term, ``Accuracy.power_u95_w``) in 95 % of draws;
within their linear sum in 95-99.4 %, depending on their ratio.
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
        """A meter drawn to its spec: ±``gain_bound`` (fraction) and ±``offset_bound_w`` at 95 %."""
        rng = random.Random(seed)
        return cls(rng.gauss(0.0, gain_bound / Z95), rng.gauss(0.0, offset_bound_w / Z95))

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
