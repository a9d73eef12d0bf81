"""Compute a run's result from the store alone: the one path used by ``measure`` and ``report``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from powerd.channel import LOCAL_DEVICE, Channel
from powerd.errors import PowerdError
from powerd.integrate import GAP_FACTOR
from powerd.latedata import LATE_DATA_FLAG
from powerd.mlperf.figures import mlperf_figures
from powerd.phasecount import attach_counts, unread_counts
from powerd.phases import Phase, replay
from powerd.results import run_result
from powerd.store import Store


def run_span(store: Store, run: str) -> tuple[int, int]:
    """First begin and last end of the run's closed phases."""
    phases, _ = replay(store.markers(run))
    if not phases:
        raise PowerdError(f"run {run!r} has no completed phase in {store.path}")
    return min(p.t_begin_ns for p in phases), max(p.t_end_ns for p in phases)


def compute_run(
    store: Store,
    run: str,
    idle_power_w: float | None = None,
    primary: tuple[str, ...] = (),
    channels_as: dict[str, Channel] | None = None,
) -> dict[str, Any]:
    """Recompute contract 2 for ``run`` from its stored markers and samples.

    ``channels_as`` replaces stored channel metadata (``powerd audit`` recomputes with the
    metadata sealed in the run's manifest: the store keeps only each channel's latest)."""
    markers = store.markers(run)
    if not markers:
        known = ", ".join(recent_run_ids(store)) or "none"
        raise PowerdError(
            f"no run {run!r} in {store.path}; recent runs: {known} "
            "(use --state-dir to read another store)"
        )
    phases, _rejects = replay(markers)
    if not phases:
        raise PowerdError(
            f"run {run!r} has markers but no completed phase (a begin without its end?)"
        )
    t0 = min(p.t_begin_ns for p in phases)
    t1 = max(p.t_end_ns for p in phases)
    known_channels = {**store.channels(), **(channels_as or {})}
    if channels_as:
        by_device: dict[str, list[str]] = {}
        for c, ch in known_channels.items():
            by_device.setdefault(ch.device_id, []).append(c)
        channels_of: Mapping[str, Sequence[str]] = by_device
    else:
        channels_of = store.channels_by_device()
    known_devices = set(channels_of)
    phases = [replace(p, device=phase_devices(p, known_channels, known_devices)) for p in phases]
    # every phase now names its devices and covers only their channels: ask the store about
    # those alone (a fleet daemon holds thousands of other agents' channels; issue 16)
    devices = {d for p in phases for d in (p.device or ())}
    scoped = [c for d in devices for c in channels_of.get(d, ())]
    wanted = {*store.channels_with_data(t0, t1, among=scoped), *store.gap_channels(t0, t1)}
    channels = {c: known_channels[c] for c in sorted(wanted) if c in known_channels}
    result = run_result(
        run, phases, channels, store.samples, idle_power_w, primary, store.accuracy_history
    )
    counts = store.phase_counts(run)
    asked = {(p.phase, p.trial): p.count_from for p in phases}
    run_flags = store.run_flags(run)  # e.g. held_unplaceable: a marker of it never placed
    revised = run_flags.pop(LATE_DATA_FLAG, None)  # a count on the run, not a phase flag
    if revised is not None and revised.isdigit() and int(revised) > 0:
        result["revised_after_late_data"] = int(revised)
    for entry in result["phases"]:
        key = (entry["phase"], entry["trial"])
        attach_counts(entry, counts.get(key) or unread_counts(asked.get(key)))
        if store.clock_steps(entry["t_begin_ns"], entry["t_end_ns"]):
            entry["flags"].append("clock_step")
        entry["flags"] += [f for f in run_flags if f not in entry["flags"]]
        flag_known_gaps(store, entry, channels)
        mlperf = mlperf_figures(entry, channels, store.samples)
        if mlperf is not None:
            entry["mlperf"] = mlperf
    return result


def phase_devices(
    phase: Phase, channels: dict[str, Channel], known_devices: set[str] | None = None
) -> tuple[str, ...]:
    """The devices a phase covers: those its begin marker named, else its source's own device
    (an agent's id when the source is an agent, or a device that daemon probes are assigned
    to), else the daemon's own unassigned channels (``local``)."""
    if phase.device is not None:
        return phase.device
    known = (
        known_devices if known_devices is not None else {ch.device_id for ch in channels.values()}
    )
    return (phase.source,) if phase.source in known else (LOCAL_DEVICE,)


