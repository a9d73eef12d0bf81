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
consistent with every observed R_k and F_k is a polytope; ``train_error`` bounds P by the edges'
pairwise constraints, evaluates the ranges of φ and φ + w (explicit for a fixed P) on a grid of
consistent periods (widened by how far a bound can move between grid points), and gives the
error of the train's energy, Δt·Σ s_k·(m_k − w), over that range. A sawtooth's drops (one step
per period) get the same treatment with the error Δt·Σ s_k·(f_k − ½) over the consistent (φ, P).
Nothing comes from the truth: only sample indices, heights and the grid. A load whose phase does
not slide across the grid (phase-locked) leaves w free within ±1 sample and gets an error N
times one edge's, the coherent sum it really has.

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
ANCHORS = 32  # edges from which the period's pairwise bounds are taken (all, if fewer)
P_GRID = 129  # periods within the consistent range at which the phase bounds are evaluated
MAX_EDGES = 256  # edges per class the phase bounds are taken from (evenly spread, ends kept)
REFINE, REFINE_POINTS = 3, 33  # grids narrowing the anchors' period range
MIX_POINTS = 5  # periods at which the error's distribution is taken (``TrainError.mixture_wns``)


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
    # The same range as independent rectangles (W·ns): ``(centre, half-width)`` of where the
    # error's centre lies across the consistent periods (plus the grid's slack), and one per
    # phase window (centre 0), the phases being independent and uniform within their windows at
    # a given period. Their sum spans at most [lo_wns, hi_wns]; its shape is not flat (a pulse's
    # error is the difference of two phases: a trapezoid, not a rectangle).
    parts_wns: tuple[tuple[float, float], ...] = ()
    # The error's distribution with (period, phases) uniform over the consistent set (the
    # samples say nothing more): a mixture over ``MIX_POINTS`` periods spread over the range,
    # each weighted by its phase windows' area (weights sum to 1), each rectangles
    # ``(centre, half-width)`` (W·ns) as in ``parts_wns`` at that period. Empty: not known.
    mixture_wns: tuple[tuple[float, tuple[tuple[float, float], ...]], ...] = ()

    @property
    def bound_wns(self) -> float:
        """Largest |error| the samples allow."""
        return max(abs(self.lo_wns), abs(self.hi_wns))


def _steps(idx: I64, size_w: F64, height_w: F64, step_w: float) -> tuple[I64, F64] | None:
    """The steps (interval index, signed height) of a clean train among candidate intervals
    ``idx`` (sorted; their bend-limited sizes and heights against the slope around them), or
    None.

    A step is a candidate whose size exceeds ``step_w`` and half the largest size (so a ramp's
    slope, whose bend is 0, is not one). Clean: each step is a single interval whose neighbours
    are not steps (an instantaneous sampler sees a level or a slope, never a point inside an
    edge), the signs either alternate (pulses) or are all one (a sawtooth's drops), and the
    heights agree within ``HEIGHT_REL_TOL`` of their median (or the step threshold)."""
    if idx.size < MIN_PULSES:
        return None
    keep = size_w > max(step_w, 0.5 * float(size_w.max()))
    idx, s = idx[keep], height_w[keep]
    if idx.size < MIN_PULSES or bool((np.diff(idx) < 2).any()):
        return None
    flips = np.sign(s[1:]) != np.sign(s[:-1])
    if not (bool(flips.all()) or not bool(flips.any())):
        return None
    h = np.abs(s)
    med = float(np.median(h))
    if float(np.abs(h - med).max()) > max(HEIGHT_REL_TOL * med, step_w):
        return None
    return idx.astype(np.int64), s


def _period_range(*classes: F64) -> tuple[float, float] | None:
    """The periods P consistent with every class's edges: edge k of a class in interval xₖ
    means φ + k·P ∈ [xₖ, xₖ + 1), so for i < j, (xⱼ − xᵢ − 1)/(j − i) < P < (xⱼ − xᵢ + 1)/(j − i).
    Pairs from up to ``ANCHORS`` anchors to every later edge (all pairs for short trains; the far
    pairs bind); fewer pairs only widen the range (conservative). None: no P fits."""
    lo, hi = -np.inf, np.inf
    for x in classes:
        n = x.size
        anchors = np.unique(np.linspace(0, n - 2, min(ANCHORS, n - 1)).astype(np.int64))
        gap = (np.arange(n)[None, :] - anchors[:, None]).astype(np.float64)  # j − i
        d = x[None, :] - x[anchors][:, None]
        later = gap > 0
        safe = np.where(later, gap, 1.0)
        lo = max(lo, float(np.where(later, (d - 1.0) / safe, -np.inf).max()))
        hi = min(hi, float(np.where(later, (d + 1.0) / safe, np.inf).min()))
    if not hi > lo:
        return None
    return _refine(lo, hi, classes)


