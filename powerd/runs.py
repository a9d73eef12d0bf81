"""Compute a run's result from the store alone: the one path used by ``measure`` and ``report``."""

from __future__ import annotations

from typing import Any

from powerd.errors import PowerdError
from powerd.phases import replay
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
) -> dict[str, Any]:
    """Recompute contract 2 for ``run`` from its stored markers and samples."""
    markers = store.markers(run)
    if not markers:
        known = ", ".join(store.runs()[-10:]) or "none"
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
    known_channels = store.channels()
    channels = {
        c: known_channels[c] for c in store.channels_with_data(t0, t1) if c in known_channels
    }
    result = run_result(run, phases, channels, store.samples, idle_power_w, primary)
    for entry in result["phases"]:
        if store.clock_steps(entry["t_begin_ns"], entry["t_end_ns"]):
            entry["flags"].append("clock_step")
    return result
