"""Verdicts on claims from trial figures and their 95 % intervals (pure: no I/O, no clocks).

Each trial gives the claim's figure and a 95 % interval for it, mapped exactly from the energy
interval [E − U, E + U] (gross: ``energy_j`` ± ``uncertainty_j``; net: ``net_energy_j`` ±
``net_uncertainty_j``) through the figure's formula, which is monotonic in E:
``energy_j`` = E, ``mean_power_w`` = E / T, ``j_per_unit`` = E / count, ``units_per_j`` = count / E
(T and count are exact; the time uncertainty is already inside U).

For a claim ``figure <= X`` an interval [lo, hi] gives **supported** when hi <= X (all of it on
the claim's side), **not supported** when lo > X (all of it on the wrong side), otherwise
**inconclusive** (it straddles X). ``>=`` mirrors this. So the inconclusive band is exactly the
interval: |figure − X| below the interval's half-width on the claim's side, never wider.
``margin`` is figure − X, ``margin_u`` the margin in units of that half-width (|margin_u| >= 1
⇔ decisive).

Across trials (the protocol's ``aggregate``):
- ``all`` (default): supported when every usable trial supports the claim; not supported when
  any usable trial does not support it (its whole interval is on the wrong side); otherwise
  inconclusive. The row shown is the deciding trial (the closest supporting one, the worst
  failing one, or the closest inconclusive one).
- ``median`` (preset ``tiny``): the median figure, with the interval [median of the lower
  bounds, median of the upper bounds], which holds the median of the true values whenever each
  trial's interval holds its own (the median is monotonic in each argument).

Usable trials: not flagged ``too_short``, ``cmd_failed`` or ``no_data``, with a figure. A verdict
is at most **inconclusive** when a trial used carries a flag in ``CAP_FLAGS`` (not_stable,
calibration_due, incomplete, ...: the interval may not hold) or when fewer trials are usable than
the protocol's n. Other flags of the trials used (``receive_time``, ``uncalibrated``, ...) are
named in the reason but do not change the verdict: their effect is inside U, or a lab's call.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from powerd.i18n import N_, R_
from powerd.report.numbers import decimals_for, value_text
from powerd.verify.protocol import Claim

# the verdict words (contract 2 keeps them in English; reports show them via the catalogue)
SUPPORTED = N_("supported")
NOT_SUPPORTED = N_("not supported")
INCONCLUSIVE = N_("inconclusive")
EXIT_CODES = {SUPPORTED: 0, NOT_SUPPORTED: 1, INCONCLUSIVE: 3}

EXCLUDE_FLAGS = ("too_short", "cmd_failed", "no_data")
CAP_FLAGS = (
    "not_stable",
    "calibration_due",
    "meter_uncertainty_high",
    "incomplete",
    "clock_step",
    "counter_reset",
    "counter_power_mismatch",
    "sources_disagree",
    "periodic_load",
)

# reasons, stored in English in the result (contract 2); R_ registers each template so the
# renderers can show it in the report's language (powerd.i18n.tr_reason)
NO_IDLE = R_("no idle baseline for a net figure")
NO_ENERGY = R_("no energy figure")
ZERO_DURATION = R_("zero duration")
NO_COUNT = R_("no unit count (set count or write $POWERD_COUNT_FILE)")
ENERGY_NOT_POSITIVE = R_("energy <= 0: units per J undefined")
NOT_USED = R_("not used: {flags}")
NO_TRIAL = R_("no trial")
NO_USABLE = R_("no usable trial: {why}")
FEW_USABLE = R_("only {n} of {m} trials usable")
CAPPED = R_("would be {verdict}, but at most inconclusive: {caps}")
ALSO = R_("also: {caps}")
NOTED = R_("noted (not affecting the verdict): {flags}")
MEDIAN_OF_TRIALS = R_("the median of the trials")
TRIAL_N = R_("trial {trial}")
ALL_ON_SIDE = R_("every trial's 95 % interval is on the claim's side (closest: {which}, {span})")
MEDIAN_ON_SIDE = R_("the median's 95 % interval is on the claim's side (closest: {which}, {span})")
WRONG_SIDE = R_("the 95 % interval of {which} {span} is wholly on the wrong side of {value}")
STRADDLES = R_("the 95 % interval of {which} {span} straddles {value}")


@dataclass(frozen=True)
class Interval:
    """A figure and its 95 % interval; ``reason`` set (and numbers None) when there is none."""

    value: float | None
    lo: float | None
    hi: float | None
    reason: str = ""


def figure_interval(entry: dict[str, Any], figure: str, basis: str) -> Interval:
    """The claim's figure of one contract-2 phase entry, with its 95 % interval."""
    if basis == "net":
        e, u = entry.get("net_energy_j"), entry.get("net_uncertainty_j")
        if e is None:
            return Interval(None, None, None, NO_IDLE)
    else:
        e, u = entry.get("energy_j"), entry.get("uncertainty_j")
    if e is None or u is None:
        return Interval(None, None, None, NO_ENERGY)
    lo_e, hi_e = e - u, e + u
    count = entry.get("count")
    if figure == "energy_j":
        return Interval(e, lo_e, hi_e)
    if figure == "mean_power_w":
        t = entry.get("duration_s") or 0.0
        if t <= 0:
            return Interval(None, None, None, ZERO_DURATION)
        return Interval(e / t, lo_e / t, hi_e / t)
    if count is None or count <= 0:
        return Interval(None, None, None, NO_COUNT)
    if figure == "j_per_unit":
        return Interval(e / count, lo_e / count, hi_e / count)
    # units_per_j = count / E, decreasing in E
    if e <= 0:
        return Interval(None, None, None, ENERGY_NOT_POSITIVE)
    hi = count / lo_e if lo_e > 0 else math.inf
    return Interval(count / e, count / hi_e, hi)


