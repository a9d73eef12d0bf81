"""Per-phase counts: the per-unit figures and their uncertainty, and a phase whose counters were
never read (no reader running, e.g. a daemon restarted mid-phase) flagged, never a silent 0."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from powerd.daemon import Daemon
from powerd.phasecount import attach_counts, per_unit
from powerd.runs import compute_run
from powerd.store import Store
from powerd.timeline import Timeline

SPEC = 'prom:http://127.0.0.1:9/metrics#vllm:generation_tokens_total{model_name="m"}'


def test_per_unit_figures_combine_relative_uncertainties_in_quadrature() -> None:
    got = per_unit(100.0, 3.0, 1000, 40.0)
    rel = math.hypot(0.03, 0.04)
    assert got["j_per_unit"] == pytest.approx(0.1)
    assert got["j_per_unit_uncertainty"] == pytest.approx(0.1 * rel)
    assert got["units_per_j"] == pytest.approx(10.0)
    assert got["units_per_j_uncertainty"] == pytest.approx(10.0 * rel)
    assert set(per_unit(100.0, 3.0, 0, 0.0).values()) == {None}  # no work: no figure, not 0
    assert set(per_unit(None, None, 10, 1.0).values()) == {None}


def test_a_marker_count_stays_the_headline_and_flags_are_raised() -> None:
    entry = {"count": 7, "unit": "query", "energy_j": 70.0, "uncertainty_j": 0.0, "flags": []}
    entry["j_per_unit"] = 10.0
    counts = [{"source": SPEC, "unit": "token", "count": 700, "count_uncertainty": 7.0}]
    counts[0]["flags"] = ["counter_reset"]
    attach_counts(entry, counts)
    assert entry["count"] == 7 and entry["j_per_unit"] == 10.0 and "count_source" not in entry
    assert entry["counts"][0]["j_per_unit"] == pytest.approx(0.1)
    assert entry["flags"] == ["counter_reset"]


def test_counters_asked_for_but_never_read_are_flagged_unavailable(tmp_path: Path) -> None:
    with Store(tmp_path / "powerd.db") as store:
        d = Daemon(store, Timeline(), time.time_ns, result_grace_s=0.0)
        t = time.time_ns()
        begin = {"v": 1, "run": "r", "phase": "p", "event": "begin", "t_ns": t}
        assert d.submit_marker("h", {**begin, "count_from": SPEC}).applied
        assert d.submit_marker("h", {**begin, "event": "end", "t_ns": t + 10**9}).applied
        entry = compute_run(store, "r")["phases"][0]
        (count,) = entry["counts"]
        assert count["count"] is None and count["j_per_unit"] is None
        assert count["flags"] == ["count_unavailable"] and "not read" in count["error"]
        assert "count_unavailable" in entry["flags"]
        assert entry["count"] is None
