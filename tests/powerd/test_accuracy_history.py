"""A meter's range moving mid-run: each phase uses the accuracy in effect for its samples.

The store keeps each channel's accuracy history (schema 3); ``compute_run`` integrates a phase
before the move with the small range's accuracy, a phase after it with the large range's, and a
phase across it with the larger bound, flagged ``range_changed``. Schema-2 stores migrate.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from powerd.agent.wire import parse_marker
from powerd.block import Block
from powerd.channel import Accuracy, Channel
from powerd.integrate import Window, integrate
from powerd.phases import stamp
from powerd.results import accuracy_in_effect
from powerd.runs import compute_run
from powerd.store import SCHEMA_VERSION, Store

T0 = 1_800_000_000_000_000_000
S = 1_000_000_000
SMALL = Accuracy(0.001, 0.002, 75.0)  # 15 V × 5 A
LARGE = Accuracy(0.001, 0.002, 1500.0)  # 150 V × 10 A
CH = Channel(id="wt300:m:p1", kind="power", source_class="meter", nominal_period_s=0.1)
CHANGE_S = 20.0


def mark(st: Store, phase: str, event: str, t_s: float) -> None:
    obj: dict[str, Any] = {"v": 1, "run": "r", "phase": phase, "event": event}
    obj["t_ns"] = T0 + int(t_s * S)
    st.put_marker(stamp("h", parse_marker(obj), T0 + int(t_s * S)))


def expected_uncertainty_j(st: Store, t0_s: float, t1_s: float, acc: Accuracy) -> float:
    """What integrate() gives for the window with ``acc`` (computed apart from results.py)."""
    w = Window(T0 + int(t0_s * S), T0 + int(t1_s * S), 0, 0)
    t, v = st.samples(CH.id, w.t_begin_ns, w.t_end_ns)
    u = integrate(t, v, w, replace(CH, accuracy=acc)).uncertainty_j
    assert u is not None
    return u


def test_each_phase_uses_the_accuracy_in_effect_for_its_samples(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as st:
        st.put_channel(replace(CH, accuracy=SMALL))
        t = T0 + np.arange(0, 401, dtype=np.int64) * (S // 10)
        st.append(Block.of(CH.id, t, np.full(t.size, 40.0)))
        st.flush()
        st.put_accuracy(CH.id, T0, SMALL)
        st.put_accuracy(CH.id, T0 + int(CHANGE_S * S), LARGE)  # SR,V / SR,A at 20 s
        for phase, a, b in (("before", 2, 12), ("across", 15, 25), ("after", 28, 38)):
            mark(st, phase, "begin", a)
            mark(st, phase, "end", b)
        res = compute_run(st, "r")
        by = {p["phase"]: p for p in res["phases"]}
        u_small = expected_uncertainty_j(st, 2, 12, SMALL)
        u_large = expected_uncertainty_j(st, 28, 38, LARGE)
        assert u_large > 5 * u_small  # the range term dominates: a 20× larger range
        assert by["before"]["uncertainty_j"] == pytest.approx(u_small)
        assert by["after"]["uncertainty_j"] == pytest.approx(u_large)
        assert by["across"]["uncertainty_j"] == pytest.approx(
            expected_uncertainty_j(st, 15, 25, LARGE)
        )
        assert "range_changed" in by["across"]["flags"]
        assert "range_changed" not in by["before"]["flags"] + by["after"]["flags"]
        entry = by["across"]["channels"][CH.id]
        assert "range_changed" in entry["flags"] and entry["accuracy_range_w"] == 1500.0
        assert by["before"]["channels"][CH.id]["accuracy_range_w"] == 75.0
        # the figures themselves do not depend on the accuracy
        assert by["before"]["mean_power_w"] == pytest.approx(40.0)


def test_without_history_the_declared_accuracy_applies(tmp_path: Path) -> None:
    assert accuracy_in_effect(SMALL, [], 0) == (SMALL, False)
    # a record after the window's begin: the declared one holds until then, the larger wins
    acc, changed = accuracy_in_effect(SMALL, [(5, LARGE)], 0)
    assert (acc, changed) == (LARGE, True)
    acc, changed = accuracy_in_effect(LARGE, [(0, SMALL)], 0)  # record at begin replaces it
    assert (acc, changed) == (SMALL, False)
    mixed = Accuracy(0.003, 0.001, 100.0, 0.5)
    acc, changed = accuracy_in_effect(SMALL, [(0, SMALL), (5, mixed)], 0)
    assert changed and acc == Accuracy(0.003, 0.002, 100.0, 0.5)


def test_a_schema_2_store_migrates_to_3(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with Store(path) as st:
        st.put_channel(CH)
    db = sqlite3.connect(path)
    db.execute("DROP TABLE accuracy_history")
    db.execute("UPDATE meta SET value='2' WHERE key='schema'")
    db.commit()
    db.close()
    with Store(path) as st:
        assert st.accuracy_history(CH.id, 0, T0) == []
        st.put_accuracy(CH.id, T0, LARGE)
        assert st.accuracy_history(CH.id, T0 + 1, T0 + 2) == [(T0, LARGE)]
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0] == "3"
    assert SCHEMA_VERSION == 3
    db.close()
