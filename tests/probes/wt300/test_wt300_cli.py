"""``powerd measure`` with a wt300 probe against the simulator: energy per phase against the exact
truth, the integrator against the integrated power, and a cable pulled and put back mid-run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from powerd.probes.serialsim import PtySimulator
from powerd.probes.wt300.sim import make
from tests.probes.wt300.helpers import T_NS, WF, truth_power_w, update_of, wait_for

SPEC = "rate=0.1,vrange=15,irange=5"
IN_FLIGHT_NS = 300_000_000


def measure(tmp_path: Path, probe: str, *cmd: str) -> subprocess.Popen[str]:
    env = {**os.environ, "POWERD_STATE_DIR": str(tmp_path / "state")}
    args = ["measure", "--probe", probe, "--run", "r1", "--count", "10"]
    args += ["--out", str(tmp_path / "out"), "--quiet", "--", *cmd]
    return subprocess.Popen(
        [sys.executable, "-m", "powerd", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out + err


def result(tmp_path: Path) -> dict[str, Any]:
    res: dict[str, Any] = json.loads((tmp_path / "out" / "r1.json").read_text())
    (phase,) = res["phases"]
    return dict(phase)


def within_uncertainty(entry: dict[str, Any], truth_j: float) -> bool:
    return bool(abs(entry["energy_j"] - truth_j) <= entry["uncertainty_j"])


def test_energy_matches_the_truth_and_the_integrator_agrees_with_the_power(
    tmp_path: Path,
) -> None:
    model = make("wt310", WF, {"rate": "0.1"})
    link = tmp_path / "wt310"
    with PtySimulator(model, link):
        rc, log = finish(measure(tmp_path, f"wt300:{link},{SPEC}", "sleep", "3"))
    assert rc == 0, log
    p = result(tmp_path)
    truth = WF.energy_j(p["t_begin_ns"], p["t_end_ns"])
    power, counter = p["channels"]["wt300:wt310:p1"], p["channels"]["wt300:wt310:e1"]
    assert within_uncertainty(power, truth), (power, truth)
    assert within_uncertainty(counter, truth), (counter, truth)
    assert counter["primary"] and not power["primary"] and counter["method"] == "counter"
    assert within_uncertainty(p, truth) and p["energy_j"] == counter["energy_j"]
    # the integrator and the integrated power agree: within their uncertainties, and closely
    gap_j = abs(counter["energy_j"] - power["energy_j"])
    assert gap_j <= counter["uncertainty_j"] + power["uncertainty_j"]
    assert abs(counter["counter_to_power_ratio"] - 1) < 0.03
    assert "counter_power_mismatch" not in p["flags"] and "incomplete" not in p["flags"]


def test_unplug_and_replug_mid_run_is_a_flagged_gap_and_loses_nothing_else(
    tmp_path: Path,
) -> None:
    model = make("wt310", WF, {"rate": "0.1"})
    link = tmp_path / "wt310"
    with PtySimulator(model, link) as sim:
        proc = measure(tmp_path, f"wt300:{link},{SPEC}", "sh", "-c", "sleep 5; exit 3")
        wait_for(lambda: len(model.served) >= 15, timeout_s=60)
        unplug_ns = time.time_ns()
        sim.unplug()
        time.sleep(1.2)
        replug_ns = time.time_ns()
        sim.replug()
        rc, log = finish(proc)
    assert rc == 3, log
    p = result(tmp_path)
    power, counter = p["channels"]["wt300:wt310:p1"], p["channels"]["wt300:wt310:e1"]
    assert "incomplete" in p["flags"]
    assert 1.2 <= power["gap_s"] <= 1.2 + 3.0, power
    # the unplug is a recorded probe_down gap, from the last sample before to the first after
    assert "probe_down" in p["flags"] and "probe_down" in power["flags"]
    (gap,) = [g for g in power["gaps"] if g["reason"] == "probe_down"]
    assert gap["t_begin_ns"] < unplug_ns and gap["t_end_ns"] > replug_ns
    truth = WF.energy_j(p["t_begin_ns"], p["t_end_ns"])
    assert within_uncertainty(power, truth) and within_uncertainty(counter, truth)
    assert abs(counter["energy_j"] / truth - 1) < 0.01  # the meter kept integrating

    with (tmp_path / "out" / "r1.csv").open() as f:  # "#" lines: the notes above the header
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    stored = {
        update_of(int(r["t_ns"])): float(r["value"])
        for r in rows
        if r["channel"] == "wt300:wt310:p1"
    }
    for k, v in stored.items():  # nothing invented: each stored value is its update's truth
        assert abs(v - truth_power_w(k)) <= 2e-4 * abs(truth_power_w(k)) + 1e-9
    t0, t1 = p["t_begin_ns"], p["t_end_ns"]
    served = {k for k, _ in list(model.served) if t0 <= k * T_NS - T_NS // 2 <= t1}

    def in_flight(k: int) -> bool:
        return any(abs(k * T_NS - edge) <= IN_FLIGHT_NS for edge in (unplug_ns, replug_ns))

    lost = sorted(k for k in served - set(stored) if not in_flight(k))
    assert not lost, f"served but not stored: {lost}"
    assert any(k * T_NS < unplug_ns for k in stored) and any(k * T_NS > replug_ns for k in stored)
