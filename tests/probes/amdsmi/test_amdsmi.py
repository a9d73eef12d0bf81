"""amdsmi: the probe against a fake ``amdsmi`` module, one case folder per GPU/ROCm shape.

Each ``testdata/<case>/`` holds ``devices.json`` (what the fake binding in ``fake/amdsmi``
returns: the power-info and energy dicts with the key names of that ROCm version) and
``case.json``::

    {"description": ..., "args": "<spec>", "reads": N, "sleep_s": S,
     "available": {"ok": bool, "broken": bool, "reason_contains": "..."},
     "unavailable": "text",                 # open must fail saying this (then nothing else)
     "channels": {"<id>": {<Channel field>: value, "accuracy": {...},
                           "description_contains": "..."}},     # ids exact
     "power_w": {"<id>": W},                # every power sample equals this
     "energy_rate_w": {"<id>": W},          # slope of the energy samples
     "energy_first_j": {"<id>": J}, "energy_samples": {"<id>": n}, "samples_count": {...},
     "problems": ["substring", ...]}        # each found among the problems

ONE loop runs every case in a subprocess with the fake first on PYTHONPATH (``drive.py``).
Pure conversions are checked directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from powerd.probes.amdsmi.readings import choose_power_key, energy, power_w
from tests.probes.clitool import opened_as_expected

HERE = Path(__file__).parent
TESTDATA = HERE / "testdata"
CASES = sorted(p for p in TESTDATA.iterdir() if (p / "case.json").is_file())
ROOT = HERE.parents[2]


def drive(case: Path, spec: str, reads: int, sleep_s: float, tmp: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE / "fake"), str(ROOT)]),
        "FAKE_AMDSMI": str(case / "devices.json"),
        "FAKE_AMDSMI_LOG": str(tmp / "calls.log"),
    }
    r = subprocess.run(
        [sys.executable, str(HERE / "drive.py"), "amdsmi", spec, str(reads), str(sleep_s)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_case(case: Path, tmp_path: Path) -> None:
    want = json.loads((case / "case.json").read_text())
    got = drive(case, want["args"], want["reads"], want["sleep_s"], tmp_path)
    if not opened_as_expected(got, want):
        return  # the expected open error (checked)
    samples = got["samples"]
    for cid, w in want.get("power_w", {}).items():
        assert samples[cid] and {v for _, v in samples[cid]} == {w}, (cid, samples.get(cid))
    for cid, w in want.get("energy_rate_w", {}).items():
        (t0, e0), (t1, e1) = samples[cid][0], samples[cid][-1]
        assert len(samples[cid]) >= 3
        assert (e1 - e0) / ((t1 - t0) / 1e9) == pytest.approx(w, rel=0.05), cid
    for cid, j in want.get("energy_first_j", {}).items():
        assert samples[cid][0][1] == pytest.approx(j, rel=1e-9)
    for cid, n in {**want.get("energy_samples", {}), **want.get("samples_count", {})}.items():
        assert len(samples.get(cid, [])) == n, (cid, samples.get(cid))
    for text in want["problems"]:
        assert any(text in p for p in got["problems"]), (text, got["problems"])
    assert 0.0 not in [v for s in samples.values() for _, v in s]
    assert (tmp_path / "calls.log").read_text().count("shut_down") == 2  # available + close


def test_power_key_order_and_na() -> None:
    assert choose_power_key({"current_socket_power": 402, "average_socket_power": "N/A"}).key == (
        "current_socket_power"
    )
    assert choose_power_key({"current_socket_power": "N/A", "average_socket_power": 94}).key == (
        "average_socket_power"
    )
    assert choose_power_key({"power": 50}).key == "power"
    pick = choose_power_key({"average_socket_power": 0xFFFF})
    assert pick.key is None and "65535" in pick.reason
    assert "no power key" in choose_power_key({"gfx_voltage": 800}).reason
    assert power_w({"socket_power": "N/A"}, "socket_power") is None


def test_energy_conversion_both_key_names() -> None:
    new = energy({"energy_accumulator": 1_000_000, "counter_resolution": 15.259, "timestamp": 5})
    old = energy({"power": 1_000_000, "counter_resolution": 15.259, "timestamp": 5})
    assert new.energy_j == old.energy_j == pytest.approx(15.259)
    assert new.resolution_j == pytest.approx(15.259e-6)
    assert energy({"energy_accumulator": 5, "counter_resolution": 0}).energy_j is None
    assert energy({"counter_resolution": 15.3}).energy_j is None


def test_missing_binding_is_missing(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-c", "from powerd.probes.amdsmi import family; a = family.available(); "
         "print(a.ok, a.broken, a.reason)"],
        env=env, capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path,
    )  # fmt: skip
    if "amdsmi is not installed" not in r.stdout:
        pytest.skip(f"a real amdsmi is importable here: {r.stdout.strip()}")
    assert r.stdout.startswith("False False amdsmi is not installed (pip install amdsmi)")


def test_measure_with_the_fake_binding(tmp_path: Path) -> None:
    case = TESTDATA / "mi300x-rocm-7.0.2"
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE / "fake"), str(ROOT)]),
        "FAKE_AMDSMI": str(case / "devices.json"),
        "POWERD_STATE_DIR": str(tmp_path / "state"),
    }
    r = subprocess.run(
        [sys.executable, "-m", "powerd", "measure", "--probe", "amdsmi",
         "--run", "a1", "--quiet", "--out", str(out), "--", "sleep", "1"],
        env=env, text=True, capture_output=True, check=False, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (phase,) = json.loads((out / "a1.json").read_text())["phases"]
    chans = phase["channels"]
    assert chans["amdsmi:0:energy"]["primary"] and chans["amdsmi:1:energy"]["primary"]
    assert not chans["amdsmi:0:power"]["primary"]  # the same GPU: never added to its counter
    assert phase["energy_j"] / phase["duration_s"] == pytest.approx(402 + 310, rel=0.03)
