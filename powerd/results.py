"""Results per contract 2: phases integrated over their channels, primary figures, idle, trials.

Pure: samples come through a callable, so the same code serves the live daemon (timeline) and
``powerd report`` (store). The phase's top-level figures come from its *primary* channels: the
meter channels if any has data for the phase, else telemetry, else estimates; among channels that
measure the same thing only the best one counts (energy counter over polled power, then coverage,
then uncertainty), so two views of one quantity are never summed.

Additions to contract 2 (keys only added, ``v`` stays 1): each channel entry carries ``flags``,
``primary``, ``gap_s`` (time inside gaps) and, where a counter and a power channel measure the
same thing, ``counter_to_power_ratio`` (compat: flagged ``counter_power_mismatch`` at a fixed
5 %); per phase ``cross_checks``, each pair of channels measuring the same thing compared within
their combined 95 % uncertainty, flag ``sources_disagree`` (powerd.crosscheck, the founded check);
meter channels carry ``instrument`` (model, serial, firmware as the instrument reports them, or
null) and ``calibration`` (from the config, or null), and ``flags`` gains ``uncalibrated`` or
``calibration_due`` (powerd.calibration), raised to the phase when the channel is primary;
the top level carries ``trials``: per phase name repeated in more than one trial, the median and
spread of its figures. Per phase, ``net_uncertainty_j`` and ``j_per_unit_uncertainty`` give the
95 % uncertainty of ``net_energy_j`` and ``j_per_unit`` (null when the figure is null).

Uncertainty model of the derived figures. ``net_energy_j = energy_j - P_idle * T`` with ``T`` the
phase's duration. The gross uncertainty ``uncertainty_j`` (U_gross) and the idle power's
uncertainty U_idle_w are independent, so ``net_uncertainty_j = sqrt(U_gross**2 + (U_idle_w *
T)**2)``. U_idle_w is 0 for a configured ``idle_power_w`` (a figure the user asserts); measured
from the run's ``idle`` phase it is that phase's ``uncertainty_j / duration_s``, and with several
idle phases (whose median is used) the largest of theirs, which bounds the median's. The
uncertainty of ``T`` itself is already in U_gross's timing term and is not counted again.
``j_per_unit_uncertainty = uncertainty_j / count`` (the count is exact).

Accuracy that follows a meter's range: when the store holds an accuracy history for a channel
(``Store.accuracy_history``: a WT300's range set with ``set_range`` or moved by auto ranging),
each phase integrates that channel with the accuracy in effect for its samples: the record in
effect at the phase's begin, or, if the accuracy changed within the phase, the largest bound of
those in effect (each term's maximum), and the channel entry gets the flag ``range_changed``
(the phase too, when the channel is primary) and ``accuracy_range_w``, the range in W used.

Scope: a phase whose ``device`` is set covers only the channels of those devices (``devices`` in
its entry, ``device`` per channel); different devices are summed only when the marker named them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import numpy as np

from powerd.block import F64, I64
from powerd.calibration import flags as calibration_flags
from powerd.channel import SOURCE_CLASS_RANK, Accuracy, Channel
from powerd.crosscheck import FLAG as SOURCES_DISAGREE
from powerd.crosscheck import cross_checks, disagreeing_channels, phase_disagrees
from powerd.integrate import ChannelEnergy, Window, combined_u95_j, integrate, power_trace
from powerd.phases import Phase

SampleSource = Callable[[str, int, int], tuple[I64, F64]]
AccuracySource = Callable[[str, int, int], list[tuple[int, Accuracy]]]
RESULT_VERSION = 1
IDLE_PHASE = "idle"
RATIO_FLAG_LIMIT = 0.05


def accuracy_in_effect(
    declared: Accuracy, history: list[tuple[int, Accuracy]], t_begin_ns: int
) -> tuple[Accuracy, bool]:
    """The accuracy to integrate a window with, and whether it changed within the window.

    ``history`` as ``Store.accuracy_history`` gives it (the record in effect at ``t_begin_ns``,
    then those inside); before the first record the channel's ``declared`` accuracy applies.
    Several in effect: each term's maximum, a bound that holds for every sample."""
    accs = [a for _, a in history]
    if not history or history[0][0] > t_begin_ns:
        accs.insert(0, declared)
    distinct = list(dict.fromkeys(accs))
    if len(distinct) == 1:
        return distinct[0], False
    return (
        Accuracy(
            reading_frac=max(a.reading_frac for a in distinct),
            range_frac=max(a.range_frac for a in distinct),
            range_w=max(a.range_w for a in distinct),
            offset_w=max(a.offset_w for a in distinct),
            resolution_j=max(a.resolution_j for a in distinct),
        ),
        True,
    )


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def choose_primary(
    figures: dict[str, ChannelEnergy], channels: dict[str, Channel], explicit: Iterable[str] = ()
) -> list[str]:
    """Channels whose sum is the phase's figure; see the module docstring for the rule. Each
    device is chosen for on its own (a meter on one board does not hide another board's
    telemetry), and the devices' choices are summed."""
    explicit = [c for c in explicit if c in figures and figures[c].energy_j is not None]
    if explicit:
        return explicit
    with_data = [c for c, f in figures.items() if f.energy_j is not None]
    by_device: dict[str, list[str]] = {}
    for c in sorted(with_data):
        by_device.setdefault(channels[c].device_id, []).append(c)
    return sorted(c for cs in by_device.values() for c in _primary_of_device(cs, figures, channels))


