"""The 95 % coverage interval of a sum of independent errors of declared shapes.

Why: a figure's uncertainty is built from terms of different shapes. Some are Gaussian (noise
averaged over many samples, an instrument spec that is a 95 % bound of a drawn gain and offset,
a marker's time stamp); some are rectangular (a bound with nothing known inside it: an
interval's discretisation, a gap, a pulse train's width range). Root-sum-squaring each term's
own 95 % value is exact only for Gaussians: for a sum dominated by one rectangular term of
half-width a, ``2 σ`` is 1.155 a, beyond the largest error possible (coverage 100 %), and two
equal rectangles' 95 % values in quadrature (1.34 a) fall short of their sum's 95 % point
(1.55 a). GUM (JCGM 100 Annex G.2) and its Supplement 1 (JCGM 101) give the coverage interval
from the distribution of the sum instead; this module computes it, exactly for up to
``MAX_EXPLICIT`` rectangles plus one Gaussian.

How (no grid, no sampling): the CDF of a sum of n uniforms on [cᵢ − aᵢ, cᵢ + aᵢ] is the
alternating sum over the 2ⁿ corners of (x − corner)₊ⁿ / (n! Π 2aᵢ) (a B-spline); adding a
Gaussian N(0, σ²) turns each (d)₊ⁿ into σⁿ·Iₙ(d/σ), the n-fold integral of the normal tail,
with I₀ = Φ, I₁ = δΦ + φ, Iₙ = δIₙ₋₁ + (n − 1)Iₙ₋₂. The half-width U with P(|S| ≤ U) = 0.95
is found by safeguarded Newton (the density is the same sum one degree lower). A few µs per
evaluation, a handful of evaluations per figure, once per figure.

Rectangles beyond the ``MAX_EXPLICIT`` largest, and those below ``FOLD_REL`` of the largest, are
folded into the Gaussian by their variance (a²/3): a sum of several rectangles is close to
Gaussian already, and a small one barely changes the shape. A term that is itself a sum of
many independent rectangles (``Budget.add_uniform_sum``: the per-interval discretisation) is
represented by up to three equal rectangles and a Gaussian matching its variance and fourth
cumulant (exact for up to three equal rectangles, Gaussian for many).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

P95 = 0.95
Z95 = 1.959963984540054  # the Gaussian's two-sided 95 % point
MAX_EXPLICIT = 3  # rectangles kept exactly (2^n corners each evaluation)
FOLD_REL = 1e-3  # a rectangle narrower than this × the widest: folded into the Gaussian
P_TOL = 1e-7  # the interval's probability is solved to within this (U to ~1e-6 relative)
# Rectangles (centred) holding at most this share of the variance: the Cornish-Fisher expansion
# to the 4th cumulant instead of a solve (within 1e-4 of the exact U, and above it)
CF_SHARE = 0.1
_SQRT2 = math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass
class Budget:
    """Independent error terms of a figure (J or any unit), by shape; ``u95()`` is the
    half-width of the symmetric interval around 0 that holds the sum with 95 % probability."""

    normal_var: float = 0.0  # Σ σ² of the Gaussian terms
    uniforms: list[tuple[float, float]] = field(default_factory=list)  # (centre, half-width)
    # One more term whose distribution is a mixture: with probability wⱼ it is the sum of
    # the rectangles Rⱼ (``set_mixture``); empty: none.
    mixture: list[tuple[float, list[tuple[float, float]]]] = field(default_factory=list)

    def add_normal_u95(self, u95: float) -> None:
        """A Gaussian term given as its 95 % half-width (σ = u95 / 1.96)."""
        if u95 > 0.0:
            s = u95 / Z95
            self.normal_var += s * s

    def add_normal_sigma(self, sigma: float) -> None:
        self.normal_var += sigma * sigma

    def add_uniform(self, half_width: float, centre: float = 0.0) -> None:
        """A rectangular term on [centre − half_width, centre + half_width]."""
        if half_width > 0.0 or centre != 0.0:
            self.uniforms.append((centre, max(half_width, 0.0)))

    def add_uniform_sum(self, x2: float, x4: float) -> None:
        """A sum of independent rectangles each within ±xᵢ/2, given as Σxᵢ² and Σxᵢ⁴: m equal
        rectangles with the same fourth cumulant (−Σx⁴/120), m the largest of 1..``MAX_EXPLICIT``
        not above Kish's effective count (Σx²)²/Σx⁴ (so their variance fits), plus a Gaussian
        of the rest of the variance Σx²/12. Exact for up to ``MAX_EXPLICIT`` equal rectangles,
        Gaussian in the limit of many."""
        if x2 <= 0.0:
            return
        n_eff = x2 * x2 / x4 if x4 > 0.0 else 1.0
        m = max(1, min(MAX_EXPLICIT, int(n_eff * (1.0 + 1e-9))))
        a = 0.5 * math.sqrt(math.sqrt(max(x4, 0.0) / m))
        for _ in range(m):
            self.add_uniform(a)
        self.normal_var += max(0.0, x2 / 12.0 - m * a * a / 3.0)

    def set_mixture(self, parts: list[tuple[float, list[tuple[float, float]]]]) -> None:
        """A term that is, with probability wⱼ, the sum of rectangles Rⱼ (weights summing to
        1): e.g. a pulse train's error given each consistent period. A second mixture in one
        budget is replaced by its envelope (``_envelope``: wider, never narrower)."""
        if not parts:
            return
        if self.mixture:
            self.uniforms.extend(_envelope(parts))
        else:
            self.mixture = [(w, list(r)) for w, r in parts]

    def extend(self, other: Budget) -> None:
        self.normal_var += other.normal_var
        self.uniforms.extend(other.uniforms)
        self.set_mixture(other.mixture)

    def u95(self) -> float:
        if not self.mixture:
            return u95(self.normal_var, self.uniforms)
        rects = self.uniforms + [r for _, rs in self.mixture for r in rs]
        scale = _scale(self.normal_var, rects)
        if not 0.0 < scale < math.inf:
            return scale  # 0 (no term) or inf/nan (a term that is)
        var = self.normal_var / scale / scale
        base = [(c / scale, a / scale) for c, a in self.uniforms]
        parts = [
            (w, *_prepare(var, base + [(c / scale, a / scale) for c, a in rs]))
            for w, rs in self.mixture
        ]
        return scale * _solve(parts)


def _scale(normal_var: float, rects: list[tuple[float, float]]) -> float:
    """The terms' size (their largest extent): U is solved on terms divided by it, so values near
    the float range's ends (J of a µs window, a counter near 1e308) neither under- nor overflow."""
    return max([math.sqrt(max(normal_var, 0.0))] + [abs(c) + a for c, a in rects])


