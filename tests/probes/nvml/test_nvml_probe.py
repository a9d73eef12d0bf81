"""The nvml probe through the real nvidia-ml-py binding against the fake libnvidia-ml.so.1.

Each test writes a scenario, runs ``drive_probe.py`` in a new process whose LD_LIBRARY_PATH holds
the fake, and checks what the probe produced against the scenario's exact model: the counter's
value at its update instants, the waveform's power, what is not supported, what got lost.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from powerd.probes.nvml.probe import POLL_FRACTION
from tests.probes.nvml.fakenvml import DRIVE, ROOT, FakeGpu, fake_env, run_driver, write_config

SLOW = "square,high=280,low=220,period=2,duty=0.5"
FAST = "square,high=200,low=100,period=0.02,duty=0.5"  # 1 s averages of it are its mean, 150 W


def drive(
    fake_lib: Path,
    tmp: Path,
    gpus: list[FakeGpu],
    spec: str = "",
    seconds: float = 1.0,
    temperatures: bool = False,
    **config: Any,
) -> dict[str, Any]:
    """Run the probe for ``seconds`` against a scenario; returns drive_probe.py's JSON."""
    cfg = write_config(tmp / "scenario", gpus, **config)
    extra = ["temperatures"] if temperatures else []
    return run_driver(DRIVE, fake_lib, cfg, spec, str(seconds), *extra)


def channel(out: dict[str, Any], cid: str) -> dict[str, Any]:
    (ch,) = [c for c in out["channels"] if c["id"] == cid]
    return dict(ch)


def counter_model_mj(gpu: FakeGpu, since_ns: int, update_ns: int, t_ns: int) -> int:
    """The fake's counter at its update instant nearest ``t_ns`` (mJ, floored)."""
    u = round(t_ns / update_ns) * update_ns
    return math.floor(gpu.waveform.energy_j(since_ns, u) * 1000.0)


def test_counter_samples_are_exact_si_values_stamped_at_their_updates(
    fake_lib: Path, tmp_path: Path
) -> None:
    gpu = FakeGpu(wave=SLOW)
    start = time.time_ns() - 10**12
    out = drive(fake_lib, tmp_path, [gpu], seconds=1.5, start_ns=start)
    assert out["available"]["ok"]
    energy = channel(out, "nvml:0:energy")
    assert energy["kind"] == "energy" and energy["source_class"] == "telemetry"
    assert energy["accuracy"]["reading_frac"] == 0.05
    assert (
        energy["measures"]
        == channel(out, "nvml:0:power")["measures"]
        == "GPU-fa4e0000-0000-4000-8000-000000000000"
    )
    s = out["samples"]["nvml:0:energy"]
    t, v = np.array(s["t_ns"]), np.array(s["value"])
    assert len(t) >= 10  # learning's changes plus ~10 per second of reading
    assert bool((np.diff(t) > 0).all()) and bool((np.diff(v) > 0).all()), "no repeats"
    for t_ns, value_j in zip(t.tolist(), v.tolist(), strict=True):
        want = counter_model_mj(gpu, start, 100_000_000, t_ns)
        assert abs(value_j * 1000 - want) <= 1, "J from mJ, at the update nearest its stamp"
    # One update per sample: stamps are ~one update period apart, never half of one.
    gaps = np.diff(t) / 1e8
    assert bool((np.abs(gaps - np.round(gaps)) < 0.3).all())


def test_instant_field_is_the_waveform_in_watts_with_its_own_timestamp(
    fake_lib: Path, tmp_path: Path
) -> None:
    gpu = FakeGpu(wave=SLOW)
    out = drive(fake_lib, tmp_path, [gpu], seconds=1.5)
    power = channel(out, "nvml:0:power")
    assert power["kind"] == "power" and "NVML_FI_DEV_POWER_INSTANT" in power["description"]
    assert "average" not in power["description"]
    s = out["samples"]["nvml:0:power"]
    t = np.array(s["t_ns"], np.int64)
    assert len(t) >= 20 and len(s["source_t_ns"]) == len(t)
    truth = gpu.waveform.power_w(t)
    phase = np.mod(t, gpu.waveform.period_ns)
    near_edge = (np.abs(phase - gpu.waveform.high_ns) < 20_000_000) | (phase < 20_000_000)
    assert np.array_equal(np.array(s["value"])[~near_edge], truth[~near_edge])
    assert out["problems"] == []