def _primary_of_device(
    with_data: list[str], figures: dict[str, ChannelEnergy], channels: dict[str, Channel]
) -> list[str]:
    best_rank = min(SOURCE_CLASS_RANK[channels[c].source_class] for c in with_data)
    best: dict[str, str] = {}
    for c in with_data:
        if SOURCE_CLASS_RANK[channels[c].source_class] != best_rank:
            continue
        thing = channels[c].measured_thing
        if thing not in best or _better(c, best[thing], figures, channels):
            best[thing] = c
    return list(best.values())


def _better(
    a: str, b: str, figures: dict[str, ChannelEnergy], channels: dict[str, Channel]
) -> bool:
    def key(c: str) -> tuple[int, float, float]:
        f = figures[c]
        return (0 if channels[c].kind == "energy" else 1, -f.coverage, f.uncertainty_j or 0.0)

    return key(a) < key(b)


def _peak_of_sum(
    primary: list[str],
    channels: dict[str, Channel],
    samples: SampleSource,
    w: Window,
    figures: dict[str, ChannelEnergy],
) -> float | None:
    """Peak of the summed power of several channels, on the union of their sample times."""
    if len(primary) == 1:
        return figures[primary[0]].peak_power_w
    traces = [power_trace(*samples(c, w.t_begin_ns, w.t_end_ns), channels[c]) for c in primary]
    inside = [t[(t >= w.t_begin_ns) & (t <= w.t_end_ns)] for t, _ in traces]
    grid = np.unique(np.concatenate([*inside, np.array([w.t_begin_ns, w.t_end_ns], np.int64)]))
    total = np.zeros(grid.size)
    for t, p in traces:
        if t.size:
            x0 = w.t_begin_ns
            total += np.interp((grid - x0).astype(np.float64), (t - x0).astype(np.float64), p)
    return float(total.max())


def _ratios(figures: dict[str, ChannelEnergy], channels: dict[str, Channel]) -> dict[str, float]:
    """counter energy ÷ integrated power energy, for counters with a power twin (same thing)."""
    out: dict[str, float] = {}
    for c, f in figures.items():
        ch = channels[c]
        if ch.kind != "energy" or not f.energy_j:
            continue
        for d, g in figures.items():
            twin = channels[d]
            if twin.kind == "power" and twin.measured_thing == ch.measured_thing and g.energy_j:
                out[c] = f.energy_j / g.energy_j
                break
    return out


