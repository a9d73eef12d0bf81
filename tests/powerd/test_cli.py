"""The command line end to end, as a user runs it: measure, report, markers, probes, bad input."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from powerd.probes.sim.waveform import parse_spec
from tests.tools import run_powerd

SQUARE = "square,high=10,low=2,period=0.1,duty=0.5"


def powerd(state: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_powerd(*args, state=state, stdin=stdin)


def dump(state: Path) -> list[str]:
    db = state / "powerd.db"
    if not db.exists():
        return []
    con = sqlite3.connect(db)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def test_measure_constant_gives_energy_within_its_uncertainty(tmp_path: Path) -> None:
    out = tmp_path / "D"
    r = powerd(
        tmp_path / "st",
        "measure",
        "--probe",
        "sim:constant,w=5",
        "--run",
        "r1",
        "--count",
        "100",
        "--out",
        str(out),
        "--",
        "sleep",
        "2",
    )
    assert r.returncode == 0, r.stderr
    res = load(out / "r1.json")
    (p,) = res["phases"]
    assert p["phase"] == "run" and p["count"] == 100 and p["duration_s"] >= 2.0
    assert abs(p["energy_j"] - 5 * p["duration_s"]) <= p["uncertainty_j"]
    assert p["j_per_unit"] == pytest.approx(p["energy_j"] / 100, rel=1e-12)
    assert p["timing"]["source"] == "marker" and p["timing"]["uncertainty_ns"] > 0
    assert p["flags"] == []
    assert "j_per_unit" in r.stdout and "/inference" in r.stdout
    lines = (out / "r1.csv").read_text().splitlines()
    notes = [x for x in lines if x.startswith("#")]
    csv = lines[len(notes) :]
    assert lines[: len(notes)] == notes  # the notes come first, then the data
    assert csv[0] == "channel,t_ns,value,unit" and csv[1].startswith("sim:constant,")
    assert len(csv) - 1 >= p["channels"]["sim:constant"]["samples"]
    # the notes give the phase's figures exactly as the printed table rounds them
    cells = next(c for c in map(str.split, r.stdout.splitlines()) if c[:2] == ["run", "0"])
    (note,) = [x for x in notes if x.startswith("# phase run trial 0:")]
    assert f"energy {cells[3]} ± {cells[4]} J" in note
    assert f"{cells[6].partition('/')[0]} ± {cells[7]} J/inference" in note
    assert "<table" in (out / "r1.html").read_text()


def test_square_wave_matches_the_analytic_integral_and_report_recomputes(tmp_path: Path) -> None:
    out, again = tmp_path / "D", tmp_path / "E"
    r = powerd(
        tmp_path / "st",
        "measure",
        "--probe",
        f"sim:{SQUARE}",
        "--run",
        "sq",
        "--idle",
        "0.5",
        "--count",
        "7",
        "--unit",
        "token",
        "--out",
        str(out),
        "--",
        "sleep",
        "1",
    )
    assert r.returncode == 0, r.stderr
    res = load(out / "sq.json")
    idle, run = res["phases"]
    wf = parse_spec(SQUARE).waveform
    for p in (idle, run):
        truth = wf.energy_j(p["t_begin_ns"], p["t_end_ns"])
        assert abs(p["energy_j"] - truth) / truth < 1e-3
        assert abs(p["energy_j"] - truth) <= p["uncertainty_j"]
    assert idle["phase"] == "idle" and run["unit"] == "token"
    assert run["idle_power_w"] == pytest.approx(idle["mean_power_w"])
    assert run["net_energy_j"] == pytest.approx(
        run["energy_j"] - idle["mean_power_w"] * run["duration_s"]
    )
    rep = powerd(tmp_path / "st", "report", "sq", "--out", str(again))
    assert rep.returncode == 0, rep.stderr
    assert load(again / "sq.json") == res
    assert (again / "sq.csv").read_text() == (out / "sq.csv").read_text()


def test_exit_code_of_the_command_is_passed_through(tmp_path: Path) -> None:
    r = powerd(
        tmp_path / "st",
        "measure",
        "--probe",
        "sim:constant,w=1",
        "--run",
        "x",
        "--out",
        str(tmp_path),
        "--",
        "sh",
        "-c",
        "exit 3",
    )
    assert r.returncode == 3
    assert (tmp_path / "x.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--probe", "nosuch:1", "--run", "b", "--", "true"], "unknown probe 'nosuch'"),
        (["--probe", "sim:square,hight=3", "--run", "b", "--", "true"], "unknown key 'hight'"),
        (["--probe", "sim:constant", "--run", "b c", "--", "true"], "--run 'b c'"),
        (["--probe", "sim:constant", "--run", "b"], "no command to measure"),
        (["--probe", "sim:constant", "--run", "b", "--", "no-such-cmd-xyz"], "cannot run"),
        (
            ["--probe", "sim:constant", "--probe", "sim:constant", "--run", "b", "--", "true"],
            "two probes give channel sim:constant",
        ),
        (["--probe", "sim:constant", "--run", "r0", "--", "true"], "already exists"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    st = tmp_path / "st"
    first = powerd(
        st,
        "measure",
        "--probe",
        "sim:constant",
        "--run",
        "r0",
        "--out",
        str(tmp_path),
        "--quiet",
        "--",
        "true",
    )
    assert first.returncode == 0, first.stderr
    before = dump(st)
    r = powerd(st, "measure", *args)
    assert r.returncode == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("powerd: error: ")
    assert dump(st) == before


def marker(**kw: Any) -> str:
    return json.dumps({"v": 1, "run": "m1", "phase": "p", **kw})


def test_markers_apply_all_or_nothing_with_reasons(tmp_path: Path) -> None:
    st = tmp_path / "st"
    good = "\n".join(
        [
            marker(event="begin", seq=1, t_ns=10**18),
            marker(event="end", seq=2, t_ns=10**18 + 10**9, count=5),
        ]
    )
    r = powerd(st, "markers", "apply", stdin=good)
    assert r.returncode == 0, r.stderr
    assert "applied 2 marker(s), 0 repeat(s) ignored, 1 phase(s) closed" in r.stdout
    again = powerd(st, "markers", "apply", stdin=good)
    assert "applied 0 marker(s), 2 repeat(s) ignored" in again.stdout
    before = dump(st)
    cases = {
        "{not json": "line 1: not UTF-8 JSON",
        marker(event="end", seq=9, t_ns=5): "without a begin",
        marker(event="begin", seq=3, t_ns=7)
        + "\n"
        + marker(event="end", seq=4, t_ns=7): "not after its begin",
        marker(event="begin", seq=5, t_ns=7, count=1): "count belongs on the end marker",
    }
    for text, reason in cases.items():
        r = powerd(st, "markers", "apply", stdin=text)
        assert r.returncode == 2 and reason in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
        assert dump(st) == before


def test_report_of_unknown_run_and_missing_store(tmp_path: Path) -> None:
    r = powerd(tmp_path / "none", "report", "zz")
    assert r.returncode == 2 and "no store at" in r.stderr
    powerd(tmp_path / "st", "markers", "apply", stdin=marker(event="begin", seq=1, t_ns=1))
    r = powerd(tmp_path / "st", "report", "nope")
    assert r.returncode == 2 and "no run 'nope'" in r.stderr
    r = powerd(tmp_path / "st", "report", "m1")
    assert r.returncode == 2 and "no completed phase" in r.stderr


def test_probes_lists_sim_and_help_documents_the_spec(tmp_path: Path) -> None:
    r = powerd(tmp_path, "probes")
    assert r.returncode == 0 and "sim" in r.stdout and "available" in r.stdout
    h = powerd(tmp_path, "measure", "--help")
    assert "square,high=10,low=2,period=0.1,duty=0.5" in h.stdout and "noise" in h.stdout
