"""Has power settled? The stability criterion of ``powerd verify`` (pure: samples in, answer out).

Criterion: over the last ``window_s`` the rolling mean power, taken as the mean over each of
``PARTS`` equal sub-windows, stays within ±``power_pct`` % of the whole window's mean power. The
power is the phase's primary channels' (the result's rule, ``choose_primary``), integrated as the
result integrates them, so a noisy but steady load is stable and a drift or a ramp is not.

Temperature: a probe that reports device temperatures (``TemperatureProbe``: NVML's GPU core
sensor, the sim source with ``temp=``) is read beside the power, as a separate quantity (°C, not a
channel: nothing integrates it). Where one reports, the criterion also needs every sensor's
readings over the last ``window_s`` within ±``temperature_c`` of their mean, with readings
spanning the window; where none does, the temperature half is reported as not checked, with
that reason (it is never silently taken as met).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
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
TEMP_NOT_SETTLED = R_("temperature not within +-{c} °C over {window_s} s")
TEMP_SPAN = 0.8  # readings must span this share of the window (a sensor that went quiet: no)


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


@dataclass(frozen=True)
class TempCheck:
    """The temperature half of one evaluation: per sensor, its mean and largest deviation (°C)
    over the window; stable when every sensor settled and covered the window."""

    window_s: float
    bound_c: float
    sensors: dict[str, dict[str, Any]]
    stable: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "window_s": self.window_s,
            "bound_c": self.bound_c,
            "sensors": self.sensors,
            "stable": self.stable,
        }


@dataclass
class TemperatureLog:
    """Readings (UTC ns, °C) per sensor, appended by the verification while CMD runs; read
    failures are counted per sensor (and shown in the record), never dropped silently."""

    readings: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, t_ns: int, values: dict[str, float]) -> None:
        with self.lock:
            for name, c in values.items():
                self.readings.setdefault(name, []).append((t_ns, float(c)))

    def failed(self, name: str) -> None:
        with self.lock:
            self.failures[name] = self.failures.get(name, 0) + 1

    def check(self, t_end_ns: int, window_s: float, bound_c: float) -> TempCheck | None:
        """None when no sensor has reported at all (the criterion is power only)."""
        with self.lock:
            series = {k: list(v) for k, v in self.readings.items()}
        if not series:
            return None
        t0 = t_end_ns - int(window_s * 1e9)
        sensors: dict[str, dict[str, Any]] = {}
        for name, rows in sorted(series.items()):
            inside = [c for t, c in rows if t0 <= t <= t_end_ns]
            times = [t for t, _ in rows if t0 <= t <= t_end_ns]
            spans = len(times) >= 2 and (max(times) - min(times)) >= TEMP_SPAN * window_s * 1e9
            mean = sum(inside) / len(inside) if inside else None
            dev = max(abs(c - mean) for c in inside) if mean is not None else None
            sensors[name] = {
                "readings": len(inside),
                "mean_c": mean,
                "max_deviation_c": dev,
                "covers_window": spans,
                "stable": bool(spans and dev is not None and dev <= bound_c),
            }
        stable = all(v["stable"] for v in sensors.values())
        return TempCheck(window_s, bound_c, sensors, stable)


@dataclass(frozen=True)
class StabilityCheck:
    """One evaluation of the whole criterion: power, and temperature where a probe reports one."""

    power: PowerCheck
    temperature: TempCheck | None

    @property
    def stable(self) -> bool:
        return self.power.stable and (self.temperature is None or self.temperature.stable)

    def to_json(self) -> dict[str, Any]:
        out = self.power.to_json()
        out["power_stable"] = self.power.stable
        out["stable"] = self.stable
        if self.temperature is not None:
            out["temperature"] = self.temperature.to_json()
        return out
