"""Runs and devices side by side: each phase's efficiency figures with their 95 % uncertainty, and
for every pair of them whether each figure differs significantly (``powerd compare``,
``GET /v1/compare``).

An *item* is one phase of one run (``RUN[:PHASE]``; without PHASE the run's headline phase; each
trial of a repeated phase is its own item), or with ``by="device"`` each device's share of it. Its
figures, each ``{"value", "u95"}`` (95 % expanded uncertainty, in the figure's unit, null when
unknown), are computed from contract 2 only:

- the count N: the phase's own (exact when a marker gave it; with the relative uncertainty of its
  ``counts`` entry when a serving engine's counter gave it, ``count_source``), or with ``unit``
  the entry of ``counts`` in that unit (none: no per-unit figure, flag ``no_count``);
- ``j_per_unit`` = E / N and ``units_per_j`` = N / E, both with relative U95
  √((U_E / E)² + (U_N / N)²) (first order; U_N = 0 for a marker's count, so then U_E / N);
- ``mean_power_w`` = E / T ± U_E / T; ``energy_j`` ± ``uncertainty_j``;
- ``units_per_s`` = N / T with relative U95 √((U_T / T)² + (U_N / N)²), U_T = √2 × the phase's
  timing uncertainty (``timing.uncertainty_ns`` is the worse of its two edges; the edges are
  taken as independent);
- ``idle_power_w`` ± √(``net_uncertainty_j``² − ``uncertainty_j``²) / T (what contract 2 put into
  the net figure for the idle power); ``net_energy_j`` ± ``net_uncertainty_j``;
  ``net_j_per_unit`` = net / N, its relative U95 as for J per unit.

Per device (``by="device"``): E is the sum of the phase's primary channels of that device, U_E the
root-sum-square of theirs (as contract 2 sums primary channels); the count and duration are the
phase's, so J/unit is the device's energy per unit of the phase's whole count. The idle power is
the device's own in the run's ``idle`` phases (median of their means; U the largest of theirs, as
contract 2 does), none when the run has no idle phase.

Significance rule, for a figure of items a and b with values x_a, x_b and 95 % uncertainties
U_a, U_b: **significant** when |x_b − x_a| > √(U_a² + U_b²), **not significant** otherwise
(equality included), **unknown** when a value or an uncertainty is missing, or for a per-unit
figure when the two count different units. √(U_a² + U_b²) is the 95 % uncertainty of the
difference when the two errors are independent. Correlated instrument terms: two items measured
by the same meter share its calibration error (same sign, so a positive correlation ρ); the
difference's true uncertainty is then √(U_a² + U_b² − 2ρ·U_a,inst·U_b,inst), smaller than the one
used. powerd keeps ρ = 0, which is conservative: it never calls "significant" a difference the
correlation would not support, and may call "not significant" one that would be. Pairs resting on
a common primary channel list it in ``shared_channels`` so a reader knows the call is conservative.
A pair also carries ``flags``, the union of its items' flags (a gap, an uncalibrated meter, …): the
call is made on the figures as they are, and the flags say what they rest on.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from powerd.errors import PowerdError
from powerd.i18n import N_, R_
from powerd.runs import headline_phase

COMPARE_VERSION = 1
# the calls (in English in the document; the renderers show them via the catalogue)
SIGNIFICANT = N_("significant")
NOT_SIGNIFICANT = N_("not significant")
UNKNOWN = N_("unknown")
# the reasons of an unknown call, as module constants so powerd.i18n.tr_reason knows them
MISSING_VALUE = R_("missing value")
MISSING_UNCERTAINTY = R_("missing uncertainty")
DIFFERENT_UNITS = R_("different units ({a} vs {b})")
IDLE_PHASE = "idle"
MAX_ITEMS = 32
SQRT2 = math.sqrt(2.0)

# figure key, label for people, unit ("unit" is replaced by the item's count unit), per unit?
FIGURES: tuple[tuple[str, str, str, bool], ...] = (
    ("j_per_unit", "J per unit", "J/unit", True),
    ("units_per_j", "units per J", "unit/J", True),
    ("mean_power_w", "mean power", "W", False),
    ("units_per_s", "throughput", "unit/s", True),
    ("energy_j", "energy", "J", False),
    ("idle_power_w", "idle power", "W", False),
    ("net_energy_j", "net energy", "J", False),
    ("net_j_per_unit", "net J per unit", "J/unit", True),
)
FIGURE_KEYS = tuple(f[0] for f in FIGURES)

RULE = R_(
    "significant when |b - a| > sqrt(Ua^2 + Ub^2) with Ua, Ub the 95 % uncertainties; "
    "not significant otherwise; unknown when a value or uncertainty is missing or the units "
    "differ. Errors are taken as independent: a meter's calibration error shared by both "
    "(shared_channels) would shrink the difference's uncertainty, so the call is conservative."
)


class CompareError(PowerdError):
    """A selection that cannot be compared (malformed, or nothing to compare)."""


class CompareNotFound(CompareError):
    """A selected run, result or phase that does not exist."""


@dataclass(frozen=True)
class Selection:
    """``RUN[:PHASE]``: a run and optionally one of its phases."""

    run: str
    phase: str | None

    @property
    def text(self) -> str:
        return self.run if self.phase is None else f"{self.run}:{self.phase}"


def parse_selection(text: str, is_run: Callable[[str], bool]) -> Selection:
    """Split ``RUN[:PHASE]``. Run ids may themselves contain ":", so the whole text is a run when
    ``is_run`` knows it; otherwise the part after the last ":" is the phase."""
    text = text.strip()
    if not text:
        raise CompareError("empty run selection; use RUN or RUN:PHASE")
    if is_run(text) or ":" not in text:
        return Selection(text, None)
    run, _, phase = text.rpartition(":")
    if not run or not phase:
        raise CompareError(f"{text!r}: use RUN or RUN:PHASE")
    return Selection(run, phase)


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def _fig(value: Any, u95: Any) -> dict[str, float | None]:
    v = _finite(value)
    u = _finite(u95) if v is not None else None
    return {"value": v, "u95": None if u is None or u < 0 else u}


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _duration_u95_s(entry: dict[str, Any]) -> float | None:
    timing = entry.get("timing")
    unc_ns = _finite(timing.get("uncertainty_ns")) if isinstance(timing, dict) else None
    return None if unc_ns is None else SQRT2 * unc_ns / 1e9


@dataclass(frozen=True)
class Count:
    """The units an item is measured against: how many, of what, the 95 % uncertainty relative
    to the count (0 for a count a marker gave: exact), and where it came from."""

    count: float | None
    unit: str | None
    rel_u95: float | None
    source: str

    def json(self) -> dict[str, Any]:
        u = None if self.count is None or self.rel_u95 is None else self.count * self.rel_u95
        return {"count": self.count, "unit": self.unit, "count_u95": u, "count_source": self.source}


def _count_list(entry: dict[str, Any]) -> list[dict[str, Any]]:
    counts = entry.get("counts")
    return [c for c in counts if isinstance(c, dict)] if isinstance(counts, list) else []


def _rel(count: Any, u95: Any) -> float | None:
    c, u = _finite(count), _finite(u95)
    return None if not c or u is None else abs(u / c)


def phase_count(entry: dict[str, Any], unit: str | None = None) -> Count:
    """The count of a phase entry in ``unit`` (default: the phase's own). The phase's own count is
    exact when a marker gave it; when a serving engine's counter gave it (``count_source``, the
    entry of ``counts`` it came from), it carries that entry's ``count_uncertainty``. Another unit
    is looked up in ``counts`` (a phase counted in tokens and requests); none there: no count."""
    if unit is None or unit == entry.get("unit"):
        source = entry.get("count_source")
        if source is None:
            return Count(_finite(entry.get("count")), entry.get("unit"), 0.0, "marker")
        found = next((c for c in _count_list(entry) if c.get("source") == source), None)
        rel = None if found is None else _rel(found.get("count"), found.get("count_uncertainty"))
        return Count(_finite(entry.get("count")), entry.get("unit"), rel, str(source))
    for c in _count_list(entry):
        if c.get("unit") == unit and _finite(c.get("count")):
            rel = _rel(c.get("count"), c.get("count_uncertainty"))
            return Count(_finite(c["count"]), unit, rel, str(c.get("source")))
    return Count(None, unit, None, "none")


def _per(value: float | None, u95: float | None, count: Count) -> dict[str, float | None]:
    """``value`` / count with the relative uncertainties in quadrature (independent)."""
    v = _div(value, count.count)
    if v is None or u95 is None or count.rel_u95 is None or value is None:
        return _fig(v, None)
    if value == 0:  # no relative form; the count's uncertainty does not move a zero
        return _fig(v, _div(u95, count.count))
    return _fig(v, abs(v) * math.hypot(u95 / value, count.rel_u95))


def _figures(
    energy: float | None,
    unc: float | None,
    count: Count,
    duration: float | None,
    duration_u: float | None,
    idle_w: float | None,
    idle_u_w: float | None,
) -> dict[str, dict[str, float | None]]:
    """The item's figures from its energy (± U), count (± relative U), duration (± U) and idle
    power (± U)."""
    n = count.count if count.count else None
    rel_e = _div(unc, energy) if energy else None
    upj = _div(n, energy)
    upj_u = None
    if upj is not None and rel_e is not None and count.rel_u95 is not None:
        upj_u = upj * math.hypot(rel_e, count.rel_u95)
    ups = _div(n, duration)
    ups_u = None
    if ups is not None and duration_u is not None and count.rel_u95 is not None and duration:
        ups_u = ups * math.hypot(duration_u / duration, count.rel_u95)
    net = net_u = None
    if energy is not None and idle_w is not None and duration is not None:
        net = energy - idle_w * duration
        if unc is not None and idle_u_w is not None:
            net_u = math.hypot(unc, idle_u_w * duration)
    return {
        "j_per_unit": _per(energy, unc, count),
        "units_per_j": _fig(upj, upj_u),
        "mean_power_w": _fig(_div(energy, duration), _div(unc, duration)),
        "units_per_s": _fig(ups, ups_u),
        "energy_j": _fig(energy, unc),
        "idle_power_w": _fig(idle_w, idle_u_w),
        "net_energy_j": _fig(net, net_u),
        "net_j_per_unit": _per(net, net_u, count),
    }


def _label(run: str, entry: dict[str, Any], device: str | None) -> str:
    label = f"{run}:{entry.get('phase')}"
    if entry.get("trial"):
        label += f"#{entry['trial']}"
    return label if device is None else f"{label}@{device}"


def _item_base(run: str, entry: dict[str, Any], device: str | None, count: Count) -> dict[str, Any]:
    flags = list(entry.get("flags") or [])
    if count.count is None and "no_count" not in flags:
        flags.append("no_count")
    return {
        "label": _label(run, entry, device),
        "run": run,
        "phase": entry.get("phase"),
        "trial": entry.get("trial"),
        "device": device,
        **count.json(),
        "duration_s": entry.get("duration_s"),
        "t_begin_ns": entry.get("t_begin_ns"),
        "t_end_ns": entry.get("t_end_ns"),
        "flags": flags,
    }


def phase_item(run: str, entry: dict[str, Any], unit: str | None = None) -> dict[str, Any]:
    """One item: a whole phase entry of contract 2 (its count in ``unit``, default its own)."""
    energy = _finite(entry.get("energy_j"))
    unc = _finite(entry.get("uncertainty_j"))
    duration = _finite(entry.get("duration_s"))
    idle_w = _finite(entry.get("idle_power_w"))
    idle_u = None
    net_u = _finite(entry.get("net_uncertainty_j"))
    if idle_w is not None and net_u is not None and unc is not None and duration:
        idle_u = math.sqrt(max(0.0, net_u**2 - unc**2)) / duration
    count = phase_count(entry, unit)
    item = _item_base(run, entry, None, count)
    channels = entry.get("channels") or {}
    item["primary_channels"] = sorted(
        c for c, ch in channels.items() if isinstance(ch, dict) and ch.get("primary")
    )
    item["figures"] = _figures(energy, unc, count, duration, _duration_u95_s(entry), idle_w, idle_u)
    return item


def _device_energy(
    entry: dict[str, Any], device: str
) -> tuple[float | None, float | None, list[str]]:
    """Energy and U95 of the primary channels of ``device`` in a phase entry (RSS, as in
    contract 2)."""
    chans = entry.get("channels") or {}
    primary = sorted(
        c
        for c, ch in chans.items()
        if isinstance(ch, dict) and ch.get("primary") and ch.get("device") == device
    )
    energies = [_finite(chans[c].get("energy_j")) for c in primary]
    if not primary or any(e is None for e in energies):
        return None, None, primary
    uncs = [_finite(chans[c].get("uncertainty_j")) for c in primary]
    unc = None if any(u is None for u in uncs) else math.sqrt(sum(u * u for u in uncs if u))
    return sum(e for e in energies if e is not None), unc, primary


def _device_idle(result: dict[str, Any], device: str) -> tuple[float | None, float | None]:
    """The device's idle power (median over the run's idle phases) and its U95 (the largest)."""
    means: list[float] = []
    uncs: list[float] = []
    for p in result.get("phases") or []:
        if p.get("phase") != IDLE_PHASE:
            continue
        e, u, _ = _device_energy(p, device)
        dur = _finite(p.get("duration_s"))
        if e is None or not dur:
            continue
        means.append(e / dur)
        uncs.append(math.inf if u is None else u / dur)
    if not means:
        return None, None
    worst = max(uncs)
    return statistics.median(means), None if math.isinf(worst) else worst


def phase_devices(entry: dict[str, Any]) -> list[str]:
    """The devices of a phase entry: its ``devices``, else those of its channels."""
    devices = entry.get("devices")
    if isinstance(devices, list) and devices:
        return [str(d) for d in devices]
    chans = entry.get("channels") or {}
    return sorted({str(ch.get("device")) for ch in chans.values() if isinstance(ch, dict)})


def device_items(
    run: str, result: dict[str, Any], entry: dict[str, Any], unit: str | None = None
) -> list[dict[str, Any]]:
    """One item per device of a phase entry: the device's primary channels' share."""
    out = []
    count = phase_count(entry, unit)
    for device in phase_devices(entry):
        energy, unc, primary = _device_energy(entry, device)
        idle_w, idle_u = (
            (None, None) if entry.get("phase") == IDLE_PHASE else _device_idle(result, device)
        )
        item = _item_base(run, entry, device, count)
        if energy is None and "no_data" not in item["flags"]:
            item["flags"].append("no_data")
        item["primary_channels"] = primary
        item["figures"] = _figures(
            energy,
            unc,
            count,
            _finite(entry.get("duration_s")),
            _duration_u95_s(entry),
            idle_w,
            idle_u,
        )
        out.append(item)
    return out


def selected_entries(result: dict[str, Any], sel: Selection) -> list[dict[str, Any]]:
    """The phase entries a selection names: the headline phase, or every trial of PHASE."""
    phases = [p for p in result.get("phases") or [] if isinstance(p, dict)]
    if sel.phase is None:
        head = headline_phase(result)
        if head is None:
            raise CompareNotFound(f"run {sel.run!r} has no phase but idle to compare")
        return [head]
    found = [p for p in phases if p.get("phase") == sel.phase]
    if not found:
        names = ", ".join(sorted({str(p.get("phase")) for p in phases})) or "none"
        raise CompareNotFound(f"run {sel.run!r} has no phase {sel.phase!r}; its phases: {names}")
    return sorted(found, key=lambda p: (p.get("trial") or 0, p.get("t_begin_ns") or 0))


def _pair_figure(a: dict[str, Any], b: dict[str, Any], key: str, per_unit: bool) -> dict[str, Any]:
    fa, fb = a["figures"][key], b["figures"][key]
    xa, xb, ua, ub = fa["value"], fb["value"], fa["u95"], fb["u95"]
    out: dict[str, Any] = {"diff": None, "u95_diff": None, "ratio": None, "separation": None}
    if xa is not None and xb is not None:
        out["diff"] = xb - xa
        out["ratio"] = _div(xb, xa)
    reason = None
    if xa is None or xb is None:
        reason = MISSING_VALUE
    elif ua is None or ub is None:
        reason = MISSING_UNCERTAINTY
    elif per_unit and a.get("unit") != b.get("unit"):
        reason = DIFFERENT_UNITS.format(a=a.get("unit"), b=b.get("unit"))
    if reason is None and xa is not None and xb is not None and ua is not None and ub is not None:
        u_diff = math.hypot(ua, ub)
        out["u95_diff"] = u_diff
        out["separation"] = abs(xb - xa) / u_diff if u_diff > 0 else None
        out["call"] = SIGNIFICANT if abs(xb - xa) > u_diff else NOT_SIGNIFICANT
    else:
        out["call"] = UNKNOWN
    out["reason"] = reason
    return out


def compare_pairs(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every pair (i < j) with each figure's difference b − a, its U95 and the call."""
    pairs = []
    for i, a in enumerate(items):
        for j in range(i + 1, len(items)):
            b = items[j]
            shared = sorted(set(a["primary_channels"]) & set(b["primary_channels"]))
            pairs.append(
                {
                    "a": i,
                    "b": j,
                    "a_label": a["label"],
                    "b_label": b["label"],
                    "shared_channels": shared,
                    "flags": sorted({*a["flags"], *b["flags"]}),
                    "figures": {
                        key: _pair_figure(a, b, key, per_unit) for key, _, _, per_unit in FIGURES
                    },
                }
            )
    return pairs