def _channel_entry(
    ch: Channel,
    f: ChannelEnergy,
    primary: bool,
    ratio: float | None,
    ranged: bool = False,
    range_changed: bool = False,
    t_end_ns: int = 0,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "energy_j": _num(f.energy_j),
        "mean_power_w": _num(f.mean_power_w),
        "peak_power_w": _num(f.peak_power_w),
        "samples": f.samples,
        "coverage": f.coverage,
        "uncertainty_j": _num(f.uncertainty_j),
        "source_class": ch.source_class,
        "method": f.method,
        "flags": list(f.flags),
        "primary": primary,
        "gap_s": f.gap_s,
        "device": ch.device_id,
    }
    if ratio is not None:
        entry["counter_to_power_ratio"] = ratio
    if ranged:
        entry["accuracy_range_w"] = ch.accuracy.range_w
    if range_changed:
        entry["flags"].append("range_changed")
    if ch.source_class == "meter" or ch.instrument is not None:
        entry["instrument"] = None if ch.instrument is None else ch.instrument.to_json()
    if ch.source_class == "meter":
        entry["calibration"] = None if ch.calibration is None else ch.calibration.to_json()
        entry["flags"] += calibration_flags(ch, t_end_ns)
    return entry


def phase_result(
    phase: Phase,
    channels: dict[str, Channel],
    samples: SampleSource,
    idle_power_w: float | None = None,
    primary_channels: Iterable[str] = (),
    idle_uncertainty_w: float = 0.0,
    accuracy_history: AccuracySource | None = None,
) -> dict[str, Any]:
    """One entry of contract 2's ``phases`` list, over the channels of the phase's devices.

    ``idle_uncertainty_w`` is the 95 % uncertainty of ``idle_power_w`` (0 for a configured one);
    see the module docstring for how it enters ``net_uncertainty_j``. ``accuracy_history``
    gives each channel's accuracy records (see the module docstring)."""
    if phase.device is not None:
        channels = {c: ch for c, ch in channels.items() if ch.device_id in phase.device}
    range_changed: set[str] = set()
    ranged: set[str] = set()
    if accuracy_history is not None:
        channels = dict(channels)
        for c, ch in list(channels.items()):
            history = accuracy_history(c, phase.t_begin_ns, phase.t_end_ns)
            if not history:
                continue
            acc, changed = accuracy_in_effect(ch.accuracy, history, phase.t_begin_ns)
            channels[c] = replace(ch, accuracy=acc)
            ranged.add(c)
            if changed:
                range_changed.add(c)
    devices = (
        list(phase.device)
        if phase.device is not None
        else sorted({ch.device_id for ch in channels.values()})
    )
    w = Window(
        phase.t_begin_ns, phase.t_end_ns, phase.begin.uncertainty_ns, phase.end.uncertainty_ns
    )
    figures = {
        c: integrate(*samples(c, w.t_begin_ns, w.t_end_ns), w, ch) for c, ch in channels.items()
    }
    primary = choose_primary(figures, channels, primary_channels)
    ratios = _ratios(figures, channels)
    flags: list[str] = []
    for c in primary:
        flags.extend(f for f in figures[c].flags if f not in flags)
    for r in ratios.values():
        if abs(r - 1.0) > RATIO_FLAG_LIMIT and "counter_power_mismatch" not in flags:
            flags.append("counter_power_mismatch")
    if range_changed & set(primary):
        flags.append("range_changed")
    checks = cross_checks(figures, channels, primary)
    if phase_disagrees(checks, primary):
        flags.append(SOURCES_DISAGREE)
    timing = phase.timing
    if timing.source == "receive-time":
        flags.append("receive_time")
    duration_s = w.duration_s
    energy: float | None = None
    unc: float | None = None
    mean = peak = None
    if primary:
        energy = sum(figures[c].energy_j or 0.0 for c in primary)
        unc = combined_u95_j([figures[c] for c in primary])
        mean = energy / duration_s
        peak = _peak_of_sum(primary, channels, samples, w, figures)
    else:
        flags.append("no_data")
    count = phase.count
    is_idle = phase.phase == IDLE_PHASE
    idle = None if is_idle else idle_power_w
    net = None if idle is None or energy is None else energy - idle * duration_s
    net_unc = (
        None if net is None or unc is None else math.hypot(unc, idle_uncertainty_w * duration_s)
    )
    entries = {
        c: _channel_entry(
            channels[c],
            figures[c],
            c in primary,
            ratios.get(c),
            c in ranged,
            c in range_changed,
            phase.t_end_ns,
        )
        for c in sorted(figures)
    }
    for c in disagreeing_channels(checks):
        entries[c]["flags"].append(SOURCES_DISAGREE)
    for c in primary:  # a figure resting on an uncalibrated meter says so
        flags.extend(f for f in calibration_flags(channels[c], phase.t_end_ns) if f not in flags)
    return {
        "phase": phase.phase,
        "trial": phase.trial,
        "t_begin_ns": phase.t_begin_ns,
        "t_end_ns": phase.t_end_ns,
        "duration_s": duration_s,
        "count": count,
        "unit": phase.unit,
        "energy_j": _num(energy),
        "mean_power_w": _num(mean),
        "peak_power_w": _num(peak),
        "uncertainty_j": _num(unc),
        "j_per_unit": _num(energy / count) if energy is not None and count else None,
        "units_per_j": _num(count / energy) if energy and count is not None else None,
        "idle_power_w": _num(idle),
        "net_energy_j": _num(net),
        "net_uncertainty_j": _num(net_unc),
        "j_per_unit_uncertainty": _num(unc / count) if unc is not None and count else None,
        "flags": flags,
        "devices": devices,
        "timing": timing.to_json(),
        "channels": entries,
        "cross_checks": checks,
        "meta": phase.meta,
    }