def side_verdict(iv: Interval, claim: Claim) -> tuple[str, float | None, float | None]:
    """(verdict, margin, margin in units of U) of one interval against the claim."""
    if iv.value is None or iv.lo is None or iv.hi is None:
        return INCONCLUSIVE, None, None
    v, x = iv.value, claim.value
    margin = v - x
    # the half-width towards the claim's value: what decides whether the interval crosses it
    half = (v - iv.lo) if margin > 0 else (iv.hi - v)
    margin_u = None if half == 0 else 0.0 if math.isinf(half) else margin / half
    if claim.op == "<=":
        verdict = SUPPORTED if iv.hi <= x else NOT_SUPPORTED if iv.lo > x else INCONCLUSIVE
    else:
        verdict = SUPPORTED if iv.lo >= x else NOT_SUPPORTED if iv.hi < x else INCONCLUSIVE
    return verdict, margin, margin_u


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def trial_row(entry: dict[str, Any], claim: Claim) -> dict[str, Any]:
    """One trial's figure, interval and verdict for one claim (JSON-ready)."""
    iv = figure_interval(entry, claim.figure, claim.basis)
    verdict, margin, margin_u = side_verdict(iv, claim)
    flags = list(entry.get("flags") or [])
    excluded = [f for f in EXCLUDE_FLAGS if f in flags]
    reason = iv.reason
    if excluded:
        reason = NOT_USED.format(flags=", ".join(excluded))
    return {
        "trial": entry.get("trial"),
        "value": _num(iv.value),
        "lo": _num(iv.lo),
        "hi": _num(iv.hi),
        "margin": _num(margin),
        "margin_u": _num(margin_u),
        "verdict": verdict,
        "usable": not excluded and iv.value is not None,
        "flags": flags,
        "reason": reason,
    }


