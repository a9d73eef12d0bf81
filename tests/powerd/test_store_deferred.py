"""Writes the store defers to its next flush (issue 16: one transaction per MQTT marker and per
stamp-uncertainty update was a tenth of a fleet daemon's event loop): committed by the flush,
in arrival order, kept for a later flush when that one fails, and appends never wait for a
commit under way."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from powerd.agent.wire import Marker
from powerd.block import Block
from powerd.channel import Channel
from powerd.phases import stamp
from powerd.store import Store

T0 = 1_800_000_000_000_000_000
CH = Channel(id="a1/sim:x", kind="power", source_class="meter", nominal_period_s=0.1)


def fresh_markers(path: Path) -> list[tuple[str, int]]:
    db = sqlite3.connect(path)
    try:
        return [(r, s) for r, s in db.execute("SELECT run, seq FROM markers ORDER BY id")]
    finally:
        db.close()


def fresh_channel(path: Path, cid: str) -> str | None:
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT json FROM channels WHERE id=?", (cid,)).fetchone()
        return None if row is None else str(row[0])
    finally:
        db.close()


def test_deferred_markers_are_committed_by_the_flush_in_arrival_order(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Store(path) as st:
        a = stamp("a1", Marker("r", "p", "begin", 1, t_ns=T0), T0)
        b = stamp("a1", Marker("r", "p", "end", 2, t_ns=T0 + 5), T0 + 5)
        c = stamp("h", Marker("q", "p", "begin", 1, t_ns=T0 + 6), T0 + 6)
        assert st.put_marker(a, defer=True) is True
        assert fresh_markers(path) == []  # not yet committed
        st.put_marker(b, defer=True)
        assert st.put_marker(c) is True  # at once: those deferred before it first
        assert fresh_markers(path) == [("r", 1), ("r", 2), ("q", 1)]
        st.put_marker(a, defer=True)  # a repeat: ignored at the flush
        st.put_marker(stamp("a1", Marker("r", "p", "begin", 3, t_ns=T0 + 9), T0 + 9), True)
        st.flush()  # no samples buffered: the markers are written all the same
        assert fresh_markers(path) == [("r", 1), ("r", 2), ("q", 1), ("r", 3)]


def test_a_failed_flush_keeps_what_it_took_for_the_next(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Store(path) as st:
        st.put_marker(stamp("a1", Marker("r", "p", "begin", 1, t_ns=T0), T0), defer=True)
        st.append(Block.of(CH.id, np.array([T0], np.int64), np.array([1.0])))
        blocker = sqlite3.connect(path, timeout=0)
        blocker.execute("BEGIN IMMEDIATE")  # the writer lock is taken: the flush fails
        st._db.execute("PRAGMA busy_timeout = 0")
        with pytest.raises(sqlite3.OperationalError):
            st.flush()
        blocker.rollback()
        blocker.close()
        st.append(Block.of(CH.id, np.array([T0 + 1], np.int64), np.array([2.0])))  # since
        st.flush()
        assert fresh_markers(path) == [("r", 1)]
        t, v = st.samples(CH.id, T0, T0 + 10)  # what the failed flush took, once, in order
        assert t.tolist() == [T0, T0 + 1] and v.tolist() == [1.0, 2.0]


def test_deferred_channels_are_committed_by_flush_and_before_changes_are_read(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    with Store(path) as st:
        st.put_channel(CH)
        serial, _ = st.channel_changes(0)
        moved = Channel.from_json({**CH.to_json(), "stamp_uncertainty_s": 0.004})
        st.put_channel(moved, defer=True)
        assert st.channels()[CH.id] == moved  # this process sees it at once
        assert '"stamp_uncertainty_s": 0.0,' in (fresh_channel(path, CH.id) or "")
        # a reader in another process (the result worker) is told of it only once committed
        _, changed = st.channel_changes(serial)
        assert changed == [CH.id]
        assert '"stamp_uncertainty_s": 0.004' in (fresh_channel(path, CH.id) or "")
        again = Channel.from_json({**CH.to_json(), "stamp_uncertainty_s": 0.008})
        st.put_channel(again, defer=True)
        st.flush()
        assert '"stamp_uncertainty_s": 0.008' in (fresh_channel(path, CH.id) or "")
        st.put_channel(moved, defer=True)
        st.put_channel(again)  # newer, at once: the deferred one must not overwrite it
        st.flush()
        assert '"stamp_uncertainty_s": 0.008' in (fresh_channel(path, CH.id) or "")


def test_appends_do_not_wait_for_a_commit_under_way(tmp_path: Path) -> None:
    """The event loop appends while another thread commits: it must not wait for that commit
    (it did, on the store's one lock), and the flush still commits all it took."""
    path = tmp_path / "s.db"
    with Store(path) as st:
        st.put_channel(CH)
        st.append(Block.of(CH.id, np.array([T0], np.int64), np.array([1.0])))
        in_commit, go_on = threading.Event(), threading.Event()
        real_tx = st._tx

        def slow_tx():  # type: ignore[no-untyped-def]
            in_commit.set()
            go_on.wait(10)
            return real_tx()

        st._tx = slow_tx  # type: ignore[method-assign]
        flusher = threading.Thread(target=st.flush)
        flusher.start()
        assert in_commit.wait(10)
        appended = threading.Event()

        def append() -> None:
            st.append(Block.of(CH.id, np.array([T0 + 1], np.int64), np.array([2.0])))
            st.note_block("a1", 1, 7)
            appended.set()

        threading.Thread(target=append).start()
        assert appended.wait(10), "append waited for the commit under way"
        go_on.set()
        flusher.join(10)
        st._tx = real_tx  # type: ignore[method-assign]
        t, _ = st.samples(CH.id, T0, T0 + 10)
        assert t.tolist() == [T0]  # the flush under way took only what was there
        st.flush()
        t, _ = st.samples(CH.id, T0, T0 + 10)
        assert t.tolist() == [T0, T0 + 1]
