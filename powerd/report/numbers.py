"""Figures for people: a value rounded where its uncertainty says, one rule for every output.

A figure with a 95 % uncertainty U is shown with two significant digits of U and the value to the
same decimal place (``10.0086 ± 0.0034``), so no digit is printed that the measurement does not
support. The terminal table, the HTML report and the CSV's header notes all call ``pm_text`` /
``decimals_for``, so the same figure reads the same everywhere.
"""

from __future__ import annotations

import math

UNC_SIG = 2
MAX_DECIMALS = 9


def _finite(x: object) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def decimals_for(unc: float) -> int | None:
    """Decimal places that give ``unc`` two significant digits; None when that cannot be written
    as a fixed-point number (0, negative, huge or tiny)."""
    if not unc > 0 or not 1e-9 <= unc < 1e12:
        return None
    decimals = max(0, UNC_SIG - 1 - math.floor(math.log10(unc)))
    # rounding can carry into a new digit (0.0996 → 0.10): recompute on the rounded value
    rounded = round(unc, decimals)
    if rounded > 0:
        decimals = max(0, UNC_SIG - 1 - math.floor(math.log10(rounded)))
    return decimals if decimals <= MAX_DECIMALS else None


def sig_text(x: object, sig: int = 4, sep: str = "") -> str:
    """A number without an uncertainty: ``sig`` significant digits, "-" for null."""
    v = _finite(x)
    if v is None:
        return "-"
    if v == 0:
        return "0"
    comma = "," if sep else ""
    if isinstance(x, int):
        return f"{x:{comma}}"
    if 1e-3 <= abs(v) < 1e4:
        return f"{v:{comma}.{sig}g}"
    if 1e4 <= abs(v) < 1e12:
        return f"{v:{comma}.0f}"
    return f"{v:.{sig - 1}e}"


def value_text(value: object, unc: object, sep: str = "") -> str:
    """The value alone, rounded to its uncertainty's second significant digit ("-" for null).
    Without a usable uncertainty, four significant digits."""
    v, u = _finite(value), _finite(unc)
    if v is None:
        return "-"
    decimals = decimals_for(u) if u is not None else None
    if decimals is None or abs(v) >= 1e12:
        return sig_text(v, 4, sep)
    comma = "," if sep else ""
    return f"{v:{comma}.{decimals}f}"


def unc_text(unc: object, sep: str = "") -> str:
    """The uncertainty alone, two significant digits ("-" for null)."""
    u = _finite(unc)
    if u is None:
        return "-"
    decimals = decimals_for(u)
    if decimals is None:
        return sig_text(u, UNC_SIG, sep)
    comma = "," if sep else ""
    return f"{u:{comma}.{decimals}f}"


def pm_text(value: object, unc: object, sep: str = "") -> str:
    """``value ± unc`` by the rule above; ``sep=","`` adds thousands separators (HTML)."""
    if _finite(value) is None:
        return "-"
    return f"{value_text(value, unc, sep)} ± {unc_text(unc, sep)}"