def test_fallback_to_power_usage_is_labelled_a_one_second_average_on_ampere(
    fake_lib: Path, tmp_path: Path
) -> None:
    gpus = [
        FakeGpu(wave=FAST, arch="ampere", instant=False),
        FakeGpu(wave=FAST, arch="volta", instant=False),
        FakeGpu(wave=FAST, arch="ampere", instant=False, name="NVIDIA A100-SXM4-40GB"),
    ]
    out = drive(fake_lib, tmp_path, gpus)
    averaged = channel(out, "nvml:0:power")
    assert "nvmlDeviceGetPowerUsage: 1 s average on Ampere and later" in averaged["description"]
    assert averaged["stamp_uncertainty_s"] == 0.5
    assert "instantaneous on this GPU" in channel(out, "nvml:1:power")["description"]
    assert "instantaneous on this GPU" in channel(out, "nvml:2:power")["description"]  # GA100
    # The fake's trailing 1 s average of a 20 ms square wave is its mean, 150 W.
    assert out["samples"]["nvml:0:power"]["value"]
    assert set(out["samples"]["nvml:0:power"]["value"]) == {150.0}
    for i in range(3):
        assert (
            f"nvml:{i}: no instant power (field 186: NVML_ERROR_NOT_SUPPORTED)" in out["problems"]
        )


def test_unsupported_counter_is_never_created_and_says_why(fake_lib: Path, tmp_path: Path) -> None:
    out = drive(fake_lib, tmp_path, [FakeGpu(wave=SLOW, arch="pascal"), FakeGpu(wave=SLOW)])
    ids = [c["id"] for c in out["channels"]]
    assert ids == ["nvml:0:power", "nvml:1:energy", "nvml:1:power"]
    (note,) = [p for p in out["problems"] if p.startswith("nvml:0:")]
    assert "no energy counter" in note and "NVML_ERROR_NOT_SUPPORTED" in note
    assert "Volta and later" in note
    assert (
        "GPU 0" in out["available"]["reason"] and "no energy counter" in out["available"]["reason"]
    )
    assert out["samples"]["nvml:0:power"]["value"]


def test_a_lost_gpu_stops_alone_with_one_problem(fake_lib: Path, tmp_path: Path) -> None:
    lost_at = time.time_ns() + 2_000_000_000  # after open (~0.5 s of learning), before the end
    gpus = [FakeGpu(wave=SLOW), FakeGpu(wave=SLOW, lost_at_ns=lost_at)]
    out = drive(fake_lib, tmp_path, gpus, seconds=3.0)
    lost = [p for p in out["problems"] if "is lost" in p]
    assert len(lost) == 1
    assert lost[0].startswith("nvml:1:energy, nvml:1:power: GPU 1 (GPU-fa4e0001")
    assert "NVML_ERROR_GPU_IS_LOST" in lost[0] and "no longer read" in lost[0]
    for kind in ("energy", "power"):
        assert max(out["samples"][f"nvml:1:{kind}"]["t_ns"]) < lost_at
        assert max(out["samples"][f"nvml:0:{kind}"]["t_ns"]) > lost_at + 300_000_000


def test_a_counter_reset_is_passed_on_raw(fake_lib: Path, tmp_path: Path) -> None:
    start = time.time_ns() - 10**12
    reset_at = time.time_ns() + 1_500_000_000
    gpu = FakeGpu(wave=SLOW, reset_at_ns=reset_at)
    out = drive(fake_lib, tmp_path, [gpu], seconds=2.5, start_ns=start)
    s = out["samples"]["nvml:0:energy"]
    t, v = np.array(s["t_ns"]), np.array(s["value"])
    drops = np.flatnonzero(np.diff(v) < 0)
    assert len(drops) == 1, "one drop, left for the integrator to bridge"
    after = drops[0] + 1
    assert t[after] > reset_at and v[after] < 30.0
    for t_ns, value_j in zip(t.tolist(), v.tolist(), strict=True):
        since = reset_at if t_ns > reset_at + 50_000_000 else start
        if abs(t_ns - reset_at) > 50_000_000:
            assert abs(value_j * 1000 - counter_model_mj(gpu, since, 100_000_000, t_ns)) <= 1
    assert out["problems"] == []


@pytest.mark.parametrize("update_ms", [100, 40])
def test_learned_update_period_sets_the_poll_interval_to_about_half(
    fake_lib: Path, tmp_path: Path, update_ms: int
) -> None:
    out = drive(fake_lib, tmp_path, [FakeGpu(wave=SLOW)], seconds=0.2, energy_update_ms=update_ms)
    learned_ns = out["learned_ns"]["0"]
    assert learned_ns == pytest.approx(update_ms * 1e6, rel=0.02)
    assert out["poll_interval_s"] == pytest.approx(POLL_FRACTION * learned_ns / 1e9)
    assert 0.4 < out["poll_interval_s"] / (update_ms / 1e3) <= 0.5
    energy = channel(out, "nvml:0:energy")
    assert energy["nominal_period_s"] == pytest.approx(learned_ns / 1e9)
    assert f"updates every {learned_ns / 1e6:.1f} ms (learned)" in energy["description"]


