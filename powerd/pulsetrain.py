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


def _pulses(dv: F64, step_w: float) -> tuple[I64, F64] | None:
    """Steps (interval index, signed height) of a clean two-level train, or None.

    Clean: every change beyond ``step_w`` is a single interval whose neighbours are not steps
    (an instantaneous sampler sees a level, never a point inside an edge), the signs alternate,
    and the heights agree within ``HEIGHT_REL_TOL`` of their median (or the step threshold)."""
    idx = np.flatnonzero(np.abs(dv) > step_w)
    if idx.size < 2 * MIN_PULSES:
        return None
    if bool((np.diff(idx) < 2).any()):
        return None
    s = dv[idx]
    if bool((np.sign(s[1:]) == np.sign(s[:-1])).any()):
        return None
    h = np.abs(s)
    med = float(np.median(h))
    if float(np.abs(h - med).max()) > max(HEIGHT_REL_TOL * med, step_w):
        return None
    return idx.astype(np.int64), s


def train_error(t: I64, v: F64, step_w: float) -> TrainError | None:
    """The error range of the pulse train in samples ``v`` at times ``t`` (inner samples of a
    window), or None when they are not a clean train on a uniform grid (see the module doc)."""
    if t.size < 2 * MIN_PULSES + 2:
        return None
    dt = np.diff(t)
    dt0 = float(dt[0])
    if dt0 <= 0 or float(np.abs(dt - dt[0]).max()) > GRID_REL_TOL * dt0:
        return None
    found = _pulses(np.diff(v), step_w)
    if found is None:
        return None
    idx, s = found
    n = idx.size // 2
    r = idx[0 : 2 * n : 2].astype(np.float64)
    f = idx[1 : 2 * n : 2].astype(np.float64)
    h = s[0 : 2 * n : 2]
    k = np.arange(n, dtype=np.float64)

    def phase_lo(x: F64, p: float) -> float:
        return float((x - k * p).max())

    def phase_hi(x: F64, p: float) -> float:
        return float((x + 1.0 - k * p).min())

    def room(p: float) -> float:
        """How much room φ and φ + w have at period p (> 0: p is consistent with the edges)."""
        return min(phase_hi(r, p) - phase_lo(r, p), phase_hi(f, p) - phase_lo(f, p))

    p0 = float(r[-1] - r[0]) / max(n - 1, 1)
    p_best = _ternary(room, p0 - 1.0, p0 + 1.0, maximise=True)
    if room(p_best) <= 0.0:
        return None  # no single period and width explain every edge: not a regular train
    p_lo = _edge(room, p_best, p0 - 1.0)
    p_hi = _edge(room, p_best, p0 + 1.0)

    def w_min(p: float) -> float:
        return phase_lo(f, p) - phase_hi(r, p)

    def w_max(p: float) -> float:
        return phase_hi(f, p) - phase_lo(r, p)

    sum_h = float(h.sum())
    base = float(np.dot(h, f - r))
    w_lo = w_min(_ternary(w_min, p_lo, p_hi, maximise=False))
    w_hi = w_max(_ternary(w_max, p_lo, p_hi, maximise=True))
    ends = (base - w_lo * sum_h, base - w_hi * sum_h)
    mismatch = (s[1 : 2 * n : 2] + h) * dt0
    x2 = mismatch * mismatch
    return TrainError(
        lo_wns=min(ends) * dt0,
        hi_wns=max(ends) * dt0,
        paired=idx[: 2 * n],
        mismatch_x2=float(x2.sum()),
        mismatch_x4=float(np.dot(x2, x2)),
        pulses=n,
        width_span=max(0.0, w_hi - w_lo),
    )


def uniform_x2(te: TrainError) -> float:
    """The train's error in ``integrate``'s x units (σ² = x²/12): uniform within ±its largest
    |end|. Where in the range the error lies is not known (for a given load it may sit near an
    end), so the whole symmetric range counts, not a posterior spread inside it."""
    x = 2.0 * te.bound_wns
    return x * x
