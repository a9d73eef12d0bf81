"""``powerd.window``: the counter-edge figure on plain numbers, and the timeline path on sim."""

from __future__ import annotations

import time

import pytest

from powerd.channel import Accuracy, Channel
from powerd.errors import PowerdError
from powerd.probes.base import EdgeReading
from powerd.window import Monitor, counter_edges_figure

COUNTER = Channel(
    "nvml:0:energy", "energy", "telemetry", 0.1, Accuracy(reading_frac=0.05, resolution_j=0.001)
)


def edge(t_s: float, j: float | None, w: float | None = None) -> EdgeReading:
    return EdgeReading("nvml:0:energy", int(t_s * 1e9), 10_000, j, w, 0.1)


def test_counter_edges_state_a_period_of_the_largest_power_as_staleness() -> None:
    f = counter_edges_figure(edge(10.0, 1000.0, 150.0), edge(10.5, 1100.0, 250.0), COUNTER)
    assert f.energy_j == pytest.approx(100.0)
    assert f.terms_j["counter_staleness_j"] == pytest.approx(0.1 * 250.0)
    assert f.terms_j["accuracy_j"] == pytest.approx(5.0)
    assert f.uncertainty_j is not None and f.uncertainty_j > 25.0
    assert f.flags == ("counter_edges", "stale_edges")
    seen = counter_edges_figure(edge(10.0, 1000.0, 150.0), edge(10.5, 1100.0), COUNTER, 300.0)
    assert seen.terms_j["counter_staleness_j"] == pytest.approx(0.1 * 300.0)
    long = counter_edges_figure(edge(10.0, 1000.0), edge(12.0, 1400.0), COUNTER)
    assert long.flags == ("counter_edges",)  # 20 updates: not flagged, still stated
    # The rate over the longest span the difference can cover (2 s + one period).
    assert long.terms_j["counter_staleness_j"] == pytest.approx(0.1 * 400.0 / 2.1)


def test_a_failed_or_reset_read_is_no_figure_never_zero() -> None:
    failed = counter_edges_figure(edge(1.0, 5.0), edge(2.0, None), COUNTER)
    assert failed.energy_j is None and "read_failed" in failed.flags
    reset = counter_edges_figure(edge(1.0, 5.0), edge(2.0, 1.0), COUNTER)
    assert reset.energy_j is None and "counter_reset" in reset.flags
    blind = counter_edges_figure(edge(1.0, 5.0), edge(1.05, 5.0), COUNTER)
    assert blind.energy_j is None and "counter_not_updated" in blind.flags


def test_a_counter_that_did_not_move_falls_back_to_edge_power_with_all_of_it_uncertain() -> None:
    f = counter_edges_figure(edge(1.0, 5.0, 100.0), edge(1.05, 5.0, 120.0), COUNTER)
    assert f.energy_j == pytest.approx(110.0 * 0.05)
    assert f.uncertainty_j == f.energy_j
    assert "estimated_from_edge_power" in f.flags and "counter_not_updated" in f.flags
    # Seen 400 W before: the truth may be up to 400 W × 50 ms, and the uncertainty says so.
    g = counter_edges_figure(edge(1.0, 5.0), edge(1.05, 5.0, 100.0), COUNTER, 400.0)
    assert g.energy_j == pytest.approx(5.0) and g.uncertainty_j == pytest.approx(20.0 - 5.0)


def test_sim_power_takes_the_timeline_path_cheap_and_full() -> None:
    with Monitor(["sim:constant,w=5"]) as mon:
        assert mon.health()["timeline"] == ["sim:constant"]
        mon.begin("a")
        mon.begin("b")  # windows may overlap
        time.sleep(0.2)
        a = mon.end("a")
        time.sleep(0.1)
        b = mon.end("b")
        with pytest.raises(PowerdError):
            mon.end("a")
    for r in (a, b):
        assert r.energy_j == pytest.approx(5.0 * r.duration_s, rel=1e-3)
        assert r.uncertainty_j is None and r.flags == ("uncertainty_not_computed",)
    assert b.duration_s > a.duration_s
    with Monitor(["sim:square,high=10,low=2,period=0.07,duty=0.5"], full=True) as mon:
        mon.begin("x")
        with pytest.raises(PowerdError):
            mon.begin("x")
        time.sleep(0.3)
        x = mon.end("x")
    assert x.uncertainty_j is not None and x.uncertainty_j > 0
    assert x.energy_j is not None and 2.0 * x.duration_s < x.energy_j < 10.0 * x.duration_s


def test_a_failing_sampled_probe_is_reported_in_the_result() -> None:
    class Broken:
        poll_interval_s = 0.01

        def __init__(self) -> None:
            self.ch = Channel("broken:0", "power", "telemetry", 0.01)

        def channels(self) -> list[Channel]:
            return [self.ch]

        def read(self, now_utc_ns: int) -> list[object]:
            raise OSError("device unplugged")

        def problems(self) -> list[str]:
            return []

        def close(self) -> None:
            return None

    with Monitor([Broken()]) as mon:  # type: ignore[list-item]
        mon.begin("w")
        time.sleep(0.05)
        r = mon.end("w")
        health = mon.health()
    assert r.energy_j is None and "no_figure" in r.flags and "no_reading_after_end" in r.flags
    assert any("device unplugged" in p for p in r.problems)
    assert health["problems"] >= 1
