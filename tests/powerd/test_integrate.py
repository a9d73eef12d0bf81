"""Integration engine: exactness on known shapes, edges, gaps, counters, uncertainty terms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerd.channel import Accuracy, Channel
from powerd.integrate import (
    Window,
    integrate,
    integrate_counter,
    integrate_power,
    power_trace,
    unwrap_counter,
)

T0 = 1_800_000_000_000_000_000
MS = 1_000_000


def power_ch(period_s: float = 1e-3, **kw: object) -> Channel:
    return Channel(id="t:p", kind="power", source_class="meter", nominal_period_s=period_s, **kw)  # type: ignore[arg-type]


def energy_ch(period_s: float = 1e-3, **kw: object) -> Channel:
    return Channel(
        id="t:e", kind="energy", source_class="telemetry", nominal_period_s=period_s, **kw
    )  # type: ignore[arg-type]


def grid(n: int, step_ns: int = MS) -> np.ndarray:
    return T0 + np.arange(n, dtype=np.int64) * step_ns


def test_constant_power_is_exact_with_edges_between_samples() -> None:
    t = grid(1000)
    p = np.full(t.size, 5.0)
    w = Window(T0 + MS // 3, T0 + 900 * MS + 123)
    r = integrate_power(t, p, w, power_ch())
    assert r.energy_j == pytest.approx(5.0 * w.duration_s, rel=1e-12)
    assert r.mean_power_w == pytest.approx(5.0)
    assert r.coverage == 1.0
    assert r.flags == ()
    assert r.samples == 900


def test_linear_ramp_is_exact_because_edges_are_interpolated() -> None:
    t = grid(101, 10 * MS)
    p = 1.0 + (t - T0) / 1e9 * 2.0  # 1 W rising 2 W/s
    a, b = T0 + 3_333_333, T0 + 777_777_777
    r = integrate_power(t, p, Window(a, b), power_ch(0.01))
    sa, sb = (a - T0) / 1e9, (b - T0) / 1e9
    truth = (sb - sa) * 1.0 + (sb**2 - sa**2)
    assert r.energy_j == pytest.approx(truth, rel=1e-12)


def test_window_without_samples_reports_no_data_not_zero() -> None:
    empty = np.empty(0, np.int64)
    r = integrate(empty, np.empty(0), Window(T0, T0 + MS), power_ch())
    assert r.energy_j is None and r.uncertainty_j is None
    assert "no_data" in r.flags


def test_too_short_window_is_flagged_but_reports() -> None:
    t = grid(10, 100 * MS)
    r = integrate_power(t, np.full(10, 2.0), Window(T0 + 10 * MS, T0 + 20 * MS), power_ch(0.1))
    assert "too_short" in r.flags
    assert r.energy_j == pytest.approx(2.0 * 0.01)


def test_gap_marks_incomplete_with_coverage_and_adds_uncertainty() -> None:
    t = np.concatenate([grid(100), grid(100) + 600 * MS])  # 0-99 ms, then 600-699 ms
    p = np.where(t < T0 + 300 * MS, 2.0, 8.0)
    r = integrate_power(t, p, Window(T0 + 10 * MS, T0 + 690 * MS), power_ch())
    gap_ns = 600 * MS - 99 * MS
    assert "incomplete" in r.flags
    assert r.coverage == pytest.approx(1 - gap_ns / (680 * MS))
    assert r.gap_s == pytest.approx(gap_ns / 1e9)
    assert r.terms_j["gap"] > 0
    full = integrate_power(grid(700), np.full(700, 2.0), Window(T0 + MS, T0 + 690 * MS), power_ch())
    assert full.coverage == 1.0 and full.terms_j["gap"] == 0


def test_window_past_the_data_is_incomplete() -> None:
    t = grid(100)
    r = integrate_power(t, np.full(100, 3.0), Window(T0 + 50 * MS, T0 + 500 * MS), power_ch())
    assert "incomplete" in r.flags
    assert r.coverage == pytest.approx((99 - 50) / 450, rel=1e-9)


def test_instrument_term_follows_the_spec() -> None:
    acc = Accuracy(reading_frac=0.001, range_frac=0.001, range_w=600.0)
    t = grid(1001)
    r = integrate_power(t, np.full(1001, 100.0), Window(T0, T0 + 1000 * MS), power_ch(accuracy=acc))
    # Gain and range components, each a 95 % bound of an independent error: in quadrature.
    assert r.terms_j["instrument"] == pytest.approx(math.hypot(0.001 * 100.0, 0.001 * 600.0))
    assert r.uncertainty_j == pytest.approx(r.terms_j["instrument"])


def test_timing_term_is_edge_power_times_edge_uncertainty() -> None:
    t = grid(1001)
    w = Window(T0 + 10 * MS, T0 + 900 * MS, begin_uncertainty_ns=2 * MS, end_uncertainty_ns=MS)
    r = integrate_power(t, np.full(1001, 10.0), w, power_ch())
    assert r.terms_j["timing"] == pytest.approx(math.hypot(10 * 0.002, 10 * 0.001))


def test_noise_term_tracks_the_actual_scatter() -> None:
    rng = np.random.default_rng(1)
    t = grid(100_001)
    sigma = 0.5
    errors = []
    terms = []
    for _ in range(40):
        p = 5.0 + rng.normal(0, sigma, t.size)
        r = integrate_power(t, p, Window(T0, int(t[-1])), power_ch())
        errors.append(abs(r.energy_j - 5.0 * 100.0))  # type: ignore[operator]
        terms.append(r.terms_j["noise"])
    expected_95 = 1.96 * sigma * 1e-3 * math.sqrt(t.size)
    assert np.median(terms) == pytest.approx(expected_95, rel=0.1)
    assert np.mean(np.array(errors) < np.array(terms)) >= 0.8


def test_counter_difference_with_interpolated_edges() -> None:
    t = grid(1001)
    c = 1000.0 + 4.0 * (t - T0) / 1e9  # 4 W
    w = Window(T0 + MS // 2, T0 + 777 * MS + 1)
    r = integrate_counter(t, c, w, energy_ch())
    assert r.method == "counter"
    assert r.energy_j == pytest.approx(4.0 * w.duration_s, rel=1e-9)
    assert r.peak_power_w == pytest.approx(4.0, rel=1e-6)


def test_counter_wrap_is_unwrapped() -> None:
    t = grid(1001)
    true = 3.0 * (t - T0) / 1e9
    wrapped = np.mod(true + 0.9, 1.0)  # range 1 J, wraps every ~0.33 s
    w = Window(T0 + 5 * MS, T0 + 995 * MS)
    r = integrate_counter(t, wrapped, w, energy_ch(wrap_j=1.0))
    assert r.energy_j == pytest.approx(3.0 * w.duration_s, rel=1e-9)
    assert "counter_reset" not in r.flags


def test_counter_reset_is_bridged_and_flagged_never_negative() -> None:
    t = grid(1001)
    c = 2.0 * (t - T0) / 1e9 + 50.0
    c[500:] -= c[500] - 0.001  # driver reload: counter restarts near 0
    r = integrate_counter(t, c, Window(T0, int(t[-1])), energy_ch())
    assert "counter_reset" in r.flags
    assert r.energy_j == pytest.approx(2.0 * 1.0, rel=1e-3)
    assert r.terms_j["reset"] > 0
    un = unwrap_counter(t, c, None)
    assert un.resets == 1 and bool((np.diff(un.cumulative_j) >= 0).all())


def test_power_trace_of_counter_is_its_rate() -> None:
    t = grid(11, 100 * MS)
    c = 7.0 * (t - T0) / 1e9
    tt, p = power_trace(t, c, energy_ch(0.1))
    assert tt.size == 10 and np.allclose(p, 7.0)


# properties --------------------------------------------------------------------------------

samples = st.integers(min_value=3, max_value=400)


@st.composite
def series(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(samples)
    steps = draw(st.lists(st.integers(1, 5 * MS), min_size=n - 1, max_size=n - 1))
    t = T0 + np.concatenate([[0], np.cumsum(steps)]).astype(np.int64)
    p = np.array(draw(st.lists(st.floats(0, 1000), min_size=n, max_size=n)))
    return t, p


@settings(max_examples=200, deadline=None)
@given(series(), st.floats(0.01, 0.99), st.floats(0.01, 0.99))
def test_energy_is_additive_over_adjacent_windows(
    s: tuple[np.ndarray, np.ndarray], f1: float, f2: float
) -> None:
    t, p = s
    span = int(t[-1] - t[0])
    a = int(t[0]) + 1
    c = int(t[-1]) - 1
    b = a + int((c - a) * min(f1, f2)) + 1
    if not a < b < c or span < 10:
        return
    ch = power_ch(0.005)
    whole = integrate_power(t, p, Window(a, c), ch).energy_j
    parts = (
        integrate_power(t, p, Window(a, b), ch).energy_j
        + integrate_power(  # type: ignore[operator]
            t, p, Window(b, c), ch
        ).energy_j
    )
    assert whole == pytest.approx(parts, rel=1e-9, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(series(), st.lists(st.integers(1, 50), min_size=1, max_size=20))
def test_energy_is_invariant_to_block_splitting(
    s: tuple[np.ndarray, np.ndarray], sizes: list[int]
) -> None:
    from powerd.block import Block
    from powerd.timeline import Timeline

    t, p = s
    ch = power_ch(0.005)
    tl = Timeline(capacity_per_channel=1024)
    tl.add_channel(ch)
    i = 0
    k = 0
    while i < t.size:
        n = sizes[k % len(sizes)]
        tl.append(Block(ch.id, t[i : i + n], p[i : i + n]))
        i += n
        k += 1
    w = Window(int(t[0]) + 1, int(t[-1]))
    direct = integrate_power(t, p, w, ch).energy_j
    via = integrate_power(*tl.window(ch.id, w.t_begin_ns, w.t_end_ns), w, ch).energy_j
    assert direct == via


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0, 50), min_size=3, max_size=300),
    st.floats(1.0, 1e4),
    st.floats(0, 0.999),
)
def test_wrapped_counter_gives_the_same_energy_as_unwrapped(
    increments: list[float], range_j: float, start_frac: float
) -> None:
    inc = np.array(increments)
    inc = np.minimum(inc, range_j / 2.5)  # a poll interval never spans half the range
    t = grid(inc.size + 1, 10 * MS)
    unwrapped = start_frac * range_j + np.concatenate([[0.0], np.cumsum(inc)])
    wrapped = np.mod(unwrapped, range_j)
    w = Window(int(t[0]) + 3 * MS, int(t[-1]) - 2 * MS)
    ch_plain = energy_ch(0.01)
    ch_wrap = energy_ch(0.01, wrap_j=range_j)
    a = integrate_counter(t, unwrapped, w, ch_plain).energy_j
    b = integrate_counter(t, wrapped, w, ch_wrap).energy_j
    assert a == pytest.approx(b, rel=1e-9, abs=1e-6 * range_j)


def square_truth_j(a_ns: int, b_ns: int, high: float, low: float, period_ns: int) -> float:
    """Exact energy of a square wave (high the first half of each period) over [a, b]."""
    edges = np.arange(0, b_ns - T0 + period_ns, period_ns // 2, dtype=np.int64) + T0
    bounds = np.clip(
        np.concatenate([[a_ns], edges[(edges > a_ns) & (edges < b_ns)], [b_ns]]), a_ns, b_ns
    )
    mids = (bounds[:-1] + bounds[1:]) // 2
    level = np.where(((mids - T0) % period_ns) < period_ns // 2, high, low)
    return float(np.dot(np.diff(bounds), level)) / 1e9


@pytest.mark.parametrize("hole_ms", [(190, 505), (95, 410), (290, 605)])
def test_a_gap_between_two_samples_at_one_extreme_is_within_the_uncertainty(
    hole_ms: tuple[int, int],
) -> None:
    """A square wave (9 W / 3 W, 0.2 s, 200 Hz) with a hole whose two bounding samples are at the
    same level, holding two whole half-periods of the other: the trapezoid's error is the
    whole range × 0.2 s, more than half the range × the hole; the gap term must cover it."""
    period_ns, step_ns = 200 * MS, 5 * MS
    t = grid(200, step_ns)
    p = np.where(((t - T0) % period_ns) < period_ns // 2, 9.0, 3.0)
    a, b = T0 + hole_ms[0] * MS, T0 + hole_ms[1] * MS
    keep = (t <= a) | (t >= b)
    t, p = t[keep], p[keep]
    w = Window(T0 + 2 * MS, T0 + 990 * MS)
    r = integrate_power(t, p, w, power_ch(step_ns / 1e9))
    truth = square_truth_j(w.t_begin_ns, w.t_end_ns, 9.0, 3.0, period_ns)
    assert "incomplete" in r.flags
    assert abs(r.energy_j - truth) > 1.1, "the hole does not hide a whole range's worth"
    assert abs(r.energy_j - truth) <= r.uncertainty_j, (r.energy_j - truth, r.terms_j)
