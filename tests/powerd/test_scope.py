"""What a phase covers: its source's own device unless the begin marker names devices; devices are
summed only when named together; seq counts per (source, run); schema-1 stores migrate."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from powerd.agent.wire import parse_marker
from powerd.block import Block
from powerd.channel import Channel
from powerd.daemon import Daemon
from powerd.phases import stamp
from powerd.probes.registry import open_probe
from powerd.runs import compute_run
from powerd.store import Store
from powerd.timeline import Timeline

T0 = 1_800_000_000_000_000_000
S = 1_000_000_000


def chan(cid: str, device: str = "", source_class: str = "meter") -> Channel:
    return Channel(
        id=cid,
        kind="power",
        source_class=source_class,  # type: ignore[arg-type]
        nominal_period_s=0.01,
        device=device,
    )


CHANNELS = {
    chan("edge-01/sim:a", source_class="telemetry"): 7.0,
    chan("edge-02/sim:b", source_class="telemetry"): 3.0,
    chan("sim:local"): 5.0,
    chan("sim:bench", device="edge-01"): 6.0,
}


def fill(st: Store) -> None:
    t = T0 + np.arange(0, 1001, dtype=np.int64) * (S // 100)
    for ch, w in CHANNELS.items():
        st.put_channel(ch)
        st.append(Block.of(ch.id, t, np.full(t.size, w)))
    st.flush()


def mark(st: Store, source: str, seq: int | None, event: str, t_s: float, **kw: Any) -> None:
    obj = {"v": 1, "run": "r", "phase": kw.pop("phase", "p"), "event": event}
    obj |= {"t_ns": T0 + int(t_s * S)} | kw
    if seq is not None:
        obj["seq"] = seq
    st.put_marker(stamp(source, parse_marker(obj), T0 + int(t_s * S)))


@pytest.mark.parametrize(
    ("source", "device", "mean_w", "covered", "devices"),
    [
        # an agent's phase: its telemetry and the bench meter assigned to it (the meter is primary)
        ("edge-01", None, 6.0, {"edge-01/sim:a", "sim:bench"}, ["edge-01"]),
        ("edge-02", None, 3.0, {"edge-02/sim:b"}, ["edge-02"]),
        # a harness that is no device: the daemon's own unassigned channels
        ("harness", None, 5.0, {"sim:local"}, ["local"]),
        ("harness", ["edge-02"], 3.0, {"edge-02/sim:b"}, ["edge-02"]),
        # two devices named together are summed (edge-01's meter + edge-02's telemetry)
        ("harness", ["edge-01", "edge-02"], 9.0, None, ["edge-01", "edge-02"]),
    ],
)
def test_a_phase_covers_its_device_only_unless_the_marker_names_several(
    tmp_path: Path,
    source: str,
    device: list[str] | None,
    mean_w: float,
    covered: set[str] | None,
    devices: list[str],
) -> None:
    with Store(tmp_path / "s.db") as st:
        fill(st)
        extra = {} if device is None else {"device": device}
        mark(st, source, 1, "begin", 2, **extra)
        mark(st, source, 2, "end", 6, count=4)
        (phase,) = compute_run(st, "r")["phases"]
    assert phase["devices"] == devices
    assert phase["mean_power_w"] == pytest.approx(mean_w)
    if covered is not None:
        assert set(phase["channels"]) == covered
    for cid, entry in phase["channels"].items():
        assert entry["device"] in devices, cid


def test_seq_counts_per_run_and_markers_without_seq_dedupe_on_content(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as st:
        ticks = iter(range(10**6))
        d = Daemon(st, Timeline(), lambda: T0 + 10 * S + next(ticks) * S)
        for run in ("r1", "r2"):
            begin = {"v": 1, "run": run, "phase": "p", "event": "begin", "seq": 1, "t_ns": T0 + S}
            end = {"v": 1, "run": run, "phase": "p", "event": "end", "seq": 2, "t_ns": T0 + 2 * S}
            assert d.submit_marker("harness", begin).applied
            assert d.submit_marker("harness", begin).repeat
            assert d.submit_marker("harness", end).applied
        other = {"v": 1, "run": "r1", "phase": "q", "event": "begin", "seq": 1, "t_ns": T0}
        assert "already used in run 'r1'" in (d.submit_marker("harness", other).error or "")
        bare = {"v": 1, "run": "r3", "phase": "p", "event": "begin"}
        assert d.submit_marker("harness", bare).applied
        assert d.submit_marker("harness", bare).repeat
        assert d.submit_marker("harness", {**bare, "event": "end"}).applied
        assert len(st.markers("r3")) == 2
        assert st.runs() == ["r1", "r2", "r3"]


def test_a_schema_1_store_is_migrated_and_keeps_its_markers(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES('schema', '1');
        CREATE TABLE markers(
            id INTEGER PRIMARY KEY, source TEXT NOT NULL, seq INTEGER NOT NULL, run TEXT NOT NULL,
            t_ns INTEGER NOT NULL, received_ns INTEGER NOT NULL, marker TEXT NOT NULL,
            timing TEXT NOT NULL, UNIQUE(source, seq));
        CREATE INDEX markers_by_run ON markers(run);
        """
    )
    db.execute(
        "INSERT INTO markers VALUES(1, 'h', 1, 'old', 5, 5, ?, ?)",
        (
            '{"v": 1, "run": "old", "phase": "p", "event": "begin", "seq": 1}',
            '{"source": "receive-time", "offset_ns": 0, "uncertainty_ns": 0}',
        ),
    )
    db.commit()
    db.close()
    with Store(path) as st:
        assert [m.marker.run for m in st.markers()] == ["old"]
        mark(st, "h", 1, "begin", 1, phase="q")  # seq 1 again, in another run: now allowed
        assert len(st.markers()) == 2
    with Store(path) as st:
        assert len(st.markers()) == 2


def test_device_is_a_key_of_every_probe_spec() -> None:
    probe = open_probe("sim:constant,w=5,id=bench,device=edge-01")
    (ch,) = probe.channels()
    assert ch.device == "edge-01" and ch.device_id == "edge-01"
    assert probe.poll_interval_s > 0
    (plain,) = open_probe("sim:constant,w=5").channels()
    assert plain.device_id == "local"
