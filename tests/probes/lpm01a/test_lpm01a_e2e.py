"""The probe against its simulator on a pseudo-terminal: energy through ``powerd measure``,
unplug and replug, faults, overcurrent, refusals and silence.

Nothing here times anything: every wait is for a condition, with a generous bound.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import serial

from powerd.block import Block
from powerd.integrate import Window, integrate
from powerd.probes.lpm01a import family
from powerd.probes.lpm01a.probe import LpmProbe
from powerd.probes.lpm01a.sim import PowerShieldSim, make
from powerd.probes.serialsim import Faults, PtySimulator
from powerd.probes.sim.waveform import Waveform, parse_spec
from tests.tools import run_powerd

SQUARE = "square,high=0.1,low=0.02,period=0.2,duty=0.5"  # 30 mA / 6 mA at 3.3 V
RAMP = "ramp,low=0.02,high=0.1,period=30"  # slow: the truth at a stamp is sharp


def wait_for(cond: Callable[[], bool], timeout_s: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        time.sleep(0.01)


@contextmanager
def simulated(
    link: Path, waveform: str = SQUARE, options: dict[str, str] | None = None, **faults: Any
) -> Iterator[tuple[PtySimulator, PowerShieldSim]]:
    model = make("lpm01a", parse_spec(waveform).waveform, options or {})
    sim = PtySimulator(model, link, Faults(**faults)).start()
    try:
        yield sim, model
    finally:
        sim.stop()


class Collector:
    """Polls a probe like the sampler does and keeps everything."""

    def __init__(self, probe: LpmProbe) -> None:
        self.probe = probe
        self.blocks: list[Block] = []
        self.problems: list[str] = []
        probe.start(time.time_ns)

    def pull(self) -> int:
        self.blocks += self.probe.read(time.time_ns())
        self.problems += self.probe.problems()
        return sum(len(b) for b in self.blocks)

    def close(self) -> None:
        self.probe.close()
        self.pull()

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.concatenate([b.t_ns for b in self.blocks]),
            np.concatenate([b.value for b in self.blocks]),
        )


def powerd(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_powerd(*args, state=state)


def measure(tmp: Path, spec: str, seconds: float) -> tuple[dict[str, Any], list[list[str]]]:
    out = tmp / "out"
    r = powerd(
        tmp / "state", "measure", "--probe", spec, "--run", "r1", "--out", str(out), "--quiet",
        "--", "sleep", str(seconds),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    result = json.loads((out / "r1.json").read_text())
    with (out / "r1.csv").open() as f:
        rows = list(csv.reader(line for line in f if not line.startswith("#")))[1:]
    return result, rows


def check_energy(phase: dict[str, Any], wf: Waveform) -> None:
    truth = wf.energy_j(phase["t_begin_ns"], phase["t_end_ns"])
    assert abs(phase["energy_j"] - truth) <= phase["uncertainty_j"], (phase, truth)
    assert abs(phase["energy_j"] - truth) <= 0.01 * truth, (phase, truth)


# --- energy per phase ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "options", "kind"),
    [
        ("", {}, "counter"),  # the default: output energy, ascii_dec, 1 kHz
        ("output=current,rate=20k", {"timestamp_every": "0.25"}, "trapezoid"),
        ("output=current,format=ascii,rate=2k,voltage=1.8", {}, "trapezoid"),
    ],
)
def test_energy_of_a_phase_matches_the_waveform(
    tmp_path: Path, spec: str, options: dict[str, str], kind: str
) -> None:
    link = tmp_path / "lpm01a"
    with simulated(link, SQUARE, options) as (_, model):
        result, _rows = measure(tmp_path, f"lpm01a:{link}{',' + spec if spec else ''}", 1.5)
    (phase,) = result["phases"]
    # no config gives the shield a certificate; the simulator's sample clock is the waveform's
    # (a 0.2 s square at an exact 2k/20k samples/s): a phase-locked load, rightly flagged
    # periodic_load by the current-mode channel
    allowed = {"uncalibrated", "periodic_load"} if kind == "trapezoid" else {"uncalibrated"}
    assert "uncalibrated" in phase["flags"] and set(phase["flags"]) <= allowed
    ch = phase["channels"]["lpm01a:0"]
    assert ch["method"] == kind and ch["coverage"] == 1.0
    check_energy(phase, parse_spec(SQUARE).waveform)
    assert model.commands[:3] == ["htc", "version", "status"]
    assert "start" in model.commands and model.commands[-2:] == ["stop", "hrc"]


def test_powerd_sim_serves_the_probe_from_another_process(tmp_path: Path) -> None:
    link = tmp_path / "lpm01a"
    sim = subprocess.Popen(
        [sys.executable, "-m", "powerd", "sim", "lpm01a", "--link", str(link),
         "--waveform", RAMP],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for(link.exists, what="powerd sim to create its link")
        result, _ = measure(tmp_path, f"lpm01a:{link},output=current,rate=5k", 1.0)
    finally:
        sim.terminate()
        sim.wait(30)
    (phase,) = result["phases"]
    check_energy(phase, parse_spec(RAMP).waveform)


# --- unplug and replug -----------------------------------------------------------------------


def test_unplug_and_replug_during_a_run_is_a_gap_and_nothing_else_is_lost(
    tmp_path: Path,
) -> None:
    link = tmp_path / "lpm01a"
    unplugged: dict[str, int] = {}
    out_s = 1.5  # longer than the simulated shield survives without USB power

    def pull_cable(sim: PtySimulator, model: PowerShieldSim) -> None:
        wait_for(lambda: model.acquiring and model.samples_sent > 10_000, what="streaming")
        time.sleep(0.5)
        unplugged["at"] = time.time_ns()
        sim.unplug()
        time.sleep(out_s)
        unplugged["back"] = time.time_ns()
        sim.replug()

    spec = f"lpm01a:{link},output=current,rate=10k"
    with simulated(link, SQUARE, {"timestamp_every": "0.25"}) as (sim, model):
        t = threading.Thread(target=pull_cable, args=(sim, model), daemon=True)
        t.start()
        result, rows = measure(tmp_path, spec, 5.0)
        t.join(30)
        assert model.power_cycles == 1 and model.acquisitions == 2
    (phase,) = result["phases"]
    ch = phase["channels"]["lpm01a:0"]
    assert "incomplete" in phase["flags"]
    assert out_s - 0.05 <= ch["gap_s"] <= out_s + 2.0, ch
    t_ns = np.array([int(r[1]) for r in rows if r[0] == "lpm01a:0"], np.int64)
    d = np.diff(t_ns)
    i = int(np.argmax(d))
    before, after = int(t_ns[i]), int(t_ns[i + 1])
    assert unplugged["at"] - 50_000_000 <= before <= unplugged["at"] + 5_000_000
    assert unplugged["back"] <= after <= unplugged["back"] + 2_000_000_000
    rest = np.delete(d, i)  # every other step is one sample period (the slew is at most 1 %)
    assert bool((np.abs(rest - 100_000) <= 1_000).all()), (rest.min(), rest.max())


# --- faults ----------------------------------------------------------------------------------


def collect_until(probe: LpmProbe, cond: Callable[[Collector], bool]) -> Collector:
    c = Collector(probe)
    try:
        wait_for(lambda: c.pull() >= 0 and cond(c), what="data and faults")
    finally:
        c.close()
    return c


def collect_after_learning(probe: LpmProbe, samples: int) -> Collector:
    """What the probe emits once it knows the shield's timestamps sit on the sample grid."""
    c = Collector(probe)
    try:
        wait_for(lambda: c.pull() >= 0 and probe.state.grid_exact, what="the grid learned")
        c.blocks.clear()
        wait_for(lambda: c.pull() >= samples, what=f"{samples} samples")
    finally:
        c.close()
    return c


