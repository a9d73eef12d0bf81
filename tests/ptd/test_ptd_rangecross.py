"""``powerd-ptd`` on a load that crosses the meter's current ranges twice a second (run E of
BENCHMARKS.md section 10): the WT310 simulator on a pty at 12 V, a 40/5 W square every 0.5 s
(3.33 A / 0.42 A), updates every 0.1 s, auto ranging in the ranging run.

Under auto ranging nearly every high reading is overrange or NAN (range switching). Checked: no 1 s
sample is off the truth by more than its stated uncertainty (a second that lost readings is
logged as not valid: Watts ``-1``, no uncertainty, a timestamped WARNING); the ranging log's
largest Amps make power-dev's ``SR,A,<1.1 x max A>`` pick a range that holds the 3.33 A peak, so
the testing run has every reading and every sample valid; and the store's accuracy history of
the power channel records the auto-range moves (not only the 75 W range).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from powerd.probes.serialsim import Faults, PtySimulator
from powerd.probes.sim.waveform import parse_spec
from powerd.probes.wt300.models import smallest_range
from powerd.probes.wt300.sim import make
from tests.ptd.ptdproc import GO, STAMP_RE, Client, max_volts_amps, running_ptd, wait_log_lines

pytest.importorskip("serial")

WF = parse_spec("square,high=40,low=5,period=0.5,duty=0.5").waveform
VOLTS_V = 12.0
PEAK_A = 40.0 / VOLTS_V
TRUE_W = 22.5  # every 1 s window of a 0.5 s square holds two whole periods
OVERRANGE_FRAC = 1.4  # the meter reads up to 140 % of a range
SESSION = "2026-12-03_12-00-00_e"


def _measure(c: Client, ptd: object, mark: str, n: int) -> tuple[list[list[str]], list[str]]:
    """Go, ``n`` logged samples, Stop, RL: the marked log rows and the Uncertainty reply."""
    from tests.ptd.ptdproc import Ptd

    assert isinstance(ptd, Ptd)
    assert c.cmd(f"Go,1000,0,{mark}") == GO
    wait_log_lines(ptd, mark, n, timeout_s=60.0)
    assert c.cmd("Stop") == "Stopping untimed measurement"
    assert c.cmd("RL,*,*") == "Error: Invalid number of parameters"
    rl = c.read_last("RL")
    lines = [x for x in ptd.log_lines() if x.endswith(f",Mark,{mark}")]
    assert rl == [x.rsplit(",Mark,", 1)[0] for x in lines]
    return [x.split(",") for x in lines], c.cmd("Uncertainty").split(",")


def _echoed_uncertainty(out: list[str], stamp: str) -> float | None:
    """The per-sample uncertainty the face echoed for the sample stamped ``stamp``."""
    for x in out:
        if f"Time,{stamp}," in x and ",Uncertainty," in x:
            u = x.split(",Uncertainty,", 1)[1].split(",", 1)[0]
            return None if u == "-1" else float(u.rstrip("%")) / 100
    raise AssertionError(f"sample {stamp} not echoed")


def _check_samples(rows: list[list[str]], out: list[str]) -> int:
    """Every valid sample within its stated uncertainty of the truth; every other one logged -1
    with a warning saying why. Returns the number of valid samples."""
    text = [x.split(": ", 1)[1] for x in out]
    valid = 0
    for f in rows:
        assert len(f) == 12 and "nan" not in ",".join(f).lower()
        unc = _echoed_uncertainty(out, f[1])
        if f[3] == "-1":
            assert unc is None  # no ±0.x % claimed for a second that lost readings
            assert any(x.startswith(f"WARNING: sample {f[1]} not valid: ") for x in text)
            continue
        valid += 1
        w = float(f[3])
        assert unc is not None and 0 < unc < 0.05
        assert abs(w - TRUE_W) <= unc * w, (f, unc)
    return valid


def test_range_crossing_load_gives_honest_samples_and_a_range_that_holds(tmp_path: Path) -> None:
    model = make("wt310", WF, {"rate": "0.1", "voltage": f"{VOLTS_V:g}"})
    link = tmp_path / "wt310"
    sim = PtySimulator(model, link, Faults()).start()
    state = tmp_path / "state"
    ranging, testing = f"{SESSION}_ranging", f"{SESSION}_testing"
    try:
        spec = f"wt300:{link},rate=0.1,vi=on,baud=38400"
        with running_ptd(tmp_path, spec, state) as ptd:
            c = Client(ptd.port)
            assert c.cmd("Hello") == "Hello, PTDaemon here!"
            assert c.cmd("RR").startswith("Ranges,1,")
            assert c.cmd("SR,V,Auto") == "Range V changed"
            assert c.cmd("SR,A,Auto") == "Range A changed"
            rows_r, unc_r = _measure(c, ptd, ranging, 3)

            vmax, amax = max_volts_amps(ptd.log, ranging)
            a_set = amax * Decimal("1.1")  # what power-dev's server sends
            assert c.cmd(f"SR,V,{vmax}") == "Range V changed"
            assert c.cmd(f"SR,A,{a_set}") == "Range A changed"
            a_range = smallest_range(model.model.current_ranges_a(3), float(a_set))
            assert a_range is not None and model.irange_a == a_range and not model.iauto
            # the testing range holds the load's peak: no reading of it is overrange
            assert OVERRANGE_FRAC * a_range >= PEAK_A
            rows_t, unc_t = _measure(c, ptd, testing, 3)
            c.close()
            assert ptd.terminate() == 0
            out = ptd.out_lines()
            assert ptd.stderr.read_text() == ""
    finally:
        sim.stop()

    assert all(STAMP_RE.match(x) for x in out)
    text = [x.split(": ", 1)[1] for x in out]
    valid_r = _check_samples(rows_r, out)
    # auto ranging loses high readings: those seconds are marked, with overrange raising Amps
    assert valid_r < len(rows_r)
    assert any("overrange" in x and "Volts/Amps logged as at least" in x for x in text)
    assert int(unc_r[4]) == valid_r  # the Uncertainty reply covers the valid samples only
    # testing on the range from the ranging log: every second whole and within its uncertainty
    assert _check_samples(rows_t, out) == len(rows_t)
    assert int(unc_t[4]) == len(rows_t) and 0 < float(unc_t[3]) < 0.05

    from powerd.store import Store

    with Store(state / "powerd.db") as store:
        result = store.result(SESSION)
        assert result is not None
        phase = next(p for p in result["phases"] if p["phase"] == ranging)
        p1 = next(c for c in store.channels() if c.endswith(":p1"))
        history = store.accuracy_history(p1, phase["t_begin_ns"], phase["t_end_ns"])
    ranges_w = {round(acc.range_w, 6) for _, acc in history}
    assert len(ranges_w) >= 2, history  # the auto-range moves are in the history
    assert "range_changed" in phase["flags"], phase["flags"]