def flag_known_gaps(
    store: Store, entry: dict[str, Any], channels: dict[str, Channel] | None = None
) -> None:
    """Flag the recorded gaps (``Store.put_gap``) that overlap one phase entry of contract 2.

    A channel gets each gap's reason in ``flags`` and the gaps, clipped to the phase, in
    ``gaps``. The phase gets the reason when the gap touches what its figures rest on: a primary
    channel, or a channel left with no figure (a meter down for the whole phase must not pass
    as a telemetry-only figure without a word)."""
    t0, t1 = entry["t_begin_ns"], entry["t_end_ns"]
    for cid, ch_entry in entry["channels"].items():
        found = store.gaps(cid, t0, t1)
        ch = (channels or {}).get(cid)
        if ch is not None:
            # no longer than the coverage rule's threshold: data continued, so it is no gap
            shortest_ns = GAP_FACTOR * ch.nominal_period_s * 1e9
            found = [g for g in found if g[1] is None or g[1] - g[0] > shortest_ns]
        if not found:
            continue
        ch_entry["gaps"] = [
            {
                "reason": reason,
                "t_begin_ns": max(a, t0),
                "t_end_ns": t1 if b is None else min(b, t1),
            }
            for a, b, reason in found
        ]
        touches_figure = ch_entry.get("primary") or ch_entry.get("energy_j") is None
        for _, _, reason in found:
            if reason not in ch_entry["flags"]:
                ch_entry["flags"].append(reason)
            if touches_figure and reason not in entry["flags"]:
                entry["flags"].append(reason)


HEADLINE_PHASE = "run"


def headline_phase(result: dict[str, Any]) -> dict[str, Any] | None:
    """The phase a run is summed up by: ``run`` (what ``powerd measure`` marks around CMD), else
    the longest non-idle phase. Phases nest (a workload's prefill inside ``run``), so a run's
    phases are never added up."""
    phases = [p for p in result.get("phases") or [] if p.get("phase") != "idle"]
    named = [p for p in phases if p.get("phase") == HEADLINE_PHASE]
    pool = named or phases
    return max(pool, key=lambda p: p.get("duration_s") or 0.0) if pool else None


def run_summary(
    run: str, first_t_ns: int, last_t_ns: int, markers: int, result_json: str | None
) -> dict[str, Any]:
    """One row of ``powerd runs`` and ``GET /v1/runs``: when, what phases, the headline phase's
    energy ± U95 and J per unit ± U95, and every phase's flags (null figures before a result)."""
    result = None if result_json is None else json.loads(result_json)
    phases = [] if result is None else result.get("phases") or []
    head = None if result is None else headline_phase(result)
    flags: list[str] = []
    for p in phases:
        flags.extend(f for f in p.get("flags") or [] if f not in flags)

    def fig(key: str) -> Any:
        return None if head is None else head.get(key)

    return {
        "run": run,
        "t_first_ns": first_t_ns,
        "t_last_ns": last_t_ns,
        "started": datetime.fromtimestamp(first_t_ns / 1e9, UTC).isoformat(timespec="seconds"),
        "markers": markers,
        "has_result": result is not None,
        "phases": sorted({p["phase"] for p in phases}),
        "headline_phase": fig("phase"),
        "energy_j": fig("energy_j"),
        "uncertainty_j": fig("uncertainty_j"),
        "j_per_unit": fig("j_per_unit"),
        "j_per_unit_uncertainty": fig("j_per_unit_uncertainty"),
        "unit": fig("unit"),
        "flags": flags,
    }


def list_runs(
    store: Store, limit: int | None = None, before: tuple[int, str] | None = None
) -> list[dict[str, Any]]:
    """Run summaries newest first (see ``Store.run_index`` for paging)."""
    return [run_summary(*row) for row in store.run_index(limit, before)]


def recent_run_ids(store: Store, n: int = 10) -> list[str]:
    """The ``n`` most recent run ids by time, oldest first (for "recent runs: ..." in errors;
    ``Store.runs()`` is alphabetical)."""
    return [row[0] for row in reversed(store.run_index(n))]
