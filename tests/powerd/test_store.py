"""The embedded store: round trips, WAL, retention, and survival of a SIGKILL mid-write."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from powerd.agent.wire import Marker
from powerd.block import Block
from powerd.channel import Channel
from powerd.phases import stamp
from powerd.store import Retention, Store

T0 = 1_800_000_000_000_000_000
MS = 1_000_000
CH = Channel(id="sim:x", kind="power", source_class="meter", nominal_period_s=1e-3)


def block(start: int, n: int) -> Block:
    t = T0 + (start + np.arange(n, dtype=np.int64)) * MS
    return Block.of(CH.id, t, np.arange(start, start + n, dtype=np.float64))


def test_wal_mode_and_round_trip(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as st:
        st.put_channel(CH)
        for k in range(10):
            st.append(block(k * 100, 100))
            if k % 3 == 2:
                st.flush()
        st.flush()
        assert st.channels() == {CH.id: CH}
        t, v = st.samples(CH.id, T0 + 250 * MS + 1, T0 + 480 * MS)
        assert t[0] == T0 + 250 * MS and t[-1] == T0 + 480 * MS  # neighbours included
        assert np.array_equal(v, np.arange(250, 481, dtype=np.float64))
        t, _ = st.samples(CH.id, T0 + 2000 * MS, T0 + 3000 * MS)
        assert t.tolist() == [T0 + 999 * MS]  # only the neighbour before
    mode = sqlite3.connect(tmp_path / "s.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_markers_and_results(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as st:
        sm = stamp("h", Marker("r1", "p", "begin", 3, t_ns=T0), T0 + 9)
        assert st.put_marker(sm) is True
        assert st.put_marker(sm) is False
        assert st.markers("r1") == [sm] and st.runs() == ["r1"]
        st.put_result({"v": 1, "run": "r1", "phases": []}, T0)
        assert st.result("r1") == {"v": 1, "run": "r1", "phases": []}


def test_retention_by_age_and_by_size(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db", Retention(max_age_s=1.0, max_bytes=16 * 250)) as st:
        st.put_channel(CH)
        for k in range(5):
            st.append(block(k * 100, 100))
            st.flush()
        assert st.sample_count() == 500
        removed = st.prune(T0 + 1250 * MS)  # two blocks end before 0.25 s: gone by age
        assert removed == 2 + 1 and st.sample_count() == 200  # one more to keep <= 250 samples
        assert st.samples(CH.id, T0, T0 + 10**10)[0][0] == T0 + 300 * MS


WRITER = """
import sys, numpy as np
from pathlib import Path
from powerd.block import Block
from powerd.channel import Channel
from powerd.store import Store
ch = Channel(id="sim:x", kind="power", source_class="meter", nominal_period_s=1e-3)
st = Store(Path(sys.argv[1]))
st.put_channel(ch)
k = 0
while True:
    t = 10**18 + (k * 5000 + np.arange(5000, dtype=np.int64)) * 10**6
    st.append(Block.of(ch.id, t, np.full(5000, float(k))))
    st.flush()
    print(k, flush=True)
    k += 1
"""


def test_sigkill_mid_write_leaves_a_store_with_every_commit(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    for attempt in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        committed = -1
        target = 20 + attempt * 7
        while committed < target:
            line = proc.stdout.readline()
            assert line, "writer died early"
            committed = int(line)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with Store(db) as st:
            assert st.integrity_ok()
            blocks = st.sample_count() // 5000
            assert blocks >= committed + 1
            t, _ = st.samples("sim:x", 10**18, 9 * 10**18)
            assert bool((np.diff(t) > 0).all())
            assert json.dumps(st.channels()[CH.id].to_json())
        time.sleep(0)


def test_channels_read_back_as_stored_after_updates(tmp_path: Path) -> None:
    """channels() is parsed once and then kept in step with put_channel (issue 16): what it
    returns equals what a fresh reader of the file sees, and callers cannot alter it."""
    store = Store(tmp_path / "c.db")
    a = Channel(id="e1/sim:a", kind="power", source_class="meter", nominal_period_s=0.1)
    b = Channel(id="e1/sim:b", kind="energy", source_class="telemetry", nominal_period_s=0.1)
    store.put_channel(a)
    assert store.channels() == {a.id: a}
    store.put_channel(b)
    moved = Channel.from_json({**a.to_json(), "stamp_uncertainty_s": 0.0025})
    store.put_channel(moved)
    got = store.channels()
    got.pop(a.id)
    store.flush()
    fresh = Store(tmp_path / "c.db")
    try:
        assert store.channels() == fresh.channels() == {a.id: moved, b.id: b}
    finally:
        fresh.close()
        store.close()


def test_channels_with_data_among_matches_the_scan(tmp_path: Path) -> None:
    store = Store(tmp_path / "d.db")
    t = np.arange(10, dtype=np.int64) * 100 + 1_000
    for cid, shift in (("x/sim:a", 0), ("x/sim:b", 5_000), ("y/sim:c", 0)):
        store.put_channel(Channel(id=cid, kind="power", source_class="meter", nominal_period_s=1))
        store.append(Block(cid, t + shift, np.ones(10)))
    store.flush()
    try:
        for lo, hi in ((0, 500), (0, 1_500), (1_900, 6_000), (7_000, 9_000)):
            scan = store.channels_with_data(lo, hi)
            assert store.channels_with_data(lo, hi, among=["x/sim:a", "x/sim:b", "y/sim:c"]) == scan
            assert store.channels_with_data(lo, hi, among=["x/sim:a"]) == [
                c for c in scan if c == "x/sim:a"
            ]
    finally:
        store.close()
