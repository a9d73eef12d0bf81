"""The WT300 simulator driven directly (no pty): replies, errors, WAIT, integrator."""

from __future__ import annotations

import pytest

from powerd.errors import SpecError
from powerd.probes.sim.waveform import parse_spec
from powerd.probes.wt300.sim import Wt300Sim, make

T = 100_000_000
T0 = 1_800_000_000 * 1_000_000_000  # a round UTC time in ns, on the update grid
WF = parse_spec("square,high=40,low=5,period=2,duty=0.5").waveform


def sim(name: str = "wt310", **opts: str) -> Wt300Sim:
    return make(name, WF, {"rate": "0.1", **opts})


def ask(m: Wt300Sim, line: str, t_ns: int) -> str:
    return m.on_input(line.encode() + b"\n", t_ns).decode()


def test_identity_and_terminators() -> None:
    assert ask(sim(), "*IDN?", T0) == "YOKOGAWA,WT310,C2SIM0001,F1.03\r\n"
    assert ask(sim(model="WT310E", transport="usbtmc"), "*idn?", T0).startswith("YOKOGAWA,WT310E,")
    assert ask(sim("wt330"), "*IDN?", T0).split(",")[1] == "WT333"


def test_unknown_header_is_an_error_and_an_unknown_query_gets_no_reply() -> None:
    m = sim()
    assert ask(m, ":FOO:BAR 1", T0) == ""
    assert ask(m, ":MEAS:POW?", T0) == ""
    assert ask(m, ":STAT:ERR?", T0) == '-113,"Undefined header"\r\n'
    assert ask(m, ":STAT:ERR?", T0) == '-113,"Undefined header"\r\n'
    assert ask(m, ":STAT:ERR?", T0) == '0,"No error"\r\n'
    assert ask(m, ":INP:CURR:RANG 3A", T0) == ""
    assert ask(m, ":STATUS:ERROR?", T0) == '-222,"Data out of range"\r\n'


def test_long_and_short_forms_and_compound_messages() -> None:
    m = sim()
    ask(m, ":NUMERIC:NORMAL:NUMBER 2;:NUM:ITEM1 P,1;:NUMeric:NORMal:ITEM2 U,1", T0)
    assert ask(m, ":NUM:NORM:NUM?;:NUM:NORM:ITEM1?;:INPUT:CURRENT:AUTO?", T0) == "2;P,1;1\r\n"


def test_p_is_the_exact_mean_power_over_the_update_interval() -> None:
    m = sim()
    ask(m, ":NUM:NORM:NUM 1;:NUM:NORM:ITEM1 P,1", T0)
    for k in (5, 9, 10, 19, 20, 25):  # square period 2 s = 20 updates: edges at k = 10, 20
        now = T0 + k * T + 1_000_000
        want = WF.energy_j(T0 + (k - 1) * T, T0 + k * T) / 0.1
        assert float(ask(m, ":NUM:NORM:VAL?", now)) == pytest.approx(want, rel=1e-4)


def test_wait_holds_commands_until_the_next_update() -> None:
    m = sim()
    ask(m, ":STAT:FILT1 FALL;:NUM:NORM:NUM 1;:NUM:NORM:ITEM1 P,1", T0 + 1)
    assert ask(m, ":STAT:EESR?", T0 + 2) == "0\r\n"
    assert ask(m, ":COMM:WAIT 1", T0 + 3) == ""
    assert ask(m, ":NUM:NORM:VAL?", T0 + 4) == ""  # held
    assert m.stream(T0 + T - 1) == b""
    out = m.stream(T0 + T + 500_000)
    assert out.endswith(b"\r\n") and m.served[-1][0] == (T0 + T) // T
    assert ask(m, ":STAT:EESR?", T0 + T + 600_000) == "1\r\n"  # UPD fell; reading clears it
    assert ask(m, ":STAT:EESR?", T0 + T + 700_000) == "0\r\n"


