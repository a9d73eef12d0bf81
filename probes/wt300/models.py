"""The Yokogawa WT300/WT300E models: input elements, ranges, update intervals and power accuracy.

One table so the probe, the simulator and the tests agree. Figures are from the Getting Started
Guides' specification chapters (IM WT310-02EN and IM WT310E-02EN, §7.3.2 "Active Power Accuracy",
12-month accuracy, power factor 1) and the User's Manual IM WT310E-01EN §2 (ranges):

- WT310 / WT332 / WT333:    DC ±(0.1 % rdg + 0.2 % rng); 45-66 Hz ±(0.1 % rdg + 0.1 % rng)
- WT310E / WT332E / WT333E: DC ±(0.1 % rdg + 0.2 % rng); 45-66 Hz ±(0.1 % rdg + 0.05 % rng)
- WT310HC / WT310EH direct current input: DC ±(0.3 % rdg + 0.2 % rng); 45-66 Hz as above
- crest factor 6 (or 6A): the range error doubles, and every range halves.

The power range of an element wired 1P2W is voltage range × current range.
"""

from __future__ import annotations

from dataclasses import dataclass

VOLTAGE_RANGES_CF3_V = (15.0, 30.0, 60.0, 150.0, 300.0, 600.0)
CURRENT_RANGES_CF3_A = {
    "wt310": (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0),
    "hc": (1.0, 2.0, 5.0, 10.0, 20.0, 40.0),
    "wt330": (0.5, 1.0, 2.0, 5.0, 10.0, 20.0),
}
RATES_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
RATES_E_S = (*RATES_S, 10.0, 20.0)


@dataclass(frozen=True)
class ModelSpec:
    """What one model is: its input elements and the numbers its accuracy depends on."""

    name: str
    elements: tuple[int, ...]
    current_kind: str
    dc: tuple[float, float]
    ac: tuple[float, float]
    rates_s: tuple[float, ...]

    def voltage_ranges_v(self, crest_factor: int) -> tuple[float, ...]:
        return tuple(r * 3 / crest_factor for r in VOLTAGE_RANGES_CF3_V)

    def current_ranges_a(self, crest_factor: int) -> tuple[float, ...]:
        return tuple(r * 3 / crest_factor for r in CURRENT_RANGES_CF3_A[self.current_kind])

    def accuracy_fracs(self, coupling: str, crest_factor: int) -> tuple[float, float]:
        """(reading fraction, range fraction) for ``coupling`` ``dc`` or ``ac`` (45-66 Hz)."""
        reading, rng = self.dc if coupling == "dc" else self.ac
        return reading, rng * (2.0 if crest_factor == 6 else 1.0)


_CLASSIC_DC = (0.001, 0.002)
_HC_DC = (0.003, 0.002)
MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec("WT310", (1,), "wt310", _CLASSIC_DC, (0.001, 0.001), RATES_S),
        ModelSpec("WT310HC", (1,), "hc", _HC_DC, (0.001, 0.001), RATES_S),
        ModelSpec("WT332", (1, 3), "wt330", _CLASSIC_DC, (0.001, 0.001), RATES_S),
        ModelSpec("WT333", (1, 2, 3), "wt330", _CLASSIC_DC, (0.001, 0.001), RATES_S),
        ModelSpec("WT310E", (1,), "wt310", _CLASSIC_DC, (0.001, 0.0005), RATES_E_S),
        ModelSpec("WT310EH", (1,), "hc", _HC_DC, (0.001, 0.0005), RATES_E_S),
        ModelSpec("WT332E", (1, 3), "wt330", _CLASSIC_DC, (0.001, 0.0005), RATES_E_S),
        ModelSpec("WT333E", (1, 2, 3), "wt330", _CLASSIC_DC, (0.001, 0.0005), RATES_E_S),
    )
}
ALIASES = {"WT330": "WT333", "WT330E": "WT333E"}


def lookup(name: str) -> ModelSpec | None:
    """The model called ``name`` (case-insensitive; ``WT330`` means the three-element WT333)."""
    key = name.strip().upper()
    return MODELS.get(ALIASES.get(key, key))


def smallest_range(ranges: tuple[float, ...], needed: float) -> float | None:
    """The smallest range that is at least ``needed`` (with float slack), or None."""
    for r in ranges:
        if r >= needed * (1 - 1e-9):
            return r
    return None


def rate_command_arg(rate_s: float) -> str:
    """``:RATE`` argument: ``100MS``, ``250MS``, ``1S``..."""
    if rate_s < 1:
        return f"{round(rate_s * 1000)}MS"
    return f"{round(rate_s)}S"
