"""``powerd-ptd`` over TCP as power-dev's server drives it: both launches, the sim source.

The first launch is the server's start-up smoke test (Hello, Identify, RR, SR,V and SR,A with the
initial ranges, SIGTERM); the second is one full session in power-dev's order (ranging, then
testing at the ranges read back from the ``-l`` log, then the initial ranges, SIGTERM). The sim's
square wave (period 0.4 s, 1 kHz) gives 1 s means that alternate between 52 and 48 W, known
exactly, and its 2 % accuracy makes every sample's uncertainty 2 %, above PTDaemon's 1 % limit.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path

import pytest

from powerd import __version__
from powerd.probes.sim.waveform import parse_spec
from powerd.ptd.stamp import stamp_text
from tests.ptd.ptdproc import (
    GO,
    STAMP_RE,
    Client,
    init_range,
    max_volts_amps,
    port_free,
    report_phases,
    running_ptd,
    session_text,
    wait_log_lines,
)

WAVE = "square,high=60,low=40,period=0.4,duty=0.5"
SPEC = f"sim:{WAVE},acc=0.02"
WF = parse_spec(WAVE).waveform
NS = 1_000_000_000
SESSION = "2026-12-03_10-00-00_ptdtest"
SAMPLES_PER_RUN = 3


def _parse_stamp_ns(text: str) -> int:
    from datetime import UTC, datetime

    dt = datetime.strptime(text, "%m-%d-%Y %H:%M:%S.%f").replace(tzinfo=UTC)
    return round(dt.timestamp() * 1000) * 1_000_000


def _check_stdout(lines: list[str], stderr: str) -> None:
    """Every line stamped; no WARNING/ERROR without a stamp anywhere."""
    assert stderr == ""
    assert lines
    for line in lines:
        assert STAMP_RE.match(line), line
        assert ": ERROR:" not in line, line


def _smoke_launch(tmp: Path, state: Path) -> None:
    with running_ptd(tmp, SPEC, state, name="smoke") as ptd:
        c = Client(ptd.port)
        assert c.cmd("Hello") == "Hello, PTDaemon here!"
        ident = c.cmd("Identify")
        assert ident.split(",")[0] == "powerd-ptd"
        assert f"version={__version__}-powerd" in ident
        assert "instrument=sim" in ident
        assert "PTDaemon" not in ident and "Yokogawa" not in ident
        rr = c.cmd("RR")
        assert rr == "Ranges,-1,-1,-1,-1"  # no ranges on the sim: unknown, so the server uses Auto
        assert c.cmd(f"SR,V,{init_range(rr, 3)}") == "Range V changed"
        assert c.cmd(f"SR,A,{init_range(rr, 1)}") == "Range A changed"
        c.close()
        assert ptd.terminate() == 0
        assert port_free(ptd.port)
        _check_stdout(ptd.out_lines(), ptd.stderr.read_text())
        assert ptd.log_lines() == []  # no Go: nothing in the sample log
        assert any("range V auto: no ranges on this probe (no-op)" in x for x in ptd.out_lines())


def _check_log(lines: list[str], mark: str) -> list[tuple[int, Decimal]]:
    """The mark's lines: 12 fields, no nan, 1 s apart, each the exact 1 s mean of the sim."""
    mine = [x for x in lines if x.endswith(f",Mark,{mark}")]
    out = []
    for line in mine:
        f = line.split(",")
        assert len(f) == 12, line
        assert "nan" not in line.lower()
        assert f[0::2] == ["Time", "Watts", "Volts", "Amps", "PF", "Mark"]
        t_ns = _parse_stamp_ns(f[1])
        w = Decimal(f[3])
        truth = WF.energy_j(t_ns - NS, t_ns)  # J in the second before the stamp = mean W
        assert float(w) == pytest.approx(truth, rel=1e-6)
        assert Decimal(f[5]) == 230 and float(f[7]) == pytest.approx(float(w) / 230, rel=1e-5)
        assert f[9] == "-1"
        out.append((t_ns, w))
    assert len(out) >= SAMPLES_PER_RUN
    assert all(b[0] - a[0] == NS for a, b in itertools.pairwise(out))
    assert {round(float(w)) for _, w in out} == {48, 52}  # the 1 s means really alternate
    return out


def _stats(reply: str, name: str, values: list[float], n_fields: int) -> None:
    f = reply.split(",")
    assert f[0] == name and len(f) == n_fields
    assert float(f[1]) == pytest.approx(sum(values) / len(values), rel=1e-6)
    assert float(f[2]) == pytest.approx(min(values), rel=1e-6)
    assert float(f[3]) == pytest.approx(max(values), rel=1e-6)
    assert f[4] == f[6] == str(len(values)) and f[5] == "0"


