"""Known gaps recorded in the store are flagged, exactly, in every phase they overlap."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from powerd.agent.wire import Marker
from powerd.block import Block
from powerd.channel import Channel
from powerd.phases import stamp
from powerd.runs import compute_run
from powerd.sinks.hub import TeeSink
from powerd.store import Store

T0 = 1_800_000_000_000_000_000
S = 1_000_000_000
METER = Channel(id="m:1", kind="power", source_class="meter", nominal_period_s=0.01)
TELEM = Channel(id="t:1", kind="power", source_class="telemetry", nominal_period_s=0.01)


def fill(st: Store, ch: Channel, t0_s: float, t1_s: float, w: float) -> None:
    t = T0 + np.arange(int(t0_s * 100), int(t1_s * 100) + 1, dtype=np.int64) * (S // 100)
    st.put_channel(ch)
    st.append(Block.of(ch.id, t, np.full(t.size, w)))
    st.flush()


def mark(st: Store, seq: int, phase: str, event: str, t_s: float) -> None:
    m = Marker(run="r", phase=phase, event=event, seq=seq, t_ns=T0 + int(t_s * S))  # type: ignore[arg-type]
    st.put_marker(stamp("h", m, T0 + int(t_s * S), 0, 0))


def test_a_gap_is_flagged_on_its_channel_and_phase_with_its_exact_extent(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as st:
        fill(st, METER, 0, 4, 5.0)
        fill(st, METER, 6, 10, 5.0)
        st.put_gap("m:1", T0 + 4 * S, None, "probe_down")
        st.put_gap("m:1", T0 + 4 * S, T0 + 6 * S, "probe_down")
        mark(st, 1, "a", "begin", 1)
        mark(st, 2, "a", "end", 3)
        mark(st, 3, "b", "begin", 3)
        mark(st, 4, "b", "end", 9)
        res = compute_run(st, "r")
    a, b = res["phases"]
    assert "probe_down" not in a["flags"] and "gaps" not in a["channels"]["m:1"]
    assert "probe_down" in b["flags"]
    ch = b["channels"]["m:1"]
    assert "probe_down" in ch["flags"]
    assert ch["gaps"] == [
        {"reason": "probe_down", "t_begin_ns": T0 + 4 * S, "t_end_ns": T0 + 6 * S}
    ]


def test_an_open_gap_is_clipped_to_the_phase_and_a_meter_down_all_phase_is_not_silent(
    tmp_path: Path,
) -> None:
    with Store(tmp_path / "s.db") as st:
        fill(st, METER, 0, 2, 5.0)
        fill(st, TELEM, 0, 10, 3.0)
        st.put_gap("m:1", T0 + 2 * S, None, "probe_down")
        mark(st, 1, "a", "begin", 5)
        mark(st, 2, "a", "end", 8)
        res = compute_run(st, "r")
    (a,) = res["phases"]
    assert a["energy_j"] is not None and abs(a["energy_j"] - 9.0) < 0.01
    assert "probe_down" in a["flags"]
    assert a["channels"]["m:1"]["energy_j"] is None
    assert a["channels"]["m:1"]["gaps"] == [
        {"reason": "probe_down", "t_begin_ns": T0 + 5 * S, "t_end_ns": T0 + 8 * S}
    ]


def test_an_open_gap_ends_where_the_channel_data_resumes(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as st:
        fill(st, METER, 0, 2, 5.0)
        st.put_gap("m:1", T0 + 2 * S, None, "agent_down")
        assert st.gaps("m:1", T0 + 3 * S, T0 + 4 * S) == [(T0 + 2 * S, None, "agent_down")]
        fill(st, METER, 5, 8, 5.0)
        assert st.gaps("m:1", T0 + 3 * S, T0 + 4 * S) == [(T0 + 2 * S, T0 + 5 * S, "agent_down")]
        # after data resumed the gap is over: later windows are not flagged, nor listed
        assert st.gaps("m:1", T0 + 6 * S, T0 + 7 * S) == []
        assert st.gap_channels(T0 + 6 * S, T0 + 7 * S) == []


def test_a_gap_no_longer_than_a_few_sample_periods_is_not_flagged(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as st:
        fill(st, METER, 0, 10, 5.0)
        # an agent whose backlog continued right after its last will: 10 ms, one period
        st.put_gap("m:1", T0 + 4 * S, T0 + 4 * S + 10_000_000, "agent_down")
        mark(st, 1, "a", "begin", 1)
        mark(st, 2, "a", "end", 8)
        (a,) = compute_run(st, "r")["phases"]
    assert "agent_down" not in a["flags"] and "gaps" not in a["channels"]["m:1"]


def test_the_daemons_own_downtime_is_a_gap_on_its_channels(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as st:
        fill(st, METER, 0, 2, 5.0)
        tee = TeeSink(st, lambda _b: None)  # a restarted daemon's first blocks
        t = T0 + np.arange(600, 700, dtype=np.int64) * (S // 100)
        tee.append(Block.of("m:1", t, np.full(t.size, 5.0)))
        tee.append(Block.of("m:1", t + S, np.full(t.size, 5.0)))
        st.flush()
        assert st.gaps("m:1", T0, T0 + 10 * S) == [(T0 + 2 * S, T0 + 6 * S, "daemon_down")]


def test_an_agent_going_offline_opens_a_gap_closed_by_its_next_data(tmp_path: Path) -> None:
    from powerd.agent import wire
    from powerd.daemon import Daemon
    from powerd.timeline import Timeline

    with Store(tmp_path / "s.db") as st:
        d = Daemon(st, Timeline(), lambda: T0 + 10 * S)
        ch = Channel(id="edge/sim:c", kind="power", source_class="meter", nominal_period_s=0.01)
        d.timeline.add_channel(ch)
        t = T0 + np.arange(0, 201, dtype=np.int64) * (S // 100)
        d.timeline.append(Block.of(ch.id, t, np.full(t.size, 2.0)))
        assert d.accept_status("edge", wire.status("edge", "online", T0, "t"))
        assert d.accept_status("edge", wire.status("edge", "offline", T0, "t"))
        assert st.gaps(ch.id, T0, T0 + 9 * S) == [(T0 + 2 * S, None, "agent_down")]
        st.put_channel(ch)
        st.append(Block.of(ch.id, t + 7 * S, np.full(t.size, 2.0)))
        st.flush()
        assert st.gaps(ch.id, T0, T0 + 9 * S) == [(T0 + 2 * S, T0 + 7 * S, "agent_down")]
