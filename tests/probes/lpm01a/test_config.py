"""The ``lpm01a:`` spec, the command sequence it implies, the family and the sample clock."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from powerd.errors import ProbeUnavailable, SpecError
from powerd.probes.lpm01a import family, make_channel
from powerd.probes.lpm01a.clock import SampleClock
from powerd.probes.lpm01a.config import parse_spec, rate_word, setup_commands


def test_defaults_are_the_on_board_energy_at_1_khz_in_ascii() -> None:
    cfg = parse_spec("/dev/ttyACM0")
    assert (cfg.output, cfg.binary, cfg.rate_hz, cfg.voltage_mv) == ("energy", False, 1000, 3300)
    assert (cfg.baud, cfg.channel_id, cfg.period_ns) == (3_686_400, "lpm01a:0", 1_000_000)
    ch = make_channel(cfg)
    assert ch.kind == "energy" and ch.source_class == "meter" and ch.accuracy.reading_frac > 0.02


def test_current_defaults_to_the_binary_stream() -> None:
    cfg = parse_spec("/dev/ttyACM0,output=current,rate=100k,voltage=1800m,id=dut,measures=mcu")
    assert (cfg.binary, cfg.rate_hz, cfg.voltage_v, cfg.format_word) == (
        True,
        100_000,
        1.8,
        "bin_hexa",
    )
    ch = make_channel(cfg)
    assert (ch.id, ch.kind, ch.measures) == ("lpm01a:dut", "power", "mcu")
    assert ch.nominal_period_s == 1e-5
    assert ch.accuracy.reading_frac == pytest.approx(0.02)


def test_the_full_command_sequence() -> None:
    cfg = parse_spec("/dev/x,output=current,rate=50k,voltage=2.5,funcmode=high")
    assert setup_commands(cfg) == [
        "volt 2500m",
        "freq 50k",
        "acqtime 0",
        "acqmode dyn",
        "funcmode high",
        "output current",
        "format bin_hexa",
        "trigsrc sw",
        "pwr on",
    ]
    assert "funcmode" not in " ".join(setup_commands(parse_spec("/dev/x")))
    assert [rate_word(r) for r in (100_000, 1000, 500, 1)] == ["100k", "1k", "500", "1"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "serial device first"),
        ("rate=1k", "serial device first"),
        ("/dev/x,rate=3k", "not one the PowerShield offers"),
        ("/dev/x,rate=fast", "not a frequency"),
        ("/dev/x,voltage=5", "1.8 V to 3.3 V"),
        ("/dev/x,voltage=high", "not a voltage"),
        ("/dev/x,output=power", "use one of current, energy"),
        ("/dev/x,output=energy,format=bin", "format=ascii"),
        ("/dev/x,output=energy,rate=20k", "rate<=10k"),
        ("/dev/x,output=current,format=ascii,rate=10k", "use format=bin"),
        ("/dev/x,funcmode=high", "output=current only"),
        ("/dev/x,id=a b", "letters, digits"),
        ("/dev/x,baud=fast", "not a positive integer"),
        ("/dev/x,timeout=0", "reply timeout"),
        ("/dev/x,colour=red", "unknown key 'colour'"),
    ],
)
def test_every_mistake_is_one_clear_line(spec: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(spec)


def test_family_availability_and_a_missing_device(tmp_path: Path) -> None:
    avail = family.available()
    assert avail.ok and ("lpm01a:" in avail.reason or "serial ports" in avail.reason)
    with pytest.raises(ProbeUnavailable, match="does not exist"):
        family.open(str(tmp_path / "nothing"))


# --- the sample clock --------------------------------------------------------------------------


def test_the_clock_takes_the_least_delayed_read_and_slews_without_jumps() -> None:
    clock = SampleClock(period_ns=10_000)  # 100 kHz
    t0 = 1_000_000_000_000
    rng = np.random.default_rng(1)
    stamps = []
    for i in range(200):  # 500-sample chunks read 0..2 ms late
        slots = np.arange(i * 500, (i + 1) * 500, dtype=np.int64)
        late = int(rng.uniform(0, 2e6)) if i else 1_500_000
        clock.observe(int(slots[-1]), t0 + int(slots[-1]) * 10_000 + late)
        t, skip = clock.stamp(slots)
        assert skip == 0
        stamps.append(t)
    t = np.concatenate(stamps)
    d = np.diff(t)
    assert bool((d > 0).all()) and int(d.min()) >= 9_900 and int(d.max()) <= 10_100
    assert clock.offset_ns is not None and abs(clock.offset_ns - t0) < 20_000  # the fastest read


def test_the_clock_follows_a_crystal_that_runs_slow_within_its_window() -> None:
    clock = SampleClock(period_ns=1_000_000, window_ns=2_000_000_000)  # 1 kHz
    t0 = 5_000_000_000_000
    for i in range(1, 601):  # 60 s of 100 ms chunks; the shield's second lasts 1.0001 s
        last = i * 100 - 1
        clock.observe(last, t0 + int(last * 1_000_000 * 1.0001))
        clock.stamp(np.arange(last - 99, last + 1, dtype=np.int64))
    true_offset_now = t0 + int(59_999 * 1_000_000 * 0.0001)
    assert clock.offset_ns is not None and abs(clock.offset_ns - true_offset_now) < 500_000


def test_a_restart_never_stamps_before_what_was_stamped() -> None:
    clock = SampleClock(period_ns=1_000_000)
    clock.observe(99, 10_000_000_000)
    t1, _ = clock.stamp(np.arange(100, dtype=np.int64))
    clock.restart()
    clock.observe(9, int(t1[-1]) - 1_000)  # a bogus early read
    _, skip = clock.stamp(np.arange(10, dtype=np.int64))
    assert skip == 10 and clock.last_t_ns == int(t1[-1])