def _spread(values: list[float]) -> dict[str, float | None]:
    med = statistics.median(values)
    lo, hi = min(values), max(values)
    return {
        "median": med,
        "min": lo,
        "max": hi,
        "rel_spread": (hi - lo) / abs(med) if med else None,
    }


def trials_summary(phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median and spread of each figure over the trials of a phase name seen in >1 trial."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for p in phases:
        by_name.setdefault(p["phase"], []).append(p)
    out: list[dict[str, Any]] = []
    for name, group in sorted(by_name.items()):
        if len({p["trial"] for p in group}) < 2:
            continue
        entry: dict[str, Any] = {"phase": name, "trials": len(group)}
        for key in ("energy_j", "mean_power_w", "j_per_unit", "net_energy_j"):
            vals = [p[key] for p in group if p[key] is not None]
            if vals:
                entry[key] = _spread(vals)
        out.append(entry)
    return out


def idle_from_phases(phases: list[dict[str, Any]]) -> float | None:
    """Idle power of a run: the median mean power of its ``idle`` phases."""
    vals = [
        p["mean_power_w"]
        for p in phases
        if p["phase"] == IDLE_PHASE and p["mean_power_w"] is not None
    ]
    return statistics.median(vals) if vals else None


def idle_uncertainty_from_phases(phases: list[dict[str, Any]]) -> float:
    """95 % uncertainty of ``idle_from_phases``: the largest power uncertainty
    (``uncertainty_j / duration_s``) among the ``idle`` phases with a figure."""
    vals = [
        p["uncertainty_j"] / p["duration_s"]
        for p in phases
        if p["phase"] == IDLE_PHASE
        and p["mean_power_w"] is not None
        and p["uncertainty_j"] is not None
        and p["duration_s"] > 0
    ]
    return max(vals, default=0.0)


def run_result(
    run: str,
    phases: list[Phase],
    channels: dict[str, Channel],
    samples: SampleSource,
    idle_power_w: float | None = None,
    primary_channels: Iterable[str] = (),
    accuracy_history: AccuracySource | None = None,
) -> dict[str, Any]:
    """Contract 2 for one run. Idle power: ``idle_power_w`` if given, else the run's idle phase.
    ``accuracy_history``: each channel's accuracy records (a meter's range moves), if any."""
    ordered = sorted(
        (p for p in phases if p.run == run), key=lambda p: (p.t_begin_ns, p.phase, p.trial)
    )
    primary = list(primary_channels)
    idle_phases = [
        phase_result(p, channels, samples, None, primary, 0.0, accuracy_history)
        for p in ordered
        if p.phase == IDLE_PHASE
    ]
    idle: float | None = idle_power_w
    idle_unc_w = 0.0
    if idle_power_w is None:
        idle = idle_from_phases(idle_phases)
        idle_unc_w = idle_uncertainty_from_phases(idle_phases)
    results = [
        phase_result(p, channels, samples, idle, primary, idle_unc_w, accuracy_history)
        if p.phase != IDLE_PHASE
        else None
        for p in ordered
    ]
    idle_iter = iter(idle_phases)
    out_phases = [r if r is not None else next(idle_iter) for r in results]
    return {
        "v": RESULT_VERSION,
        "run": run,
        "phases": out_phases,
        "trials": trials_summary(out_phases),
    }
