"""The wt300 probe against the simulator on a pty: sync to updates, stamps, elements, USBTMC,
faults, meter errors, overrange, auto range, silence. No timing assertions: bounded waits only."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from powerd.errors import ProbeUnavailable, SpecError
from powerd.probes.serialsim import Faults
from powerd.probes.sim.waveform import parse_spec
from powerd.probes.wt300 import family
from powerd.probes.wt300.spec import parse_spec as parse_wt300
from tests.probes.wt300.helpers import T_NS, WF, bench, truth_power_w, update_of, wait_for

STAMP_TOLERANCE_NS = 40_000_000


def check_power_samples(t: np.ndarray, v: np.ndarray, share: float = 1.0) -> None:
    """Every power sample is the exact mean of its update, stamped near its midpoint."""
    for ti, vi in zip(t.tolist(), v.tolist(), strict=True):
        k = update_of(ti)
        assert vi == pytest.approx(truth_power_w(k, share), rel=2e-4, abs=1e-9), (k, vi)
        assert abs(ti - (k * T_NS - T_NS // 2)) < STAMP_TOLERANCE_NS


def test_serial_reads_every_update_exactly_and_stamps_it_at_its_midpoint(tmp_path: Path) -> None:
    with bench(tmp_path) as b:
        probe = b.open(",vrange=15,irange=5")
        chans = {c.id: c for c in probe.channels()}
        assert set(chans) == {"wt300:wt310:p1", "wt300:wt310:e1"}
        acc = chans["wt300:wt310:p1"].accuracy
        assert (acc.reading_frac, acc.range_frac, acc.range_w) == (0.001, 0.002, 75.0)
        assert chans["wt300:wt310:e1"].measures == chans["wt300:wt310:p1"].measures
        wait_for(lambda: b.pull().n("wt300:wt310:p1") >= 25 and b.got.n("wt300:wt310:e1") >= 25)
    t, v = b.got.arrays("wt300:wt310:p1")
    check_power_samples(t, v)
    ks = np.array([update_of(x) for x in t.tolist()])
    assert bool((np.diff(ks) >= 1).all()) and np.count_nonzero(np.diff(ks) > 1) <= 2
    te, e = b.got.arrays("wt300:wt310:e1")
    assert bool((np.diff(e) > 0).all())
    for i in range(1, te.size):  # counter increments equal the true energy between update ends
        k0, k1 = round(int(te[i - 1]) / T_NS), round(int(te[i]) / T_NS)
        true_j = WF.energy_j(k0 * T_NS, k1 * T_NS)
        assert e[i] - e[i - 1] == pytest.approx(true_j, rel=1e-3, abs=0.004)
    assert b.model.integ_state == "start"
    assert probe.session.stats.frames_bad == 0 and probe.session.stats.meter_errors == 0


def test_three_elements_give_three_channels_each(tmp_path: Path) -> None:
    with bench(tmp_path, "wt330", shares="0.5/0.3/0.2") as b:
        probe = b.open(",vrange=15,irange=2,measures=rack")
        ids = [c.id for c in probe.channels()]
        assert ids == [f"wt300:wt330:{kind}{e}" for e in (1, 2, 3) for kind in ("p", "e")]
        assert {c.measures for c in probe.channels()} == {"rack:1", "rack:2", "rack:3"}
        assert probe.plan.layout.copies == (2, 1, 2, 1, 2, 1)
        wait_for(lambda: min(b.pull().n(i) for i in ids) >= 10)
    for e, share in ((1, 0.5), (2, 0.3), (3, 0.2)):
        check_power_samples(*b.got.arrays(f"wt300:wt330:p{e}"), share=share)
    assert any("no room for a copy" in p for p in b.got.problems)


def test_usbtmc_whole_messages_over_a_stand_in(tmp_path: Path) -> None:
    with bench(tmp_path, model="WT310E", transport="usbtmc") as b:
        probe = b.open(",transport=usbtmc,irange=5,vrange=15")
        assert probe.plan.layout.copies == (1, 1) and probe.plan.model.name == "WT310E"
        assert probe.plan.channels[0].accuracy.range_frac == 0.002  # DC
        wait_for(lambda: b.pull().n("wt300:wt310:p1") >= 15)
    check_power_samples(*b.got.arrays("wt300:wt310:p1"))


def test_ac_coupling_uses_the_45_66_hz_figures(tmp_path: Path) -> None:
    with bench(tmp_path, model="WT310E") as b:
        probe = b.open(",irange=5,vrange=15,coupling=ac,integ=off")
        assert [c.id for c in probe.channels()] == ["wt300:wt310:p1"]
        acc = probe.plan.channels[0].accuracy
        assert (acc.reading_frac, acc.range_frac) == (0.001, 0.0005)


def test_garbled_dropped_partial_and_lost_replies_are_counted_never_used(tmp_path: Path) -> None:
    faults = Faults(garble=0.1, drop=0.03, partial=0.03, no_reply=0.03, seed=7)
    with bench(tmp_path, faults=faults) as b:
        probe = b.open(",vrange=15,irange=5")
        stats = probe.session.stats
        wait_for(
            lambda: (
                b.pull().n("wt300:wt310:p1") >= 30
                and stats.frames_bad + stats.bad_replies >= 3
                and stats.timeouts >= 1
            ),
            timeout_s=60,
        )
    check_power_samples(*b.got.arrays("wt300:wt310:p1"))
    assert any("bad frame, not used" in p for p in b.got.problems)
    assert any("no reply" in p or "no update" in p for p in b.got.problems)


def test_lost_status_replies_never_shift_values_onto_another_update(tmp_path: Path) -> None:
    # a lost :STAT:ERR? or range reply costs 0.5 s; updates ending meanwhile must not be
    # attributed to the update the EESR clear bracketed
    with bench(tmp_path, faults=Faults(no_reply=0.15, seed=0)) as b:
        probe = b.open(",vrange=15,irange=5")
        stats = probe.session.stats
        wait_for(lambda: b.pull().n("wt300:wt310:p1") >= 60 and stats.timeouts >= 3, timeout_s=60)
    check_power_samples(*b.got.arrays("wt300:wt310:p1"))
    assert stats.skipped_updates > 0


def test_meter_errors_are_reported_as_problems(tmp_path: Path) -> None:
    with bench(tmp_path) as b:
        b.open(",vrange=15,irange=5")
        wait_for(lambda: b.pull().n("wt300:wt310:p1") >= 3)
        b.model.errors.append((-113, "Undefined header"))
        wait_for(lambda: any("meter error -113" in p for p in b.pull().problems))


def test_overrange_readings_are_never_emitted(tmp_path: Path) -> None:
    with bench(tmp_path) as b:  # 40 W at 12 V is 3.3 A: overrange on the fixed 2 A range
        probe = b.open(",vrange=15,irange=2,integ=off")
        wait_for(lambda: probe.session.stats.markers >= 3 and b.pull().n("wt300:wt310:p1") >= 5)
    _, v = b.got.arrays("wt300:wt310:p1")
    assert bool((v < 2 * 1.4 * 12).all())
    assert any("reads overrange: not used" in p for p in b.got.problems)


def test_auto_range_moves_are_reported(tmp_path: Path) -> None:
    wf = parse_spec("square,high=40,low=1,period=2,duty=0.5").waveform
    # the meter starts on a fixed 0.1 A range; on auto the high half (3.3 A) moves it up
    with bench(tmp_path, waveform=wf, irange="0.1") as b:
        probe = b.open("")
        assert probe.plan.vrange_v is None and probe.plan.irange_a is None
        assert probe.plan.range_w == pytest.approx(15 * 0.1)
        wait_for(lambda: any("ranges are now" in p for p in b.pull().problems))
        wait_for(lambda: probe.session.stats.markers >= 1)  # no data while switching
        # the accuracy follows the range the meter reads back, from before the move
        changes = probe.accuracy_changes()
        assert changes[0].accuracy.range_w == pytest.approx(15 * 0.1)  # at open
        assert changes[-1].accuracy.range_w > 15 * 0.1
        assert [c.t_ns for c in changes] == sorted(c.t_ns for c in changes)
        v_now, i_now = probe.active_ranges()
        assert v_now is not None and i_now is not None
        acc = {c.id: c.accuracy for c in probe.channels()}["wt300:wt310:p1"]
        assert acc.range_w == pytest.approx(changes[-1].accuracy.range_w)


def test_a_silent_meter_is_a_clear_error_or_problems_never_a_hang(tmp_path: Path) -> None:
    with bench(tmp_path, faults=Faults(no_reply=1.0)) as b:
        with pytest.raises(ProbeUnavailable, match=r"no reply to \*IDN\?"):
            b.open("")
        probe = b.open(",model=WT310,irange=5,vrange=15")
        assert [c.id for c in probe.channels()] == ["wt300:wt310:p1", "wt300:wt310:e1"]
        wait_for(lambda: any("no reply to *IDN?" in p for p in b.pull().problems))
        t0 = time.monotonic()
        probe.close()
        assert time.monotonic() - t0 < 10


def test_spec_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="device path first"):
        parse_wt300("rate=0.1")
    with pytest.raises(SpecError, match="update interval"):
        parse_wt300("/dev/ttyUSB0,rate=0.3")
    with pytest.raises(SpecError, match="unknown key"):
        parse_wt300("/dev/ttyUSB0,speed=1")
    with pytest.raises(SpecError, match="elements"):
        parse_wt300("/dev/ttyUSB0,elements=4")
    assert parse_wt300("/dev/usbtmc0").transport == "usbtmc"
    assert parse_wt300("/dev/ttyUSB0,elements=1/3").elements == (1, 3)
    with bench(tmp_path) as b:
        with pytest.raises(SpecError, match="largest range"):
            b.open(",irange=30")
        assert family.available().ok


def test_auto_range_moves_are_dated_by_their_nan_update_and_lost_readings_reported(
    tmp_path: Path,
) -> None:
    """A 40/5 W square every 1.3 s at 12 V crosses the 1/2/5 A ranges under auto ranging. Each
    move is dated by the NAN update it causes, so the accuracy history holds the smaller ranges
    for the readings really measured on them (not only the largest range), and never gives a
    reading a range it could not have been measured on (P <= 1.4 x range). ``read_dropped``
    reports the lost readings: overrange ones with the current floor 1.4 x the A range (I was
    over, U was not)."""
    wf = parse_spec("square,high=40,low=5,period=1.3,duty=0.5").waveform
    with bench(tmp_path, waveform=wf) as b:
        probe = b.open(",vi=on,integ=off")
        assert probe.read_dropped() == {}  # the first call turns collection on
        dropped: list[tuple[int, bool, float, float]] = []
        changes = probe.accuracy_changes()

        def enough() -> bool:
            b.pull()
            for blk in probe.read_dropped().values():
                dropped.extend(
                    zip(
                        blk.t_ns.tolist(),
                        blk.overrange.tolist(),
                        blk.volts_floor.tolist(),
                        blk.amps_floor.tolist(),
                        strict=True,
                    )
                )
            changes.extend(probe.accuracy_changes())
            return b.got.n("wt300:wt310:p1") >= 40 and any(o for _, o, _, _ in dropped)

        wait_for(enough, timeout_s=60)
    hist = [(c.t_ns, c.accuracy.range_w) for c in changes if c.channel == "wt300:wt310:p1"]
    assert [t for t, _ in hist] == sorted({t for t, _ in hist})  # one record per instant
    t, v = b.got.arrays("wt300:wt310:p1")
    on_range = []
    for ti, vi in zip(t.tolist(), v.tolist(), strict=True):
        range_w = [w for th, w in hist if th <= ti][-1]
        assert vi <= 1.4 * range_w + 1e-9, (ti, vi, range_w)  # measurable on that range
        on_range.append(range_w)
    assert 15.0 in on_range  # low-level readings on the 1 A range (15 V x 1 A) are credited to it
    over = [(vf, af) for _, o, vf, af in dropped if o]
    assert over and all(np.isnan(vf) and af >= 1.4 * 0.5 - 1e-9 for vf, af in over)
    assert any(not o for _, o, _, _ in dropped)  # the NAN of a range switch