def _refine(lo: float, hi: float, classes: tuple[F64, ...]) -> tuple[float, float] | None:
    """Narrow [lo, hi] (the anchors' bounds, a superset) to the periods at which every class's
    phase range is non-empty, on ``REFINE`` successive grids: the result keeps one grid step of
    margin on each side (still a superset: conservative)."""
    edges = []
    for x in classes:
        sel = np.unique(np.linspace(0, x.size - 1, min(x.size, MAX_EDGES)).astype(np.int64))
        edges.append((x[sel][:, None], sel.astype(np.float64)[:, None]))
    for _ in range(REFINE):
        p = np.linspace(lo, hi, REFINE_POINTS)[None, :]
        room = np.min(
            [((x + 1.0 - k * p).min(axis=0) - (x - k * p).max(axis=0)) for x, k in edges], axis=0
        )
        ok = np.flatnonzero(room > 0.0)
        if ok.size == 0:
            best = int(np.argmax(room))
            if room[best] <= -1.0:
                return None  # far from consistent anywhere: not a regular train
            first = last = best
        else:
            first, last = int(ok[0]), int(ok[-1])
        grid = p[0]
        lo = float(grid[max(first - 1, 0)])
        hi = float(grid[min(last + 1, grid.size - 1)])
    return lo, hi


class _Grid:
    """Edge classes on the sample grid, evaluated at many periods at once: class c's k-th edge
    lies in interval ``x[c][k]``; at period P its phase φ_c is within [lo, hi)."""

    def __init__(self, p_lo: float, p_hi: float, *x: F64) -> None:
        n = x[0].size
        # a subset of the edges bounds φ more loosely (wider ranges: conservative) and cheaper
        sel = np.unique(np.linspace(0, n - 1, min(n, MAX_EDGES)).astype(np.int64))
        self.x = tuple(c[sel] for c in x)
        self.k = sel.astype(np.float64)
        frac = (np.arange(P_GRID, dtype=np.float64) + 0.5) / P_GRID
        self.p = p_lo + (p_hi - p_lo) * frac  # inside the open range: every one consistent
        # φ's bounds move with P at a slope within [−(largest k), 0], so a difference of two
        # (the width's bounds) has |slope| ≤ largest k: between grid points, or from the outer
        # points to the range's ends, it passes its value at a grid point by at most this
        self.slack = float(self.k[-1]) * (p_hi - p_lo) / P_GRID / 2.0

    def lo(self, c: int) -> F64:
        """Smallest φ_c consistent with every edge of class c, at each period of the grid."""
        out: F64 = (self.x[c][:, None] - self.k[:, None] * self.p[None, :]).max(axis=0)
        return out

    def hi(self, c: int) -> F64:
        """Supremum of φ_c consistent with every edge of class c, at each period of the grid."""
        out: F64 = (self.x[c][:, None] + 1.0 - self.k[:, None] * self.p[None, :]).min(axis=0)
        return out


Parts = tuple[tuple[float, float], ...]
Mixture = tuple[tuple[float, Parts], ...]


def _pulse_range(g: _Grid, h: F64, r: F64, f: F64) -> tuple[float, float, float, Parts, Mixture]:
    """Pulses (class 0 opens, class 1 closes, width w = φ₁ − φ₀; all N pulses ``r``, ``f``,
    heights ``h``): error Σ hₖ·(mₖ − w) in sample units over the consistent widths (from the
    grid's edges), the width's span, and the error as rectangles (``TrainError.parts_wns``)."""
    lo0, hi0, lo1, hi1 = g.lo(0), g.hi(0), g.lo(1), g.hi(1)
    w_lo = float((lo1 - hi0).min()) - g.slack
    w_hi = float((hi1 - lo0).max()) + g.slack
    base, sum_h = float(np.dot(h, f - r)), float(h.sum())
    ends = (base - w_lo * sum_h, base - w_hi * sum_h)
    mid_w = 0.5 * ((lo1 + hi1) - (lo0 + hi0))  # the width's centre at each period
    c_lo, c_hi = float(mid_w.min()) - g.slack, float(mid_w.max()) + g.slack
    parts = (
        (base - 0.5 * (c_lo + c_hi) * sum_h, 0.5 * (c_hi - c_lo) * abs(sum_h)),
        (0.0, 0.5 * float((hi0 - lo0).max()) * abs(sum_h)),
        (0.0, 0.5 * float((hi1 - lo1).max()) * abs(sum_h)),
    )
    d0, d1 = np.maximum(hi0 - lo0, 0.0), np.maximum(hi1 - lo1, 0.0)
    mix = _mixture(
        d0 * d1,
        lambda j: ((base - float(mid_w[j]) * sum_h, 0.0), *parts[1:]),
    )
    return min(ends), max(ends), max(0.0, w_hi - w_lo), parts, mix