def test_learning_can_be_skipped_and_then_assumes_100_ms(fake_lib: Path, tmp_path: Path) -> None:
    out = drive(fake_lib, tmp_path, [FakeGpu(wave=SLOW)], spec="learn=0", seconds=0.5)
    assert out["learned_ns"] == {"0": None}
    assert out["poll_interval_s"] == pytest.approx(POLL_FRACTION * 0.1)
    assert len(out["samples"]["nvml:0:energy"]["t_ns"]) >= 2


def test_mig_enabled_gpu_is_read_at_the_parent(fake_lib: Path, tmp_path: Path) -> None:
    out = drive(fake_lib, tmp_path, [FakeGpu(wave=SLOW, arch="ampere", mig=True)])
    assert (
        "MIG enabled: whole GPU, read at the parent device"
        in channel(out, "nvml:0:energy")["description"]
    )
    assert "MIG enabled" in out["available"]["reason"]
    assert out["samples"]["nvml:0:energy"]["value"] and out["samples"]["nvml:0:power"]["value"]


def test_gpu_selection_by_index_and_uuid(fake_lib: Path, tmp_path: Path) -> None:
    gpus = [FakeGpu(wave=SLOW), FakeGpu(wave=SLOW), FakeGpu(wave=SLOW)]
    by_index = drive(fake_lib, tmp_path, gpus, spec="2,0", seconds=0.1)
    assert [c["id"] for c in by_index["channels"]] == [
        "nvml:2:energy",
        "nvml:2:power",
        "nvml:0:energy",
        "nvml:0:power",
    ]
    uuid = "GPU-fa4e0001-0000-4000-8000-000000000001"
    by_uuid = drive(fake_lib, tmp_path, gpus, spec=f"{uuid},learn=0.3", seconds=0.1)
    assert [c["id"] for c in by_uuid["channels"]] == ["nvml:1:energy", "nvml:1:power"]
    missing = drive(fake_lib, tmp_path, gpus, spec="GPU-nope", seconds=0.1)
    assert missing["error"] == "nvml: no GPU with UUID 'GPU-nope' (`powerd probes` lists them)"


def run_python(code: str, env: dict[str, str]) -> str:
    r = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, text=True, capture_output=True, check=False
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_importing_the_family_does_not_import_pynvml(fake_lib: Path) -> None:
    code = "import sys, powerd.probes.nvml; print('pynvml' in sys.modules)"
    assert run_python(code, fake_env(fake_lib, None)) == "False"


def test_without_the_binding_available_says_how_to_install(fake_lib: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "scenario", [FakeGpu(wave=SLOW)])
    # Hides an installed nvidia-ml-py the way an absent one looks: the import fails.
    code = (
        "import sys; sys.modules['pynvml'] = None\n"
        "from powerd.probes.nvml import family\n"
        "a = family.available(); print(a.ok, a.broken, a.reason, sep='|')"
    )
    ok, broken, reason = run_python(code, fake_env(fake_lib, cfg)).split("|")
    assert (ok, broken) == ("False", "False")
    assert reason.startswith("nvidia-ml-py (module pynvml) is not installed: pip install")


def test_core_temperature_is_read_where_the_gpu_reports_one(fake_lib: Path, tmp_path: Path) -> None:
    """GPU 0 warms from 40 °C towards 70 °C (τ 0.3 s); GPU 1's driver reports none: it is left
    out after one problem, and its power channels are unaffected."""
    hot = FakeGpu(wave=SLOW, temp_c=70.0, temp_start_c=40.0, temp_tau_ms=300.0)
    gpus = [hot, FakeGpu(wave=SLOW)]
    out = drive(fake_lib, tmp_path, gpus, seconds=1.5, temperatures=True, start_ns=time.time_ns())
    temps = [t["nvml:0:temperature"] for t in out["temperatures"]]
    assert all("nvml:1:temperature" not in t for t in out["temperatures"])
    assert temps == sorted(temps) and temps[-1] >= 69.0  # whole °C, rising, settled
    assert sum("nvml:1: no temperature" in p for p in out["problems"]) == 1
    assert {c["id"] for c in out["channels"]} >= {"nvml:1:energy"}