def _phase(c: Client, ptd: object, mark: str, testing: bool) -> list[tuple[int, Decimal]]:
    from tests.ptd.ptdproc import Ptd

    assert isinstance(ptd, Ptd)
    assert c.cmd(f"Go,1000,0,{mark}") == GO
    wait_log_lines(ptd, mark, SAMPLES_PER_RUN)
    if testing:
        assert c.cmd("Watts").startswith("Watts,")
        assert c.cmd("Uncertainty").startswith("Uncertainty,0.02,")
    assert c.cmd("Stop") == "Stopping untimed measurement"
    assert c.cmd("RL,*,*") == "Error: Invalid number of parameters"
    rl = c.read_last("RL")
    assert c.read_last("RL") == []  # the cursor moved: nothing unread
    logged = _check_log(ptd.log_lines(), mark)
    assert rl == [x.rsplit(",Mark,", 1)[0] for x in ptd.log_lines() if x.endswith(f",{mark}")]
    watts = [float(w) for _, w in logged]
    _stats(c.cmd("Uncertainty"), "Uncertainty", [0.02] * len(watts), 8)
    _stats(c.cmd("Watts"), "Watts", watts, 7)
    return logged


def test_smoke_then_session_with_sim(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _smoke_launch(tmp_path, state)

    with running_ptd(tmp_path, SPEC, state, name="session") as ptd:
        c = Client(ptd.port)
        assert c.cmd("Hello") == "Hello, PTDaemon here!"
        c.cmd("Identify")
        rr = c.cmd("RR")
        assert c.cmd("SR,V,Auto") == "Range V changed"
        assert c.cmd("SR,A,Auto") == "Range A changed"
        assert c.cmd("SR,A,Auto") == "Range A changed"
        assert c.cmd("Stop") == "Error: no measurement to stop"
        ranging = _phase(c, ptd, f"{SESSION}_ranging", testing=False)
        vmax, amax = max_volts_amps(ptd.log, f"{SESSION}_ranging")
        assert vmax == 230 and amax > 0  # positive V/A without a V/A probe (the convention)
        assert c.cmd(f"SR,V,{vmax}") == "Range V changed"
        assert c.cmd(f"SR,A,{amax * Decimal('1.1')}") == "Range A changed"
        testing = _phase(c, ptd, f"{SESSION}_testing", testing=True)
        assert c.cmd(f"SR,V,{init_range(rr, 3)}") == "Range V changed"
        assert c.cmd(f"SR,A,{init_range(rr, 1)}") == "Range A changed"
        c.close()
        assert ptd.terminate() == 0
        assert port_free(ptd.port)
        out = ptd.out_lines()
        _check_stdout(out, ptd.stderr.read_text())

    # the lines check.py reads, in order
    text = session_text(ptd, SESSION, "sim")
    warn = "WARNING: Uncertainty 2.00%, which is above 1.00% limit for the last sample!"
    assert warn in text
    # every sample echoed: each log line's fields appear on stdout
    for line in ptd.log_lines():
        assert any(line in x for x in text), line

    _check_report(tmp_path, state, {"ranging": ranging, "testing": testing})


def _check_report(tmp: Path, state: Path, logged: dict[str, list[tuple[int, Decimal]]]) -> None:
    """``powerd report <session>``: both phases, each agreeing with the sim's truth and with
    the 1 Hz log within the result's uncertainty (plus the known difference of the windows)."""
    phases = report_phases(state, SESSION, tmp / "rep")  # asserts: ranging and testing only
    for kind, rows in logged.items():
        p = phases[f"{SESSION}_{kind}"]
        u_w = p["uncertainty_j"] / p["duration_s"]
        assert u_w > 0
        truth_w = WF.energy_j(p["t_begin_ns"], p["t_end_ns"]) / p["duration_s"]
        assert abs(p["mean_power_w"] - truth_w) <= u_w
        # the log covers whole seconds inside the phase: its truth differs by a known amount
        log_mean = sum(float(w) for _, w in rows) / len(rows)
        log_truth = WF.energy_j(rows[0][0] - NS, rows[-1][0]) / (len(rows))
        assert log_mean == pytest.approx(log_truth, rel=1e-6)
        assert abs(p["mean_power_w"] - log_mean) <= u_w + abs(truth_w - log_truth) + 1e-9
        assert rows[0][0] - NS >= p["t_begin_ns"] and rows[-1][0] <= p["t_end_ns"]
        assert stamp_text(rows[0][0])  # stamps are UTC ms


def test_go_without_stop_then_sigterm_ends_the_phase(tmp_path: Path) -> None:
    """SIGTERM mid-measurement: exit 0, port freed, and the phase is ended in the store."""
    state = tmp_path / "state"
    with running_ptd(tmp_path, SPEC, state) as ptd:
        c = Client(ptd.port)
        assert c.cmd("Go,1000,0,cut_ranging") == GO
        wait_log_lines(ptd, "cut_ranging", 1)
        c.close()
        assert ptd.terminate() == 0
        assert port_free(ptd.port)
        _check_stdout(ptd.out_lines(), ptd.stderr.read_text())
    from powerd.store import Store

    with Store(state / "powerd.db") as store:
        result = store.result("cut")
    assert result is not None
    assert [p["phase"] for p in result["phases"]] == ["cut_ranging"]
