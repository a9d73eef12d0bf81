"""Integration's cheaper paths give the figures of the straightforward ones (issue 16 item 4).

``_power_sums`` / ``_Sums.add`` (fused bend and steps, in-place temporaries, skipped passes) and
``_noise_sigma`` (in-place partitions), ``_edges`` (two searches, not four) and ``periodicity``
(its mean and bias correction) were restructured for speed only: here the previous
versions, kept verbatim below as the reference, are swapped into ``powerd.integrate`` and every
figure of ``integrate_power`` is compared on many random windows (energies bit for bit,
uncertainty terms within 1e-9 relative, flags and counts equal). ``energy_only`` must give
``integrate``'s ``energy_j`` bit for bit, and None exactly where ``integrate`` says ``no_data``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

import powerd.integrate as integ
from powerd.block import F64, I64
from powerd.channel import Channel
from powerd.integrate import (
    CHUNK,
    NOISE_MAX_DIFFS,
    Window,
    _bend_w,
    _edges,
    _median,
    _Sums,
    energy_only,
    integrate,
)

T0_NS = 1_700_000_000_000_000_000

# --- the reference: the versions before the restructuring (git show main:powerd/integrate.py) --


def _value_at_ref(t: I64, v: F64, x: int) -> float:
    i = int(np.searchsorted(t, x, "right"))
    if i == 0:
        return float(v[0])
    if i == t.size or t[i - 1] == x:
        return float(v[i - 1])
    t0, t1 = int(t[i - 1]), int(t[i])
    return float(v[i - 1] + (v[i] - v[i - 1]) * ((x - t0) / (t1 - t0)))


def _edges_ref(t: I64, v: F64, w: Window) -> integ._Edges:
    i0 = int(np.searchsorted(t, w.t_begin_ns, "right"))
    i1 = int(np.searchsorted(t, w.t_end_ns, "left"))
    return integ._Edges(i0, i1, _value_at_ref(t, v, w.t_begin_ns), _value_at_ref(t, v, w.t_end_ns))


def _periodicity_ref(v: F64, noise_sigma: float) -> integ.Periodicity | None:
    n_all = v.size
    if n_all < integ.PERIODIC_MIN_SAMPLES:
        return None
    x = v[: integ.PERIODIC_MAX_SAMPLES] - float(np.mean(v[: integ.PERIODIC_MAX_SAMPLES]))
    n = x.size
    var = float(np.dot(x, x))
    if not var > 0.0:
        return None
    f = np.fft.rfft(x, 1 << (2 * n - 1).bit_length())
    acf = np.fft.irfft(f.real**2 + f.imag**2)[: n // 2 + 1]
    acf = acf / acf[0] * (n / (n - np.arange(acf.size)))
    neg = np.flatnonzero(acf < 0.0)
    if neg.size == 0:
        return None
    tail = acf[neg[0] :]
    best = float(tail.max())
    if best < integ.PERIODIC_MIN_ACF:
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
    return integ.Periodicity(lag, n_all / lag, sweep)


def _noise_sigma_ref(v: F64) -> float:
    if v.size < 3:
        return 0.0
    stride = -(-(v.size - 1) // NOISE_MAX_DIFFS)
    d = np.diff(v[::stride])
    med = _median(d)
    return 1.4826 * _median(np.abs(d - med)) / math.sqrt(2.0)


def _add_ref(
    sums: _Sums, dt: F64, v0: F64, v1: F64, threshold_ns: float, bend_w: F64 | None = None
) -> None:
    sums.left += float(np.dot(dt, v0))
    sums.right += float(np.dot(dt, v1))
    step = np.abs(v1 - v0)
    limited = step if bend_w is None else np.minimum(step, bend_w)
    x = limited * dt
    x2 = x * x
    sums.disc2 += float(x2.sum())
    sums.disc4 += float(np.dot(x2, x2))
    if bend_w is not None:
        is_step = limited > sums.step_w
        sums.n_inner += dt.size
        sums.n_steps += int(np.count_nonzero(is_step))
        sums.step2 += float(x2[is_step].sum())
    sums.dt2 += float(np.dot(dt, dt))
    long = dt > threshold_ns
    if bool(long.any()):
        sums.gap_ns += float(dt[long].sum())
        assert sums.gap_dt is not None  # the gap term's stretches (added after the restructuring)
        sums.gap_dt.append(dt[long])
        sums.gap_mid.append((v0[long] + v1[long]) / 2.0)
    if v1.size:
        sums.vmax = max(sums.vmax, float(v1.max()))
        sums.vmin = min(sums.vmin, float(v1.min()))


class _SumsRef(_Sums):
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
        _add_ref(self, dt, v0, v1, threshold_ns, bend_w)  # ``step`` recomputed there
        if bend_w is not None and self.step_idx is not None:  # the pulse-train record (h23)
            limited = np.minimum(np.abs(v1 - v0), bend_w)
            at = np.flatnonzero(limited > self.step_w)
            self.n_kept += at.size
            if self.n_kept > integ.MAX_TRAIN_STEPS:
                self.step_idx = None
            else:
                self.step_idx.append(at + first)
                self.step_size.append(limited[at])


def _power_sums_ref(
    t: I64, p: F64, w: Window, e: integ._Edges, threshold_ns: float, step_w: float = math.inf
) -> _Sums:
    """The previous ``_power_sums``: its edges as now (unchanged), the chunks through the
    previous ``_Sums.add`` with a separately computed ``_bend_w``."""
    saved = integ._Sums
    integ._Sums = _SumsRef  # type: ignore[misc]
    try:
        real_inner = integ._inner_steps
        integ._inner_steps = lambda p_, s, stop: (_bend_w(p_, s, stop), None)  # type: ignore[assignment]
        try:
            return _power_sums_now(t, p, w, e, threshold_ns, step_w)
        finally:
            integ._inner_steps = real_inner  # type: ignore[assignment]
    finally:
        integ._Sums = saved  # type: ignore[misc]


_power_sums_now = integ._power_sums


def _reference(
    monkeypatch: pytest.MonkeyPatch, t: I64, v: F64, w: Window, ch: Channel
) -> integ.ChannelEnergy:
    with monkeypatch.context() as m:
        m.setattr(integ, "_noise_sigma", _noise_sigma_ref)
        m.setattr(integ, "_power_sums", _power_sums_ref)
        m.setattr(integ, "_edges", _edges_ref)
        m.setattr(integ, "periodicity", _periodicity_ref)
        return integ.integrate_power(t, v, w, ch)


# --- random windows ---------------------------------------------------------------------------


def _series(rng: np.random.Generator) -> tuple[I64, F64, Channel]:
    """A power series of a random kind: steady with noise, square wave (phase-locked or not),
    ramps, random pulses; an even or jittered grid, sometimes gaps; sometimes averaging."""
    n = int(rng.choice([1, 2, 3, 5, 17, 200, 1000, 5000, CHUNK + 7, 2 * CHUNK + 300]))
    period_ns = int(rng.choice([1_000_000, 10_000_000, 100_000_000]))
    dt = np.full(n, period_ns, np.int64)
    if rng.random() < 0.4:
        dt += rng.integers(-period_ns // 10, period_ns // 10, n)
    if rng.random() < 0.3 and n > 10:
        dt[rng.integers(1, n, 3)] *= int(rng.integers(4, 50))  # gaps
    t = T0_NS + np.cumsum(dt)
    k = np.arange(n)
    kind = int(rng.integers(0, 5))
    if kind == 0:
        p = np.full(n, rng.uniform(1, 300))
    elif kind == 1:
        half = int(rng.integers(2, 60))
        p = np.where((k // half) % 2 == 0, 7.0, 5.0)
    elif kind == 2:
        p = 3.0 + 2.0 * np.sin(2 * np.pi * k / rng.uniform(3, 80))
    elif kind == 3:
        p = 10.0 + np.cumsum(rng.normal(0, 0.2, n))
    else:
        p = 5.0 + 20.0 * (rng.random(n) < 0.05)
    p = p + rng.normal(0, float(rng.choice([0.0, 1e-3, 0.05, 1.0])), n)
    averaging_s = float(rng.choice([0.0, 0.0, period_ns / 1e9, period_ns / 2e9]))
    ch = Channel(
        id="sim:x",
        kind="power",
        source_class="meter",
        nominal_period_s=period_ns / 1e9,
        averaging_s=averaging_s,
        stamp_uncertainty_s=float(rng.choice([0.0, 1e-4])),
    )
    return t, p, ch


def _windows(rng: np.random.Generator, t: I64) -> Iterator[Window]:
    lo, hi = int(t[0]), int(t[-1])
    span = max(hi - lo, 1)
    for _ in range(4):
        a = lo + int(rng.uniform(-0.2, 1.0) * span)
        b = a + 1 + int(rng.uniform(0.0, 1.2) * span)
        yield Window(a, b, float(rng.uniform(0, 1e6)), float(rng.uniform(0, 1e6)))
    yield Window(lo - 7, hi + 7)
    yield Window(lo + span // 3, lo + span // 3 + 1)


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def test_restructured_power_integration_gives_the_same_figures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(16_4)
    compared = flagged_periodic = 0
    for _ in range(150):
        t, p, ch = _series(rng)
        sigma = _noise_sigma_ref(p)
        assert integ.periodicity(p, sigma) == _periodicity_ref(p, sigma)
        for w in _windows(rng, t):
            new = integ.integrate_power(t, p, w, ch)
            old = _reference(monkeypatch, t, p, w, ch)
            where = f"n={t.size} window={w} channel={ch}"
            assert new.energy_j == old.energy_j, where  # bit for bit
            assert new.samples == old.samples and new.flags == old.flags, where
            assert new.coverage == old.coverage and new.gap_s == old.gap_s, where
            assert new.peak_power_w == old.peak_power_w, where
            assert _close(new.uncertainty_j, old.uncertainty_j), where
            assert new.terms_j.keys() == old.terms_j.keys(), where
            for k in new.terms_j:
                assert _close(new.terms_j[k], old.terms_j[k]), (k, where)
            compared += 1
            flagged_periodic += "periodic_load" in new.flags
    assert compared >= 800
    assert flagged_periodic > 0  # the periodic-load path was exercised


def test_noise_sigma_is_unchanged_and_leaves_its_input_alone() -> None:
    rng = np.random.default_rng(7)
    for n in (0, 1, 2, 3, 4, 101, 4096, NOISE_MAX_DIFFS + 5, 3 * NOISE_MAX_DIFFS):
        v = rng.normal(5.0, 0.3, n)
        before = v.copy()
        assert integ._noise_sigma(v) == _noise_sigma_ref(v)
        assert np.array_equal(v, before)


def test_energy_only_is_integrate_s_energy_bit_for_bit() -> None:
    rng = np.random.default_rng(16_5)
    none_seen = 0
    for i in range(150):
        t, p, ch = _series(rng)
        if i % 2:  # a counter: cumulative joules, sometimes a wrap or a reset
            c = np.cumsum(np.abs(p)) * 1e-3
            wrap_j = None
            if rng.random() < 0.3 and t.size > 4:
                wrap_j = float(c[-1] / 3.0) + 1.0
                c = np.mod(c, wrap_j)
            elif rng.random() < 0.3 and t.size > 4:
                c[t.size // 2 :] -= c[t.size // 2] - 0.5  # a reset
            ch = Channel(
                id="sim:e",
                kind="energy",
                source_class="meter",
                nominal_period_s=ch.nominal_period_s,
                wrap_j=wrap_j,
            )
            p = c
        for w in [*_windows(rng, t), Window(int(t[-1]) + 10**12, int(t[-1]) + 2 * 10**12)]:
            full = integrate(t, p, w, ch)
            fast = energy_only(t, p, w, ch)
            assert fast == full.energy_j, f"n={t.size} {w} {ch.kind}"
            none_seen += fast is None
    assert none_seen > 0  # the no_data answer was exercised
    assert energy_only(t[:0], p[:0], Window(1, 2), ch) is None


def test_edges_helper_is_unchanged() -> None:
    """``_edges`` is shared by both paths; a window inside one sample interval has no inner
    samples and one edge piece (the case ``energy_only`` sums without chunks)."""
    t = np.array([0, 10, 20], np.int64) + T0_NS
    p = np.array([1.0, 3.0, 5.0])
    e = _edges(t, p, Window(T0_NS + 12, T0_NS + 18))
    assert (e.i0, e.i1) == (2, 2) and math.isclose(e.va, 3.4) and math.isclose(e.vb, 4.6)
    ch = Channel(id="sim:x", kind="power", source_class="meter", nominal_period_s=1e-8)
    w = Window(T0_NS + 12, T0_NS + 18)
    assert energy_only(t, p, w, ch) == integrate(t, p, w, ch).energy_j == pytest.approx(24e-9)


def test_edges_reuse_their_searches() -> None:
    """``_edges`` (two searches) gives what the edge values by ``_value_at`` (a search each)
    give, also with samples stamped exactly at an edge, repeated stamps, edges beyond the data."""
    rng = np.random.default_rng(3)
    for _ in range(300):
        n = int(rng.integers(1, 12))
        t = np.sort(rng.integers(0, 20, n)).astype(np.int64) + T0_NS  # repeats likely
        p = rng.normal(5.0, 2.0, n)
        a = T0_NS + int(rng.integers(-3, 22))
        b = a + int(rng.integers(1, 10))
        assert _edges(t, p, Window(a, b)) == _edges_ref(t, p, Window(a, b))
        assert integ._value_at(t, p, b) == _value_at_ref(t, p, b)


def test_has_drop_is_a_negative_difference() -> None:
    rng = np.random.default_rng(11)
    for n in (0, 1, 2, 3, CHUNK, CHUNK + 1, CHUNK + 2, 2 * CHUNK + 5):
        for _ in range(3):
            c = np.cumsum(rng.random(n))
            if n > 1 and rng.random() < 0.7:
                c[int(rng.integers(1, n))] = -1.0
            ref = any(
                bool((np.diff(c[s : s + CHUNK + 1]) < 0).any()) for s in range(0, c.size, CHUNK)
            )
            assert integ._has_drop(c) == ref


def test_steps_are_counted_beside_a_nan_sample() -> None:
    """A NaN sample must not hide the steps of the rest of its chunk (the check before the
    step pass ignores NaN, as the comparison of the straightforward code does)."""
    v = np.array([1.0, 1.0, 5.0, 5.0, np.nan, 5.0, 1.0, 1.0])
    dt = np.full(v.size - 1, 1e6)
    bend = _bend_w(v, 0, v.size)
    new, ref = _Sums(step_w=0.5), _Sums(step_w=0.5)
    new.add(dt, v[:-1], v[1:], 3e6, bend.copy())
    _add_ref(ref, dt, v[:-1], v[1:], 3e6, bend.copy())
    assert new.n_steps == ref.n_steps >= 1
    assert new.step2 == ref.step2