def build_comparison(
    selected: Iterable[tuple[Selection, dict[str, Any]]],
    by: str = "phase",
    unit: str | None = None,
) -> dict[str, Any]:
    """The comparison document (documented in README "Comparing runs") from each selection and
    its run's contract-2 result; ``unit`` picks which count per-unit figures use (default: each
    phase's own)."""
    if by not in ("phase", "device"):
        raise CompareError(f"by {by!r}: use phase or device")
    items: list[dict[str, Any]] = []
    for sel, result in selected:
        for entry in selected_entries(result, sel):
            if by == "device":
                items.extend(device_items(sel.run, result, entry, unit))
            else:
                items.append(phase_item(sel.run, entry, unit))
    if len(items) < 2:
        raise CompareError(
            f"{len(items)} item(s) to compare; name at least two runs or phases "
            "(or one phase with several devices and by device)"
        )
    if len(items) > MAX_ITEMS:
        raise CompareError(f"{len(items)} items to compare; at most {MAX_ITEMS}")
    return {
        "v": COMPARE_VERSION,
        "by": by,
        "unit": unit,
        "rule": RULE,
        "figures": [
            {"key": k, "label": label, "unit": unit, "per_unit": per}
            for k, label, unit, per in FIGURES
        ],
        "items": items,
        "pairs": compare_pairs(items),
    }
