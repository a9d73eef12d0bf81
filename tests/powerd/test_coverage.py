"""``powerd.coverage``: the 95 % interval of a sum of Gaussian and rectangular terms, checked
against closed forms and against a Monte-Carlo of the same terms (deterministic seed; the
tolerance is the Monte-Carlo's own binomial error on the fraction covered)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from powerd.coverage import Z95, Budget, u95

N_MC = 400_000
# 4 standard deviations of a fraction near 0.95 estimated from N_MC draws (~0.0014)
MC_TOL = 4.0 * math.sqrt(0.95 * 0.05 / N_MC)


def _mc_fraction(
    sigma: float,
    rects: list[tuple[float, float]],
    u: float,
    seed: int,
    sums: list[list[float]] | None = None,
) -> float:
    """Fraction of N_MC draws of N(0, σ²) + rectangles (+ sums of rectangles ±x/2) within ±u."""
    rng = np.random.default_rng(seed)
    s = rng.normal(0.0, sigma, N_MC) if sigma > 0 else np.zeros(N_MC)
    for c, a in rects:
        s += rng.uniform(c - a, c + a, N_MC)
    for xs in sums or []:
        for x in xs:
            s += rng.uniform(-x / 2.0, x / 2.0, N_MC)
    return float(np.mean(np.abs(s) <= u))


def test_closed_forms() -> None:
    """A Gaussian alone: 1.96 σ. One rectangle of half-width a: 0.95 a (not 2σ = 1.155 a, beyond
    every possible error). Two equal ones (a triangle on ±2a): 2a(1 − √0.05), more than their
    95 % values in quadrature (1.34 a)."""
    assert u95(4.0, []) == pytest.approx(2.0 * Z95, rel=1e-12)
    assert u95(0.0, [(0.0, 3.0)]) == pytest.approx(0.95 * 3.0, rel=1e-9)
    assert u95(0.0, [(0.0, 1.0), (0.0, 1.0)]) == pytest.approx(2.0 * (1 - math.sqrt(0.05)))
    assert u95(0.0, [(0.0, 1.0), (0.0, 1.0)]) > math.hypot(0.95, 0.95)
    assert u95(0.0, []) == 0.0
    assert u95(0.0, [(0.7, 0.0)]) == pytest.approx(0.7)  # a known offset


@pytest.mark.parametrize(
    ("sigma", "rects"),
    [
        (0.3, [(0.0, 1.0), (0.2, 0.5)]),  # Gaussian + two rectangles, one off-centre
        (0.0, [(0.0, 1.0), (0.0, 0.7), (0.0, 0.3)]),  # three rectangles, no Gaussian
        (1e-6, [(0.5, 1.0)]),  # an off-centre rectangle and a negligible Gaussian
        (0.5, [(0.0, 1.0), (0.0, 1.0), (0.0, 1.0)]),
        (2.0, [(0.0, 1.0)]),  # Gaussian-dominated
        (0.0, [(0.0, 1.0), (0.0, 0.7), (0.1, 0.3), (0.0, 0.2)]),  # a fourth, folded
    ],
)
def test_matches_monte_carlo(sigma: float, rects: list[tuple[float, float]]) -> None:
    u = u95(sigma * sigma, rects)
    tol = MC_TOL + (0.002 if len(rects) > 3 else 0.0)  # folding: an approximation
    assert _mc_fraction(sigma, rects, u, seed=len(rects) + 10) == pytest.approx(0.95, abs=tol)


@pytest.mark.parametrize(
    "xs",
    [[1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 0.7, 0.4], [1.0] * 10, [3.0] + [1.0] * 6, [1.0, 0.3]],
)
def test_sum_of_rectangles_from_its_moments(xs: list[float]) -> None:
    """``add_uniform_sum`` sees only Σx² and Σx⁴: exact for up to three equal rectangles,
    within 1 % of coverage otherwise (the fourth cumulant matched)."""
    x = np.array(xs)
    b = Budget()
    b.add_uniform_sum(float((x**2).sum()), float((x**4).sum()))
    b.add_normal_sigma(0.1)
    u = b.u95()
    exact = len(set(xs)) == 1 and len(xs) <= 3
    tol = MC_TOL + (0.0 if exact else 0.01)
    assert _mc_fraction(0.1, [], u, seed=len(xs), sums=[xs]) == pytest.approx(0.95, abs=tol)


def test_mixture_matches_monte_carlo() -> None:
    """A term that is one of several sums of rectangles (weights), plus a Gaussian."""
    alts = [(0.5, [(0.4, 0.0), (0.0, 1.0)]), (0.3, [(-0.2, 0.0), (0.0, 0.6)]), (0.2, [(0.0, 2.0)])]
    b = Budget()
    b.add_normal_sigma(0.2)
    b.set_mixture(alts)
    u = b.u95()
    rng = np.random.default_rng(4)
    pick = rng.choice(len(alts), N_MC, p=[w for w, _ in alts])
    s = rng.normal(0.0, 0.2, N_MC)
    for j, (_, rs) in enumerate(alts):
        for c, a in rs:
            s = s + np.where(pick == j, rng.uniform(c - a, c + a, N_MC), 0.0)
    assert float(np.mean(np.abs(s) <= u)) == pytest.approx(0.95, abs=MC_TOL)


def test_a_second_mixture_is_widened_never_narrowed() -> None:
    one = Budget()
    one.set_mixture([(0.5, [(0.0, 1.0)]), (0.5, [(1.0, 0.5)])])
    two = Budget()
    two.set_mixture([(1.0, [(0.0, 2.0)])])
    both = Budget()
    both.extend(one)
    both.extend(two)
    assert both.mixture == one.mixture and both.uniforms == [(0.0, 0.0), (0.0, 2.0)]  # envelope
    assert both.u95() >= max(one.u95(), two.u95())


def test_dominant_rectangle_no_longer_covers_everything() -> None:
    """The point of the module: a figure dominated by one bound is not given 2σ (1.155 × the
    bound) but its 95 % point, and a Gaussian beside it widens it continuously."""
    a = 1.0
    alone = u95(0.0, [(0.0, a)])
    with_noise = u95(0.05**2, [(0.0, a)])
    assert alone < a < 2.0 * a / math.sqrt(3.0)
    assert alone < with_noise < alone + Z95 * 0.05


@pytest.mark.parametrize("share", [0.02, 0.05, 0.099])
def test_near_gaussian_shortcut_agrees_with_the_exact_solve(share: float) -> None:
    """Below ``CF_SHARE`` of the variance in rectangles, the Cornish-Fisher value is used; it
    is within 1e-4 of the exact interval (a tiny offset forces the exact path) and not below."""
    a = math.sqrt(3.0 * share)
    fast = u95(1.0 - share, [(0.0, a)])
    exact = u95(1.0 - share, [(0.0, a), (1e-15, 0.0)])
    assert exact <= fast <= exact * (1.0 + 1e-4)


@pytest.mark.parametrize(
    ("scale", "var"), [(1e-300, 0.0), (1e-150, 0.04), (1e150, 0.04), (1e300, 0.0)]
)
def test_scale_free_near_the_ends_of_the_float_range(scale: float, var: float) -> None:
    """U scales with its terms, however small or large (a denormal counter step found this);
    compared as ratios (pytest's absolute tolerance would pass anything tiny)."""
    rects = [(0.0, 1.0), (0.1, 0.5)]
    ref = u95(var, rects)
    got = u95(var * scale * scale, [(c * scale, a * scale) for c, a in rects])
    assert got / scale == pytest.approx(ref, rel=1e-9)
    b = Budget()
    b.set_mixture([(1.0, [(c * scale, a * scale) for c, a in rects])])
    assert b.u95() / scale == pytest.approx(u95(0.0, rects), rel=1e-9)
