"""The phase state machine: pairs, nesting, repeats, rejects that change nothing."""

from __future__ import annotations

import copy

import pytest

from powerd.agent.wire import Marker
from powerd.errors import MarkerError
from powerd.phases import PhaseTracker, StampedMarker, replay, stamp

T0 = 1_800_000_000_000_000_000


def mk(phase: str, event: str, seq: int, t: int, source: str = "h", **kw: object) -> StampedMarker:
    m = Marker("r1", phase, event, seq, t_ns=T0 + t, **kw)  # type: ignore[arg-type]
    return stamp(source, m, T0 + t + 5)


def test_begin_end_makes_a_phase_with_count_and_meta() -> None:
    tr = PhaseTracker()
    assert tr.feed(mk("inference", "begin", 1, 0, meta={"model": "m"})) is None
    ph = tr.feed(mk("inference", "end", 2, 1000, count=10, unit="token"))
    assert ph is not None
    assert (ph.t_begin_ns, ph.t_end_ns, ph.count, ph.unit) == (T0, T0 + 1000, 10, "token")
    assert ph.meta == {"model": "m"} and ph.timing.source == "marker"


def test_distinct_phases_nest_and_overlap() -> None:
    tr = PhaseTracker()
    tr.feed(mk("run", "begin", 1, 0))
    tr.feed(mk("prefill", "begin", 2, 10))
    tr.feed(mk("decode", "begin", 3, 20))
    a = tr.feed(mk("prefill", "end", 4, 30))
    b = tr.feed(mk("decode", "end", 5, 40))
    c = tr.feed(mk("run", "end", 6, 50))
    assert [p.phase for p in (a, b, c) if p] == ["prefill", "decode", "run"]


def test_trials_of_one_phase_are_separate() -> None:
    tr = PhaseTracker()
    tr.feed(mk("inf", "begin", 1, 0, trial=0))
    tr.feed(mk("inf", "begin", 2, 5, trial=1))
    assert tr.feed(mk("inf", "end", 3, 10, trial=1)) is not None
    assert tr.feed(mk("inf", "end", 4, 20, trial=0)) is not None


def test_repeat_of_source_seq_is_ignored_but_a_reuse_is_rejected() -> None:
    tr = PhaseTracker()
    first = mk("p", "begin", 1, 0)
    tr.feed(first)
    assert tr.feed(first) is None and tr.duplicates == 1
    with pytest.raises(MarkerError, match="already used"):
        tr.feed(mk("q", "begin", 1, 0))
    assert tr.feed(mk("q", "begin", 1, 0, source="other")) is None  # other source, own seqs
    assert "q" in {k[1] for k in tr.open}
    assert tr.rejected == 1 and tr.duplicates == 1


@pytest.mark.parametrize(
    ("markers", "reason"),
    [
        ([mk("p", "end", 1, 10)], "without a begin"),
        ([mk("p", "begin", 1, 10), mk("p", "begin", 2, 20)], "already open"),
        ([mk("p", "begin", 1, 10), mk("p", "end", 2, 10)], "not after its begin"),
        ([mk("p", "begin", 1, 10), mk("p", "end", 2, 5)], "not after its begin"),
    ],
)
def test_rejects_change_nothing(markers: list[StampedMarker], reason: str) -> None:
    tr = PhaseTracker()
    for sm in markers[:-1]:
        tr.feed(sm)
    before = (copy.copy(tr.open), copy.copy(tr.seen))
    with pytest.raises(MarkerError, match=reason):
        tr.feed(markers[-1])
    assert (tr.open, tr.seen) == before
    assert tr.rejected == 1


def test_receive_time_used_when_no_t_ns() -> None:
    m = Marker("r1", "p", "begin", 1)
    sm = stamp("h", m, T0 + 99, offset_ns=12345)
    assert sm.t_ns == T0 + 99 and sm.timing.source == "receive-time"
    sm2 = stamp("agent", Marker("r1", "p", "begin", 2, t_ns=T0), T0 + 99, 500, 40)
    assert sm2.t_ns == T0 + 500 and sm2.timing.uncertainty_ns == 40


def test_replay_skips_rejects_and_keeps_going() -> None:
    seq = [mk("a", "end", 1, 0), mk("a", "begin", 2, 10), mk("a", "end", 3, 20)]
    phases, rejects = replay(seq)
    assert len(phases) == 1 and len(rejects) == 1 and "without a begin" in rejects[0][1]
