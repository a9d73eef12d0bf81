"""Discretisation error of a periodic pulse train, from where its edges fall on the sample grid.

Why: the trapezoid's error at a step of height s lying a fraction f into its sample interval is
s·Δt·(f − ½). ``integrate`` takes each step's f as independent and uniform, which is right for
random edges but far too wide on a periodic load whose period slides across the sample grid: the
errors of a pulse's two edges are tied (a pulse of true width w samples, seen m samples wide,
errs by exactly s·Δt·(m − w)), and the edges of successive pulses sit at phases that advance by a
fixed step, so a window's pulses pin the pulse width w far better than one pulse can. This is
equivalent-time sampling, as a sampling oscilloscope does it, turned into an error bound.

Model (checked against the samples, else ``None``: the caller keeps the independent model): the
window's inner steps form N whole pulses of a train, pulse k starting in sample interval R_k and
ending in F_k = R_k + m_k, with one period P and one width w (both in sample intervals, real):
``R_k = floor(φ + k·P)`` and ``F_k = floor(φ + k·P + w)`` for some phase φ. The set of (φ, P, w)
consistent with every observed R_k and F_k is a polytope; ``train_error`` finds the range of w
over it (for a fixed P the ranges of φ and φ + w are explicit; the bounds on w are convex and
concave in P, so ternary searches find them), and the error of the train's energy,
Δt·Σ s_k·(m_k − w), over that range. Nothing comes from the truth: only sample indices, heights
and the grid. A load whose phase does not slide across the grid (phase-locked) leaves w free
within ±1 sample and gets an error N times one edge's, the coherent sum it really has.

Steps whose two heights differ (noise on the levels) keep the difference as an independent
uniform error (``mismatch_x2``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from powerd.block import F64, I64

MIN_PULSES = 2  # fewer whole pulses: nothing to pin the width with, the independent model stays
GRID_REL_TOL = 1e-6  # sample intervals must be equal within this fraction (a jittery grid: None)
HEIGHT_REL_TOL = 0.25  # pulses' heights within this fraction of their median (beyond the noise)
SEARCH_ITERS = 80


@dataclass(frozen=True)
class TrainError:
    """The train's trapezoid error (W·ns, trapezoid − truth) lies in [lo_wns, hi_wns].

    ``paired``: indices (into the inner intervals) of the steps the train explains, whose
    independent terms the caller drops; ``mismatch_x2``/``mismatch_x4``: Σ x² and Σ x⁴ (W·ns) of the
    height differences between each pulse's two steps, independent uniform errors;
    ``pulses``: N; ``width_span``: w_hi − w_lo (sample intervals)."""

    lo_wns: float
    hi_wns: float
    paired: I64
    mismatch_x2: float
    mismatch_x4: float
    pulses: int
    width_span: float

    @property
    def bound_wns(self) -> float:
        """Largest |error| the samples allow."""
        return max(abs(self.lo_wns), abs(self.hi_wns))


def _ternary(f: Callable[[float], float], lo: float, hi: float, maximise: bool) -> float:
    """Argument of the extremum of a unimodal ``f`` on [lo, hi]."""
    sign = 1.0 if maximise else -1.0
    for _ in range(SEARCH_ITERS):
        m1 = lo + (hi - lo) / 3.0
        m2 = hi - (hi - lo) / 3.0
        if sign * f(m1) < sign * f(m2):
            lo = m1
        else:
            hi = m2
    return (lo + hi) / 2.0


def _edge(f: Callable[[float], float], inside: float, outside: float) -> float:
    """Boundary of {f > 0} between ``inside`` (f > 0) and ``outside`` (f <= 0), by bisection."""
    for _ in range(SEARCH_ITERS):
        mid = (inside + outside) / 2.0
        if f(mid) > 0.0:
            inside = mid
        else:
            outside = mid
    return inside


def _steps(dv: F64, size_w: F64, step_w: float) -> tuple[I64, F64] | None:
    """Steps (interval index, signed height) of a clean train, or None.

    A step is an interval whose size (``size_w``: its change, or its bend against its neighbours
    where smaller, so a ramp's slope is not one) exceeds ``step_w`` and half the largest. Clean:
    each step is a single interval whose neighbours are not steps (an instantaneous sampler sees
    a level or a slope, never a point inside an edge), the signs either alternate (pulses) or
    are all one (a sawtooth's drops), and the heights agree within ``HEIGHT_REL_TOL`` of their
    median (or the step threshold)."""
    if size_w.size == 0:
        return None
    idx = np.flatnonzero(size_w > max(step_w, 0.5 * float(size_w.max())))
    if idx.size < MIN_PULSES or bool((np.diff(idx) < 2).any()):
        return None
    # A step's height against the slope around it (on a ramp the interval's change holds the
    # ramp's share as well, which the trapezoid integrates exactly).
    before = dv[np.maximum(idx - 1, 0)]
    after = dv[np.minimum(idx + 1, dv.size - 1)]
    s = dv[idx] - np.where(
        idx == 0, after, np.where(idx == dv.size - 1, before, (before + after) / 2)
    )
    flips = np.sign(s[1:]) != np.sign(s[:-1])
    if not (bool(flips.all()) or not bool(flips.any())):
        return None
    h = np.abs(s)
    med = float(np.median(h))
    if float(np.abs(h - med).max()) > max(HEIGHT_REL_TOL * med, step_w):
        return None
    return idx.astype(np.int64), s


class _Grid:
    """Edge classes on the sample grid: class c's k-th edge lies in interval ``x[c][k]``, at
    phase φ_c + k·P (sample intervals) for one period P; helpers for the consistent ranges."""

    def __init__(self, *x: F64) -> None:
        self.x = x
        self.k = np.arange(x[0].size, dtype=np.float64)

    def lo(self, c: int, p: float) -> float:
        """Smallest φ_c consistent with every edge of class c at period p."""
        return float((self.x[c] - self.k * p).max())

    def hi(self, c: int, p: float) -> float:
        """Supremum of φ_c consistent with every edge of class c at period p."""
        return float((self.x[c] + 1.0 - self.k * p).min())

    def room(self, p: float) -> float:
        """> 0: period p is consistent with every class's edges."""
        return min(self.hi(c, p) - self.lo(c, p) for c in range(len(self.x)))

    def periods(self) -> tuple[float, float] | None:
        """The range of consistent periods (room is concave in p), or None: no single period
        explains every edge, so the steps are not a regular train."""
        x0 = self.x[0]
        p0 = float(x0[-1] - x0[0]) / max(x0.size - 1, 1)
        best = _ternary(self.room, p0 - 1.0, p0 + 1.0, maximise=True)
        if self.room(best) <= 0.0:
            return None
        return _edge(self.room, best, p0 - 1.0), _edge(self.room, best, p0 + 1.0)


def _pulse_range(g: _Grid, h: F64, p_lo: float, p_hi: float) -> tuple[float, float, float]:
    """Pulses (class 0 opens, class 1 closes, width w = φ₁ − φ₀): error Σ hₖ·(mₖ − w) in sample
    units over the consistent widths, and the width's span."""
    r, f = g.x

    def w_min(p: float) -> float:  # convex in p
        return g.lo(1, p) - g.hi(0, p)

    def w_max(p: float) -> float:  # concave in p
        return g.hi(1, p) - g.lo(0, p)

    w_lo = w_min(_ternary(w_min, p_lo, p_hi, maximise=False))
    w_hi = w_max(_ternary(w_max, p_lo, p_hi, maximise=True))
    base, sum_h = float(np.dot(h, f - r)), float(h.sum())
    ends = (base - w_lo * sum_h, base - w_hi * sum_h)
    return min(ends), max(ends), max(0.0, w_hi - w_lo)


def _single_range(g: _Grid, s: F64, p_lo: float, p_hi: float) -> tuple[float, float, float]:
    """One step per period (heights ``s``): error Σ sₖ·(fₖ − ½), fₖ = φ + k·P − xₖ, in sample
    units over the consistent (φ, P); its extremes lie at φ's bounds, concave/convex in P."""
    x = g.x[0]
    sum_s = float(s.sum())
    lin = float(np.dot(s, g.k))
    const = float(np.dot(s, x)) + sum_s / 2.0

    def at(phi: float, p: float) -> float:
        return sum_s * phi + lin * p - const

    def top(p: float) -> float:
        return max(at(g.lo(0, p), p), at(g.hi(0, p), p))

    def bottom(p: float) -> float:
        return min(at(g.lo(0, p), p), at(g.hi(0, p), p))

    hi = top(_ternary(top, p_lo, p_hi, maximise=True))
    lo = bottom(_ternary(bottom, p_lo, p_hi, maximise=False))
    return lo, hi, 0.0


def train_error(t: I64, v: F64, step_w: float, size_w: F64 | None = None) -> TrainError | None:
    """The error range of the train in samples ``v`` at times ``t`` (inner samples of a window),
    or None when they are not a clean train on a uniform grid (see the module doc).
    ``size_w``: each interval's bend-limited change (``integrate._bend_w``); None: its change."""
    if t.size < MIN_PULSES + 2:
        return None
    dt = np.diff(t)
    dt0 = float(dt[0])
    if dt0 <= 0 or float(np.abs(dt - dt[0]).max()) > GRID_REL_TOL * dt0:
        return None
    dv = np.diff(v)
    found = _steps(dv, np.abs(dv) if size_w is None else size_w, step_w)
    if found is None:
        return None
    idx, s = found
    if s.size > 1 and s[0] * s[1] < 0:  # pulses: pair each step with the next
        n = idx.size // 2
        if n < MIN_PULSES:
            return None
        h = s[0 : 2 * n : 2]
        g = _Grid(idx[0 : 2 * n : 2].astype(np.float64), idx[1 : 2 * n : 2].astype(np.float64))
        span = g.periods()
        if span is None:
            return None
        lo, hi, width = _pulse_range(g, h, *span)
        x2 = ((s[1 : 2 * n : 2] + h) * dt0) ** 2
        paired = idx[: 2 * n]
    else:
        n = idx.size
        g = _Grid(idx.astype(np.float64))
        span = g.periods()
        if span is None:
            return None
        lo, hi, width = _single_range(g, s, *span)
        x2 = np.zeros(0)
        paired = idx
    return TrainError(
        lo_wns=lo * dt0,
        hi_wns=hi * dt0,
        paired=paired,
        mismatch_x2=float(x2.sum()),
        mismatch_x4=float(np.dot(x2, x2)),
        pulses=n,
        width_span=width,
    )


def uniform_x2(te: TrainError) -> float:
    """The train's error in ``integrate``'s x units (σ² = x²/12): uniform within ±its largest
    |end|. Where in the range the error lies is not known (for a given load it may sit near an
    end), so the whole symmetric range counts, not a posterior spread inside it."""
    x = 2.0 * te.bound_wns
    return x * x
