"""The simulated PowerShield as a model (no pty): replies, refusals, the streams it produces."""

from __future__ import annotations

import numpy as np
import pytest

from powerd.errors import SpecError
from powerd.probes.lpm01a.parse import AsciiDecoder, BinaryDecoder
from powerd.probes.lpm01a.sim import (
    POWER_LOSS_S,
    PowerShieldSim,
    ascii_token,
    encode_binary,
    make,
    parse_number,
)
from powerd.probes.sim.waveform import parse_spec

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def shield(waveform: str = "constant,w=0.033", **options: str) -> PowerShieldSim:
    return make("lpm01a", parse_spec(waveform).waveform, dict(options))


def say(sim: PowerShieldSim, *lines: str, at: int = T0) -> bytes:
    return b"".join(sim.on_input(line.encode() + b"\r\n", at) for line in lines)


def test_acks_echo_the_command_and_queries_carry_their_value() -> None:
    sim = shield()
    assert say(sim, "htc") == b"\r\nPowerShield > ack htc\r\n\r\n"
    assert say(sim, "volt 3300m") == b"\r\nPowerShield > ack volt 3300m\r\n\r\n"
    assert say(sim, "volt get") == b"\r\nPowerShield > ack volt get 3300-03\r\n\r\n"
    assert b"ack version 1.0.7" in say(sim, "version")
    assert b"ack status ok" in say(sim, "status")
    assert b"ack temp degc 28.0" in say(sim, "temp degc")


@pytest.mark.parametrize(
    ("lines", "detail"),
    [
        (["volt 3300m"], b"send htc first"),
        (["htc", "volt 5"], b"voltage out of range"),
        (["htc", "freq 3k"], b"frequency not in list"),
        (["htc", "format hex"], b"argument not in list"),
        (["htc", "frobnicate"], b"command not found"),
        (["htc", "stop"], b"no acquisition in progress"),
        (["htc", "freq 10k", "acqtime 0", "start"], b"needs a limited acqtime"),
        (["htc", "output energy", "freq 20k", "start"], b"energy output limited to 10k"),
        (["htc", "start", "freq 1k"], b"acquisition in progress"),
    ],
)
def test_refusals_come_with_an_error_detail(lines: list[str], detail: bytes) -> None:
    out = say(shield(), *lines)
    assert b"PowerShield > error: " in out
    assert b"PowerShield > Error detail: " in out and detail in out


def test_a_binary_acquisition_streams_at_its_rate_with_timestamps_and_ends_on_stop() -> None:
    sim = shield(timestamp_every="0.5")
    say(sim, "htc", "freq 1k", "acqtime 0", "format bin_hexa", "output current", "start")
    data = b"".join(sim.stream(T0 + k * 100 * MS) for k in range(1, 13))  # 1.2 s
    data += say(sim, "stop", at=T0 + 1300 * MS)
    dec = BinaryDecoder(1000, 3.3)
    out = dec.feed(data)
    assert out.ended and b"Acquisition completed" in out.rest
    assert out.slot.tolist() == list(range(1301))  # k = 0 … 1300 ms, all due by then
    assert out.value == pytest.approx(np.full(1301, 0.033), rel=2e-3)
    assert [e.device_ms for e in out.events if e.kind == "timestamp"] == [0, 500, 1000]
    assert sim.samples_sent == 1301 and not sim.acquiring


def test_an_ascii_energy_acquisition_reports_each_periods_exact_energy() -> None:
    wf = "square,high=0.1,low=0.02,period=0.01,duty=0.5"
    sim = shield(wf)
    say(sim, "htc", "freq 1k", "acqtime 0", "output energy", "start")
    data = sim.stream(T0 + 20 * MS) + say(sim, "stop", at=T0 + 20 * MS)
    out = AsciiDecoder(1000, 1.0, 1.0).feed(data)
    truth = [parse_spec(wf).waveform.energy_j(T0 + k * MS, T0 + (k + 1) * MS) for k in range(20)]
    assert out.value == pytest.approx(truth, rel=6e-4)  # four significant digits


def test_overcurrent_at_a_set_time_and_above_the_protection_limit() -> None:
    sim = shield(overcurrent_at="0.5")
    say(sim, "htc", "freq 1k", "format bin_hexa", "start")
    data = b"".join(sim.stream(T0 + k * 100 * MS) for k in range(1, 20))
    out = BinaryDecoder(1000, 3.3).feed(data)
    assert len(out) == 500 and [e.kind for e in out.events][-2:] == ["overcurrent", "end"]
    big = shield("constant,w=0.3")  # 91 mA at 3.3 V: beyond the 59 mA protection
    say(big, "htc", "format bin_hexa", "start")
    out = BinaryDecoder(100, 3.3).feed(big.stream(T0 + 100 * MS))
    assert len(out) == 0 and out.ended and not big.acquiring


def test_a_pause_longer_than_the_cable_allows_resets_the_shield() -> None:
    sim = shield()
    say(sim, "htc", "format bin_hexa", "start")
    sim.stream(T0 + 10 * MS)
    later = T0 + 10 * MS + int(POWER_LOSS_S * 1e9) + 1
    assert sim.stream(later) == b"" and not sim.acquiring and sim.power_cycles == 1
    assert b"send htc first" in say(sim, "start", at=later)


def test_encodings_and_numbers() -> None:
    assert encode_binary(np.array([640.9e-6])) == b"\x52\xa0"  # the firmware's example
    assert ascii_token(640.9e-6) == "6409-07" and ascii_token(0.0) == "0000+00"
    assert ascii_token(9.99996e-3) == "1000-05"
    assert [parse_number(x) for x in ("3300m", "100u", "2-3", "100k", "10", "x")] == [
        pytest.approx(3.3),
        pytest.approx(1e-4),
        pytest.approx(2e-3),
        1e5,
        10.0,
        None,
    ]


def test_unknown_options_are_refused() -> None:
    with pytest.raises(SpecError, match="unknown option 'colour'"):
        shield(colour="red")
    with pytest.raises(SpecError, match="positive"):
        shield(limit_a="-1")
