"""The nvml probe as a user meets it: ``powerd measure`` and ``powerd probes`` against the fake
libnvidia-ml.so.1, loaded by LD_LIBRARY_PATH in the powerd process, through the real nvidia-ml-py.

One measured run serves several tests: three fake GPUs, one healthy, one whose counter restarts
from 0 mid-run (a driver reload), one lost mid-run. Each channel's energy is checked against the
exact integral of its GPU's waveform over the run's own [t_begin_ns, t_end_ns].
"""

from __future__ import annotations

import ctypes.util
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.probes.nvml.fakenvml import ROOT, FakeGpu, fake_env, write_config
from tests.tools import run_powerd

HEALTHY = FakeGpu(wave="square,high=280,low=220,period=2,duty=0.5", arch="hopper")
RESET = FakeGpu(wave="square,high=150,low=110,period=1.5,duty=0.4", arch="volta")
LOST = FakeGpu(wave="square,high=90,low=60,period=0.02,duty=0.5", arch="ampere", mig=True)
RUN_S = 3
RESET_AFTER_S = 2.5  # after powerd starts: inside the run, which begins ~1 s after start
LOST_AFTER_S = 3.0


def powerd(
    env: dict[str, str], state: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return run_powerd(*args, state=state, base_env=env, cwd=ROOT, timeout_s=timeout)


@dataclass(frozen=True)
class Measured:
    gpus: list[FakeGpu]
    run: dict[str, Any]
    stderr: str


@pytest.fixture(scope="module")
def measured(fake_lib: Path, tmp_path_factory: pytest.TempPathFactory) -> Measured:
    tmp = tmp_path_factory.mktemp("nvml-measure")
    now = time.time_ns()
    gpus = [
        HEALTHY,
        FakeGpu(**{**RESET.__dict__, "reset_at_ns": now + int(RESET_AFTER_S * 1e9)}),
        FakeGpu(**{**LOST.__dict__, "lost_at_ns": now + int(LOST_AFTER_S * 1e9)}),
    ]
    config = write_config(tmp / "scenario", gpus, start_ns=now - 3_600_000_000_000)
    out = tmp / "D"
    r = powerd(
        fake_env(fake_lib, config),
        tmp / "st",
        "measure",
        "--probe",
        "nvml",
        "--run",
        "R",
        "--count",
        "10",
        "--out",
        str(out),
        "--quiet",
        "--",
        "sleep",
        str(RUN_S),
    )
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "R.json").read_text())
    (phase,) = res["phases"]
    for g, what in ((gpus[1], "reset_at_ns"), (gpus[2], "lost_at_ns")):
        at = getattr(g, what)
        assert phase["t_begin_ns"] < at < phase["t_end_ns"], f"{what} fell outside the run"
    return Measured(gpus, phase, r.stderr)


def truth_j(m: Measured, gpu: int) -> float:
    wf = m.gpus[gpu].waveform
    return wf.energy_j(m.run["t_begin_ns"], m.run["t_end_ns"])


@pytest.mark.parametrize("kind", ["energy", "power"])
def test_healthy_gpu_is_within_its_uncertainty_and_one_percent(
    measured: Measured, kind: str
) -> None:
    ch = measured.run["channels"][f"nvml:0:{kind}"]
    truth = truth_j(measured, 0)
    assert abs(ch["energy_j"] - truth) <= ch["uncertainty_j"]
    assert abs(ch["energy_j"] - truth) / truth < 0.01
    assert set(ch["flags"]) <= {"periodic_load"}  # a square polled on a grid locked to it
    assert ch["source_class"] == "telemetry"
    assert ch["method"] == ("counter" if kind == "energy" else "trapezoid")
    inst = ch["instrument"]  # telemetry: named by the GPU's name and UUID, never calibrated
    assert inst["maker"] == "NVIDIA" and inst["model"] and inst["serial"].startswith("GPU-")
    assert "calibration" not in ch


def test_reset_counter_is_bridged_flagged_and_still_right(measured: Measured) -> None:
    energy = measured.run["channels"]["nvml:1:energy"]
    power = measured.run["channels"]["nvml:1:power"]
    truth = truth_j(measured, 1)
    assert energy["flags"] == ["counter_reset"]
    assert abs(energy["energy_j"] - truth) <= energy["uncertainty_j"]
    # The fake's 1.5 s square is polled on a grid it is locked to: periodic_load, no other flag.
    assert set(power["flags"]) <= {"periodic_load"}
    assert abs(power["energy_j"] - truth) <= power["uncertainty_j"]
    assert abs(power["energy_j"] - truth) / truth < 0.01


