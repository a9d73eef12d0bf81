"""``powerd verify``'s stability criterion with a device temperature (issue 14 item 1): the sim
source's thermal model and the fake NVML GPU's core sensor, through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from powerd.probes.sim.thermal import ThermalModel
from powerd.verify.stability import TemperatureLog

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000


def test_log_settles_only_within_bounds_over_the_whole_window() -> None:
    model = ThermalModel(settle_c=60.0, start_c=30.0, tau_s=1.0)
    log = TemperatureLog()
    for k in range(101):  # 10 s at 10 Hz
        log.add(T0 + k * S // 10, {"gpu": model.at(k / 10)})
    early = log.check(T0 + 2 * S, 1.0, 1.0)
    late = log.check(T0 + 10 * S, 1.0, 1.0)
    assert early is not None and not early.stable  # still warming ~5 °C per second
    assert late is not None and late.stable and late.sensors["gpu"]["readings"] == 11
    beyond = log.check(T0 + 30 * S, 1.0, 1.0)  # no reading in that window: never taken as met
    assert beyond is not None and not beyond.stable
    assert not beyond.sensors["gpu"]["covers_window"]
    assert TemperatureLog().check(T0, 1.0, 1.0) is None  # no sensor: power only


def verify(tmp: Path, protocol: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    (tmp / "p.toml").write_text(protocol)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "powerd",
            "verify",
            str(tmp / "p.toml"),
            "--out",
            str(tmp / "out"),
            "--run",
            "v",
            "--quiet",
            "--",
            sys.executable,
            "-c",
            "import time; time.sleep(0.2)",
        ],
        env={**(env or os.environ), "POWERD_STATE_DIR": str(tmp / "st")},
        text=True,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert r.returncode in (0, 3), r.stdout + r.stderr
    res = dict(json.loads((tmp / "out" / "v.json").read_text()))
    res["stdout"] = r.stdout
    return res


PROTOCOL = """
claims = ["mean_power_w <= 1000"]
probes = ["{probe}"]
[warmup]
until_stable = true
max_s = {max_s}
[stability]
window_s = 0.5
power_pct = 2
temperature_c = 1
[trials]
n = 1
"""


def test_sim_temperature_settles_after_the_power_does(tmp_path: Path) -> None:
    """Power is constant from the start; the temperature needs ~1.2 s (30 °C away, τ 0.3 s) to
    stay within ±1 °C: stability waits for it."""
    probe = "sim:constant,w=20,temp=60,temp_start=30,temp_tau=0.3"
    res = verify(tmp_path, PROTOCOL.format(probe=probe, max_s=8))
    st = res["verification"]["stability"]
    assert st["reached"] is True, st
    assert st["time_to_stable_s"] >= 1.0
    temp = st["temperature"]
    assert temp["checked"] is True and temp["stable"] is True and temp["bound_c"] == 1.0
    sensor = temp["sensors"]["sim:constant:temperature"]
    # settled within ±1 °C over 0.5 s: then at most ~1.2 °C short of 60 (slope (60 − T)/τ)
    assert abs(sensor["mean_c"] - 60.0) < 2.0 and sensor["readings"] >= 2
    assert "temperature: largest deviation" in res["stdout"]
    (trial,) = [p for p in res["phases"] if p["phase"] == "trial"]
    assert "not_stable" not in trial["flags"]


def test_sim_temperature_that_keeps_rising_is_not_stable(tmp_path: Path) -> None:
    probe = "sim:constant,w=20,temp=60,temp_start=60,temp_drift=5"
    res = verify(tmp_path, PROTOCOL.format(probe=probe, max_s=1.5))
    st = res["verification"]["stability"]
    assert st["reached"] is False
    assert st["reason"].startswith("temperature not within +-1 °C")
    assert st["last_check"]["power_stable"] is True and st["last_check"]["stable"] is False
    (trial,) = [p for p in res["phases"] if p["phase"] == "trial"]
    assert "not_stable" in trial["flags"]
    assert res["verification"]["claims"][0]["verdict"] == "inconclusive"


def test_a_power_only_probe_leaves_temperature_unchecked(tmp_path: Path) -> None:
    res = verify(tmp_path, PROTOCOL.format(probe="sim:constant,w=20", max_s=3))
    st = res["verification"]["stability"]
    assert st["reached"] is True
    assert (
        st["temperature"]["checked"] is False and "no probe reports" in st["temperature"]["reason"]
    )
