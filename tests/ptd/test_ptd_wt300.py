"""``powerd-ptd`` on the WT300 simulator (a pseudo-terminal): one power-dev session where SR
really sets the meter's ranges, and V/A/PF come from the meter (``vi=on``).

The simulator runs in this process (tests/probes/wt300/helpers.py's pty simulator), the face in a
real subprocess that opens ``wt300:<pty>,rate=0.1,vi=on``. The load is a 40/5 W square at 230 V
with power factor 0.9, so every logged line has V = 230 and PF = 0.9, and the testing ranges the
server derives from the ranging log (max V, 1.1 x max A) must end up set on the simulated meter.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from powerd.probes.serialsim import Faults, PtySimulator
from powerd.probes.sim.waveform import parse_spec
from powerd.probes.wt300.models import smallest_range
from powerd.probes.wt300.sim import make
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

pytest.importorskip("serial")

WF = parse_spec("square,high=40,low=5,period=1.3,duty=0.5").waveform
SESSION = "2026-12-03_11-00-00_wt"


def _phase(c: Client, ptd: object, mark: str, testing: bool) -> list[list[str]]:
    from tests.ptd.ptdproc import Ptd

    assert isinstance(ptd, Ptd)
    assert c.cmd(f"Go,1000,0,{mark}") == GO
    wait_log_lines(ptd, mark, 3)
    if testing:
        assert c.cmd("Watts").startswith("Watts,")
        assert c.cmd("Uncertainty").startswith("Uncertainty,")
    assert c.cmd("Stop") == "Stopping untimed measurement"
    assert c.cmd("RL,*,*") == "Error: Invalid number of parameters"
    rl = c.read_last("RL")
    lines = [x for x in ptd.log_lines() if x.endswith(f",Mark,{mark}")]
    assert rl == [x.rsplit(",Mark,", 1)[0] for x in lines]
    rows = [x.split(",") for x in lines]
    valid = [f for f in rows if f[3] != "-1"]  # -1: not the mean of its whole second
    if testing:  # fixed ranges from the ranging log: every reading is kept
        assert valid == rows
    text = [x.split(": ", 1)[1] for x in ptd.out_lines()]
    for f in rows:
        assert len(f) == 12 and "nan" not in ",".join(f).lower()
        if f not in valid:
            assert any(x.startswith(f"WARNING: sample {f[1]} not valid: ") for x in text)
            continue
        w, v, a, pf = (float(f[i]) for i in (3, 5, 7, 9))
        assert 5.0 - 1e-6 <= w <= 40.0 + 1e-6
        assert v == pytest.approx(230.0) and pf == pytest.approx(0.9, abs=1e-6)
        assert a == pytest.approx(w / (230.0 * 0.9), rel=1e-3)  # I = P / (U pf), all means
    unc = c.cmd("Uncertainty").split(",")
    assert unc[0] == "Uncertainty" and int(unc[4]) == len(valid)
    watts = c.cmd("Watts").split(",")
    if valid:
        assert 0.0 < float(unc[2]) <= float(unc[1]) <= float(unc[3]) < 0.05
        mean_w = sum(float(f[3]) for f in valid) / len(valid)
        assert float(watts[1]) == pytest.approx(mean_w, rel=1e-5)
    return rows


def test_session_on_the_wt300_simulator_sets_ranges(tmp_path: Path) -> None:
    model = make("wt310", WF, {"rate": "0.1", "voltage": "230", "pf": "0.9"})
    link = tmp_path / "wt310"
    sim = PtySimulator(model, link, Faults()).start()
    state = tmp_path / "state"
    try:
        spec = f"wt300:{link},rate=0.1,vi=on"
        with running_ptd(tmp_path, spec, state) as ptd:
            c = Client(ptd.port)
            assert c.cmd("Hello") == "Hello, PTDaemon here!"
            ident = c.cmd("Identify")
            assert ident.startswith("powerd-ptd,instrument=wt300 WT310,channel=wt300:")
            assert "Yokogawa" not in ident and "PTDaemon" not in ident
            rr = c.cmd("RR")
            assert rr.startswith("Ranges,1,") and ",1," in rr  # auto ranging on both
            assert c.cmd("SR,V,Auto") == "Range V changed"
            assert c.cmd("SR,A,Auto") == "Range A changed"
            assert c.cmd("SR,A,Auto") == "Range A changed"
            _phase(c, ptd, f"{SESSION}_ranging", testing=False)

            vmax, amax = max_volts_amps(ptd.log, f"{SESSION}_ranging")
            a_set = amax * Decimal("1.1")
            assert c.cmd(f"SR,V,{vmax}") == "Range V changed"
            assert c.cmd(f"SR,A,{a_set}") == "Range A changed"
            v_range = smallest_range(model.model.voltage_ranges_v(3), float(vmax))
            a_range = smallest_range(model.model.current_ranges_a(3), float(a_set))
            assert v_range is not None and a_range is not None
            # the simulated meter itself now holds the fixed ranges, and RR reports them
            assert (model.vauto, model.iauto) == (False, False)
            assert (model.vrange_v, model.irange_a) == (v_range, a_range)
            assert c.cmd("RR") == f"Ranges,0,{a_range:g},0,{v_range:g}"
            _phase(c, ptd, f"{SESSION}_testing", testing=True)

            assert c.cmd(f"SR,V,{init_range(rr, 3)}") == "Range V changed"
            assert c.cmd(f"SR,A,{init_range(rr, 1)}") == "Range A changed"
            assert (model.vauto, model.iauto) == (True, True)  # back to auto, as RR said
            c.close()
            assert ptd.terminate() == 0
            assert port_free(ptd.port)
            out = ptd.out_lines()
            assert ptd.stderr.read_text() == ""
            assert all(STAMP_RE.match(x) for x in out)
            text = session_text(ptd, SESSION, "wt300 WT310")
            assert any(x.startswith(f"range A: A range {a_range:g} A") for x in text)
    finally:
        sim.stop()

    phases = report_phases(state, SESSION, tmp_path / "rep")  # asserts: ranging and testing only
    for p in phases.values():
        truth_w = WF.energy_j(p["t_begin_ns"], p["t_end_ns"]) / p["duration_s"]
        # the meter's updates cover the phase up to one update (0.1 s) at each edge
        edge_w = 2 * 0.1 * (40 - 5) / p["duration_s"]
        assert abs(p["mean_power_w"] - truth_w) <= p["uncertainty_j"] / p["duration_s"] + edge_w


def test_meter_unplugged_mid_measurement_is_a_gap_not_zeros(tmp_path: Path) -> None:
    """The cable is pulled during a measurement and put back: the face keeps answering, the
    seconds without data are neither logged nor reported as 0 W, a timestamped WARNING says
    so, and the store records the outage as a gap of the phase."""
    import time

    model = make("wt310", WF, {"rate": "0.1", "voltage": "230", "pf": "0.9"})
    link = tmp_path / "wt310"
    sim = PtySimulator(model, link, Faults()).start()
    state = tmp_path / "state"
    mark = "gap_ranging"
    try:
        with running_ptd(tmp_path, f"wt300:{link},rate=0.1,vi=on", state) as ptd:
            c = Client(ptd.port)
            assert c.cmd("Go,1000,0,gap_ranging") == GO
            wait_log_lines(ptd, mark, 1)
            sim.unplug()
            time.sleep(2.5)  # the outage itself, not a wait for a result
            sim.replug()
            n_before = sum(x.endswith(mark) for x in ptd.log_lines())
            wait_log_lines(ptd, mark, n_before + 2, timeout_s=60.0)
            assert c.cmd("Stop") == "Stopping untimed measurement"
            rows = [x.split(",") for x in c.read_last("RL")]
            c.close()
            assert ptd.terminate() == 0
            out = ptd.out_lines()
    finally:
        sim.stop()
    # never a 0 W second; a second the outage cut short is -1 (not valid), with a warning
    assert all(float(f[3]) >= 5.0 - 1e-6 or f[3] == "-1" for f in rows)
    stamps = [f[1] for f in rows]
    assert len(stamps) == len(set(stamps))
    text = [x.split(": ", 1)[1] for x in out]
    assert any(x.startswith("WARNING: no samples from wt300:") for x in text)
    assert all(STAMP_RE.match(x) for x in out)
    from powerd.store import Store

    with Store(state / "powerd.db") as store:
        result = store.result("gap")
    assert result is not None
    (phase,) = result["phases"]
    assert phase["flags"], phase  # the outage is flagged in the figure it touches