def test_lost_gpu_is_flagged_incomplete_and_reported(measured: Measured) -> None:
    chans = measured.run["channels"]
    for kind in ("energy", "power"):
        assert "incomplete" in chans[f"nvml:2:{kind}"]["flags"]
        assert chans[f"nvml:2:{kind}"]["coverage"] < 1.0
    power = chans["nvml:2:power"]
    assert abs(power["energy_j"] - truth_j(measured, 2)) <= power["uncertainty_j"]
    assert "nvml:2:energy, nvml:2:power" in measured.stderr
    assert "NVML_ERROR_GPU_IS_LOST" in measured.stderr


def test_lost_gpu_counter_is_within_its_uncertainty(measured: Measured) -> None:
    energy = measured.run["channels"]["nvml:2:energy"]
    assert abs(energy["energy_j"] - truth_j(measured, 2)) <= energy["uncertainty_j"]


def test_counters_are_primary_and_compared_with_power(measured: Measured) -> None:
    chans = measured.run["channels"]
    for i in range(3):
        energy, power = chans[f"nvml:{i}:energy"], chans[f"nvml:{i}:power"]
        assert energy["primary"] and not power["primary"]
        assert energy["counter_to_power_ratio"] > 0
    ratio = chans["nvml:0:energy"]["counter_to_power_ratio"]
    assert abs(ratio - 1.0) < 0.02
    flags = measured.run["flags"]
    assert "counter_reset" in flags and "incomplete" in flags


@pytest.fixture(scope="module")
def three_gpus(fake_lib: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    config = write_config(tmp_path_factory.mktemp("cfg") / "three", [HEALTHY, RESET, LOST])
    return fake_env(fake_lib, config)


def test_probes_lists_nvml_available_with_its_gpus(
    three_gpus: dict[str, str], tmp_path: Path
) -> None:
    r = powerd(three_gpus, tmp_path, "probes")
    assert r.returncode == 0, r.stderr
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("nvml ")]
    assert line.split()[1] == "available"
    assert "3 GPU(s), driver 550.54.15" in line
    assert "GPU 1 NVIDIA Fake Volta 1 [Volta]" in line and "MIG enabled" in line


def test_probes_without_the_library_says_missing_and_why(tmp_path: Path) -> None:
    if ctypes.util.find_library("nvidia-ml"):
        pytest.skip("this host has a real NVML library")
    r = powerd(fake_env(None, None), tmp_path, "probes")
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("nvml ")]
    assert line.split()[1] == "missing"
    assert "NVML library libnvidia-ml.so.1 not found: no NVIDIA driver on this host" in line


def test_probes_says_broken_when_init_fails(fake_lib: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "cfg", [HEALTHY], init_error=9)
    r = powerd(fake_env(fake_lib, config), tmp_path, "probes")
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("nvml ")]
    assert line.split()[1] == "broken"
    assert "NVML init failed" in line and "NVML_ERROR_DRIVER_NOT_LOADED" in line


def test_probes_with_no_gpu_says_missing(fake_lib: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "cfg", [])
    r = powerd(fake_env(fake_lib, config), tmp_path, "probes")
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("nvml ")]
    assert line.split()[1] == "missing" and "no NVIDIA GPU found (driver 550.54.15)" in line


def test_measure_without_nvml_warns_and_uses_the_other_probes(tmp_path: Path) -> None:
    if ctypes.util.find_library("nvidia-ml"):
        pytest.skip("this host has a real NVML library")
    env = fake_env(None, None)
    args = ["measure", "--run", "w", "--out", str(tmp_path), "--quiet"]
    r = powerd(
        env, tmp_path / "st", *args, "--probe", "nvml", "--probe", "sim:constant", "--", "true"
    )
    assert r.returncode == 0, r.stderr
    assert (
        "libnvidia-ml.so.1 not found" in r.stderr and "measuring with the other probes" in r.stderr
    )
    alone = powerd(env, tmp_path / "st2", *args, "--probe", "nvml", "--", "true")
    assert alone.returncode == 2 and "nothing can be measured" in alone.stderr


def test_measure_rejects_an_unknown_gpu_in_one_line(
    three_gpus: dict[str, str], tmp_path: Path
) -> None:
    args = ["measure", "--run", "x", "--out", str(tmp_path), "--probe", "nvml:7", "--", "true"]
    r = powerd(three_gpus, tmp_path, *args)
    assert r.returncode == 2
    assert r.stderr.strip() == "powerd: error: nvml: no GPU 7; this host has indices 0-2"