def test_integrator_holds_the_exact_energy_and_refuses_a_rate_change() -> None:
    m = make("wt330", WF, {"rate": "0.1", "shares": "0.5/0.3/0.2"})
    start = T0 + 3 * T + 12_345
    ask(m, ":INTEG:MODE NORM;:INTEG:TIM 0,0,0;:INTEG:STAR", start)
    ask(m, ":NUM:NORM:NUM 3;:NUM:ITEM1 WH,1;:NUM:ITEM2 WH,2;:NUM:ITEM3 WH,3", start)
    assert ask(m, ":INTEG:STAT?", start) == "START\r\n"
    now = T0 + 40 * T + 10
    wh = [float(x) for x in ask(m, ":NUM:NORM:VAL?", now).split(",")]
    truth = WF.energy_j(start, T0 + 40 * T)
    for got, share in zip(wh, (0.5, 0.3, 0.2), strict=True):
        assert got * 3600 == pytest.approx(share * truth, rel=1e-5)
    ask(m, ":RATE 250MS", now)
    assert ask(m, ":STAT:ERR?", now) == '-221,"Settings conflict"\r\n'
    ask(m, ":INTEG:STOP;:INTEG:RES", now)
    assert ask(m, ":INTEG:STAT?;:NUM:NORM:VAL? 1", now) == "RESET;0.00000E+00\r\n"


def test_fixed_range_overrange_reads_inf_and_auto_range_follows() -> None:
    m = sim(voltage="12")  # 40 W at 12 V = 3.33 A
    ask(m, ":NUM:NORM:NUM 2;:NUM:ITEM1 P,1;:NUM:ITEM2 I,1", T0)
    ask(m, ":INP:CURR:RANG 2A", T0)
    high = T0 + 5 * T + 1  # inside the high half of the square wave
    assert ask(m, ":NUM:NORM:VAL?", high) == "INF,INF\r\n"  # 3.33 A > 140 % of 2 A
    ask(m, ":INP:CURR:AUTO ON", high)
    later = T0 + 8 * T + 1
    assert ask(m, ":NUM:NORM:VAL?;:INP:CURR:RANG?", later).endswith(";5.000E+00\r\n")


def test_make_rejects_bad_options() -> None:
    with pytest.raises(SpecError, match="unknown option"):
        make("wt310", WF, {"colour": "red"})
    with pytest.raises(SpecError, match="rate"):
        make("wt310", WF, {"rate": "0.3"})
    with pytest.raises(SpecError, match="shares"):
        make("wt330", WF, {"shares": "1/2"})


def test_range_crossing_load_one_nan_per_move_and_u_stays_a_number_when_i_is_over() -> None:
    """A 40/5 W square every 0.5 s at 12 V (3.33 A / 0.42 A) under auto ranging: a range move
    costs the one update after it (NAN), auto range decides nothing on that update (no chain of
    moves on values the meter did not measure), and an overrange reading marks I (and P), not
    U, which is inside its range."""
    wf = parse_spec("square,high=40,low=5,period=0.5,duty=0.5").waveform
    m = make("wt310", wf, {"rate": "0.1", "voltage": "12"})
    ask(m, ":NUM:NORM:NUM 3;:NUM:ITEM1 P,1;:NUM:ITEM2 U,1;:NUM:ITEM3 I,1", T0)
    got = [ask(m, ":NUM:NORM:VAL?", T0 + k * T + 1).strip() for k in range(1, 21)]
    p = [x.split(",")[0] for x in got]
    for k, x in enumerate(p):
        if x == "NAN":
            assert k > 0 and p[k - 1] != "NAN"  # one NAN after each move, never two
    over = [x.split(",") for x in got if x.startswith("INF")]
    assert over and all(u != "INF" and i == "INF" for _, u, i in over)
    assert all(float(u) == pytest.approx(12.0) for _, u, _ in over)
    # every period: high on the 2 A range reads overrange, the move to 5 A costs one update,
    # then the readings are whole again
    assert p.count("INF") >= 3 and sum(x not in ("NAN", "INF") for x in p) >= 8