def _aggregate_all(rows: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    verdicts = [r["verdict"] for r in rows]
    if NOT_SUPPORTED in verdicts:
        bad = [r for r in rows if r["verdict"] == NOT_SUPPORTED]
        return NOT_SUPPORTED, max(bad, key=lambda r: abs(r["margin_u"] or 0.0))
    close = min(rows, key=lambda r: abs(r["margin_u"] if r["margin_u"] is not None else 0.0))
    if all(v == SUPPORTED for v in verdicts):
        return SUPPORTED, close
    pending = [r for r in rows if r["verdict"] == INCONCLUSIVE]
    return INCONCLUSIVE, min(pending, key=lambda r: abs(r["margin_u"] or 0.0))


def _aggregate_median(rows: list[dict[str, Any]], claim: Claim) -> tuple[str, dict[str, Any]]:
    def med(key: str) -> float:
        vals = [math.inf if r[key] is None else r[key] for r in rows]
        return float(statistics.median(vals))

    iv = Interval(med("value"), med("lo"), med("hi"))
    verdict, margin, margin_u = side_verdict(iv, claim)
    row = {
        "trial": "median",
        "value": _num(iv.value),
        "lo": _num(iv.lo),
        "hi": _num(iv.hi),
        "margin": _num(margin),
        "margin_u": _num(margin_u),
    }
    return verdict, row


def claim_verdict(
    claim: Claim,
    trials: Sequence[dict[str, Any]],
    n_planned: int,
    aggregate: str,
    unit: str = "",
) -> dict[str, Any]:
    """The verdict on one claim over the trials' contract-2 phase entries (see module doc)."""
    rows = [trial_row(t, claim) for t in trials]
    usable = [r for r in rows if r["usable"]]
    out: dict[str, Any] = {
        "claim": claim.text,
        "figure": claim.figure,
        "op": claim.op,
        "value": claim.value,
        "basis": claim.basis,
        "unit": unit,
        "aggregate": aggregate,
        "trials": rows,
        "usable_trials": len(usable),
        "planned_trials": n_planned,
    }
    if not usable:
        why = sorted({r["reason"] for r in rows if r["reason"]}) or [NO_TRIAL]
        out.update(
            verdict=INCONCLUSIVE,
            figure_value=None,
            lo=None,
            hi=None,
            margin=None,
            margin_u=None,
            reason=NO_USABLE.format(why="; ".join(why)),
        )
        return out
    if aggregate == "median":
        verdict, shown = _aggregate_median(usable, claim)
    else:
        verdict, shown = _aggregate_all(usable)
    reason = _reason(verdict, claim, shown, aggregate)
    caps = sorted({f for r in usable for f in r["flags"] if f in CAP_FLAGS})
    if len(usable) < n_planned:
        caps.append(FEW_USABLE.format(n=len(usable), m=n_planned))
    if caps and verdict != INCONCLUSIVE:
        reason = CAPPED.format(verdict=verdict, caps=", ".join(caps))
        verdict = INCONCLUSIVE
    elif caps:
        reason += "; " + ALSO.format(caps=", ".join(caps))
    noted = sorted({f for r in usable for f in r["flags"] if f not in CAP_FLAGS})
    if noted:
        reason += "; " + NOTED.format(flags=", ".join(noted))
    out.update(
        verdict=verdict,
        figure_value=shown["value"],
        lo=shown["lo"],
        hi=shown["hi"],
        margin=shown["margin"],
        margin_u=shown["margin_u"],
        shown_trial=shown["trial"],
        reason=reason,
    )
    return out


def _reason(verdict: str, claim: Claim, shown: dict[str, Any], aggregate: str) -> str:
    which = MEDIAN_OF_TRIALS if aggregate == "median" else TRIAL_N.format(trial=shown["trial"])
    span = _span(shown["lo"], shown["hi"])
    if verdict == SUPPORTED:
        if aggregate == "all":
            return ALL_ON_SIDE.format(which=which, span=span)
        return MEDIAN_ON_SIDE.format(which=which, span=span)
    if verdict == NOT_SUPPORTED:
        return WRONG_SIDE.format(which=which, span=span, value=f"{claim.value:g}")
    return STRADDLES.format(which=which, span=span, value=f"{claim.value:g}")


def _g(x: float | None) -> str:
    return "∞" if x is None else f"{x:.4g}"


def _span(lo: float | None, hi: float | None) -> str:
    """``[lo, hi]`` rounded where the interval's half-width says (two significant digits of it,
    ``report.numbers``), so the reason reads like the tables; 4 significant digits otherwise."""
    dec = decimals_for((hi - lo) / 2) if lo is not None and hi is not None else None
    if dec is None or lo is None or hi is None:
        return f"[{_g(lo)}, {_g(hi)}]"
    return f"[{value_text(lo, (hi - lo) / 2)}, {value_text(hi, (hi - lo) / 2)}]"


def overall(claims: Sequence[dict[str, Any]]) -> str:
    """The run's verdict: not supported if any claim is, supported if all are, else inconclusive."""
    verdicts = [c["verdict"] for c in claims]
    if NOT_SUPPORTED in verdicts:
        return NOT_SUPPORTED
    if verdicts and all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    return INCONCLUSIVE