def _mixture(weight: F64, rects: Callable[[int], Parts]) -> Mixture:
    """``MIX_POINTS`` periods evenly spread over those of the grid with a non-empty phase set,
    each with its weight (the phase set's size, normalised) and ``rects(index)``."""
    ok = np.flatnonzero(weight > 0.0)
    if ok.size == 0:
        return ()
    pick = ok[np.unique(np.linspace(0, ok.size - 1, min(ok.size, MIX_POINTS)).astype(np.int64))]
    total = float(weight[pick].sum())
    return tuple((float(weight[j]) / total, rects(int(j))) for j in pick)


def _single_range(g: _Grid, s: F64, x: F64) -> tuple[float, float, float, Parts, Mixture]:
    """One step per period (all N edges ``x``, heights ``s``): error Σ sₖ·(fₖ − ½) with
    fₖ = φ + k·P − xₖ, in sample units over the consistent (φ, P); linear in φ, so its extremes
    lie at φ's bounds (from the grid's edges)."""
    sum_s = float(s.sum())
    k_all = np.arange(x.size, dtype=np.float64)
    slope = float(np.dot(s, k_all))
    base = slope * g.p - float(np.dot(s, x)) - sum_s / 2.0
    at_lo, at_hi = sum_s * g.lo(0) + base, sum_s * g.hi(0) + base
    slack = abs(sum_s) * g.slack + abs(slope) * (g.p[1] - g.p[0] if g.p.size > 1 else 0.0) / 2
    lo = float(np.minimum(at_lo, at_hi).min()) - slack
    hi = float(np.maximum(at_lo, at_hi).max()) + slack
    mid = 0.5 * (at_lo + at_hi)  # the error's centre at each period (φ mid-window)
    c_lo, c_hi = float(mid.min()) - slack, float(mid.max()) + slack
    halves = 0.5 * np.abs(at_hi - at_lo)  # φ's window at each period
    parts = ((0.5 * (c_lo + c_hi), 0.5 * (c_hi - c_lo)), (0.0, float(halves.max())))
    d = np.maximum(g.hi(0) - g.lo(0), 0.0)
    mix = _mixture(d, lambda j: ((float(mid[j]), 0.0), parts[1]))
    return lo, hi, 0.0, parts, mix


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
    sizes = np.abs(dv) if size_w is None else size_w
    idx = np.flatnonzero(sizes > step_w)
    before = dv[np.maximum(idx - 1, 0)]
    after = dv[np.minimum(idx + 1, dv.size - 1)]
    around = np.where(idx == 0, after, np.where(idx == dv.size - 1, before, (before + after) / 2))
    return train_error_from_steps(idx, sizes[idx], dv[idx] - around, dt0, step_w)


def train_error_from_steps(
    idx: I64, size_w: F64, height_w: F64, dt0: float, step_w: float
) -> TrainError | None:
    """``train_error`` from candidate step intervals ``idx`` (sorted) of samples the caller
    knows lie on a uniform grid of ``dt0`` ns, with their sizes and heights (``_steps``)."""
    found = _steps(idx, size_w, height_w, step_w)
    if found is None:
        return None
    idx, s = found
    if s.size > 1 and s[0] * s[1] < 0:  # pulses: pair each step with the next
        n = idx.size // 2
        if n < MIN_PULSES:
            return None
        h = s[0 : 2 * n : 2]
        x = (idx[0 : 2 * n : 2].astype(np.float64), idx[1 : 2 * n : 2].astype(np.float64))
        span = _period_range(*x)
        if span is None:
            return None
        lo, hi, width, parts, mix = _pulse_range(_Grid(*span, *x), h, *x)
        x2 = ((s[1 : 2 * n : 2] + h) * dt0) ** 2
        paired = idx[: 2 * n]
    else:
        n = idx.size
        x1 = idx.astype(np.float64)
        span = _period_range(x1)
        if span is None:
            return None
        lo, hi, width, parts, mix = _single_range(_Grid(*span, x1), s, x1)
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
        parts_wns=tuple((c * dt0, a * dt0) for c, a in parts),
        mixture_wns=tuple((wt, tuple((c * dt0, a * dt0) for c, a in rs)) for wt, rs in mix),
    )


def uniform_x2(te: TrainError) -> float:
    """The train's error in ``integrate``'s x units (σ² = x²/12): uniform within ±its largest
    |end|. Where in the range the error lies is not known (for a given load it may sit near an
    end), so the whole symmetric range counts, not a posterior spread inside it."""
    x = 2.0 * te.bound_wns
    return x * x
