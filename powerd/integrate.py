"""Energy of one channel over one window: pure numpy, no clocks, no I/O.

Power channels use the trapezoid rule with the power linearly interpolated at the exact window
edges. Energy-counter channels take the difference of the counter, interpolated at the edges, after
unwrapping wraparounds (known range) and bridging resets (driver reload), so a counter never yields
negative energy.

Every figure carries a 95 % uncertainty, the root-sum-square of independent terms:

- instrument: the channel's accuracy spec applied to the window's energy and duration;
- discretisation: per sample interval, the difference between trapezoid and step (sample-and-hold)
  integration, taken as a uniform error within ± that difference and combined in quadrature;
- noise: sample-to-sample scatter (robust estimate from successive differences) propagated through
  the trapezoid weights, at 1.96 σ;
- timing: power at each edge × that edge's time uncertainty;
- gaps and resets: energy interpolated over uncovered time or estimated across a counter reset.

Coverage is the fraction of the window not inside a gap longer than ``GAP_FACTOR`` nominal periods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from powerd.block import F64, I64
from powerd.channel import Channel

GAP_FACTOR = 3.0
CHUNK = 1 << 16
NOISE_MAX_DIFFS = 1 << 16
Z95 = 1.96

Flag = Literal["no_data", "too_short", "incomplete", "counter_reset", "counter_wrap"]


@dataclass(frozen=True)
class Window:
    """A time window [t_begin_ns, t_end_ns] with each edge's time uncertainty (ns, 95 %)."""

    t_begin_ns: int
    t_end_ns: int
    begin_uncertainty_ns: float = 0.0
    end_uncertainty_ns: float = 0.0

    def __post_init__(self) -> None:
        if self.t_end_ns <= self.t_begin_ns:
            raise ValueError("a window must end after it begins")

    @property
    def duration_s(self) -> float:
        return (self.t_end_ns - self.t_begin_ns) / 1e9


@dataclass(frozen=True)
class ChannelEnergy:
    """One channel's figures for one window."""

    energy_j: float | None
    mean_power_w: float | None
    peak_power_w: float | None
    samples: int
    coverage: float
    uncertainty_j: float | None
    method: Literal["trapezoid", "counter"]
    flags: tuple[str, ...] = ()
    terms_j: dict[str, float] = field(default_factory=dict)


def _no_data(method: Literal["trapezoid", "counter"]) -> ChannelEnergy:
    """No sample covers any part of the window: no figure at all, never an extrapolated one."""
    return ChannelEnergy(None, None, None, 0, 0.0, None, method, ("no_data",))


def _nodes(t: I64, v: F64, w: Window) -> tuple[I64, F64, int, int]:
    """Node arrays [a, inner samples..., b] with values linearly interpolated (held past the data).

    Also returns the index range of the inner samples in ``t``.
    """
    a, b = w.t_begin_ns, w.t_end_ns
    i0 = int(np.searchsorted(t, a, "right"))
    i1 = int(np.searchsorted(t, b, "left"))
    rel = (t - a).astype(np.float64)  # relative: float64 of an absolute UTC ns is 256 ns coarse
    edge_v = np.interp(np.array([0.0, float(b - a)]), rel, v)
    tt = np.empty(i1 - i0 + 2, np.int64)
    vv = np.empty(i1 - i0 + 2, np.float64)
    tt[0], tt[-1] = a, b
    vv[0], vv[-1] = edge_v
    tt[1:-1] = t[i0:i1]
    vv[1:-1] = v[i0:i1]
    return tt, vv, i0, i1


def _uncovered_ns(t: I64, tt: I64, i0: int, i1: int, threshold_ns: float) -> float:
    """Time in the window that lies inside a real gap (or past the data) longer than threshold.

    Each node interval is judged by the real sample interval that encloses it: a window edge that
    falls inside a short sampling interval is covered; one inside a long gap, or further than the
    threshold beyond the first or last sample, is not.
    """
    n = t.size
    a, b = int(tt[0]), int(tt[-1])
    dt = np.diff(tt)
    enclosing = dt.astype(np.float64)

    def span(i_left: int, i_right: int) -> float:
        left = int(t[i_left]) if i_left >= 0 else a
        right = int(t[i_right]) if i_right < n else b
        return float(right - left)

    enclosing[0] = span(i0 - 1, i0)
    enclosing[-1] = span(i1 - 1, i1)
    return float(dt[enclosing > threshold_ns].sum())


