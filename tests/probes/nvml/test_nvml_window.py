"""``powerd.window.Monitor`` on the fake NVML: the counter read at the phase edges.

Each test runs the monitor in a subprocess that loads the fake ``libnvidia-ml.so.1``; the truth
of every window is the fake's waveform integrated over the window the monitor reports.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.probes.nvml.fakenvml import HERE, FakeGpu, run_driver, write_config

DRIVE_WINDOW = HERE / "drive_window.py"
SQUARE = "square,high=300,low=100,period=0.23,duty=0.5"  # changes within most windows


def drive(
    fake_lib: Path,
    tmp: Path,
    gpus: list[FakeGpu],
    spec: str,
    lengths: list[float],
    full: bool = False,
    **config: Any,
) -> dict[str, Any]:
    cfg = write_config(tmp / "scenario", gpus, **config)
    return run_driver(DRIVE_WINDOW, fake_lib, cfg, spec, "1" if full else "0", *map(str, lengths))


def truth_j(gpu: FakeGpu, w: dict[str, Any]) -> float:
    return gpu.waveform.energy_j(w["t_begin_ns"], w["t_end_ns"])


def test_counter_edges_hold_the_truth_within_the_stated_staleness(
    fake_lib: Path, tmp_path: Path
) -> None:
    gpu = FakeGpu(wave=SQUARE)
    lengths = [0.137, 0.537, 0.537, 1.237, 0.337]
    start = time.time_ns() - 10**12
    out = drive(fake_lib, tmp_path, [gpu], "nvml:0,learn=0", lengths, start_ns=start)
    assert out["health_open"]["counter_edges"] == ["nvml:0:energy"]
    assert out["health_open"]["timeline"] == [] and "probes" not in out["health_open"]
    assert out["threads_in_window"] == 1, "no sampler thread between the edges"
    for w in out["windows"]:
        ch = w["channels"]["nvml:0:energy"]
        assert w["primary"] == ["nvml:0:energy"] and w["problems"] == []
        stale = (w["t_end_ns"] - w["t_begin_ns"]) < 10**9  # under 10 updates of 100 ms
        assert ("stale_edges" in w["flags"]) == stale
        staleness = ch["terms_j"]["counter_staleness_j"]
        assert staleness >= 0.1 * 100, "a period at least at the lowest power"
        assert abs(w["energy_j"] - truth_j(gpu, w)) <= w["uncertainty_j"]
    # The stale edges do not cancel on a changing load: some window is off by > 1 %, and the
    # uncertainty says so (it is never the instrument's 5 % alone).
    errors = [abs(w["energy_j"] - truth_j(gpu, w)) / truth_j(gpu, w) for w in out["windows"]]
    assert max(errors) > 0.01
    assert out["health"]["problems"] == 0


def test_a_window_shorter_than_an_update_is_flagged_and_never_zero(
    fake_lib: Path, tmp_path: Path
) -> None:
    gpu = FakeGpu(wave="constant,w=200")
    out = drive(fake_lib, tmp_path, [gpu], "nvml:0,learn=0", [0.02] * 8)
    seen_not_updated = False
    for w in out["windows"]:
        assert w["energy_j"] is not None and w["energy_j"] > 0
        assert abs(w["energy_j"] - truth_j(gpu, w)) <= w["uncertainty_j"]
        if "counter_not_updated" in w["flags"]:
            seen_not_updated = True
            assert "estimated_from_edge_power" in w["flags"]
            assert w["uncertainty_j"] == w["energy_j"], "the whole figure is unobserved"
    assert seen_not_updated, "8 windows of 20 ms: most see no 100 ms update"


def test_a_gpu_lost_inside_a_window_gives_no_figure_and_says_why(
    fake_lib: Path, tmp_path: Path
) -> None:
    lost_at = time.time_ns() + 3 * 10**9  # after the monitor opens (a new Python: ~1 s)
    gpu = FakeGpu(wave="constant,w=200", lost_at_ns=lost_at)
    out = drive(fake_lib, tmp_path, [gpu], "nvml:0,learn=0", [0.3, 4.0, 0.3])
    first, lost, after = out["windows"]
    assert first["energy_j"] is not None and first["problems"] == []
    for w in (lost, after):
        assert w["energy_j"] is None and w["uncertainty_j"] is None
        assert "no_figure" in w["flags"] and "read_failed" in w["flags"]
        assert w["channels"]["nvml:0:energy"]["energy_j"] is None
    assert any("lost" in p for p in lost["problems"])
    assert out["health"]["problems"] >= 1


def test_a_gpu_without_counter_takes_the_timeline_path(fake_lib: Path, tmp_path: Path) -> None:
    gpu = FakeGpu(wave="constant,w=150", arch="pascal")
    out = drive(fake_lib, tmp_path, [gpu], "nvml:0,learn=0", [0.6])
    assert out["health_open"]["counter_edges"] == []
    assert out["health_open"]["timeline"] == ["nvml:0:power"]
    (w,) = out["windows"]
    assert w["primary"] == ["nvml:0:power"] and "uncertainty_not_computed" in w["flags"]
    assert abs(w["energy_j"] - truth_j(gpu, w)) <= 0.02 * truth_j(gpu, w)


def test_full_figures_keep_the_timeline_with_the_uncertainty_model(
    fake_lib: Path, tmp_path: Path
) -> None:
    gpu = FakeGpu(wave=SQUARE)
    start = time.time_ns() - 10**12
    out = drive(fake_lib, tmp_path, [gpu], "nvml:0,learn=0.5", [0.537], full=True, start_ns=start)
    assert out["health_open"]["counter_edges"] == []
    assert sorted(out["health_open"]["timeline"]) == ["nvml:0:energy", "nvml:0:power"]
    assert out["threads_in_window"] == 2, "the sampler thread runs"
    (w,) = out["windows"]
    assert w["primary"] == ["nvml:0:energy"]  # the counter, never summed with its alternative
    assert w["uncertainty_j"] is not None and "uncertainty_not_computed" not in w["flags"]
    assert abs(w["energy_j"] - truth_j(gpu, w)) <= w["uncertainty_j"]
    assert "counter_staleness_j" not in w["channels"]["nvml:0:energy"]["terms_j"]
