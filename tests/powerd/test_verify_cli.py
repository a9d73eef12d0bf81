"""``powerd verify`` end to end: the sim source (analytic truth), a tiny CMD, a few seconds each.

Real parts only: the CLI in a subprocess, real probes (sim), the real store, HTTP API and CMD.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from powerd.probes.sim.waveform import parse_spec

SLEEP = "import time; time.sleep(0.25)"
# the workload knows its own count and reports it as a workload of `powerd verify` may
COUNTING = (
    "import os, time; time.sleep(0.25); open(os.environ['POWERD_COUNT_FILE'], 'w').write('40')"
)


def verify(
    tmp: Path, protocol: str, *args: str, code: str = SLEEP
) -> subprocess.CompletedProcess[str]:
    (tmp / "p.toml").write_text(protocol)
    env = {**os.environ, "POWERD_STATE_DIR": str(tmp / "st")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "powerd",
            "verify",
            str(tmp / "p.toml"),
            "--out",
            str(tmp / "out"),
            "--quiet",
            *args,
            "--",
            sys.executable,
            "-c",
            code,
        ],
        env=env,
        text=True,
        capture_output=True,
        check=False,
        timeout=120,
    )


def result(tmp: Path, run: str) -> dict[str, Any]:
    return dict(json.loads((tmp / "out" / f"{run}.json").read_text()))


def by_claim(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["claim"]: c for c in res["verification"]["claims"]}


STABLE = """
probes = ["sim:constant,w=20"]
[warmup]
until_stable = true
max_s = 5
[stability]
window_s = 0.4
power_pct = 1
[trials]
n = 2
pause_s = 0.1
"""


def test_true_false_and_borderline_claims(tmp_path: Path) -> None:
    """20 W constant, 40 units per trial (written by CMD), idle known to be 5 W: the truth is
    20 W gross, 15 W net, and each claim's verdict follows from it."""
    claims = [
        "mean_power_w <= 21",  # true
        "mean_power_w <= 19",  # false
        "mean_power_w <= 20",  # the truth itself: must straddle
        "mean_power_w >= 14.5 net",  # true (net = 15 W)
        "mean_power_w <= 14 net",  # false
        "units_per_j >= 0.01",  # true
        "j_per_unit <= 0.001",  # false
    ]
    proto = f"claims = {json.dumps(claims)}\n" + STABLE + "[idle]\npower_w = 5.0\n"
    r = verify(tmp_path, proto, "--run", "v1", code=COUNTING)
    assert r.returncode == 1, r.stderr  # a claim is not supported
    res = result(tmp_path, "v1")
    v = res["verification"]
    assert v["verdict"] == "not supported" and v["exit_code"] == 1
    assert v["stability"]["reached"] is True
    assert v["stability"]["temperature"]["checked"] is False
    trials = [p for p in res["phases"] if p["phase"] == "trial"]
    assert [p["trial"] for p in trials] == [1, 2]
    wave = parse_spec("constant,w=20").waveform
    for p in trials:
        assert p["count"] == 40 and p["flags"] == []
        truth = wave.energy_j(p["t_begin_ns"], p["t_end_ns"])
        assert abs(p["energy_j"] - truth) <= p["uncertainty_j"]
    got = {c: x["verdict"] for c, x in by_claim(res).items()}
    assert got == {
        "mean_power_w <= 21": "supported",
        "mean_power_w <= 19": "not supported",
        "mean_power_w <= 20": "inconclusive",
        "mean_power_w >= 14.5 net": "supported",
        "mean_power_w <= 14 net": "not supported",
        "units_per_j >= 0.01": "supported",
        "j_per_unit <= 0.001": "not supported",
    }
    border = by_claim(res)["mean_power_w <= 20"]
    assert abs(border["margin_u"]) <= 1.0 and "straddles" in border["reason"]
    # the band is no wider than U: a claim 1.01 U away from the figure is decided
    assert by_claim(res)["mean_power_w <= 19"]["margin_u"] > 1.0
    assert "SUPPORTED" in r.stdout and "overall: NOT SUPPORTED (exit 1)" in r.stdout
    html = (tmp_path / "out" / "v1.html").read_text()
    assert 'id="verification"' in html and "mean_power_w &lt;= 19" in html


