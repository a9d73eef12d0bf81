"""Cross-checks between sources: two channels measuring the same thing must agree within U.

Channels of one device that share ``measures`` are alternatives (a meter and NPU/GPU telemetry,
an energy counter and polled power): the phase's figure uses one of them (the primary), the
others are a second opinion. For each such group with at least two channels with data, the
*reference* ``a`` is the group's primary channel (else the best of the group by the primary rule:
source class, energy counter over power, coverage, uncertainty) and every other channel ``b`` is
compared with it:

- ``ratio`` = E_a / E_b, ``difference_j`` = E_a − E_b;
- ``uncertainty_j`` = √(U_a² + U_b²), the 95 % uncertainty of the difference when the two
  channels' errors are independent (for two views of one sensor, e.g. NVML's counter and its
  power, the errors are partly shared, so this overstates it and the check is conservative);
- ``agree``: true when |E_a − E_b| <= uncertainty_j, false beyond it (``status`` ``agree`` /
  ``disagree``), and ``difference_u`` = difference_j / uncertainty_j.

A channel whose accuracy is not stated (``Accuracy`` with no reading, range or offset term: many
telemetry sources publish none) has a U without its instrument term, far too small to judge by;
such a pair gets ``agree`` null, ``status`` ``unknown``, ``uncertainty_j`` null and a ``reason``
naming the channel, never a confident verdict either way.

A disagreeing pair flags ``sources_disagree`` on both channels, and on the phase when ``a`` is a
primary channel (the phase's figure rests on it); a disagreement between two channels the figure
does not use is flagged on those channels only.

Relation to ``counter_to_power_ratio`` (results.py, kept for compatibility): for a counter
reference with a power alternative, ``ratio`` is the same number; ``counter_power_mismatch`` is
raised at a fixed 5 % whatever the channels' accuracy, so it can both miss a disagreement of two
precise sources and fire on two sources whose stated accuracy allows more. ``sources_disagree``
is the statistically founded check.
"""

from __future__ import annotations

import math
from typing import Any

from powerd.channel import SOURCE_CLASS_RANK, Accuracy, Channel
from powerd.i18n import R_
from powerd.integrate import ChannelEnergy

# the reason of an unjudged pair, in English in the result; shown translated (powerd.i18n)
NOT_STATED = R_("accuracy not stated: {channels}")

FLAG = "sources_disagree"
AGREE, DISAGREE, UNKNOWN = "agree", "disagree", "unknown"


def accuracy_known(acc: Accuracy) -> bool:
    """Whether an accuracy states an instrument bound at all (a counter's resolution alone does
    not: it says how fine the steps are, not how right they are)."""
    return acc.reading_frac > 0 or acc.range_frac * acc.range_w > 0 or acc.offset_w > 0


def _order_key(
    c: str, figures: dict[str, ChannelEnergy], channels: dict[str, Channel], primary: set[str]
) -> tuple[int, int, int, float, float, str]:
    f, ch = figures[c], channels[c]
    return (
        0 if c in primary else 1,
        SOURCE_CLASS_RANK[ch.source_class],
        0 if ch.kind == "energy" else 1,
        -f.coverage,
        f.uncertainty_j or 0.0,
        c,
    )


def _groups(
    figures: dict[str, ChannelEnergy], channels: dict[str, Channel]
) -> dict[tuple[str, str], list[str]]:
    """Channels with data, by (device, measured thing), only where two or more share one."""
    out: dict[tuple[str, str], list[str]] = {}
    for c in sorted(figures):
        ch = channels[c]
        if figures[c].energy_j is None or not ch.measures:
            continue
        out.setdefault((ch.device_id, ch.measured_thing), []).append(c)
    return {k: v for k, v in out.items() if len(v) > 1}


def compare(
    a: str, b: str, fa: ChannelEnergy, fb: ChannelEnergy, ca: Channel, cb: Channel
) -> dict[str, Any]:
    """One pair's entry (contract 2, per phase ``cross_checks``)."""
    ea, eb = float(fa.energy_j or 0.0), float(fb.energy_j or 0.0)
    diff = ea - eb
    ratio = ea / eb if eb != 0 else None
    unknown = [c for c, ch in ((a, ca), (b, cb)) if not accuracy_known(ch.accuracy)]
    unknown += [c for c, f in ((a, fa), (b, fb)) if f.uncertainty_j is None and c not in unknown]
    entry: dict[str, Any] = {
        "a": a,
        "b": b,
        "measures": ca.measured_thing,
        "device": ca.device_id,
        "ratio": ratio if ratio is None or math.isfinite(ratio) else None,
        "difference_j": diff,
        "uncertainty_j": None,
        "difference_u": None,
        "agree": None,
        "status": UNKNOWN,
        "reason": "",
    }
    if unknown:
        entry["reason"] = NOT_STATED.format(channels=", ".join(unknown))
        return entry
    u = math.hypot(float(fa.uncertainty_j or 0.0), float(fb.uncertainty_j or 0.0))
    agree = abs(diff) <= u
    entry.update(
        uncertainty_j=u,
        difference_u=diff / u if u > 0 else None,
        agree=agree,
        status=AGREE if agree else DISAGREE,
    )
    return entry


def cross_checks(
    figures: dict[str, ChannelEnergy], channels: dict[str, Channel], primary: list[str]
) -> list[dict[str, Any]]:
    """Every (reference, alternative) pair of the phase, sorted by device, thing and channel."""
    chosen = set(primary)
    out: list[dict[str, Any]] = []
    for _, members in sorted(_groups(figures, channels).items()):
        ordered = sorted(members, key=lambda c: _order_key(c, figures, channels, chosen))
        a = ordered[0]
        for b in ordered[1:]:
            out.append(compare(a, b, figures[a], figures[b], channels[a], channels[b]))
    return out


def disagreeing_channels(checks: list[dict[str, Any]]) -> set[str]:
    """Channels in a pair that disagrees."""
    return {c for x in checks if x["agree"] is False for c in (x["a"], x["b"])}


def phase_disagrees(checks: list[dict[str, Any]], primary: list[str]) -> bool:
    """Whether a pair whose reference carries the phase's figure disagrees."""
    return any(x["agree"] is False and x["a"] in primary for x in checks)