def off_ramp(t: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Samples off the ramp's truth at their stamp by more than quantisation and timing allow
    (0.2 % of full scale), leaving out 50 ms around the sawtooth's drops."""
    wf = parse_spec(RAMP).waveform
    phase = np.mod(t, wf.period_ns)
    away = (phase > 50_000_000) & (phase < wf.period_ns - 50_000_000)
    off: np.ndarray = away & (np.abs(v - wf.power_w(t)) > 0.002 * 0.1)
    return off


@pytest.mark.parametrize("faults", [{"drop": 0.02}, {"partial": 0.01}], ids=["drop", "partial"])
def test_dropped_bytes_and_cut_chunks_are_counted_and_never_integrated(
    tmp_path: Path, faults: dict[str, float]
) -> None:
    """Single bytes dropped, or chunks cut short, by the pty's fault injection (on replies too,
    so the session also reconnects now and then). Once the decoder knows the shield's
    timestamps sit exactly on the sample grid (three in a row; before that, one lost byte per
    timestamp interval is caught, two can hide), no wrong sample comes out: every sample equals
    the truth at its stamp, and the losses are counted and reported. (Two single bytes and a cut
    chunk in one interval could still hide wrong words: the README says why.)"""
    link = tmp_path / "lpm01a"
    with simulated(link, RAMP, {"timestamp_every": "0.05"}, seed=3, **faults):
        probe = family.open(f"{link},output=current,rate=10k,timeout=0.3")
        c = collect_after_learning(probe, 30_000)
    t, v = c.arrays()
    assert bool((np.diff(t) > 0).all())
    # almost always 0; a rare combination of losses in one timestamp interval can hide a run of
    # shifted words (the README's stated limit), which depends on how reads cut the stream
    assert int(off_ramp(t, v).sum()) <= 0.005 * v.size
    assert probe.state.counts.lost > 0
    assert any("lost" in p for p in c.problems)


def test_garbled_bytes_are_counted_and_rarely_pass_as_data(tmp_path: Path) -> None:
    link = tmp_path / "lpm01a"
    with simulated(link, RAMP, {"timestamp_every": "0.05"}, garble=0.05, seed=5):
        probe = family.open(f"{link},output=current,rate=10k,timeout=0.3")
        c = collect_after_learning(probe, 30_000)
    t, v = c.arrays()
    # a flipped bit that still decodes to a plausible current cannot be told from data (no
    # checksum); each garbled chunk (50 words at 10 kHz) spoils at most one word
    assert int(off_ramp(t, v).sum()) <= 0.002 * v.size
    assert probe.state.counts.bad > 0
    assert any("undecodable" in p for p in c.problems)


def test_energy_output_survives_faults_within_its_uncertainty(tmp_path: Path) -> None:
    link = tmp_path / "lpm01a"
    with simulated(link, SQUARE, drop=0.1, garble=0.05, seed=11) as (_, model):
        probe = family.open(f"{link},timeout=0.3")
        c = collect_until(
            probe, lambda c: probe.state.counts.bad > 2 and probe.state.samples > 2500
        )
    t, v = c.arrays()
    assert bool((np.diff(v) >= 0).all())  # a counter never runs backwards
    w = Window(int(t[0]), int(t[-1]))
    fig = integrate(t, v, w, probe.channels()[0])
    truth = parse_spec(SQUARE).waveform.energy_j(w.t_begin_ns, w.t_end_ns)
    assert fig.energy_j is not None and fig.uncertainty_j is not None
    assert abs(fig.energy_j - truth) <= fig.uncertainty_j
    assert model.samples_sent >= probe.state.samples - 1


# --- the shield's own conditions -------------------------------------------------------------


def test_overcurrent_stops_the_acquisition_and_is_not_restarted(tmp_path: Path) -> None:
    link = tmp_path / "lpm01a"
    with simulated(link, SQUARE, {"overcurrent_at": "0.3"}) as (_, model):
        probe = family.open(f"{link},output=current,rate=10k")
        c = Collector(probe)
        try:
            wait_for(lambda: c.pull() >= 0 and any("overcurrent" in p for p in c.problems))
            time.sleep(1.0)  # it would have restarted by now
            c.pull()
        finally:
            c.close()
        assert model.acquisitions == 1 and not model.acquiring
    assert probe.state.samples == 3000  # every sample up to the trip
    assert "cut the target's power" in next(p for p in c.problems if "overcurrent" in p)


def test_an_acquisition_the_shield_ends_is_restarted(tmp_path: Path) -> None:
    class EndsAfterHalfASecond(PowerShieldSim):
        def stream(self, now_ns: int) -> bytes:
            out = super().stream(now_ns)
            if self.acquiring and self.acquisitions == 1 and self._next_k >= 500:
                out += self._end(now_ns, overcurrent=False)
            return out

    link = tmp_path / "lpm01a"
    model = EndsAfterHalfASecond(parse_spec(SQUARE).waveform)
    with PtySimulator(model, link):
        probe = family.open(f"{link},output=current,rate=1k")
        c = Collector(probe)
        try:
            wait_for(lambda: c.pull() > 1500, what="samples of the second acquisition")
        finally:
            c.close()
    assert model.acquisitions >= 2
    assert any("ended the acquisition by itself" in p for p in c.problems)


class Refuses(PowerShieldSim):
    def _command(self, line: str, now_ns: int) -> bytes:
        if line.startswith("funcmode"):
            return self._error(line, "not available on this board")
        return super()._command(line, now_ns)


class Silent(PowerShieldSim):
    def on_input(self, data: bytes, now_ns: int) -> bytes:
        return b""


@pytest.mark.parametrize(
    ("model_cls", "want"),
    [
        (Refuses, "refused 'funcmode optim': not available on this board"),
        (Silent, "no reply to 'htc' within 0.2 s"),
    ],
)
def test_refusals_and_silence_are_clear_problems_never_hangs(
    tmp_path: Path, model_cls: type[PowerShieldSim], want: str
) -> None:
    link = tmp_path / "lpm01a"
    with PtySimulator(model_cls(parse_spec(SQUARE).waveform), link):
        probe = family.open(f"{link},output=current,timeout=0.2")
        c = Collector(probe)
        try:
            wait_for(lambda: c.pull() >= 0 and any(want in p for p in c.problems), what=want)
        finally:
            t0 = time.monotonic()
            c.close()
            assert time.monotonic() - t0 < 10
    assert probe.state.samples == 0


def test_a_shield_still_acquiring_is_stopped_first(tmp_path: Path) -> None:
    link = tmp_path / "lpm01a"
    with simulated(link, SQUARE) as (_, model):
        port = serial.serial_for_url(str(link), timeout=0.2)
        for cmd in (b"htc", b"format bin_hexa", b"freq 1k", b"start"):
            port.write(cmd + b"\r\n")
            time.sleep(0.05)
        port.close()
        wait_for(lambda: model.acquiring and model.samples_sent > 100, what="a running shield")
        probe = family.open(f"{link},output=current,rate=1k")
        c = Collector(probe)
        try:
            wait_for(lambda: c.pull() > 500, what="samples after taking over")
        finally:
            c.close()
    assert any("was acquiring when connected" in p for p in c.problems)
    assert model.acquisitions == 2
