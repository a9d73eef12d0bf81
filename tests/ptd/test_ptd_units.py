"""The face's pure parts: 1 s means from any rate (power and counters), V/A/PF binning,
missing intervals, uncertainty at the active range, the run id rule and the log numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from powerd.block import Block
from powerd.channel import Accuracy, Channel
from powerd.errors import SpecError
from powerd.ptd.aggregate import NS_PER_S, Aggregator, Interval, TapProbe
from powerd.ptd.argv import parse
from powerd.ptd.meter import Ranging, identify_reply, primary_channel, uncertainty_frac
from powerd.ptd.recorder import run_and_phase
from powerd.ptd.samplelog import num, sample_fields

POWER = Channel("m:p1", "power", "meter", 0.001)


def _collect(ch: Channel = POWER) -> tuple[Aggregator, list[Interval]]:
    got: list[Interval] = []
    return Aggregator(ch, got.append), got


def test_power_means_and_counts_from_any_block_split() -> None:
    t = np.arange(0, 3 * NS_PER_S, 10_000_000, dtype=np.int64)  # 100 Hz over 3 s
    v = (t // NS_PER_S).astype(np.float64) * 10 + 5  # 5, 15, 25 W per second
    agg, got = _collect()
    for part in np.array_split(np.arange(t.size), 7):  # blocks cross second boundaries
        agg.feed(Block(POWER.id, t[part], v[part]))
    agg.feed(Block.of(POWER.id, [3 * NS_PER_S + 1], [99.0]))  # closes second 2
    assert [(i.t_end_ns, i.watts, i.n) for i in got] == [
        (NS_PER_S, 5.0, 100),
        (2 * NS_PER_S, 15.0, 100),
        (3 * NS_PER_S, 25.0, 100),
    ]
    assert agg.complete_until_ns == 3 * NS_PER_S and agg.missing == 0


def test_gap_is_counted_never_a_zero() -> None:
    agg, got = _collect()
    agg.feed(Block.of(POWER.id, [100, 200], [4.0, 6.0]))
    agg.feed(Block.of(POWER.id, [3 * NS_PER_S + 5], [1.0]))  # seconds 1 and 2 had nothing
    assert [(i.t_end_ns, i.watts) for i in got] == [(NS_PER_S, 5.0)]
    assert agg.missing == 2
    agg.feed(Block.of(POWER.id, [50], [1.0]))  # older than the open second: dropped, counted
    assert agg.late == 1


def test_energy_counter_is_differenced_with_wrap() -> None:
    ch = Channel("m:e1", "energy", "telemetry", 0.1, wrap_j=100.0)
    agg, got = _collect(ch)
    t = np.arange(0, 25, dtype=np.int64) * 100_000_000  # 10 Hz counter, 7 W
    e = np.mod(7.0 * t / 1e9 + 95.0, 100.0)  # wraps at 100 J shortly after the start
    agg.feed(Block(ch.id, t, e))
    assert [round(i.watts, 9) for i in got] == [7.0, 7.0]
    assert [i.n for i in got] == [9, 10]  # the first reading has no predecessor
    agg.feed(Block.of(ch.id, [int(2.5e9)], [0.0]))  # with wrap_j, a decrease is a wrap
    assert agg.resets == 0


def test_counter_reset_without_wrap_is_dropped_and_counted() -> None:
    ch = Channel("m:e1", "energy", "telemetry", 0.1)
    agg, _got = _collect(ch)
    agg.feed(Block.of(ch.id, [0, 100_000_000, 200_000_000], [10.0, 11.0, 2.0]))
    assert agg.resets == 1


class _Electrical:
    """A probe with V/A/PF beside power, like the WT300 with read_electrical()."""

    def __init__(self) -> None:
        self.t = np.arange(1, 21, dtype=np.int64) * 100_000_000  # 10 Hz, 2 s

    def channels(self) -> list[Channel]:
        return [POWER]

    def read(self, now_utc_ns: int) -> list[Block]:
        return [Block(POWER.id, self.t, np.full(self.t.size, 100.0))]

    def read_electrical(self) -> dict[str, object]:
        from types import SimpleNamespace

        n = self.t.size
        return {
            POWER.id: SimpleNamespace(
                t_ns=self.t,
                volts=np.full(n, 230.0),
                amps=np.r_[np.full(n - 1, 0.5), np.nan],
                pf=np.full(n, 0.87),
            )
        }


def test_tap_bins_volts_amps_pf_with_power() -> None:
    agg, got = _collect()
    tap = TapProbe(_Electrical(), POWER.id, agg)
    blocks = tap.read(0)
    assert len(blocks) == 1
    # seconds 0 (0.1 .. 0.9 s) and 1 (1.0 .. 1.9 s); 2.0 s opens second 2
    assert [(i.watts, i.volts, i.amps, i.n) for i in got] == [
        (100.0, 230.0, 0.5, 9),
        (100.0, 230.0, 0.5, 10),
    ]
    assert [i.pf for i in got] == pytest.approx([0.87, 0.87])
    # the NaN amps of 2.0 s are left out of second 2's mean, V and PF are kept
    tap.read(0)
    agg.feed(Block.of(POWER.id, [3 * NS_PER_S], [1.0]))
    assert got[-1].t_end_ns == 3 * NS_PER_S
    assert (got[-1].volts, got[-1].amps) == (230.0, None)


def test_uncertainty_at_the_active_range() -> None:
    ch = Channel("w:p1", "power", "meter", 0.1, Accuracy(0.001, 0.001, 1500.0, 0.0))
    # WT310-like: 0.1 % of reading + 0.1 % of range; at 15 W on a 300 V x 5 A range
    assert uncertainty_frac(ch, 15.0, 1500.0) == pytest.approx((0.015 + 1.5) / 15.0)
    assert uncertainty_frac(ch, -15.0, 150.0) == pytest.approx((0.015 + 0.15) / 15.0)
    assert uncertainty_frac(ch, 0.0, 1500.0) is None


class _Ranged:
    def __init__(self) -> None:
        self.v: float | None = None
        self.a: float | None = None

    def set_range(self, quantity: str, value: float | None) -> str:
        if value is not None and value > 600:
            raise SpecError("above the largest range")
        if value is not None and value <= 0:
            return "kept"
        if quantity == "V":
            self.v = value
        else:
            self.a = value
        return f"{quantity} {value}"

    def active_ranges(self) -> tuple[float | None, float | None]:
        return (self.v or 600.0), (self.a or 20.0)


def test_ranging_real_and_noop() -> None:
    ch = Channel("w:p1", "power", "meter", 0.1, Accuracy(0.001, 0.001, 99.0))
    r = Ranging(_Ranged())
    assert r.real and r.rr_reply() == "Ranges,1,20,1,600"
    r.set("V", 150.0)
    r.set("A", 0.5)
    assert r.rr_reply() == "Ranges,0,0.5,0,150" and r.range_w(ch) == 99.0
    assert r.range_w(Channel("w:p1", "power", "meter", 0.1)) == 75.0  # no range_w: V x A
    r.set("A", -1.0)  # power-dev's -1: kept, still fixed
    assert r.rr_reply() == "Ranges,0,0.5,0,150"
    with pytest.raises(SpecError):
        r.set("V", 1000.0)
    plain = Ranging(object())
    assert not plain.real and plain.rr_reply() == "Ranges,-1,-1,-1,-1"
    assert "no-op" in plain.set("V", 230.0) and plain.range_w(ch) == 99.0


def test_identity_names_powerd_and_the_real_instrument() -> None:
    from types import SimpleNamespace

    wt = SimpleNamespace(plan=SimpleNamespace(model=SimpleNamespace(name="WT310E")))
    reply = identify_reply(wt, "wt300:/dev/ttyUSB0", POWER)
    assert reply.startswith("powerd-ptd,instrument=wt300 WT310E,")
    assert reply.endswith("-powerd") and "PTDaemon" not in reply
    assert identify_reply(object(), "sim:constant,w=5", POWER).split(",")[1] == "instrument=sim"


def test_primary_channel_skips_counters() -> None:
    e = Channel("w:e1", "energy", "meter", 0.1)
    p2 = Channel("w:p2", "power", "meter", 0.1)
    assert primary_channel([e, POWER, p2], 1) is POWER
    assert primary_channel([e, POWER, p2], 2) is p2
    with pytest.raises(ValueError, match="2 power channel"):
        primary_channel([e, POWER, p2], 3)
    assert primary_channel([e], 1) is e


def test_run_id_rule() -> None:
    assert run_and_phase("2026-01-02_03-04-05_ranging") == (
        "2026-01-02_03-04-05",
        "2026-01-02_03-04-05_ranging",
    )
    assert run_and_phase("s_lbl_testing") == ("s_lbl", "s_lbl_testing")
    assert run_and_phase("my mark") == ("my_mark", "my_mark")
    assert run_and_phase("_ranging") == ("_ranging", "_ranging")
    assert len(run_and_phase("x" * 300)[0]) == 128


def test_log_numbers_never_nan() -> None:
    assert num(float("nan")) == "-1" and num(None) == "-1" and num(float("inf")) == "-1"
    assert num(1e-7) == "0.0000001" and num(123456789.0) == "123456800"
    line = sample_fields(1_700_000_000_123_456_789, 5.0, None, None, None)
    assert line == "Time,11-14-2023 22:13:20.123,Watts,5,Volts,-1,Amps,-1,PF,-1"
    assert len((line + ",Mark,x").split(",")) == 12


def test_argv_is_ptdaemons() -> None:
    a = parse(["-l", "/tmp/x.log", "-p", "8888", "-c", "1", "-g", "-b", "0", "49", "sim:constant"])
    assert (a.port, a.channels, a.interface, a.device_type, a.device_port) == (
        8888,
        (1,),
        "-g",
        49,
        "sim:constant",
    )
    d = parse(["-l", "x", "-p", "1", "-D", "77", "wt300:/dev/ttyUSB0"])
    assert d.dc and d.channels == (1,)
    with pytest.raises(SpecError, match="invalid int value"):
        parse(["-l", "x", "-p", "1", "notanint", "sim:constant"])


def test_lost_readings_are_binned_and_a_second_of_only_lost_ones_is_emitted() -> None:
    """``feed_dropped`` (a meter's NAN/overrange readings) per second: counts, the largest
    floor raised by the largest reading the meter gave in an overrange second, and a second
    whose every reading was lost is emitted without a mean (not counted missing)."""
    ch = Channel("m:p1", "power", "meter", 0.1)
    agg, got = _collect(ch)
    step = NS_PER_S // 10
    t0 = np.arange(10, dtype=np.int64) * step + step // 2  # second 0: all 10 readings
    agg.feed(Block(ch.id, t0, np.full(10, 20.0)))
    t1 = NS_PER_S + np.array([0, 1, 4, 5, 6, 9], np.int64) * step + step // 2  # 4 lost
    lost_t = NS_PER_S + np.array([2, 3, 7, 8], np.int64) * step + step // 2
    agg.feed_electrical(t1, np.full(6, 12.0), np.r_[np.full(5, 0.4), 3.3], np.ones(6))
    over = np.array([True, False, True, False])
    agg.feed_dropped(
        lost_t, over, np.full(4, np.nan), np.array([2.8, np.nan, 1.4, np.nan], np.float64)
    )
    agg.feed(Block(ch.id, t1, np.full(6, 10.0)))
    t2 = 2 * NS_PER_S + np.arange(10, dtype=np.int64) * step + step // 2  # second 2: all lost
    agg.feed_dropped(t2, np.ones(10, np.bool_), np.full(10, np.nan), np.full(10, 1.4))
    agg.feed(Block.of(ch.id, [3 * NS_PER_S + 5], [20.0]))  # closes seconds 1 and 2
    assert [(i.t_end_ns, i.n, i.dropped, i.overrange) for i in got] == [
        (NS_PER_S, 10, 0, 0),
        (2 * NS_PER_S, 6, 4, 2),
        (3 * NS_PER_S, 0, 10, 10),
    ]
    assert [i.expected for i in got] == pytest.approx([10.0, 10.0, 10.0])
    assert got[1].watts == 10.0 and np.isnan(got[2].watts)
    assert got[1].amps_floor == pytest.approx(3.3)  # the 3.3 A reading beats the 2.8 A floor
    assert got[1].volts_floor is None and got[2].amps_floor == pytest.approx(1.4)
    assert agg.missing == 0 and agg.drop_only == 1 and agg.dropped == 14
    from powerd.ptd.protocol import invalid_reason

    assert invalid_reason(got[0]) is None
    assert invalid_reason(got[1]) is not None and invalid_reason(got[2]) is not None


def test_an_unwritable_sample_log_is_one_setup_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-l` in a directory that cannot exist: one stamped ERROR line and exit 2 (setup), not a
    raw ``FileNotFoundError`` and exit 1."""
    from powerd.ptd.main import main

    argv = ["-l", "/proc/powerd-x/ptd.log", "-p", "18999", "--state-dir", str(tmp_path), "49"]
    assert main([*argv, "sim:constant,w=5"]) == 2
    err = [x for x in capsys.readouterr().out.splitlines() if "ERROR" in x]
    assert len(err) == 1
    assert err[0].endswith(
        "ERROR: -l /proc/powerd-x/ptd.log: cannot open the sample log: No such file or directory"
    )
