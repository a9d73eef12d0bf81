"""Deterministic power waveforms with exactly known energy: ground truth for tests and benchmarks.

Each waveform is a pure function of UTC time in ns with phase 0 at the Unix epoch, so the true
energy of any window follows from a result's ``t_begin_ns``/``t_end_ns`` alone. Period arithmetic is
done on integer nanoseconds, so the truth stays exact at today's epoch offsets (~1.8e18 ns).

Spec (after ``sim:``): ``<shape>[,key=value...]``

- ``constant,w=5``
- ``square,high=10,low=2,period=0.1,duty=0.5`` (high for the first ``duty`` of each period)
- ``ramp,low=2,high=10,period=1`` (sawtooth: rises linearly from low to high over each period)

Common keys: ``rate`` (Hz, default 1000), ``noise`` (W, std of Gaussian noise added to each sample,
power only, deterministic per sample and ``seed``), ``kind`` (``power`` or ``energy``: a cumulative
counter in J since the epoch), ``wrap`` (J, counter range: the counter restarts at 0), ``id``
(channel instance, default the shape), ``measures`` (what the channel measures), ``class``
(``meter``/``telemetry``/``estimate``, default meter), ``acc`` (accuracy as a fraction of reading).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from powerd.block import F64, I64
from powerd.errors import SpecError
from powerd.probes.base import parse_kv
from powerd.probes.sim.thermal import ThermalModel

SHAPES: dict[str, dict[str, float]] = {
    "constant": {"w": 5.0},
    "square": {"high": 10.0, "low": 2.0, "period": 0.1, "duty": 0.5},
    "ramp": {"low": 2.0, "high": 10.0, "period": 1.0},
}
U64 = npt.NDArray[np.uint64]
COMMON = {"rate", "noise", "kind", "wrap", "id", "measures", "class", "acc", "seed"}
# A device temperature besides the power (``thermal.py``): settled °C, °C at the start, time
# constant s, drift °C/s. Given ``temp``, the probe reports a temperature; the rest default.
THERMAL = {"temp", "temp_start", "temp_tau", "temp_drift"}


def _float(key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SpecError(f"sim: {key}={text!r} is not a number") from None
    if not np.isfinite(value):
        raise SpecError(f"sim: {key} must be finite")
    return value


@dataclass(frozen=True)
class Waveform:
    """A periodic (or constant) power waveform; values in W, times in UTC ns."""

    shape: str
    low_w: float
    high_w: float
    period_ns: int
    high_ns: int

    def power_w(self, t_ns: I64) -> F64:
        """Power at each time, vectorised."""
        if self.shape == "constant":
            return np.full(t_ns.shape, self.high_w, np.float64)
        r = np.mod(t_ns, self.period_ns)
        if self.shape == "square":
            return np.where(r < self.high_ns, self.high_w, self.low_w)
        return self.low_w + (self.high_w - self.low_w) * (r.astype(np.float64) / self.period_ns)

    def _partial_j(self, r_ns: int) -> float:
        """Energy from the start of a period to ``r_ns`` into it."""
        if self.shape == "square":
            h = min(r_ns, self.high_ns)
            return (self.high_w * h + self.low_w * (r_ns - h)) / 1e9
        slope = (self.high_w - self.low_w) / self.period_ns
        return (self.low_w * r_ns + slope * r_ns * r_ns / 2.0) / 1e9

    def _period_j(self) -> float:
        return self._partial_j(self.period_ns)

    def energy_j(self, t_begin_ns: int, t_end_ns: int) -> float:
        """Exact energy over [t_begin, t_end] in J."""
        if self.shape == "constant":
            return self.high_w * (t_end_ns - t_begin_ns) / 1e9
        kb, rb = divmod(t_begin_ns, self.period_ns)
        ke, re = divmod(t_end_ns, self.period_ns)
        return (ke - kb) * self._period_j() + self._partial_j(re) - self._partial_j(rb)

    def cumulative_j(self, t_ns: I64) -> F64:
        """Energy since the epoch at each time (the ``kind=energy`` counter before wrapping)."""
        if self.shape == "constant":
            return self.high_w * (t_ns.astype(np.float64) / 1e9)
        k = np.floor_divide(t_ns, self.period_ns)
        r = np.mod(t_ns, self.period_ns).astype(np.float64)
        if self.shape == "square":
            h = np.minimum(r, self.high_ns)
            part = (self.high_w * h + self.low_w * (r - h)) / 1e9
        else:
            slope = (self.high_w - self.low_w) / self.period_ns
            part = (self.low_w * r + slope * r * r / 2.0) / 1e9
        return k.astype(np.float64) * self._period_j() + part


@dataclass(frozen=True)
class SimSpec:
    """A parsed ``sim:`` spec."""

    waveform: Waveform
    rate_hz: float
    step_ns: int
    noise_w: float
    kind: str
    wrap_j: float | None
    instance: str
    measures: str
    source_class: str
    accuracy_frac: float
    seed: int
    thermal: ThermalModel | None = None


def parse_spec(args: str) -> SimSpec:
    """Parse the part after ``sim:``; every mistake is a one-line SpecError."""
    shape, _, rest = args.partition(",")
    if shape not in SHAPES:
        raise SpecError(
            f"sim: unknown shape {shape!r}; use one of {', '.join(SHAPES)} "
            "(e.g. sim:square,high=10,low=2,period=0.1,duty=0.5)"
        )
    kv = parse_kv(rest, set(SHAPES[shape]) | COMMON | THERMAL)
    num = {k: _float(k, kv[k]) for k in kv if k not in {"kind", "id", "measures", "class"}}
    p = {**SHAPES[shape], **{k: num[k] for k in SHAPES[shape] if k in num}}
    rate = num.get("rate", 1000.0)
    if not 0 < rate <= 1e6:
        raise SpecError("sim: rate must be in (0, 1e6] Hz")
    kind = kv.get("kind", "power")
    if kind not in ("power", "energy"):
        raise SpecError("sim: kind must be power or energy")
    noise = num.get("noise", 0.0)
    if noise < 0 or (noise and kind == "energy"):
        raise SpecError("sim: noise must be >= 0 and applies to kind=power only")
    wrap = num.get("wrap")
    if wrap is not None and (wrap <= 0 or kind != "energy"):
        raise SpecError("sim: wrap must be > 0 and applies to kind=energy only")
    source_class = kv.get("class", "meter")
    if source_class not in ("meter", "telemetry", "estimate"):
        raise SpecError("sim: class must be meter, telemetry or estimate")
    if shape == "constant":
        wf = Waveform("constant", p["w"], p["w"], 1, 1)
    else:
        period_ns = round(p["period"] * 1e9)
        if period_ns <= 0:
            raise SpecError("sim: period must be > 0")
        duty = p.get("duty", 1.0)
        if not 0 <= duty <= 1:
            raise SpecError("sim: duty must be within [0, 1]")
        wf = Waveform(shape, p["low"], p["high"], period_ns, round(duty * period_ns))
    instance = kv.get("id", shape)
    thermal = None
    if "temp" in num:
        thermal = ThermalModel(
            settle_c=num["temp"],
            start_c=num.get("temp_start", num["temp"] - 20.0),
            tau_s=num.get("temp_tau", 30.0),
            drift_c_per_s=num.get("temp_drift", 0.0),
        )
        if not thermal.tau_s > 0:
            raise SpecError("sim: temp_tau must be > 0 s")
    elif THERMAL & set(num):
        raise SpecError("sim: temp_start, temp_tau and temp_drift need temp (the settled °C)")
    return SimSpec(
        waveform=wf,
        rate_hz=rate,
        step_ns=max(1, round(1e9 / rate)),
        noise_w=noise,
        kind=kind,
        wrap_j=wrap,
        instance=instance,
        measures=kv.get("measures", ""),
        source_class=source_class,
        accuracy_frac=num.get("acc", 0.0),
        seed=int(num.get("seed", 0)),
        thermal=thermal,
    )


def gaussian_noise(k: I64, seed: int) -> F64:
    """Standard normal values, a pure function of sample index and seed (splitmix64, Box-Muller)."""

    def mix(x: U64) -> U64:
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))

    salt = np.uint64((seed * 0x632BE59BD9B4E019) % 2**64)
    base = k.astype(np.uint64) * np.uint64(2) + salt
    u1 = (mix(base) >> np.uint64(11)).astype(np.float64) / 2.0**53
    u2 = (mix(base + np.uint64(1)) >> np.uint64(11)).astype(np.float64) / 2.0**53
    out: F64 = np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)
    return out
