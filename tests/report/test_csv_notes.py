"""``<run>.csv`` starts with ``#`` notes giving each phase's figures exactly as the terminal table
rounds them (issue 12 item 7: one number per figure), and CSV readers still read its data."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from powerd.report.files import write_csv
from powerd.report.table import csv_notes, format_table


def phase(**over: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "phase": "run",
        "trial": 0,
        "duration_s": 2.0011,
        "energy_j": 10.00863,
        "uncertainty_j": 0.003412,
        "mean_power_w": 5.00156,
        "count": 100,
        "unit": "inference",
        "j_per_unit": 0.1000863,
        "j_per_unit_uncertainty": 0.00003412,
        "net_energy_j": 3.99,
        "net_uncertainty_j": 0.0519,
        "devices": ["edge-01"],
        "flags": ["incomplete"],
    }
    p.update(over)
    return p


def test_notes_carry_the_tables_rounded_figures() -> None:
    result = {"run": "r1", "phases": [phase(), phase(phase="idle", net_energy_j=None)]}
    notes = csv_notes(result, "powerd 9.9")
    assert all(n.startswith("# ") for n in notes)
    assert "powerd 9.9" in notes[0] and "run r1" in notes[0]
    assert "contract 2" in notes[1] and "JSON report" in notes[1]
    run_note, idle_note = (n for n in notes if n.startswith("# phase "))
    assert run_note == (
        "# phase run trial 0: duration 2.0011 s, energy 10.0086 ± 0.0034 J, "
        "mean power 5.0016 W, 0.100086 ± 0.000034 J/inference, net energy 3.990 ± 0.052 J, "
        "devices edge-01, flags incomplete"
    )
    assert "net energy -," in idle_note
    # every cell of the printed row is in the note, character for character
    table = format_table(result).splitlines()
    row = next(line.split() for line in table if line.split()[:2] == ["run", "0"])
    for cell in row[2:]:
        assert cell.partition("/")[0] in run_note, cell


def test_a_phase_without_figures_says_so() -> None:
    p = phase(
        energy_j=None,
        uncertainty_j=None,
        mean_power_w=None,
        j_per_unit=None,
        j_per_unit_uncertainty=None,
        net_energy_j=None,
        net_uncertainty_j=None,
        devices=[],
        flags=["no_data"],
    )
    (note,) = (n for n in csv_notes({"run": "r2", "phases": [p]}, "powerd") if "phase" in n[:8])
    assert note == (
        "# phase run trial 0: duration 2.0011 s, energy -, mean power -, -, net energy -, "
        "devices -, flags no_data"
    )


def test_readers_skip_the_notes(tmp_path: Path) -> None:
    path = tmp_path / "r1.csv"
    t = np.array([1_000, 2_000, 3_000], np.int64)
    v = np.array([5.0, 5.5, 6.0])
    notes = csv_notes({"run": "r1", "phases": [phase()]}, "powerd")
    write_csv(path, {"sim:constant": (t, v)}, {"sim:constant": "W"}, notes)
    lines = path.read_text().splitlines()
    assert lines[: len(notes)] == notes and lines[len(notes)] == "channel,t_ns,value,unit"
    # the comment rule pandas' read_csv(comment="#") applies: a line starting with "#" is skipped
    with path.open(newline="") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    assert [(r["channel"], int(r["t_ns"]), float(r["value"]), r["unit"]) for r in rows] == [
        ("sim:constant", 1_000, 5.0, "W"),
        ("sim:constant", 2_000, 5.5, "W"),
        ("sim:constant", 3_000, 6.0, "W"),
    ]
    # numpy's loader with "#" comments reads the same numbers
    data = np.loadtxt(path, delimiter=",", comments="#", skiprows=len(notes) + 1, usecols=(1, 2))
    assert data[:, 0].tolist() == [1_000, 2_000, 3_000] and data[:, 1].tolist() == [5.0, 5.5, 6.0]
    # without notes the file is exactly the plain long format
    write_csv(path, {"sim:constant": (t, v)}, {"sim:constant": "W"})
    assert path.read_text().splitlines()[0] == "channel,t_ns,value,unit"
