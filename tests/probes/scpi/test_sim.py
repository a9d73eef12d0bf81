"""The SCPI simulators' command sets, called directly (no pty): SCPI long/short mnemonics, the
silence and error queue for an unknown query, reply formats, timing and per-model quirks."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerd.probes.scpi.profiles import HIOKI_RE, KEYSIGHT_RE
from powerd.probes.scpi.sim import ScpiInstrument, header_regex, hioki_nr3, make
from powerd.probes.sim.waveform import parse_spec

T0 = 1_763_000_000_000_000_000
WF = parse_spec("constant,w=6").waveform


def model(name: str, **options: str) -> ScpiInstrument:
    m = make(name, WF, dict(options))
    assert isinstance(m, ScpiInstrument)
    return m


def ask(m: ScpiInstrument, text: str, now: int = T0, wait_ns: int = 100_000_000) -> str:
    """Send one message; what comes back within ``wait_ns`` (empty: silence)."""
    out = m.on_input(text.encode() + b"\r\n", now) + m.stream(now + wait_ns)
    return out.decode()


def test_mnemonics_long_or_short_form_only() -> None:
    r = header_regex(":MEASure:POWEr?")
    for ok in ("MEAS:POWE?", ":measure:power?", "MEASURE:POWE?", "Meas:Power?"):
        assert r.match(ok), ok
    for bad in ("MEAS:POW?", "MEASU:POWE?", "MEAS:POWE", "MEAS:POWER:DC?"):
        assert not r.match(bad), bad
    k = header_regex("MEASure[:SCALar]:VOLTage[:DC]?")
    assert k.match("MEAS:VOLT?") and k.match("MEAS:SCAL:VOLT:DC?") and not k.match("MEAS:DC?")


def test_siglent_never_answers_an_undefined_header_and_queues_113() -> None:
    m = model("siglent-spd")
    assert ask(m, "MEAS:POW? CH1", wait_ns=2_000_000_000) == ""
    assert ask(m, "SYST:ERR?") == "-113  Undefined header\n"
    assert ask(m, "SYST:ERR?") == "0  No Error\n"
    assert re.fullmatch(r"6\.000\n", ask(m, "MEASure:POWEr? CH1"))
    assert re.fullmatch(r"6\.000\n", ask(m, "MEAS:POWE? CH1"))
    assert ask(m, "MEAS:POWE? CH3") == ""  # CH3 has no readback
    assert ask(m, "SYST:ERR?").startswith("-224")


def test_rigol_all_is_consistent_and_bad_channel_is_silent() -> None:
    m = model("rigol-dp800", volts="12")
    v, i, p = (float(x) for x in ask(m, ":MEAS:ALL? CH2").split(","))
    assert v == 12.0 and p == pytest.approx(6.0) and v * i == pytest.approx(p, abs=2e-3)
    assert ask(m, ":MEAS:POWE? CH4") == ""
    assert ask(m, ":SYST:ERR?") == '-224,"Illegal parameter value"\n'


def test_keysight_measures_on_demand_and_fetches_the_same_acquisition() -> None:
    m = model("keysight-n6700")
    assert ask(m, "FETC:CURR? (@1)") == ""  # nothing acquired yet
    assert m.on_input(b"MEAS:VOLT? (@1)\n", T0) == b""
    assert m.stream(T0 + 10_000_000) == b""  # 21 ms acquisition not done
    reply = m.stream(T0 + 30_000_000).decode().strip()
    assert re.match(KEYSIGHT_RE, reply) and float(reply) == 5.0
    amps = ask(m, "FETC:CURR? (@1)", now=T0 + 40_000_000).strip()
    assert re.match(KEYSIGHT_RE, amps) and float(amps) == pytest.approx(1.2)
    assert ask(m, "MEAS:POW? (@1)").strip() == "+6.000000E+00"


def test_hioki_headers_and_event_register() -> None:
    m = model("hioki-pw3335")
    assert ask(m, ":MEASure? U,I,P") == "U +5.0000E+0;I +1.2000E+0;P +6.0000E+0\r\n"
    ask(m, ":HEAD OFF")
    assert ask(m, ":MEAS? U,I,P") == "+5.0000E+0;+1.2000E+0;+6.0000E+0\r\n"
    assert ask(m, "*ESR?") == "0\r\n"
    assert ask(m, ":MEAS:POWE? U") == ""
    assert ask(m, "*ESR?") == "32\r\n"


def test_pa1000_new_data_bit_selection_order_and_one_command_per_message() -> None:
    m = model("tek-pa1000", azero="0")
    for cmd in (":SEL:CLR", ":SEL:WAT", ":SEL:VLT", ":DSE 2"):
        assert ask(m, cmd) == ""
    assert ask(m, ":DSR?") == "3\n"
    assert ask(m, ":DSR?") == "1\n"  # read clears the new-data bit
    assert ask(m, ":DSR?", now=T0 + 600_000_000) == "3\n"
    assert [float(x) for x in ask(m, ":FRD?").split(",")] == [6.0, 5.0]
    assert ask(m, ":SEL:CLR;:SEL:AMP") == ""
    assert ask(m, "*ESR?") == "32\n"


def test_pa1000_autozero_pauses_updates() -> None:
    m = model("tek-pa1000", azero="60")
    ask(m, ":DSR?", now=T0)
    news = [ask(m, ":DSR?", now=T0 + k * 250_000_000) for k in range(1, 250)]
    # Once a minute, about a second without new data: the longest run of "1" grows.
    runs = "".join("n" if r == "3\n" else "." for r in news)
    assert "...." in runs and "...." not in runs[:200]


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=-9e8, max_value=9e8, allow_nan=False))
def test_hioki_numbers_are_ten_characters(x: float) -> None:
    text = hioki_nr3(x)
    assert len(text) == 10 and re.match(HIOKI_RE, text), text
    if abs(x) > 1e-5:
        assert float(text) == pytest.approx(x, rel=2e-4, abs=1e-5)
