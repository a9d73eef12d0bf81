"""Energy of one channel over one window: pure numpy, no clocks, no I/O.

Power channels use the trapezoid rule with the power linearly interpolated at the exact window
edges. Energy-counter channels take the difference of the counter, interpolated at the edges, after
unwrapping wraparounds (known range) and bridging resets (driver reload), so a counter never yields
negative energy.

Every figure carries a 95 % uncertainty: the half-width of the interval that holds the sum of
independent terms with 95 % probability, from the terms' declared shapes (Gaussian or
rectangular; ``powerd.coverage``, GUM Annex G.2 / Supplement 1), not the root-sum-square of
their 95 % values. ``terms_j`` gives each term's own 95 % half-width (their root-sum-square is
not ``uncertainty_j``). The terms and their shapes:

- instrument (Gaussian: each component of the spec a 95 % bound of an error drawn from its own
  source): the channel's accuracy spec applied to the window's energy and duration, its
  components (gain, range, offset) in quadrature (``Accuracy.power_u95_w``), and a counter's
  quantisation (two rectangles of ±q/2, ``QUANT95`` alone);
- discretisation (rectangles): per sample interval, the difference between trapezoid and step
  (sample-and-hold) integration, or the interval's bend against its neighbours where smaller
  (exact on straight segments), taken as a uniform error within ± that, plus pulses hidden
  between two samples (the window-edge pieces as Gaussians, see ``_discretisation_j``; a
  counter's edge splits as rectangles within their bounds); a regular pulse train instead gets the
  error range its edges' positions allow (``powerd.pulsetrain``); none inside the window for
  averaging channels (``Channel.averaging_s``); a load phase-locked to the sample grid is flagged
  ``periodic_load`` (see ``_discretisation_j``);
- noise (Gaussian): sample-to-sample scatter (robust estimate from successive differences)
  propagated through the trapezoid weights, at 1.96 σ;
- timing (Gaussian): power at each edge × that edge's time uncertainty;
- gaps (rectangle within the bound) and resets (Gaussian, the estimate as its 95 %): energy
  interpolated over uncovered time or estimated across a counter reset.

Coverage is the fraction of the window not inside a gap longer than ``GAP_FACTOR`` nominal periods.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from powerd.block import F64, I64
from powerd.channel import Channel
from powerd.coverage import Budget
from powerd.pulsetrain import GRID_REL_TOL, TrainError, train_error_from_steps

GAP_FACTOR = 3.0
MAX_TRAIN_STEPS = 1 << 16  # more steps in a window: not tested as a pulse train (memory bound)
MAX_GAP_INTERVALS = 1 << 16  # long intervals kept per window for the gap term (memory bound)
CHUNK = 1 << 14
NOISE_MAX_DIFFS = 1 << 16
Z95 = 1.96
# A counter's quantisation (step q) in a window's energy: each edge is interpolated between two
# readings, each within ±q/2 of the truth, so the difference is a sum of two rectangles of
# half-width q/2 (at most; a triangle on ±q), whose 95 % point is (1 − √0.05) q ≈ 0.78 q, combined
# with the accuracy spec by their distributions (``powerd.coverage``).
QUANT95 = 1.0 - math.sqrt(0.05)

Flag = Literal[
    "no_data", "too_short", "incomplete", "counter_reset", "counter_wrap", "periodic_load"
]
PERIODIC_MIN_SAMPLES = 16  # fewer inner samples: no periodicity test (nothing to alias)
PERIODIC_MAX_SAMPLES = 1 << 12  # the test looks at the first this many samples (one FFT)
PERIODIC_MIN_ACF = 0.5  # autocorrelation at the period's lag above which the load is periodic
PERIODIC_MIN_PERIODS = 2.0  # the window must hold this many periods for the test to speak


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
    gap_s: float = 0.0
    # the terms by shape (``powerd.coverage``): figures summing channels combine these
    budget: Budget | None = field(default=None, compare=False, repr=False)


def _no_data(method: Literal["trapezoid", "counter"]) -> ChannelEnergy:
    """No sample covers any part of the window: no figure at all, never an extrapolated one."""
    return ChannelEnergy(None, None, None, 0, 0.0, None, method, ("no_data",))


def _value_at(t: I64, v: F64, x: int) -> float:
    """``v`` linearly interpolated at ``x`` (held beyond the first and last sample)."""
    return _value_at_index(t, v, x, int(np.searchsorted(t, x, "right")))


def _value_at_index(t: I64, v: F64, x: int, i: int) -> float:
    """``_value_at`` given ``i = searchsorted(t, x, "right")``."""
    if i == 0:
        return float(v[0])
    if i == t.size or t[i - 1] == x:
        return float(v[i - 1])
    t0, t1 = int(t[i - 1]), int(t[i])
    v0, v1 = float(v[i - 1]), float(v[i])  # Python floats: the same IEEE arithmetic, cheaper
    return v0 + (v1 - v0) * ((x - t0) / (t1 - t0))


@dataclass(frozen=True)
class _Edges:
    """Where a window sits in a sample series: inner samples t[i0:i1] lie strictly inside it."""

    i0: int
    i1: int
    va: float
    vb: float


def _edges(t: I64, v: F64, w: Window) -> _Edges:
    """Two binary searches, not four: the edge values reuse them (``i0`` is the begin's
    ``searchsorted`` "right"; the end's "right" is ``i1`` past samples stamped exactly at it)."""
    i0 = int(np.searchsorted(t, w.t_begin_ns, "right"))
    i1 = int(np.searchsorted(t, w.t_end_ns, "left"))
    return _edges_at(t, v, w, i0, i1)


def _edges_at(t: I64, v: F64, w: Window, i0: int, i1: int) -> _Edges:
    """``_edges`` given its two searches (a caller that has them already)."""
    j1 = i1
    while j1 < t.size and int(t[j1]) == w.t_end_ns:
        j1 += 1
    return _Edges(
        i0, i1, _value_at_index(t, v, w.t_begin_ns, i0), _value_at_index(t, v, w.t_end_ns, j1)
    )


def _edge_uncovered_ns(t: I64, w: Window, e: _Edges, threshold_ns: float) -> float:
    """Uncovered time in the first and last node intervals (the pieces at the window edges)."""
    first, last = _edge_uncovered_pieces_ns(t, w, e, threshold_ns)
    return first + last


def _edge_uncovered_pieces_ns(
    t: I64, w: Window, e: _Edges, threshold_ns: float
) -> tuple[float, float]:
    """Uncovered time in the first and in the last node interval (the whole window, if it
    holds no sample, counts as the first).

    Each piece is judged by the real sample interval that encloses it: an edge inside a short
    sampling interval is covered; one inside a long gap, or further than the threshold beyond the
    first or last sample, is not. Inner intervals are judged by their own length elsewhere.
    """
    n = t.size
    a, b = w.t_begin_ns, w.t_end_ns

    def span(i_left: int, i_right: int) -> float:
        left = int(t[i_left]) if i_left >= 0 else a
        right = int(t[i_right]) if i_right < n else b
        return float(right - left)

    if e.i1 <= e.i0:
        return (float(b - a) if span(e.i0 - 1, e.i0) > threshold_ns else 0.0), 0.0
    first = float(t[e.i0] - a) if span(e.i0 - 1, e.i0) > threshold_ns else 0.0
    last = float(b - t[e.i1 - 1]) if span(e.i1 - 1, e.i1) > threshold_ns else 0.0
    return first, last


def _gap_bound_j(sums: _Sums, p: F64, e: _Edges, first_ns: float, last_ns: float) -> float:
    """The gap term: over each uncovered stretch the trapezoid assumes the straight line between
    the samples around it, whose mean ``m`` may sit anywhere in [vmin, vmax] (the window's
    range); the true mean power there may be anywhere in that range too, so the error is
    within ``max(vmax - m, m - vmin)`` × the stretch: that bound is returned, a rectangle of
    that half-width (its 95 % alone is 0.95 × it, ``powerd.coverage``). Half the
    range when ``m`` is mid-range; the whole range when it is at an extreme (a square wave's
    gap between two low samples may hold only high power: half the range undercounted it)."""
    if sums.gap_dt is None:  # too many long intervals to keep: every one at an extreme
        inner = (sums.vmax - sums.vmin) * sums.gap_ns
    else:
        inner = 0.0
        for dt, mids in zip(sums.gap_dt, sums.gap_mid, strict=True):
            inner += float(np.dot(dt, np.maximum(sums.vmax - mids, mids - sums.vmin)))
    edges = 0.0
    for ns, mid in (
        (first_ns, (e.va + (float(p[e.i0]) if e.i1 > e.i0 else e.vb)) / 2.0),
        (last_ns, ((float(p[e.i1 - 1]) if e.i1 > e.i0 else e.va) + e.vb) / 2.0),
    ):
        if ns > 0.0:
            edges += max(sums.vmax - mid, mid - sums.vmin) * ns
    return (inner + edges) / 1e9


def _noise_sigma(v: F64) -> float:
    """Robust std of white noise on samples, from successive differences (MAD of ≤ 2^16 of them)."""
    if v.size < 3:
        return 0.0
    stride = -(-(v.size - 1) // NOISE_MAX_DIFFS)
    d = np.diff(v[::stride])  # a new array: partitioned and overwritten in place below
    k = d.size // 2
    d.partition(k)  # the same k-th value as _median(d), without a copy
    med = float(d[k])
    np.subtract(d, med, out=d)
    np.abs(d, out=d)
    d.partition(k)
    return 1.4826 * float(d[k]) / math.sqrt(2.0)


def _median(x: F64) -> float:
    """Median by partition (no full sort); the upper median for even sizes is close enough here."""
    k = x.size // 2
    return float(np.partition(x, k)[k])


@dataclass
class _Sums:
    """Running sums over node intervals (ns and W units), accumulated chunk by chunk."""

    left: float = 0.0
    right: float = 0.0
    disc2: float = 0.0
    disc4: float = 0.0
    edge_disc2: float = 0.0
    edge_disc4: float = 0.0
    edge_var: float = 0.0  # the window-edge pieces' error variance ((W·ns)², ``_edge_piece_var``)
    step_w: float = math.inf  # an interval whose (bend-limited) change exceeds this is a step
    n_inner: int = 0
    n_steps: int = 0
    step2: float = 0.0  # Σ (step height × interval)² over the steps
    dt2: float = 0.0
    gap_ns: float = 0.0
    # The long intervals' lengths and trapezoid mid values, per chunk (for ``_gap_term_j``);
    # None once more than MAX_GAP_INTERVALS (then each counts at the whole range).
    gap_dt: list[F64] | None = field(default_factory=list)
    gap_mid: list[F64] = field(default_factory=list)
    n_gaps: int = 0
    vmax: float = -math.inf
    vmin: float = math.inf
    # The steps' interval indices and (bend-limited) sizes, for the pulse-train test
    # (``_train_terms``); None once there are too many to be a train's.
    step_idx: list[I64] | None = field(default_factory=list)
    step_size: list[F64] = field(default_factory=list)
    n_kept: int = 0

    def add(
        self,
        dt: F64,
        v0: F64,
        v1: F64,
        threshold_ns: float,
        bend_w: F64 | None = None,
        step: F64 | None = None,
        first: int = 0,
    ) -> None:
        """Add intervals of length ``dt`` from ``v0`` to ``v1``; ``bend_w``: each one's change of
        step against its neighbours (``_bend_w``; None: its whole step counts); ``step``:
        ``|v1 - v0|`` when the caller has it already (``_inner_steps``), or None; ``first``: the
        index of the first interval's left sample (to record where the steps are).

        Hot path (issue 16 item 4): each numpy pass over the chunk counts, so temporaries are
        reused in place and a pass that usually finds nothing (steps, long intervals) is
        preceded by one reduction; the sums are the same as a straightforward evaluation."""
        self.left += float(np.dot(dt, v0))
        self.right += float(np.dot(dt, v1))
        if step is None:
            step = np.abs(v1 - v0)
        limited = step if bend_w is None else np.minimum(step, bend_w, out=step)
        x2 = np.multiply(limited, dt)
        np.multiply(x2, x2, out=x2)
        self.disc2 += float(x2.sum())
        self.disc4 += float(np.dot(x2, x2))
        if bend_w is not None:
            self.n_inner += dt.size
            if limited.size and float(np.fmax.reduce(limited)) > self.step_w:  # NaN-blind
                is_step = limited > self.step_w
                self.n_steps += int(np.count_nonzero(is_step))
                self.step2 += float(x2[is_step].sum())
                if self.step_idx is not None:
                    at = np.flatnonzero(is_step)
                    self.n_kept += at.size
                    if self.n_kept > MAX_TRAIN_STEPS:
                        self.step_idx = None
                    else:
                        self.step_idx.append(at + first)
                        self.step_size.append(limited[at])
            else:
                self.step2 += 0.0  # x2[no step].sum(): the same sum of nothing
        self.dt2 += float(np.dot(dt, dt))
        if dt.size and float(dt.max()) > threshold_ns:
            long = dt > threshold_ns
            self.gap_ns += float(dt[long].sum())
            if self.gap_dt is not None:
                self.n_gaps += int(np.count_nonzero(long))
                if self.n_gaps > MAX_GAP_INTERVALS:
                    self.gap_dt = None
                else:
                    self.gap_dt.append(dt[long])
                    self.gap_mid.append((v0[long] + v1[long]) / 2.0)
        if v1.size:
            self.vmax = max(self.vmax, float(v1.max()))
            self.vmin = min(self.vmin, float(v1.min()))


def _inner_steps(p: F64, s: int, stop: int) -> tuple[F64, F64]:
    """``(_bend_w(p, s, stop), |diff(p[s:stop])|)`` from one ``diff`` of the samples (the
    steps are the middle of the differences the bend is taken from): one pass fewer per chunk."""
    lo, hi = max(s - 1, 0), min(stop + 1, p.size)
    d = np.diff(p[lo:hi])
    step = np.abs(d[s - lo : d.size - (hi - stop)])
    if d.size < 2:
        return np.full(max(stop - s - 1, 0), np.inf), step
    dd = np.diff(d)
    np.abs(dd, out=dd)
    if lo == s or hi == stop:
        dd = np.concatenate(([0.0] if lo == s else [], dd, [0.0] if hi == stop else []))
    return np.maximum(dd[:-1], dd[1:]), step


def _bend_w(p: F64, s: int, stop: int) -> F64:
    """Per interval of samples [s, stop): the largest change (W) of its step against the step
    before and after it. The trapezoid is exact on a straight segment, so a ramp sampled on both
    sides of an interval bounds that interval's error by its bend, while a step (neighbours
    flat) keeps its whole height. Steps, not slopes, are compared: on an uneven grid a ramp's
    steps differ and the bend is overstated (conservative). With one neighbour missing (end of
    the data) the other one decides; with both missing the interval counts as a step."""
    lo, hi = max(s - 1, 0), min(stop + 1, p.size)
    d = np.diff(p[lo:hi])
    if d.size < 2:
        return np.full(max(stop - s - 1, 0), np.inf)
    dd = np.abs(np.diff(d))
    if lo == s or hi == stop:
        dd = np.concatenate(([0.0] if lo == s else [], dd, [0.0] if hi == stop else []))
    return np.maximum(dd[:-1], dd[1:])


def _bend_one_w(p: F64, j: int) -> float:
    """``_bend_w(p, j, j + 2)[0]`` in scalar arithmetic (one interval: a window edge's)."""
    vals = p[max(j - 1, 0) : min(j + 3, p.size)].tolist()
    d = [b - a for a, b in itertools.pairwise(vals)]
    if len(d) < 2:
        return math.inf
    dd = [abs(b - a) for a, b in itertools.pairwise(d)]
    if j == 0:
        dd.insert(0, 0.0)
    if j + 2 == p.size:
        dd.append(0.0)
    return float(max(dd[0], dd[1]))


def _edge_piece_factor(q: float) -> float:
    """Variance of a window-edge piece's error over its x² (x = |Δv|·piece, ``_Sums``), the piece
    being a fraction ``q`` of its sample interval and reaching that interval's far sample.

    With a step of height s at a uniform point of the interval (all the bound assumes), the
    edge value is interpolated at the window edge; the step lies outside the piece with
    probability 1 − q, leaving the error −x/2, and inside it with probability q, leaving an
    error uniform on [−x/2, x·(2 − q)/(2q)]: a step inside a small piece changes its energy
    by up to s × the piece, far beyond x = s·q × the piece. Mean 0, variance
    x²·((1 − q)/4 + ((1 − q)²/4 + 1/12)/q): x²/12 (uniform) for a whole interval, above x²/4
    for pieces under ~0.4 of one. ``q`` 0 (unknown: no interval around the edge, or the
    window inside one interval): x²/4, σ = the bound, as before."""
    if not 0.0 < q <= 1.0:
        return 0.25
    r = 1.0 - q
    return r / 4.0 + (r * r / 4.0 + 1.0 / 12.0) / q


def _power_sums(
    t: I64, p: F64, w: Window, e: _Edges, threshold_ns: float, step_w: float = math.inf
) -> _Sums:
    """Trapezoid sums over [a, inner samples..., b] without copying the inner samples; inner
    intervals changing by more than ``step_w`` (W, bend-limited) are counted as steps."""
    sums = _Sums(vmax=max(e.va, e.vb), vmin=min(e.va, e.vb), step_w=step_w)

    def edge(t0: int, t1: int, v0: float, v1: float, j: int) -> None:
        """A window edge's piece [t0, t1] of the sample interval j (t[j]..t[j+1]).

        The same sums as ``_Sums.add`` of a one-interval array, in scalar arithmetic: a window
        has two edges and each numpy call on one element costs a microsecond (issue 16 item 4)."""
        dt = float(t1 - t0)
        bend = math.inf
        if j >= 0 and j + 1 < t.size:
            bend = _bend_one_w(p, j)
        sums.left += dt * v0
        sums.right += dt * v1
        limited = min(abs(v1 - v0), bend)
        x = limited * dt
        x2 = x * x
        sums.disc2 += x2
        sums.disc4 += x2 * x2
        sums.n_inner += 1
        if limited > sums.step_w:
            sums.n_steps += 1
            sums.step2 += x2
        sums.dt2 += dt * dt
        sums.vmax = max(sums.vmax, v1)
        sums.vmin = min(sums.vmin, v1)
        x2 = (min(abs(v1 - v0), bend) * (t1 - t0)) ** 2
        sums.edge_disc2 += x2
        sums.edge_disc4 += x2 * x2
        whole = float(t[j + 1] - t[j]) if j >= 0 and j + 1 < t.size else 0.0
        sums.edge_var += x2 * _edge_piece_factor(dt / whole if e.i1 > e.i0 and whole else 0.0)

    if e.i1 <= e.i0:
        edge(w.t_begin_ns, w.t_end_ns, e.va, e.vb, e.i0 - 1)
        return sums
    edge(w.t_begin_ns, int(t[e.i0]), e.va, float(p[e.i0]), e.i0 - 1)
    for s in range(e.i0, e.i1 - 1, CHUNK):
        stop = min(e.i1, s + CHUNK + 1)
        dt = np.diff(t[s:stop]).astype(np.float64)
        bend_w, step = _inner_steps(p, s, stop)
        sums.add(dt, p[s : stop - 1], p[s + 1 : stop], threshold_ns, bend_w, step, s)
    edge(int(t[e.i1 - 1]), w.t_end_ns, float(p[e.i1 - 1]), e.vb, e.i1 - 1)
    return sums


@dataclass(frozen=True)
class Periodicity:
    """A periodic load seen in a window's samples.

    ``period_samples``: the lag (in samples) of the autocorrelation's first peak within 10 % of
    its highest after its first zero crossing (the fundamental, not a multiple); ``periods``: how
    many such periods the samples span; ``sweep``: the fraction of a sample interval by which the
    sample grid slides against the load per period (0: phase-locked, every period sampled at the
    same points), estimated as the ratio of the lag-``period`` to the lag-1 mean squared
    differences with the noise's share removed (exact for edges, too small, so
    conservative, for slopes).
    """

    period_samples: int
    periods: float
    sweep: float

    @property
    def locked(self) -> bool:
        """The grid does not slide across a whole sample interval within the window."""
        return self.periods * self.sweep < 1.0


@functools.lru_cache(maxsize=64)
def _unbias(n: int) -> F64:
    """``n / (n - lag)`` for lags 0..n//2: the autocorrelation's bias correction, per length
    (windows of one channel mostly have the same few lengths; read-only, shared)."""
    out = n / (n - np.arange(n // 2 + 1))
    out.flags.writeable = False
    return out


def periodicity(v: F64, noise_sigma: float) -> Periodicity | None:
    """Detect a periodic load in samples ``v`` (one rfft of at most ``PERIODIC_MAX_SAMPLES``).

    Returns None for too few samples, a constant, noise, or aperiodic changes (random pulses):
    their autocorrelation has no peak above ``PERIODIC_MIN_ACF`` after its first zero crossing.
    """
    n_all = v.size
    if n_all < PERIODIC_MIN_SAMPLES:
        return None
    head = v[:PERIODIC_MAX_SAMPLES]
    n = head.size
    x = head - float(head.sum()) / n  # np.mean's sum and division, without its overhead
    var = float(np.dot(x, x))
    if not var > 0.0:
        return None
    f = np.fft.rfft(x, 1 << (2 * n - 1).bit_length())
    acf = np.fft.irfft(f.real**2 + f.imag**2)[: n // 2 + 1]
    acf = acf / acf[0] * _unbias(n)
    neg = np.flatnonzero(acf < 0.0)
    if neg.size == 0:
        return None
    tail = acf[neg[0] :]
    best = float(tail.max())
    if best < PERIODIC_MIN_ACF:
        return None
    # The fundamental, not a multiple of it: the first lag within 10 % of the highest peak.
    lag = int(neg[0] + np.flatnonzero(tail >= 0.9 * best)[0])
    while lag + 1 < acf.size and acf[lag + 1] > acf[lag]:
        lag += 1
    if lag < 2:
        return None
    noise2 = 2.0 * noise_sigma * noise_sigma
    d1 = np.diff(x)
    ss1 = float(np.dot(d1, d1)) / d1.size - noise2
    dl = x[lag:] - x[:-lag]
    ssl = float(np.dot(dl, dl)) / dl.size - noise2
    # Below its own statistical scatter (or float rounding), the lag difference is noise only.
    floor = noise2 * 4.0 * math.sqrt(2.0 / dl.size) + 1e-12 * var / n
    sweep = 0.0 if ssl <= floor or ss1 <= 0.0 else min(1.0, ssl / ss1)
    return Periodicity(lag, n_all / lag, sweep)


def _discretisation_j(
    ch: Channel, t: I64, p: F64, w: Window, e: _Edges, sums: _Sums, noise_sigma: float
) -> tuple[Budget, Periodicity | None]:
    """Discretisation term (J, as a ``Budget`` of shaped parts) and the periodicity found, if
    any.

    Instantaneous samples: each sample interval's trapezoid error lies within ±x/2 with
    x = |Δv|·Δt (a step anywhere in it), or x = bend·Δt where the samples on both sides show a
    straight segment bending by less than the step (``_bend_w``: the trapezoid is exact on a
    straight line), taken uniform and independent: σ = x/√12 per interval, summed in quadrature.

    Averaging samples (``averaging_s`` > 0, each sample the exact mean over that long an interval,
    stamped at its midpoint): inside the window the trapezoid over midpoint-stamped means sums
    whole intervals exactly (Σ vᵢ·h), so only (a) each window edge, which cuts an averaging
    interval whose inner distribution is unknown (± half that interval × the largest step of the
    neighbouring samples), and (b) the time between intervals when averaging_s < period (the
    instantaneous error scaled by the unaveraged fraction 1 − averaging_s/period), remain.

    Shape: the inner intervals' errors are a sum of independent rectangles, passed on as their
    Σx² and Σx⁴ (``Budget.add_uniform_sum``: one rectangle and a Gaussian with the same variance
    and fourth cumulant), so the figure's 95 % comes from the distribution of the whole sum
    (``powerd.coverage``), not a factor on σ. A window edge's piece is not uniform within its
    x (a step anywhere before the edge puts the error exactly at its end; a step inside a small
    piece can even exceed it): it counts as a Gaussian of σ = x/2, the conservative shape kept.

    Periodic loads (``periodicity``): successive periods' errors are not independent. When the
    inner steps form a regular pulse train on a uniform grid (``powerd.pulsetrain``), their
    per-edge terms and the hidden-pulse term are replaced by the range of the train's error that
    the edges' grid positions allow (equivalent time: N pulses pin the common width far better
    than one; phase-locked, they pin it to ±1 sample and the error is the coherent N-fold one).
    Other periodic loads (ramps, irregular shapes) keep the independent model: over-covered when
    the grid slides, possibly too small when it does not (``Periodicity.locked``: the grid does
    not slide across a whole interval within the window); the caller flags the latter
    ``periodic_load``.
    """
    train = None
    frac = min(1.0, ch.averaging_s / ch.nominal_period_s) if ch.averaging_s > 0 else 0.0
    per = None
    if frac < 1.0 and e.i1 - e.i0 >= PERIODIC_MIN_SAMPLES:
        per = periodicity(p[e.i0 : e.i1], noise_sigma)
        if per is not None and per.periods < PERIODIC_MIN_PERIODS:
            per = None
        if per is not None:
            train = _train_terms(t, p, e, sums, w.t_begin_ns, w.t_end_ns)
    te: TrainError | None = None
    if train is None:
        hidden2, hidden4 = _hidden_steps(sums)
        inner2 = max(0.0, sums.disc2 - sums.edge_disc2) + hidden2
        inner4 = max(0.0, sums.disc4 - sums.edge_disc4) + hidden4
    else:
        inner2, inner4, te = train
    # A window edge's piece of an interval is not uniform within its bound (a step before the
    # edge puts the error exactly at −x/2; one inside a small piece beyond x): a Gaussian of
    # the error's variance (``_edge_piece_factor``), in x²/12 units.
    edge2 = 12.0 * sums.edge_var
    if frac > 0.0:
        inner2 *= (1.0 - frac) ** 2
        inner4 *= (1.0 - frac) ** 4
        avg_ns = ch.averaging_s * 1e9
        xs = [(_averaging_edge_w(t, p, x) * avg_ns) ** 2 for x in (w.t_begin_ns, w.t_end_ns)]
        edge2 = 3.0 * sum(xs)
    budget = Budget()
    budget.add_uniform_sum(inner2 / 1e18, inner4 / 1e36)
    budget.add_normal_sigma(math.sqrt(edge2 / 12.0) / 1e9)
    # A pulse train's error. Where the grid slides across the load: its distribution with
    # (period, phases) uniform over the set the edges allow (``TrainError.mixture_wns``; each
    # period's phase windows at their widest over the periods, since a period that is a ratio
    # of small integers of the sample period leaves windows that wide). Where it does not
    # (``Periodicity.locked``, flagged ``periodic_load``): every pulse errs alike, by
    # height × Δt × (m − w) for the one seen width m, so across grid offsets the error takes two
    # values, −frac(w) and 1 − frac(w) of the N-fold range; 95 % of them for every width needs
    # 0.95 of the range: one rectangle over [lo, hi].
    scale = (1.0 - frac) / 1e9
    if te is not None:
        if te.mixture_wns and per is not None and not per.locked:
            budget.set_mixture(
                [(wt, [(c * scale, a * scale) for c, a in rs]) for wt, rs in te.mixture_wns]
            )
        else:
            budget.add_uniform(
                0.5 * (te.hi_wns - te.lo_wns) * scale, 0.5 * (te.hi_wns + te.lo_wns) * scale
            )
    return budget, per


def _train_terms(
    t: I64, p: F64, e: _Edges, sums: _Sums, w_begin: int, w_end: int
) -> tuple[float, float, TrainError] | None:
    """(x², x⁴ sums) of the inner intervals and the train's error when their steps form a
    regular train of pulses or of one step per period (``powerd.pulsetrain``): the train's
    steps leave the independent sums and the hidden-pulse term (a train proven regular is not
    Poisson), and come back as one error over the range the edges' positions allow (see
    ``_discretisation_j`` for its shape), plus each pulse's height mismatch;
    None: not a clean train. Works from the steps ``_Sums`` recorded (no pass over the window)."""
    n_int = e.i1 - e.i0 - 1
    if n_int < 2 or sums.step_idx is None or not sums.step_idx:
        return None
    # A uniform grid (the train's sample-index arithmetic needs one), from sums already taken:
    # Σ dt² = (Σ dt)² / n exactly when every inner interval has the same length.
    span_ns = float(t[e.i1 - 1] - t[e.i0])
    inner_dt2 = sums.dt2 - float(t[e.i0] - w_begin) ** 2 - float(w_end - t[e.i1 - 1]) ** 2
    dt0 = span_ns / n_int
    if not dt0 > 0 or inner_dt2 / n_int - dt0 * dt0 > (GRID_REL_TOL * dt0) ** 2:
        return None
    g = np.concatenate(sums.step_idx)
    size_w = np.concatenate(sums.step_size)
    d0 = p[g + 1] - p[g]
    # a step's height against the slope around it (a ramp's share is integrated exactly)
    prev = np.where(g >= 1, p[g] - p[np.maximum(g - 1, 0)], np.nan)
    nxt = np.where(g + 2 < p.size, p[np.minimum(g + 2, p.size - 1)] - p[g + 1], np.nan)
    around = np.nanmean(np.stack([prev, nxt]), axis=0) if g.size else prev
    height_w = d0 - np.nan_to_num(around, nan=0.0)
    te = train_error_from_steps(g, size_w, height_w, dt0, sums.step_w)
    if te is None:
        return None
    idx = np.searchsorted(g, te.paired)
    x = size_w[idx] * (t[te.paired + 1] - t[te.paired]).astype(np.float64)
    x2 = x * x
    steps = size_w[idx] > sums.step_w
    rest = _Sums(
        n_inner=sums.n_inner,
        n_steps=sums.n_steps - int(np.count_nonzero(steps)),
        step2=max(0.0, sums.step2 - float(x2[steps].sum())),
    )
    hidden2, hidden4 = _hidden_steps(rest)
    inner2 = max(0.0, sums.disc2 - sums.edge_disc2 - float(x2.sum())) + hidden2
    inner4 = max(0.0, sums.disc4 - sums.edge_disc4 - float(np.dot(x2, x2))) + hidden4
    return inner2 + te.mismatch_x2, inner4 + te.mismatch_x4, te


def _step_threshold_w(e: _Edges, noise_sigma: float) -> float:
    """A change (W) beyond the noise (4σ of a second difference, σ√6) and float rounding (of
    values the size of the edge values)."""
    return max(4.0 * math.sqrt(6.0) * noise_sigma, 1e-9 * max(abs(e.va), abs(e.vb)))


def _hidden_steps(sums: _Sums) -> tuple[float, float]:
    """(x², x⁴ sums) of the pulses no sample saw: two steps inside one interval.

    Steps are taken as a Poisson process at the rate seen (a fraction q of the intervals holds
    one, so about q per interval); an interval holds two with probability 1 − e^(−q)(1 + q) and
    then shows no change, while the energy of the pulse between them (height × a width up to the
    interval, E[u²] = 1/6 for two uniform points) is missing: σ² = step²·Δt²/6 each, i.e.
    x² = 2·step²·Δt² in this module's x units. Steps of a regular load (far apart, as a periodic
    square wave's) are not Poisson: for them this term is a small overestimate.
    """
    if sums.n_steps == 0 or sums.n_inner == 0:
        return 0.0, 0.0
    q = sums.n_steps / sums.n_inner
    hidden = sums.n_inner * (1.0 - math.exp(-q) * (1.0 + q))
    x2 = 2.0 * sums.step2 / sums.n_steps
    return hidden * x2, hidden * x2 * x2


def _averaging_edge_w(t: I64, p: F64, x: int) -> float:
    """Largest step (W) between the samples around time ``x``: how far the power inside the
    averaging interval that ``x`` cuts may differ from its mean."""
    i = int(np.searchsorted(t, x, "right"))
    lo, hi = max(0, i - 2), min(t.size, i + 2)
    if hi - lo < 2:
        return 0.0
    return float(np.abs(np.diff(p[lo:hi])).max())


def _normal(u95_j: float) -> Budget:
    """A Gaussian term given by its 95 % half-width."""
    b = Budget()
    b.add_normal_u95(u95_j)
    return b


def _uniform(bound_j: float) -> Budget:
    """A rectangular term: an error anywhere within ±``bound_j``."""
    b = Budget()
    b.add_uniform(bound_j)
    return b


def _combine(parts: dict[str, Budget]) -> tuple[dict[str, float], Budget, float]:
    """Each term's own 95 % half-width (``terms_j``), all terms together (``budget``) and the
    95 % half-width of their sum (``uncertainty_j``), from the terms' shapes
    (``powerd.coverage``), not a root-sum-square."""
    total = Budget()
    terms: dict[str, float] = {}
    for name, b in parts.items():
        terms[name] = b.u95() if b.normal_var > 0.0 or b.uniforms or b.mixture else 0.0
        total.extend(b)
    live = [u for u in terms.values() if u > 0.0]
    # one term: the sum's interval is its own (no second solve)
    return terms, total, live[0] if len(live) == 1 else total.u95()


def combined_u95_j(figures: list[ChannelEnergy]) -> float:
    """95 % half-width of the sum of several channels' energies (independent errors): from
    their terms' shapes where every figure has them, else the root-sum-square of their U."""
    budgets = [f.budget for f in figures]
    if all(b is not None for b in budgets):
        total = Budget()
        for b in budgets:
            assert b is not None
            total.extend(b)
        return total.u95()
    return math.sqrt(sum((f.uncertainty_j or 0.0) ** 2 for f in figures))


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
    e = _edges(t, p, w)
    threshold_ns = GAP_FACTOR * ch.nominal_period_s * 1e9
    sigma_w = _noise_sigma(p[e.i0 : e.i1])
    sums = _power_sums(t, p, w, e, threshold_ns, _step_threshold_w(e, sigma_w))
    first_ns, last_ns = _edge_uncovered_pieces_ns(t, w, e, threshold_ns)
    uncovered_ns = sums.gap_ns + first_ns + last_ns
    coverage = max(0.0, 1.0 - uncovered_ns / (w.t_end_ns - w.t_begin_ns))
    if coverage == 0.0:
        return _no_data("trapezoid")
    energy_j = (sums.left + sums.right) / 2e9
    duration_s = w.duration_s
    mean_w = energy_j / duration_s
    disc, per = _discretisation_j(ch, t, p, w, e, sums, sigma_w)
    flags = _common_flags(w, ch, coverage)
    if sums.vmin < 0.0:  # kept as read, never clamped: a sensor or wiring problem to be seen
        flags.append("negative_power")
    if per is not None and per.locked:
        flags.append("periodic_load")
    parts = {
        "instrument": _normal(ch.accuracy.power_u95_w(mean_w) * duration_s),
        "discretisation": disc,
        "noise": _normal(Z95 * sigma_w * math.sqrt(sums.dt2) / 1e9),
        "timing": _normal(_edge_terms(ch, w, e.va, e.vb)),
        "gap": _uniform(_gap_bound_j(sums, p, e, first_ns, last_ns)),
    }
    terms, total, u_j = _combine(parts)
    return ChannelEnergy(
        energy_j=energy_j,
        mean_power_w=mean_w,
        peak_power_w=sums.vmax,
        samples=e.i1 - e.i0,
        coverage=coverage,
        uncertainty_j=u_j,
        method="trapezoid",
        flags=tuple(flags),
        terms_j=terms,
        gap_s=uncovered_ns / 1e9,
        budget=total,
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


def _edge_split_j(
    t: I64, cum: F64, x: int, t_all: I64 | None = None, c_all: F64 | None = None
) -> float:
    """Error bound of linear interpolation of a counter at ``x`` inside a sample interval.

    Interpolation assumes the interval's energy spread evenly; the power inside it is unknown.
    With the readings around it (``t_all``, ``c_all``: the channel's whole series), the power
    inside is taken within the range [lo, hi] of the interval's and its two neighbours' mean
    powers (a step between levels, as the trapezoid's bend model assumes for power samples);
    with the interval's mean fixed, the interpolation error at fraction f is at most
    max(min(f·(hi − mean), (1 − f)·(mean − lo)), min(f·(mean − lo), (1 − f)·(hi − mean))) × Δt:
    0 inside a steady load and in an interval at a level beside a step. Without both
    neighbours, or across a counter drop: min(f, 1 − f) × ΔE, as before."""
    i = int(np.searchsorted(t, x, "right"))
    if i == 0 or i >= t.size or t[i - 1] == x:
        return 0.0
    f = (x - t[i - 1]) / (t[i] - t[i - 1])
    whole = float(min(f, 1.0 - f) * (cum[i] - cum[i - 1]))
    if t_all is None or c_all is None:
        return whole
    j = int(np.searchsorted(t_all, x, "right"))
    if j < 2 or j + 1 >= t_all.size:
        return whole
    dc = np.diff(c_all[j - 2 : j + 2])
    dt = np.diff(t_all[j - 2 : j + 2]).astype(np.float64)
    if bool((dc < 0).any()) or bool((dt <= 0).any()):
        return whole
    rate = dc / dt  # J/ns
    lo, mid, hi = float(rate.min()), float(rate[1]), float(rate.max())
    # ∫₀^f (p − mean) with p within [lo, hi] and the interval's mean fixed: at most
    # f·(hi − mean) and (1 − f)·(mean − lo) one way, f·(mean − lo) and (1 − f)·(hi − mean) the
    # other (0 when the interval sits at a level and only a neighbour holds the step).
    up = min(f * (hi - mid), (1.0 - f) * (mid - lo))
    down = min(f * (mid - lo), (1.0 - f) * (hi - mid))
    return float(max(up, down)) * float(dt[1])


def _rate_at(t: I64, cum: F64, x: int) -> float:
    """Mean power (W) of the sample interval holding ``x`` (the nearest one past the data)."""
    if t.size < 2:
        return 0.0
    i = min(max(int(np.searchsorted(t, x, "right")), 1), t.size - 1)
    return float((cum[i] - cum[i - 1]) / ((t[i] - t[i - 1]) / 1e9))


def _has_drop(c: F64) -> bool:
    """Whether a reading is below the one before it (``diff < 0``, without the diff)."""
    for s in range(0, c.size - 1, CHUNK):
        e = min(c.size, s + CHUNK + 1)
        if bool(np.less(c[s + 1 : e], c[s : e - 1]).any()):
            return True
    return False


def _interval_stats(t: I64, cum: F64, threshold_ns: float, inner: slice) -> tuple[float, float]:
    """Peak interval power (W) over all intervals, and gap time (ns) between inner samples."""
    peak_w = -math.inf
    for s in range(0, t.size - 1, CHUNK):
        e = min(t.size, s + CHUNK + 1)
        rate = np.diff(cum[s:e]) / np.diff(t[s:e]).astype(np.float64)
        peak_w = max(peak_w, float(rate.max()) * 1e9)
    ti = t[inner]
    gap_ns = 0.0
    for s in range(0, ti.size - 1, CHUNK):
        dt = np.diff(ti[s : s + CHUNK + 1])
        long = dt > threshold_ns
        if bool(long.any()):
            gap_ns += float(dt[long].sum())
    return peak_w, gap_ns


def _beyond_data(t: I64, cum: F64, w: Window) -> tuple[int, float]:
    """Time of the window before the first or after the last reading, and the mean power of the
    readings, with which a counter is extrapolated there (holding it would claim 0 W)."""
    extrap_ns = max(0, min(int(t[0]), w.t_end_ns) - w.t_begin_ns)
    extrap_ns += max(0, w.t_end_ns - max(int(t[-1]), w.t_begin_ns))
    span_ns = int(t[-1] - t[0])
    rate_w = float(cum[-1] - cum[0]) / (span_ns / 1e9) if span_ns > 0 else 0.0
    return extrap_ns, rate_w


def integrate_counter(t: I64, c: F64, w: Window, ch: Channel) -> ChannelEnergy:
    """Energy from cumulative counter readings ``c`` (J) at ``t`` (ns) over window ``w``.

    Only the window's samples and one neighbour on each side are looked at; the counter is
    unwrapped only when that slice holds a drop. Across a gap between readings the counter's
    difference is still the energy (the hardware kept counting), so a gap costs coverage but no
    energy; beyond the last reading (a device lost mid-window) the counter is extrapolated at the
    readings' mean power, and that time counts fully at peak power in the uncertainty.
    """
    if t.size == 0:
        return _no_data("counter")
    i0 = int(np.searchsorted(t, w.t_begin_ns, "right"))
    i1 = int(np.searchsorted(t, w.t_end_ns, "left"))
    lo, hi = max(0, i0 - 1), min(t.size, i1 + 1)
    ts, cs = t[lo:hi], c[lo:hi]
    resets = np.zeros(0)
    if _has_drop(cs):
        un = unwrap_counter(ts, cs, ch.wrap_j)
        cum, resets = un.cumulative_j, un.reset_estimate_j
    else:
        cum = cs
    e = _edges_at(ts, cum, w, i0 - lo, i1 - lo)  # the searches in t, moved into ts
    threshold_ns = GAP_FACTOR * ch.nominal_period_s * 1e9
    peak_w, inner_gap_ns = _interval_stats(ts, cum, threshold_ns, slice(e.i0, e.i1))
    uncovered_ns = inner_gap_ns + _edge_uncovered_ns(ts, w, e, threshold_ns)
    coverage = max(0.0, 1.0 - uncovered_ns / (w.t_end_ns - w.t_begin_ns))
    if coverage == 0.0:
        return _no_data("counter")
    extrap_ns, data_rate_w = _beyond_data(ts, cum, w)
    energy_j = e.vb - e.va + data_rate_w * extrap_ns / 1e9
    duration_s = w.duration_s
    mean_w = energy_j / duration_s
    if not math.isfinite(peak_w):
        peak_w = mean_w
    q_j = ch.accuracy.resolution_j
    instrument = _normal(ch.accuracy.power_u95_w(mean_w) * duration_s)
    instrument.add_uniform(q_j / 2.0)  # each end's reading within ±q/2 of the truth
    instrument.add_uniform(q_j / 2.0)
    split = Budget()
    split.add_uniform(_edge_split_j(ts, cum, w.t_begin_ns, t, c))
    split.add_uniform(_edge_split_j(ts, cum, w.t_end_ns, t, c))
    parts = {
        "instrument": instrument,
        "discretisation": split,
        "timing": _normal(
            _edge_terms(ch, w, _rate_at(ts, cum, w.t_begin_ns), _rate_at(ts, cum, w.t_end_ns))
        ),
        "gap": _uniform(max(peak_w, mean_w) * extrap_ns / 1e9),
        # an estimate across a reset, not a bound: counted whole at 95 %, as a Gaussian
        "reset": _normal(float(np.abs(resets).sum())),
    }
    terms, total, u_j = _combine(parts)
    flags = _common_flags(w, ch, coverage)
    if bool((resets != 0).any()):
        flags.append("counter_reset")
    return ChannelEnergy(
        energy_j=energy_j,
        mean_power_w=mean_w,
        peak_power_w=peak_w,
        samples=e.i1 - e.i0,
        coverage=coverage,
        uncertainty_j=u_j,
        method="counter",
        flags=tuple(flags),
        terms_j=terms,
        gap_s=uncovered_ns / 1e9,
        budget=total,
    )


def integrate(t: I64, v: F64, w: Window, ch: Channel) -> ChannelEnergy:
    """Integrate a channel of either kind over a window."""
    if ch.kind == "energy":
        return integrate_counter(t, v, w, ch)
    return integrate_power(t, v, w, ch)


def energy_only(t: I64, v: F64, w: Window, ch: Channel) -> float | None:
    """The ``energy_j`` that ``integrate`` gives (bit for bit), without the uncertainty model:
    for a caller that wants only the energy of a window (issue 16 item 4: Zeus reads a counter
    at the phase edges; the noise, bend, periodic-load and hidden-step terms cost ~50–100 µs a
    call whatever the window's length). None where ``integrate`` says ``no_data``.

    A power channel costs two binary searches, one ``diff`` of the inner times and two dot
    products per ``CHUNK`` samples (the same sums in the same order as ``_power_sums``); a
    counter, the edge interpolation and one pass looking for drops. Coverage is computed only
    when both window edges lie in gaps (otherwise some of the window is covered): the answer
    is ``integrate``'s, only cheaper. No figure of a result uses this path: results carry
    their uncertainty (contract 2)."""
    if t.size == 0:
        return None
    if ch.kind == "energy":
        return _counter_energy_only(t, v, w, ch)
    e = _edges(t, v, w)
    threshold_ns = GAP_FACTOR * ch.nominal_period_s * 1e9
    duration_ns = w.t_end_ns - w.t_begin_ns
    edge_ns = _edge_uncovered_ns(t, w, e, threshold_ns)
    inner_span_ns = float(t[e.i1 - 1] - t[e.i0]) if e.i1 > e.i0 else 0.0
    if edge_ns + inner_span_ns >= duration_ns:  # maybe nothing covered: count the gaps
        gap_ns = 0.0
        for s in range(e.i0, e.i1 - 1, CHUNK):
            dt = np.diff(t[s : min(e.i1, s + CHUNK + 1)]).astype(np.float64)
            long = dt > threshold_ns
            if bool(long.any()):
                gap_ns += float(dt[long].sum())
        if max(0.0, 1.0 - (gap_ns + edge_ns) / duration_ns) == 0.0:
            return None
    left = right = 0.0  # as _power_sums adds them: first edge piece, chunks, last edge piece
    if e.i1 <= e.i0:
        dt_ns = float(w.t_end_ns - w.t_begin_ns)
        return (dt_ns * e.va + dt_ns * e.vb) / 2e9
    dt_ns = float(int(t[e.i0]) - w.t_begin_ns)
    left += dt_ns * e.va
    right += dt_ns * float(v[e.i0])
    for s in range(e.i0, e.i1 - 1, CHUNK):
        stop = min(e.i1, s + CHUNK + 1)
        dt = np.diff(t[s:stop]).astype(np.float64)
        left += float(np.dot(dt, v[s : stop - 1]))
        right += float(np.dot(dt, v[s + 1 : stop]))
    dt_ns = float(w.t_end_ns - int(t[e.i1 - 1]))
    left += dt_ns * float(v[e.i1 - 1])
    right += dt_ns * e.vb
    return (left + right) / 2e9


def _counter_energy_only(t: I64, c: F64, w: Window, ch: Channel) -> float | None:
    """``integrate_counter``'s energy alone (see ``energy_only``)."""
    i0 = int(np.searchsorted(t, w.t_begin_ns, "right"))
    i1 = int(np.searchsorted(t, w.t_end_ns, "left"))
    lo, hi = max(0, i0 - 1), min(t.size, i1 + 1)
    ts, cs = t[lo:hi], c[lo:hi]
    cum = unwrap_counter(ts, cs, ch.wrap_j).cumulative_j if _has_drop(cs) else cs
    e = _edges_at(ts, cum, w, i0 - lo, i1 - lo)
    threshold_ns = GAP_FACTOR * ch.nominal_period_s * 1e9
    duration_ns = w.t_end_ns - w.t_begin_ns
    edge_ns = _edge_uncovered_ns(ts, w, e, threshold_ns)
    inner_span_ns = float(ts[e.i1 - 1] - ts[e.i0]) if e.i1 > e.i0 else 0.0
    if edge_ns + inner_span_ns >= duration_ns:  # maybe nothing covered: count the gaps
        _, gap_ns = _interval_stats(ts, cum, threshold_ns, slice(e.i0, e.i1))
        if max(0.0, 1.0 - (gap_ns + edge_ns) / duration_ns) == 0.0:
            return None
    extrap_ns, data_rate_w = _beyond_data(ts, cum, w)
    return float(e.vb - e.va + data_rate_w * extrap_ns / 1e9)


def power_trace(t: I64, v: F64, ch: Channel) -> tuple[I64, F64]:
    """Power in W over time for plotting: the samples, or a counter's rate at interval midpoints."""
    if ch.kind == "power" or t.size < 2:
        return (t, v) if ch.kind == "power" else (t[:0], v[:0])
    cum = unwrap_counter(t, v, ch.wrap_j).cumulative_j
    dt_s = np.diff(t).astype(np.float64) / 1e9
    mid = t[:-1] + np.diff(t) // 2
    return mid, np.diff(cum) / dt_s
