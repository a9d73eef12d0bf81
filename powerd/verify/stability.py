"""Has power settled? The stability criterion of ``powerd verify`` (pure: samples in, answer out).

Criterion: over the last ``window_s`` the rolling mean power, taken as the mean over each of
``PARTS`` equal sub-windows, stays within ±``power_pct`` % of the whole window's mean power. The
power is the phase's primary channels' (the result's rule, ``choose_primary``), integrated as the
result integrates them, so a noisy but steady load is stable and a drift or a ramp is not.

Temperature: powerd's channels are power and energy only; no probe reports a device temperature
yet, so the temperature half of the criterion is reported as not checked, with that reason (it
is never silently taken as met).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from powerd.channel import Channel
from powerd.i18n import R_
from powerd.integrate import Window, integrate
from powerd.results import SampleSource, choose_primary

PARTS = 5
NO_TEMPERATURE = R_("no probe reports a device temperature; only power was checked")
# the stability record's reasons (``powerd verify``), stored in English, shown via the catalogue
NO_WARMUP = R_("no warm-up in the protocol: stability not checked")
WARMUP_TOO_SHORT = R_("warm-up ({elapsed_s} s) shorter than the stability window: not checked")
NOT_SETTLED = R_("power not within +-{pct} % over {window_s} s")
NOT_SETTLED_CAPPED = R_("power not within +-{pct} % over {window_s} s within the cap of {max_s} s")


@dataclass(frozen=True)
class PowerCheck:
    """One evaluation: the sub-window means, their largest deviation (%) and the verdict."""

    t_end_ns: int
    window_s: float
    mean_w: float | None
    part_means_w: tuple[float, ...]
    max_dev_pct: float | None
    stable: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "t_end_ns": self.t_end_ns,
            "window_s": self.window_s,
            "mean_power_w": self.mean_w,
            "part_means_w": list(self.part_means_w),
            "max_deviation_pct": self.max_dev_pct,
            "stable": self.stable,
        }


def check_power(
    channels: dict[str, Channel],
    samples: SampleSource,
    t_end_ns: int,
    window_s: float,
    power_pct: float,
) -> PowerCheck:
    """Evaluate the criterion on the window ending at ``t_end_ns``."""
    window_ns = int(window_s * 1e9)
    t0 = t_end_ns - window_ns
    whole = Window(t0, t_end_ns)
    figures = {c: integrate(*samples(c, t0, t_end_ns), whole, ch) for c, ch in channels.items()}
    primary = choose_primary(figures, channels)
    if not primary or any(figures[c].coverage < 1.0 for c in primary):
        return PowerCheck(t_end_ns, window_s, None, (), None, False)
    means: list[float] = []
    for k in range(PARTS):
        a = t0 + window_ns * k // PARTS
        b = t0 + window_ns * (k + 1) // PARTS
        w = Window(a, b)
        energy = 0.0
        for c in primary:
            f = integrate(*samples(c, a, b), w, channels[c])
            if f.energy_j is None:
                return PowerCheck(t_end_ns, window_s, None, (), None, False)
            energy += f.energy_j
        means.append(energy / w.duration_s)
    mean = sum(figures[c].energy_j or 0.0 for c in primary) / whole.duration_s
    if mean == 0:
        dev = 0.0 if all(m == 0 for m in means) else float("inf")
    else:
        dev = max(abs(m - mean) for m in means) / abs(mean) * 100.0
    return PowerCheck(t_end_ns, window_s, mean, tuple(means), dev, dev <= power_pct)
