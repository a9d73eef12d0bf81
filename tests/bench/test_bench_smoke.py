"""The benchmarks still run (smoke sizes). Figures are read from BENCHMARKS.md, never asserted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import run_all  # noqa: E402


def test_run_all_quick_completes_and_writes_results() -> None:
    r = subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    quick = BENCH / "results" / "quick"
    summary = json.loads((quick / "run_all.json").read_text())
    assert not summary["failed"]
    expected = ["integrate", "ingest", "memory", "accuracy"]
    if shutil.which("gcc"):
        expected.append("peers")
    if run_all.have("mosquitto"):
        expected.append("machine_cost")
        if run_all.have("faketime"):
            expected.append("alignment")
    for name in expected:
        data = json.loads((quick / f"{name}.json").read_text())
        assert data["verdict"], name
        assert "|" in data["markdown"], name
    acc = json.loads((quick / "accuracy.json").read_text())
    assert acc["in_process"] and acc["end_to_end"][0]["trials"]


def test_sections_are_replaced_in_place_and_missing_ones_appended() -> None:
    doc = "# B\n\nintro\n\n<!-- bench:a -->\nold\n<!-- /bench:a -->\n\nafter\n"
    out = run_all.replace_section(doc, "a", "new")
    assert "old" not in out and "<!-- bench:a -->\nnew\n<!-- /bench:a -->" in out
    assert out.startswith("# B\n\nintro") and "after" in out
    out = run_all.replace_section(out, "b", "more")
    assert out.rstrip().endswith("<!-- /bench:b -->")


def test_results_of_older_conventions_get_goal_verdict_and_table() -> None:
    res = run_all.normalise(
        {"goal_core_pct": 1.0, "goal_met": False},
        "text\n| a | b |\n| --- | --- |\n| 1 | 2 |\nmore text\n",
    )
    assert res["goal"] == "<= 1 % of one core"
    assert res["verdict"] == "not met"
    assert res["markdown"] == "| a | b |\n| --- | --- |\n| 1 | 2 |"


def test_soak_runs_a_short_faulted_run_and_accounts_for_everything(tmp_path: Path) -> None:
    if not run_all.have("mosquitto"):
        pytest.skip("mosquitto is not installed")
    out = tmp_path / "soak.json"
    r = subprocess.run(
        [
            sys.executable,
            str(BENCH / "soak.py"),
            "--quick",
            "--seconds",
            "12",
            "--fault-every",
            "4",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    data = json.loads(out.read_text())
    res = data["result"]
    assert res["faults"], "no fault was injected"
    assert all(f["kind"] in ("broker", "daemon", "agent", "meter") for f in res["faults"])
    channels = {s["channel"]: s for s in res["samples"]}
    assert set(channels) == {"soak-edge/sim:ramp", "wt300:meter:p1", "wt300:meter:e1"}
    for s in channels.values():
        assert s["expected"] > 0 and s["stored"] > 0
        assert s["missing"] == s["flagged"] + s["producer_down"] + s["lost"]
    assert res["markers"]["sent"] > 0 and res["results"]["results"] > 0
    assert res["monitor"] and res["rss"]["max_mib"] > 0
    assert data["verdict"] and "| samples |" in data["markdown"]