CLIENT = (
    "import os, time\n"
    "from powerd.client import PowerdClient\n"
    "with PowerdClient() as c:\n"
    "    with c.phase('infer', trial=int(os.environ['POWERD_TRIAL'])) as ph:\n"
    "        time.sleep(0.25)\n"
    "        ph.count = 25\n"
)


def test_all_supported_exits_0_with_a_measured_idle(tmp_path: Path) -> None:
    """The workload reports its count through powerd.client (its own phase ``infer``)."""
    claims = ["mean_power_w <= 25", "j_per_unit <= 1", "energy_j >= 1"]
    proto = (
        f"claims = {json.dumps(claims)}\ncount_phase = 'infer'\n"
        + STABLE
        + "[idle]\nseconds = 0.3\n"
    )
    r = verify(tmp_path, proto, "--run", "v2", code=CLIENT)
    assert r.returncode == 0, r.stdout + r.stderr
    res = result(tmp_path, "v2")
    names = [p["phase"] for p in res["phases"]]
    assert names[:2] == ["idle", "warmup"] and names.count("trial") == 2
    assert [p["count"] for p in res["phases"] if p["phase"] == "trial"] == [25, 25]
    assert all(c["verdict"] == "supported" for c in res["verification"]["claims"])


def test_a_ramp_that_never_settles_is_not_stable_and_inconclusive(tmp_path: Path) -> None:
    proto = """
claims = ["mean_power_w <= 1000"]
probes = ["sim:ramp,low=10,high=50,period=3"]
[warmup]
until_stable = true
max_s = 1.0
[stability]
window_s = 0.5
power_pct = 2
[trials]
n = 1
"""
    r = verify(tmp_path, proto, "--run", "v3")
    assert r.returncode == 3, r.stdout + r.stderr
    res = result(tmp_path, "v3")
    st = res["verification"]["stability"]
    assert st["reached"] is False and st["last_check"]["max_deviation_pct"] > 2
    assert "within the cap" in st["reason"]
    (trial,) = [p for p in res["phases"] if p["phase"] == "trial"]
    assert "not_stable" in trial["flags"]
    (c,) = res["verification"]["claims"]
    assert c["verdict"] == "inconclusive" and "would be supported" in c["reason"]
    assert "not_stable" in c["reason"]


def test_tiny_preset_flags_short_trials_and_uses_none(tmp_path: Path) -> None:
    proto = """
preset = "tiny"
claims = ["mean_power_w <= 100"]
probes = ["sim:constant,w=20"]
[stability]
required = false
"""
    r = verify(tmp_path, proto, "--run", "v4", code="pass")
    assert r.returncode == 3, r.stdout + r.stderr
    res = result(tmp_path, "v4")
    trials = [p for p in res["phases"] if p["phase"] == "trial"]
    assert len(trials) == 5 and all("too_short" in p["flags"] for p in trials)
    (c,) = res["verification"]["claims"]
    assert c["verdict"] == "inconclusive" and c["usable_trials"] == 0
    assert c["aggregate"] == "median" and "too_short" in c["reason"]


def test_usage_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    r = verify(tmp_path, 'claims = ["mean_power_w < 3"]\nprobes = ["sim:constant,w=1"]\n')
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("powerd: error: protocol ") and "claims[0]" in r.stderr
    r = verify(tmp_path, 'claims = ["mean_power_w <= 3"]\n')
    assert r.returncode == 2 and "no probe" in r.stderr
    assert not (tmp_path / "out").exists()
    help_text = subprocess.run(
        [sys.executable, "-m", "powerd", "verify", "--help"],
        text=True,
        capture_output=True,
        check=True,
    ).stdout
    assert "0 all claims supported, 1 a claim not supported, 3 inconclusive" in help_text