def _noise_sigma(v: F64) -> float:
    """Robust std of white noise on samples, from successive differences (MAD, ≤ 65536 of them)."""
    if v.size < 3:
        return 0.0
    stride = max(1, (v.size - 1) // NOISE_MAX_DIFFS)
    d = np.diff(v[::stride]) if stride > 1 else np.diff(v)
    med = np.median(d)
    mad = float(np.median(np.abs(d - med)))
    return 1.4826 * mad / math.sqrt(2.0)


def _trapezoid_sums(tt: I64, vv: F64) -> tuple[float, float, float, float]:
    """Σ dt·v_left, Σ dt·v_right, Σ (Δv·dt)², Σ dt² over the node sequence (ns units), chunked."""
    left = right = disc2 = dt2 = 0.0
    n = tt.size
    for s in range(0, n - 1, CHUNK):
        e = min(n, s + CHUNK + 1)
        dt = np.diff(tt[s:e]).astype(np.float64)
        vs = vv[s:e]
        left += float(np.dot(dt, vs[:-1]))
        right += float(np.dot(dt, vs[1:]))
        x = np.diff(vs) * dt
        disc2 += float(np.dot(x, x))
        dt2 += float(np.dot(dt, dt))
    return left, right, disc2, dt2


def _rss(terms: dict[str, float]) -> float:
    return math.sqrt(sum(x * x for x in terms.values()))


def _common_flags(w: Window, ch: Channel, coverage: float) -> list[str]:
    flags: list[str] = []
    if w.duration_s < ch.nominal_period_s:
        flags.append("too_short")
    if coverage < 1.0:
        flags.append("incomplete")
    return flags


def _edge_terms(ch: Channel, w: Window, pa: float, pb: float) -> float:
    """Timing term: power at each edge × that edge's time uncertainty (marker and stamp)."""
    stamp_ns = ch.stamp_uncertainty_s * 1e9
    ua = math.hypot(w.begin_uncertainty_ns, stamp_ns) / 1e9
    ub = math.hypot(w.end_uncertainty_ns, stamp_ns) / 1e9
    return math.hypot(pa * ua, pb * ub)


def integrate_power(t: I64, p: F64, w: Window, ch: Channel) -> ChannelEnergy:
    """Trapezoid energy of power samples ``p`` (W) at ``t`` (ns) over window ``w``."""
    if t.size == 0:
        return _no_data("trapezoid")
    tt, vv, i0, i1 = _nodes(t, p, w)
    left, right, disc2, dt2 = _trapezoid_sums(tt, vv)
    energy_j = (left + right) / 2e9
    duration_s = w.duration_s
    threshold_ns = GAP_FACTOR * ch.nominal_period_s * 1e9
    uncovered_ns = _uncovered_ns(t, tt, i0, i1, threshold_ns)
    coverage = max(0.0, 1.0 - uncovered_ns / (w.t_end_ns - w.t_begin_ns))
    if coverage == 0.0:
        return _no_data("trapezoid")
    mean_w = energy_j / duration_s
    vmax, vmin = float(vv.max()), float(vv.min())
    terms = {
        "instrument": ch.accuracy.power_bound_w(mean_w) * duration_s,
        "discretisation": math.sqrt(disc2) / math.sqrt(3.0) / 1e9,
        "noise": Z95 * _noise_sigma(p[i0:i1]) * math.sqrt(dt2) / 1e9,
        "timing": _edge_terms(ch, w, float(vv[0]), float(vv[-1])),
        "gap": (vmax - vmin) / 2.0 * uncovered_ns / 1e9 * (2.0 / math.sqrt(3.0)),
    }
    return ChannelEnergy(
        energy_j=energy_j,
        mean_power_w=mean_w,
        peak_power_w=vmax,
        samples=i1 - i0,
        coverage=coverage,
        uncertainty_j=_rss(terms),
        method="trapezoid",
        flags=tuple(_common_flags(w, ch, coverage)),
        terms_j=terms,
    )


@dataclass(frozen=True)
class Unwrapped:
    """A counter made monotonic: cumulative J at each sample, and what was repaired."""

    cumulative_j: F64
    wraps: int
    resets: int
    reset_estimate_j: F64


def unwrap_counter(t: I64, c: F64, wrap_j: float | None) -> Unwrapped:
    """Cumulative energy from counter readings, undoing wraps and bridging resets.

    A drop is a wrap when the counter's range is known and the wrapped increment is below half the
    range; any other drop is a reset, whose interval gets the mean power of its valid neighbours (an
    estimate, returned so it can count fully in the uncertainty).
    """
    d = np.diff(c)
    neg = d < 0
    wraps = 0
    if wrap_j is not None and bool(neg.any()):
        wrapped = d + wrap_j
        is_wrap = neg & (wrapped >= 0) & (wrapped < wrap_j / 2.0)
        d = np.where(is_wrap, wrapped, d)
        wraps = int(np.count_nonzero(is_wrap))
        neg = d < 0
    reset_est = np.zeros(d.size, np.float64)
    resets = int(np.count_nonzero(neg))
    if resets:
        dt = np.diff(t).astype(np.float64)
        rate = d / dt
        ok = ~neg
        idx = np.arange(d.size, dtype=np.float64)
        fill = np.interp(idx[neg], idx[ok], rate[ok]) if bool(ok.any()) else np.zeros(resets)
        reset_est[neg] = fill * dt[neg]
        d = np.where(neg, reset_est, d)
    cum = np.empty(c.size, np.float64)
    cum[0] = 0.0
    np.cumsum(d, out=cum[1:])
    return Unwrapped(cum, wraps, resets, reset_est)


def _edge_split_j(t: I64, cum: F64, x: int) -> float:
    """Worst-case error of linear interpolation of a counter at ``x`` inside a sample interval."""
    i = int(np.searchsorted(t, x, "right"))
    if i == 0 or i >= t.size or t[i - 1] == x:
        return 0.0
    f = (x - t[i - 1]) / (t[i] - t[i - 1])
    return float(min(f, 1.0 - f) * (cum[i] - cum[i - 1]))


def integrate_counter(t: I64, c: F64, w: Window, ch: Channel) -> ChannelEnergy:
    """Energy from cumulative counter readings ``c`` (J) at ``t`` (ns) over window ``w``."""
    if t.size == 0:
        return _no_data("counter")
    un = unwrap_counter(t, c, ch.wrap_j)
    tt, cc, i0, i1 = _nodes(t, un.cumulative_j, w)
    energy_j = float(cc[-1] - cc[0])
    duration_s = w.duration_s
    threshold_ns = GAP_FACTOR * ch.nominal_period_s * 1e9
    uncovered_ns = _uncovered_ns(t, tt, i0, i1, threshold_ns)
    coverage = max(0.0, 1.0 - uncovered_ns / (w.t_end_ns - w.t_begin_ns))
    if coverage == 0.0:
        return _no_data("counter")
    rates_w = np.diff(cc) / (np.diff(tt).astype(np.float64) / 1e9)
    peak_w = float(rates_w.max()) if rates_w.size else energy_j / duration_s
    lo = max(0, i0 - 1)
    hi = min(t.size - 1, i1)
    in_window_resets = un.reset_estimate_j[lo:hi]
    mean_w = energy_j / duration_s
    terms = {
        "instrument": ch.accuracy.power_bound_w(mean_w) * duration_s + ch.accuracy.resolution_j,
        "discretisation": math.hypot(
            _edge_split_j(t, un.cumulative_j, w.t_begin_ns),
            _edge_split_j(t, un.cumulative_j, w.t_end_ns),
        ),
        "timing": _edge_terms(ch, w, float(rates_w[0]), float(rates_w[-1])),
        "gap": peak_w / 2.0 * uncovered_ns / 1e9 * (2.0 / math.sqrt(3.0)),
        "reset": float(np.abs(in_window_resets).sum()),
    }
    flags = _common_flags(w, ch, coverage)
    if bool((in_window_resets != 0).any()):
        flags.append("counter_reset")
    return ChannelEnergy(
        energy_j=energy_j,
        mean_power_w=mean_w,
        peak_power_w=peak_w,
        samples=i1 - i0,
        coverage=coverage,
        uncertainty_j=_rss(terms),
        method="counter",
        flags=tuple(flags),
        terms_j=terms,
    )


def integrate(t: I64, v: F64, w: Window, ch: Channel) -> ChannelEnergy:
    """Integrate a channel of either kind over a window."""
    if ch.kind == "energy":
        return integrate_counter(t, v, w, ch)
    return integrate_power(t, v, w, ch)


def power_trace(t: I64, v: F64, ch: Channel) -> tuple[I64, F64]:
    """Power in W over time for plotting: the samples, or a counter's rate at interval midpoints."""
    if ch.kind == "power" or t.size < 2:
        return (t, v) if ch.kind == "power" else (t[:0], v[:0])
    cum = unwrap_counter(t, v, ch.wrap_j).cumulative_j
    dt_s = np.diff(t).astype(np.float64) / 1e9
    mid = t[:-1] + np.diff(t) // 2
    return mid, np.diff(cum) / dt_s
