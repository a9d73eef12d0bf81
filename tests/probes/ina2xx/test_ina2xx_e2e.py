"""INA2xx logger end to end: the simulator on a pty, ``powerd measure`` in a subprocess.

- energy per phase (idle and run) matches the waveform's exact integral within the reported
  uncertainty;
- a cable pulled for 1.5 s mid-run: measure keeps running and exits with CMD's code, the phase is
  ``incomplete`` with ``gap_s`` about the time the cable was out, and the stored samples on either
  side of the gap are contiguous (none lost besides the gap);
- faults (garbled bits, dropped bytes, cut lines): rejected lines are counted and no corrupted
  value reaches the timeline;
- the 32-bit device clock wrapping mid-run and a logger that reboots on replug keep the samples
  contiguous and increasing.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from powerd.probes.ina2xx import family
from powerd.probes.ina2xx.sim import make
from powerd.probes.serialsim import Faults, PtySimulator
from powerd.probes.sim.waveform import Waveform, parse_spec
from tests.probes.ina2xx.runmeasure import drive, largest_gap, measure, measure_unplugged, run_gap

CHANNEL = "ina2xx:0"
SQUARE = "square,high=8,low=2,period=0.25,duty=0.4"
PERIOD_NS = 1_000_000


def wave(spec: str) -> Waveform:
    return parse_spec(spec).waveform


def test_energy_per_phase_matches_the_waveform(tmp_path: Path) -> None:
    wf = wave(SQUARE)
    link = tmp_path / "ina"
    with PtySimulator(make("ina2xx", wf, {}), link):
        m = measure(tmp_path, f"ina2xx:{link},rate=1000", "e1", ["sleep", "2"], idle_s=1.0)
    assert m.rc == 0, m.stderr
    for name in ("idle", "run"):
        p = m.phase(name)
        ch = p["channels"][CHANNEL]
        truth = wf.energy_j(p["t_begin_ns"], p["t_end_ns"])
        assert abs(ch["energy_j"] - truth) <= ch["uncertainty_j"], (name, ch, truth)
        assert ch["coverage"] == 1.0 and "incomplete" not in p["flags"]
        assert ch["samples"] >= 0.9 * p["duration_s"] * 1000


def test_unplug_is_a_gap_and_no_sample_around_it_is_lost(tmp_path: Path) -> None:
    wf = wave(SQUARE)
    link = tmp_path / "ina"
    sim = PtySimulator(make("ina2xx", wf, {}), link).start()
    m = measure_unplugged(tmp_path, sim, f"ina2xx:{link},rate=1000", "u1", 6, 3, 1.5)
    assert m.rc == 3, m.stderr
    p, gap_ns, before, after = run_gap(m, CHANNEL)  # asserts the phase is incomplete
    ch = p["channels"][CHANNEL]
    assert 1.2 <= ch["gap_s"] <= 4.0, ch
    assert 1.2e9 <= gap_ns <= 4.0e9
    assert before.size > 500 and after.size > 500
    assert before.max() < 1.5 * PERIOD_NS and after.max() < 1.5 * PERIOD_NS
    assert "reconnected" in m.stderr or "lost" in m.stderr or "failed reads" in m.stderr


def test_corrupt_lines_are_counted_and_never_integrated(tmp_path: Path) -> None:
    wf = wave("ramp,low=2,high=8,period=4")
    link = tmp_path / "ina"
    faults = Faults(garble=0.05, drop=0.05, partial=0.02, seed=7)
    with PtySimulator(make("ina2xx", wf, {}), link, faults):
        probe = family.open(f"{link},rate=1000")
        t, v, problems = drive(probe, 3.0, poll_s=0.05, read_after_close=True)
    assert t.size > 0
    _lines, counts, clock = probe.state.stats()
    assert counts.bad_checksum > 0 and counts.partial > 0, counts
    assert clock.lost >= counts.rejected - 2  # a rejected line is a gap in seq
    assert any("rejected" in p for p in problems)
    assert bool((np.diff(t) > 0).all())
    # Every sample that got through is the power of the ramp within 2 ms of its stamp.
    grid = t[:, None] + np.linspace(-2 * PERIOD_NS, 2 * PERIOD_NS, 41).astype(np.int64)[None, :]
    p = wf.power_w(grid)
    ok = (v >= p.min(axis=1) - 1e-3) & (v <= p.max(axis=1) + 1e-3)
    assert bool(ok.all()), v[~ok][:5]


def test_device_clock_wrap_and_reboot_keep_the_timeline(tmp_path: Path) -> None:
    wf = wave("constant,w=3")
    link = tmp_path / "ina"
    # t_us starts 0.6 s before the 32-bit wrap; the logger reboots when the cable comes back.
    sim = PtySimulator(
        make("ina2xx", wf, {"t0_us": str((1 << 32) - 600_000), "unplug": "reset"}), link
    ).start()
    try:
        probe = family.open(f"{link},rate=1000")
        probe.start(time.time_ns)
        deadline = time.monotonic() + 30
        while probe.state.stats()[2].wraps < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        sim.unplug()
        time.sleep(1.3)
        sim.replug()
        while probe.state.stats()[2].resets < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        blocks = probe.read(time.time_ns())
        probe.close()
    finally:
        sim.stop()
    _, _, clock = probe.state.stats()
    assert clock.wraps >= 1 and clock.resets >= 1
    t = np.concatenate([b.t_ns for b in blocks])
    v = np.concatenate([b.value for b in blocks])
    src = np.concatenate([b.source_t_ns for b in blocks if b.source_t_ns is not None])
    assert bool((np.diff(t) > 0).all())
    assert np.allclose(v, 3.0)
    assert src.size == t.size
    _i, gap_ns = largest_gap(t)
    assert 1.0e9 <= gap_ns <= 5e9
    d = np.diff(t)
    assert float(np.median(d)) == __import__("pytest").approx(1e6, rel=0.01)
