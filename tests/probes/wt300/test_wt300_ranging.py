"""WT300 ranging (PTDaemon's SR/RR) and U/I/LAMBDA readings, against the simulator on a pty.

set_range moves the meter's range, is read back, and moves the declared accuracy from then on;
auto ranging; a value above the largest range is a SpecError; power-dev's ``-1`` changes nothing;
a meter that refuses is reported; ``vi=on`` gives U, I and LAMBDA equal to the simulator's truth.
No timing assertions: bounded waits only.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from powerd.agent.wire import Marker
from powerd.errors import SpecError
from powerd.phases import stamp
from powerd.probes.base import ElectricalBlock, ElectricalProbe, RangedProbe
from powerd.probes.sim.waveform import parse_spec
from powerd.probes.wt300 import family
from powerd.probes.wt300.session import make_layout
from powerd.runner import Sampler
from powerd.runs import compute_run
from powerd.store import Store
from powerd.timebase import TimeAnchor
from powerd.timeline import Timeline
from tests.probes.wt300.helpers import T_NS, bench, truth_power_w, update_of, wait_for

P1, E1 = "wt300:wt310:p1", "wt300:wt310:e1"


def test_set_range_moves_the_meter_and_the_declared_accuracy(tmp_path: Path) -> None:
    with bench(tmp_path) as b:
        probe = b.open(",vrange=15,irange=5")
        assert isinstance(probe, RangedProbe)
        wait_for(lambda: b.pull().n(P1) >= 3 and probe.active_ranges() == (15.0, 5.0))
        initial = probe.accuracy_changes()  # the history starts with the accuracy at open
        assert {c.channel: c.accuracy.range_w for c in initial} == {P1: 75.0, E1: 75.0}
        assert probe.accuracy_changes() == []  # the fixed ranges are those declared at open
        before_ns = time.time_ns()
        # 100 V needs the 150 V range; 7 A the 10 A range (the smallest that holds it)
        assert probe.set_range("V", 100.0) == "V range 150 V"
        assert probe.set_range("A", 7.0) == "A range 10 A"
        after_ns = time.time_ns()
        assert (b.model.vrange_v, b.model.vauto) == (150.0, False)
        assert (b.model.irange_a, b.model.iauto) == (10.0, False)
        assert probe.active_ranges() == (150.0, 10.0)
        chans = {c.id: c for c in probe.channels()}
        assert chans[P1].accuracy.range_w == pytest.approx(1500.0)
        assert chans[E1].accuracy.range_w == pytest.approx(1500.0)
        assert chans[P1].accuracy.range_frac == 0.002  # only the range moved
        changes = probe.accuracy_changes()
        assert {c.channel for c in changes} == {P1, E1}
        last = {c.channel: c for c in changes}
        assert last[P1].accuracy.range_w == pytest.approx(1500.0)
        # a move up counts from half an update before the command went out, during the call
        assert before_ns - T_NS // 2 < min(c.t_ns for c in changes) < after_ns
        assert probe.accuracy_changes() == []  # drained
        # values after the switch stay exact (the update during the switch reads NAN)
        n0 = b.got.n(P1)
        wait_for(lambda: b.pull().n(P1) >= n0 + 5)
    t, v = b.got.arrays(P1)
    for ti, vi in zip(t[n0:].tolist(), v[n0:].tolist(), strict=True):
        assert vi == pytest.approx(truth_power_w(update_of(ti)), rel=2e-4)


def test_auto_minus_one_and_above_the_largest_range(tmp_path: Path) -> None:
    with bench(tmp_path) as b:
        probe = b.open(",vrange=15,irange=5")
        wait_for(lambda: b.pull().n(P1) >= 2 and probe.active_ranges() == (15.0, 5.0))
        assert len(probe.accuracy_changes()) == 2  # the accuracy at open
        with pytest.raises(SpecError, match="above the WT310's largest A range 20 A"):
            probe.set_range("A", 25.0)
        with pytest.raises(SpecError, match="largest V range 600 V"):
            probe.set_range("V", 601.0)
        reply = probe.set_range("V", -1)
        assert reply.startswith("V range unchanged") and "15 V" in reply
        assert (b.model.vrange_v, b.model.vauto) == (15.0, False)
        assert probe.accuracy_changes() == []
        reply = probe.set_range("A", None)
        assert reply.startswith("A range auto, now ")
        assert b.model.iauto and not b.model.vauto
        # 40 W at 12 V is 3.3 A: auto settles on 5 A, and the accuracy follows what it reads
        wait_for(lambda: (b.pull(), probe.active_ranges()[1] == b.model.irange_a)[1])
        acc = {c.id: c.accuracy for c in probe.channels()}[P1]
        assert acc.range_w == pytest.approx(15.0 * b.model.irange_a)


def test_a_refused_range_is_reported_and_not_claimed(tmp_path: Path) -> None:
    with bench(tmp_path, integ_ranges="refuse") as b:
        probe = b.open(",vrange=15,irange=5")  # the integrator runs: this meter refuses ranges
        wait_for(lambda: b.pull().n(P1) >= 2 and probe.active_ranges() == (15.0, 5.0))
        assert len(probe.accuracy_changes()) == 2  # the accuracy at open
        reply = probe.set_range("V", 100.0)
        assert reply == "V range not set: the meter refused 150 V (keeps 15 V)"
        assert b.model.vrange_v == 15.0
        assert probe.accuracy_changes() == []
        assert {c.id: c.accuracy for c in probe.channels()}[P1].range_w == pytest.approx(75.0)
        wait_for(lambda: any("refused 150 V" in p for p in b.pull().problems))
        assert any("meter error -221" in p for p in b.got.problems)


def test_vi_gives_u_i_and_lambda_of_every_update(tmp_path: Path) -> None:
    wf = parse_spec("square,high=30,low=6,period=1.3,duty=0.5").waveform
    with bench(tmp_path, waveform=wf, pf="0.8", voltage="120") as b:
        probe = b.open(",vrange=150,irange=0.5,vi=on")
        assert isinstance(probe, ElectricalProbe)
        assert probe.plan.layout.copies == (2, 2, 2, 2, 2)  # P, WH, U, I, LAMB: all 10 items
        got: list[ElectricalBlock] = []
        wait_for(lambda: (b.pull(), got.extend(probe.read_electrical().values()))[0].n(P1) >= 20)
        time.sleep(0.3)
        b.pull()
        got.extend(probe.read_electrical().values())
    t = np.concatenate([g.t_ns for g in got])
    u = np.concatenate([g.volts for g in got])
    i = np.concatenate([g.amps for g in got])
    pf = np.concatenate([g.pf for g in got])
    tp, p = b.got.arrays(P1)
    assert set(tp.tolist()) <= set(t.tolist())  # same stamps as the power samples
    good = ~np.isnan(u)
    assert good.sum() >= 20
    for ti, ui, ii, fi in zip(t[good], u[good], i[good], pf[good], strict=True):
        p_true = truth_power_w(update_of(int(ti)), wf=wf)
        assert ui == pytest.approx(120.0, rel=1e-4)
        assert ii == pytest.approx(p_true / (120.0 * 0.8), rel=2e-4)
        assert fi == pytest.approx(0.8, rel=2e-4)
    assert all(math.isnan(x) or x > 0 for x in i.tolist())
    by_t = dict(zip(t.tolist(), (u * i * pf).tolist(), strict=True))
    for tk, pk in zip(tp.tolist(), p.tolist(), strict=True):  # P = U × I × LAMBDA
        assert by_t[tk] == pytest.approx(pk, rel=5e-4)


def test_vi_layout_respects_the_meters_ten_items() -> None:
    layout, notes = make_layout((1, 3), True, 2, True)
    assert sum(layout.copies) <= 10 and notes
    with pytest.raises(SpecError, match="the meter takes 10"):
        make_layout((1, 2, 3), False, 1, True)


def test_a_run_through_the_sampler_uses_the_range_in_effect_per_phase(tmp_path: Path) -> None:
    """SR mid-run, as power-dev does between ranging and testing: the phase before uses the
    75 W range, the one after the 1500 W range, one spanning both the larger, flagged."""
    steady = parse_spec("constant,w=40").waveform  # so the instrument term dominates U
    with bench(tmp_path, waveform=steady) as b, Store(tmp_path / "s.db") as store:
        probe = b.probe = family.open(f"{b.link},rate=0.1,vrange=15,irange=5")
        sampler = Sampler(
            [probe], Timeline(1 << 12), store, TimeAnchor(), put_accuracy=store.put_accuracy
        )
        seq = iter(range(100))

        def mark(phase: str, event: str) -> None:
            now = time.time_ns()
            m = Marker("r", phase, event, next(seq), t_ns=now)  # type: ignore[arg-type]
            store.put_marker(stamp("h", m, now))

        def samples_after(n: int) -> None:
            target = sampler.health[0].samples + n
            wait_for(lambda: sampler.health[0].samples >= target)

        sampler.start()
        try:
            samples_after(4)
            mark("span", "begin")
            mark("ranging", "begin")
            samples_after(10)
            mark("ranging", "end")
            samples_after(2)  # as power-dev: Stop, RL, Uncertainty, Watts, then SR
            assert probe.set_range("V", 100.0) == "V range 150 V"
            assert probe.set_range("A", 7.0) == "A range 10 A"
            mark("testing", "begin")
            samples_after(10)
            mark("testing", "end")
            mark("span", "end")
            samples_after(4)
        finally:
            sampler.stop()
        res = compute_run(store, "r")
    by = {p["phase"]: p for p in res["phases"]}
    for phase, range_w in (("ranging", 75.0), ("testing", 1500.0), ("span", 1500.0)):
        for cid in (P1, E1):
            assert by[phase]["channels"][cid]["accuracy_range_w"] == pytest.approx(range_w)
    assert "range_changed" in by["span"]["flags"]
    assert "range_changed" not in by["ranging"]["flags"] + by["testing"]["flags"]
    # the power channel's uncertainty per second holds the range term of the range in effect:
    # 0.2 % of 1500 W = 3 W after the change, far below that before it (0.2 % of 75 W)
    u = {k: by[k]["channels"][P1]["uncertainty_j"] / by[k]["duration_s"] for k in by}
    assert u["testing"] >= 0.002 * 1500 and u["span"] >= 0.002 * 1500
    assert u["ranging"] < 0.002 * 1500
