"""``powerd verify`` against the fake NVML GPU: its core temperature gates the stability
criterion (issue 14 item 1)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.powerd.test_verify_temperature import PROTOCOL, verify
from tests.probes.nvml.fakenvml import FakeGpu, fake_env, write_config


def test_fake_nvml_gpu_temperature_gates_stability(fake_lib: Path, tmp_path: Path) -> None:
    """The GPU's power is constant; its core warms 45 → 75 °C (τ 0.4 s, whole °C): stable only
    once the readings stay within ±1 °C over the window."""
    gpu = FakeGpu(wave="constant,w=200", temp_c=75.0, temp_start_c=45.0, temp_tau_ms=400.0)
    config = write_config(tmp_path / "scenario", [gpu], start_ns=time.time_ns())
    res = verify(tmp_path, PROTOCOL.format(probe="nvml", max_s=10), fake_env(fake_lib, config))
    st = res["verification"]["stability"]
    assert st["reached"] is True, st
    sensor = st["temperature"]["sensors"]["nvml:0:temperature"]
    assert st["temperature"]["checked"] is True and sensor["stable"] is True
    assert sensor["mean_c"] >= 72.0  # whole °C, within ±1 of its mean near 75
