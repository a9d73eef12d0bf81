"""LoadGen logs as phases, end to end with the real MLCommons LoadGen (``mlcommons-loadgen``).

A tiny SUT (loadgen_sut.py) runs under LoadGen as the workload; LoadGen writes its real
mlperf_log_detail.txt. ``powerd measure --loadgen-log`` and ``powerd markers loadgen`` turn it into
a phase; the phase's edges, count and MLPerf-style figures are checked against the log (read here
independently, line by line) and against the sim source's analytic truth.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from powerd.probes.sim.waveform import parse_spec
from tests.tools import run_powerd

SUT = Path(__file__).with_name("loadgen_sut.py")
SQUARE = "square,high=10,low=2,period=0.05,duty=0.3"
HALF_MS_NS = 500_000


def powerd(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_powerd(*args, state=state)


def log_values(logdir: Path) -> dict[str, Any]:
    """Every :::MLLOG key's first value, read independently of powerd's parser."""
    out: dict[str, Any] = {}
    for line in (logdir / "mlperf_log_detail.txt").read_text().splitlines():
        obj = json.loads(line.split(":::MLLOG", 1)[1])
        out.setdefault(obj["key"], obj["value"])
    return out


def utc_ns(stamp: str) -> int:
    dt = datetime.strptime(stamp, "%m-%d-%Y %H:%M:%S.%f").replace(tzinfo=UTC)
    return int(dt.replace(microsecond=0).timestamp()) * 10**9 + dt.microsecond * 1000


def mlperf_truth_w(spec: str, begin_ns: int, end_ns: int) -> tuple[float, int]:
    """The checker's mean over the sim's samples (k × step_ns) strictly inside the window."""
    s = parse_spec(spec)
    k = np.arange(begin_ns // s.step_ns, end_ns // s.step_ns + 2, dtype=np.int64)
    t = k * np.int64(s.step_ns)
    t = t[(t > begin_ns) & (t < end_ns)]
    w = s.waveform.power_w(t)
    w = w[w > 0]
    return float(w.mean()), int(w.size)


def phase(result: dict[str, Any], name: str) -> dict[str, Any]:
    (p,) = [p for p in result["phases"] if p["phase"] == name]
    return p


def check_against_log(p: dict[str, Any], logdir: Path, per_query: bool) -> None:
    v = log_values(logdir)
    begin_ns, end_ns = utc_ns(v["power_begin"]), utc_ns(v["power_end"])
    assert p["t_begin_ns"] == begin_ns + HALF_MS_NS and p["t_end_ns"] == end_ns + HALF_MS_NS
    assert p["timing"]["uncertainty_ns"] == HALF_MS_NS
    queries = v["result_query_count"]
    expected_count = queries if per_query else queries * v["effective_samples_per_query"]
    assert p["count"] == expected_count and p["unit"] == ("query" if per_query else "sample")
    m = p["mlperf"]
    assert m["scenario"] == v["effective_scenario"] and m["query_count"] == queries
    assert (m["power_begin"], m["power_end"]) == (v["power_begin"], v["power_end"])
    window_s = (end_ns - begin_ns) / 1e9
    assert m["window_s"] == pytest.approx(window_s, abs=1e-12)
    truth_w, n = mlperf_truth_w(f"{SQUARE},rate=2000", begin_ns, end_ns)
    assert m["sample_count"] == n and m["avg_power_w"] == pytest.approx(truth_w, rel=1e-12)
    assert m["energy_mj_per_query"] == pytest.approx(truth_w * window_s * 1000 / queries, rel=1e-12)
    # powerd's figures of the same phase: the analytic energy of its window, within U95
    truth_j = parse_spec(SQUARE).waveform.energy_j(p["t_begin_ns"], p["t_end_ns"])
    assert abs(m["powerd_energy_j"] - truth_j) <= m["powerd_uncertainty_j"]
    assert m["powerd_mj_per_query"] == pytest.approx(p["energy_j"] * 1000 / queries)
    assert m["flags"] == []


def test_measure_loadgen_log_single_stream(tmp_path: Path) -> None:
    logdir, out = tmp_path / "lg", tmp_path / "out"
    logdir.mkdir()
    r = powerd(
        tmp_path / "st",
        "measure",
        "--quiet",
        "--probe",
        f"sim:{SQUARE},rate=2000",
        "--run",
        "ss",
        "--out",
        str(out),
        "--loadgen-log",
        str(logdir),
        "--",
        sys.executable,
        str(SUT),
        "SingleStream",
        str(logdir),
    )
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "ss.json").read_text())
    run, lg = phase(res, "run"), phase(res, "loadgen")
    assert run["t_begin_ns"] < lg["t_begin_ns"] < lg["t_end_ns"] < run["t_end_ns"]
    check_against_log(lg, logdir, per_query=True)
    assert "mlperf" not in run
    assert "mlperf loadgen (SingleStream" in r.stdout and "mJ/query" in r.stdout
    assert '<table id="mlperf">' in (out / "ss.html").read_text()

    # the same log again, by hand, as a second phase of the same run: the same figures
    again = powerd(
        tmp_path / "st", "markers", "loadgen", str(logdir), "--run", "ss", "--phase", "lg2"
    )
    assert again.returncode == 0, again.stderr
    assert "applied 2 marker(s)" in again.stdout
    repeat = powerd(
        tmp_path / "st", "markers", "loadgen", str(logdir), "--run", "ss", "--phase", "lg2"
    )
    assert "0 marker(s), 2 repeat(s)" in repeat.stdout
    rep = powerd(tmp_path / "st", "report", "ss", "--out", str(tmp_path / "out2"))
    assert rep.returncode == 0, rep.stderr
    res2 = json.loads((tmp_path / "out2" / "ss.json").read_text())
    assert phase(res2, "lg2")["mlperf"] == phase(res2, "loadgen")["mlperf"]


def test_markers_loadgen_offline_counts_samples(tmp_path: Path) -> None:
    logdir, out = tmp_path / "lg", tmp_path / "out"
    (logdir / "nested").mkdir(parents=True)
    r = powerd(
        tmp_path / "st",
        "measure",
        "--quiet",
        "--probe",
        f"sim:{SQUARE},rate=2000",
        "--run",
        "off",
        "--out",
        str(out),
        "--",
        sys.executable,
        str(SUT),
        "Offline",
        str(logdir / "nested"),
        "--latency-ms",
        "100",
    )
    assert r.returncode == 0, r.stderr
    # found under DIR recursively, as power-dev's client finds it
    lg = powerd(tmp_path / "st", "markers", "loadgen", str(logdir), "--run", "off")
    assert lg.returncode == 0, lg.stderr
    assert "LoadGen Offline" in lg.stdout
    rep = powerd(tmp_path / "st", "report", "off", "--out", str(out))
    assert rep.returncode == 0, rep.stderr
    p = phase(json.loads((out / "off.json").read_text()), "loadgen")
    check_against_log(p, logdir / "nested", per_query=False)
    assert (
        p["mlperf"]["metric"] == "W" and p["mlperf"]["metric_value"] == p["mlperf"]["avg_power_w"]
    )


def test_stale_log_is_refused_and_the_run_still_reported(tmp_path: Path) -> None:
    logdir, out = tmp_path / "lg", tmp_path / "out"
    logdir.mkdir()
    made = subprocess.run(
        [sys.executable, str(SUT), "Offline", str(logdir)],
        check=False,
        capture_output=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    r = powerd(
        tmp_path / "st",
        "measure",
        "--quiet",
        "--probe",
        "sim:constant,w=5",
        "--run",
        "late",
        "--out",
        str(out),
        "--loadgen-log",
        str(logdir),
        "--",
        "true",
    )
    assert r.returncode == 2
    assert "not inside the command's run" in r.stderr
    res = json.loads((out / "late.json").read_text())
    assert [p["phase"] for p in res["phases"]] == ["run"]