def _envelope(parts: list[tuple[float, list[tuple[float, float]]]]) -> list[tuple[float, float]]:
    """Rectangles whose sum spans every alternative of a mixture: the alternatives' centres'
    range as one rectangle, and the k-th widest half-width of any alternative as the k-th."""
    centres = [sum(c for c, _ in r) for _, r in parts]
    lo, hi = min(centres), max(centres)
    widths = [sorted((a for _, a in r), reverse=True) for _, r in parts]
    slots = max(len(x) for x in widths)
    out = [(0.5 * (lo + hi), 0.5 * (hi - lo))]
    for k in range(slots):
        out.append((0.0, max(x[k] if k < len(x) else 0.0 for x in widths)))
    return out


def _tail_integrals(delta: float, n: int) -> tuple[float, float]:
    """(Iₙ(δ), Iₙ₋₁(δ)) for n ≥ 1: Iₖ(δ) = ∫_{−∞}^{δ} (δ − z)ᵏ φ(z) dz."""
    cdf = 0.5 * math.erfc(-delta / _SQRT2)
    pdf = _INV_SQRT2PI * math.exp(-0.5 * delta * delta)
    prev, cur = cdf, delta * cdf + pdf  # I0, I1
    for k in range(2, n + 1):
        prev, cur = cur, delta * cur + (k - 1) * prev
    return cur, prev


class _Sum:
    """CDF and density of Σ uniforms (explicit) + N(0, σ²) (``_Sum.cdf_pdf``)."""

    def __init__(self, sigma: float, rects: list[tuple[float, float]]) -> None:
        self.sigma = sigma
        self.rects = rects
        self.n = len(rects)
        corners = [(0.0, 1.0)]  # (corner, sign): each rectangle doubles them
        for centre, a in rects:
            lo, hi = centre - a, centre + a
            corners = [(c + lo, w) for c, w in corners] + [(c + hi, -w) for c, w in corners]
        self.corners = corners
        norm = float(math.factorial(self.n))
        for _, a in rects:
            norm *= 2.0 * a
        self.norm = norm
        self.pdf_norm = norm / self.n if self.n else 1.0  # (n − 1)! Π 2a

    def cdf_pdf(self, x: float) -> tuple[float, float]:
        """P(S ≤ x) and the density at x."""
        n, s = self.n, self.sigma
        if n == 0:
            d = x / s
            return 0.5 * math.erfc(-d / _SQRT2), _INV_SQRT2PI * math.exp(-0.5 * d * d) / s
        cdf = pdf = 0.0
        for c, w in self.corners:
            d = x - c
            if s > 0.0:
                i_n, i_m = _tail_integrals(d / s, n)
                cdf += w * i_n * s**n
                pdf += w * i_m * s ** (n - 1)
            elif d > 0.0:
                cdf += w * d**n
                pdf += w * d ** (n - 1)
        return cdf / self.norm, pdf / self.pdf_norm


