"""Cross-checks end to end with a real meter path: ``powerd measure`` with the WT310 simulator
(on a pty, through the wt300 probe) and a telemetry channel measuring the same DUT.

The telemetry is the sim source running the simulator's own waveform scaled by a known factor,
so its bias against the meter is known: 10 % high against a stated ± 2 % is beyond the combined
uncertainty (``sources_disagree``); the WT310's integrator and its integrated power, two views of
one meter, agree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from powerd.probes.serialsim import PtySimulator
from powerd.probes.wt300.sim import make
from tests.probes.wt300.helpers import WF

SPEC = "rate=0.1,vrange=15,irange=5,measures=dut"


def telemetry(scale: float, acc: str) -> str:
    high, low = 40.0 * scale, 5.0 * scale
    return (
        f"sim:square,high={high},low={low},period=1.3,duty=0.5,rate=100,id=npu,"
        f"class=telemetry,measures=dut{acc}"
    )


def run(tmp_path: Path, scale: float, acc: str = ",acc=0.02") -> dict[str, Any]:
    model = make("wt310", WF, {"rate": "0.1"})
    link = tmp_path / "wt310"
    env = {**os.environ, "POWERD_STATE_DIR": str(tmp_path / "state")}
    args = ["measure", "--probe", f"wt300:{link},{SPEC}", "--probe", telemetry(scale, acc)]
    args += ["--run", "r1", "--out", str(tmp_path / "out"), "--", "sleep", "2.5"]
    with PtySimulator(model, link):
        r = subprocess.run(
            [sys.executable, "-m", "powerd", *args],
            env=env,
            text=True,
            capture_output=True,
            check=False,
            timeout=120,
        )
    assert r.returncode == 0, r.stdout + r.stderr
    (phase,) = json.loads((tmp_path / "out" / "r1.json").read_text())["phases"]
    phase["stdout"] = r.stdout
    return dict(phase)


def pairs(p: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(x["a"], x["b"]): x for x in p["cross_checks"]}


def test_meter_and_biased_telemetry_disagree_the_meters_two_views_agree(tmp_path: Path) -> None:
    p = run(tmp_path, 1.10)
    got = pairs(p)
    assert set(got) == {("wt300:wt310:e1", "wt300:wt310:p1"), ("wt300:wt310:e1", "sim:npu")}
    meter_views = got[("wt300:wt310:e1", "wt300:wt310:p1")]
    assert meter_views["agree"] is True, meter_views
    tel = got[("wt300:wt310:e1", "sim:npu")]
    assert tel["agree"] is False and tel["ratio"] < 1 / 1.05, tel
    assert "sources_disagree" in p["flags"]
    assert "sources_disagree" in p["channels"]["sim:npu"]["flags"]
    assert "sources_disagree" not in p["channels"]["wt300:wt310:p1"]["flags"]
    assert "cross-check" in p["stdout"] and "DISAGREE" in p["stdout"]


def test_telemetry_within_its_stated_accuracy_agrees(tmp_path: Path) -> None:
    p = run(tmp_path, 1.005)
    assert all(x["agree"] is True for x in p["cross_checks"]), p["cross_checks"]
    assert "sources_disagree" not in p["flags"]


def test_telemetry_without_a_stated_accuracy_is_unknown(tmp_path: Path) -> None:
    p = run(tmp_path, 1.10, acc="")
    tel = pairs(p)[("wt300:wt310:e1", "sim:npu")]
    assert tel["status"] == "unknown" and tel["agree"] is None and "sim:npu" in tel["reason"]
    assert "sources_disagree" not in p["flags"]