def u95(normal_var: float, uniforms: list[tuple[float, float]], p: float = P95) -> float:
    """Half-width U with P(|Σ terms| ≤ U) = p, for a Gaussian of variance ``normal_var`` plus
    rectangles (centre, half-width), all independent. 0 when there is no term."""
    if not uniforms:
        return Z95 * math.sqrt(max(normal_var, 0.0))
    scale = _scale(normal_var, uniforms)
    if not 0.0 < scale < math.inf:
        return scale  # 0 (no term) or inf/nan (a term that is)
    # solved on terms of size 1 (see ``_scale``)
    var, rs = normal_var / scale / scale, [(c / scale, a / scale) for c, a in uniforms]
    return scale * _u95_unit(var, rs, p)


def _u95_unit(normal_var: float, uniforms: list[tuple[float, float]], p: float) -> float:
    """``u95`` of terms whose largest extent is about 1."""
    rect_var = sum(a * a for _, a in uniforms) / 3.0
    near_gaussian = p == P95 and rect_var <= CF_SHARE * (rect_var + normal_var)
    if near_gaussian and all(c == 0.0 for c, _ in uniforms):  # Cornish-Fisher, 4th cumulant
        var = rect_var + max(normal_var, 0.0)
        kurt = -2.0 / 15.0 * sum(a**4 for _, a in uniforms) / (var * var)
        return math.sqrt(var) * (Z95 + (Z95**3 - 3.0 * Z95) * kurt / 24.0)
    dist, shift, span = _prepare(normal_var, uniforms)
    if not dist.n and shift == 0.0:
        return Z95 * dist.sigma
    if dist.sigma == 0.0 and not dist.n:
        return abs(shift)
    return _solve([(1.0, dist, shift, span)], p)


def _prepare(normal_var: float, uniforms: list[tuple[float, float]]) -> tuple[_Sum, float, float]:
    """The distribution to evaluate (explicit rectangles and a Gaussian), the known offset it is
    shifted by, and a bound on |sum| beyond the Gaussian's share (``span``)."""
    var = max(normal_var, 0.0)
    rects = sorted(((c, a) for c, a in uniforms if a > 0.0), key=lambda r: r[1], reverse=True)
    shift = sum(c for c, a in uniforms if not a > 0.0)  # known offsets (zero width)
    if rects:
        keep = [r for r in rects[:MAX_EXPLICIT] if r[1] >= FOLD_REL * rects[0][1]]
        for c, a in rects[len(keep) :]:  # folded: variance into the Gaussian, centre kept
            var += a * a / 3.0
            shift += c
        rects = keep
    sigma = math.sqrt(var)
    span = sum(abs(c) + a for c, a in rects) + abs(shift)
    if sigma <= 1e-9 * span:
        sigma = 0.0
    return _Sum(sigma, rects), shift, span


def _solve(parts: list[tuple[float, _Sum, float, float]], p: float = P95) -> float:
    """Half-width U with Σ wⱼ·P(|Sⱼ + shiftⱼ| ≤ U) = p (``parts``: (wⱼ, Sⱼ, shiftⱼ, spanⱼ)), by
    Newton's method kept inside a bracket."""

    def g(x: float) -> tuple[float, float]:
        val = dens = 0.0
        for w, dist, shift, _ in parts:
            if dist.n == 0 and dist.sigma == 0.0:  # a known offset only
                val += w * (1.0 if abs(shift) <= x else 0.0)
                continue
            f_hi, d_hi = dist.cdf_pdf(x - shift)
            f_lo, d_lo = dist.cdf_pdf(-x - shift)
            val += w * (f_hi - f_lo)
            dens += w * (d_hi + d_lo)
        return val - p, dens

    # P(|S| ≤ span + 1.96 σ) ≥ P(|N| ≤ 1.96 σ) = 0.95 for every part
    lo, hi = 0.0, max(span + Z95 * dist.sigma for _, dist, _, span in parts)
    if hi <= 0.0:
        return 0.0
    x = 0.0
    for w, dist, shift, _ in parts:
        mean = shift + sum(c for c, _ in dist.rects)
        sd = math.sqrt(dist.sigma**2 + sum(a * a / 3.0 for _, a in dist.rects))
        x += w * (abs(mean) + Z95 * sd)
    x = min(x, hi)
    tol = 1e-9 * hi
    for _ in range(60):
        val, dens = g(x)
        if val > 0.0:
            hi = x
        else:
            lo = x
        if hi - lo <= tol or abs(val) < P_TOL:
            break
        nxt = x - val / dens if dens > 0.0 else math.nan
        x = nxt if lo < nxt < hi else 0.5 * (lo + hi)
    return x
