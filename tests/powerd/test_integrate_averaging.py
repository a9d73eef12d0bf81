"""Averaging channels, the periodic-load flag and the simulators' instrument error (issue 14.2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from powerd.channel import Channel
from powerd.integrate import Window, integrate, periodicity
from powerd.probes.ina2xx.sim import datasheet_bounds
from powerd.probes.ina2xx.sim import make as make_ina
from powerd.probes.sim.insterror import InstrumentError
from powerd.probes.sim.waveform import parse_spec
from powerd.probes.wt300.sim import make as make_wt

STEP_NS = 1_000_000  # 1 kHz
T0_NS = 1_800_000_000_000_000_000


def _channel(averaging_s: float) -> Channel:
    return Channel(
        id="sim:x",
        kind="power",
        source_class="meter",
        nominal_period_s=STEP_NS / 1e9,
        averaging_s=averaging_s,
    )


def _means(wf: object, t_mid: np.ndarray) -> np.ndarray:
    """Each sample the exact mean over its 1 ms interval, stamped at the interval's midpoint."""
    half = STEP_NS // 2
    e = [wf.energy_j(int(t) - half, int(t) + half) for t in t_mid]  # type: ignore[attr-defined]
    return np.array(e) / (STEP_NS / 1e9)


def test_averaging_channel_is_within_its_smaller_uncertainty() -> None:
    wf = parse_spec("square,high=10,low=2,period=0.0237,duty=0.4173").waveform
    rng = np.random.default_rng(5)
    for _ in range(20):
        a = T0_NS + int(rng.integers(0, 10**12))
        b = a + int(rng.integers(200, 400)) * STEP_NS + int(rng.integers(0, STEP_NS))
        t = (np.arange(a // STEP_NS - 2, b // STEP_NS + 3) * STEP_NS + 137_000).astype(np.int64)
        v = _means(wf, t)
        avg = integrate(t, v, Window(a, b), _channel(STEP_NS / 1e9))
        inst = integrate(t, v, Window(a, b), _channel(0.0))
        assert avg.energy_j is not None and avg.uncertainty_j is not None
        assert inst.uncertainty_j is not None
        err = abs(avg.energy_j - wf.energy_j(a, b))
        assert err <= avg.uncertainty_j + 1e-9 * avg.energy_j
        assert avg.uncertainty_j < inst.uncertainty_j


def test_averaging_channel_with_gaps_keeps_a_share_of_the_interval_term() -> None:
    wf = parse_spec("square,high=10,low=2,period=0.0237,duty=0.4173").waveform
    a, b = T0_NS + 10**9, T0_NS + 10**9 + 300 * STEP_NS + 4321
    t = (np.arange(a // STEP_NS - 2, b // STEP_NS + 3) * STEP_NS + 137_000).astype(np.int64)
    v = _means(wf, t)
    full = integrate(t, v, Window(a, b), _channel(STEP_NS / 1e9)).terms_j["discretisation"]
    half = integrate(t, v, Window(a, b), _channel(STEP_NS / 2e9)).terms_j["discretisation"]
    inst = integrate(t, v, Window(a, b), _channel(0.0)).terms_j["discretisation"]
    assert full < half < inst


def _samples(spec: str, n: int, shift_ns: int = 0) -> tuple[np.ndarray, np.ndarray]:
    wf = parse_spec(spec).waveform
    t = (T0_NS + shift_ns + np.arange(n) * STEP_NS).astype(np.int64)
    return t, wf.power_w(t)


def test_periodic_load_flagged_when_phase_locked() -> None:
    t, v = _samples("square,high=10,low=2,period=0.02,duty=0.5", 2000, 300_000)
    ce = integrate(t, v, Window(int(t[3]) + 1, int(t[-3]) - 1), _channel(0.0))
    assert "periodic_load" in ce.flags
    per = periodicity(v, 0.0)
    assert per is not None and per.period_samples == 20 and per.sweep == 0.0


def test_periodic_load_not_flagged_when_the_grid_sweeps() -> None:
    t, v = _samples("square,high=10,low=2,period=0.02337,duty=0.4173", 2000)
    ce = integrate(t, v, Window(int(t[3]) + 1, int(t[-3]) - 1), _channel(0.0))
    assert "periodic_load" not in ce.flags
    per = periodicity(v, 0.0)
    assert per is not None and per.sweep > 0.0


def test_periodic_load_not_flagged_on_noise_or_random_pulses() -> None:
    rng = np.random.default_rng(2)
    t = (T0_NS + np.arange(4000) * STEP_NS).astype(np.int64)
    noise = 5.0 + 0.5 * rng.standard_normal(t.size)
    edges = np.cumsum(rng.exponential(50.0, 200)).astype(np.int64)
    pulses = np.where(np.searchsorted(edges, np.arange(t.size)) % 2 == 0, 2.0, 10.0)
    for v in (noise, pulses):
        ce = integrate(t, v, Window(int(t[3]) + 1, int(t[-3]) - 1), _channel(0.0))
        assert "periodic_load" not in ce.flags
        assert periodicity(v, 0.0 if v is pulses else 0.5) is None


def test_instrument_error_is_drawn_to_the_bound_at_95_percent_and_seeded() -> None:
    draws = [InstrumentError.draw(s, 0.01, 0.2) for s in range(2000)]
    within_gain = np.mean([abs(d.gain) <= 0.01 for d in draws])
    within_offset = np.mean([abs(d.offset_w) <= 0.2 for d in draws])
    assert 0.93 <= within_gain <= 0.97 and 0.93 <= within_offset <= 0.97
    assert InstrumentError.draw(7, 0.01, 0.2) == draws[7]
    assert InstrumentError.draw(8, 0.01, 0.2) != draws[7]


def test_ina_sim_error_seed_shifts_readings_by_the_drawn_error() -> None:
    wf = parse_spec("square,high=10,low=2,period=0.2,duty=0.3").waveform
    exact = make_ina("ina2xx", wf, {})
    erred = make_ina("ina2xx", wf, {"error_seed": "3"})
    drawn = InstrumentError.draw(3, *datasheet_bounds(5.0, 0.1))
    assert drawn.gain != 0.0 and drawn.offset_w != 0.0
    a, b = T0_NS, T0_NS + 10**9
    want = wf.energy_j(a, b) * (1 + drawn.gain) + drawn.offset_w * 1.0
    assert exact.waveform.energy_j(a, b) == wf.energy_j(a, b)
    assert abs(erred.waveform.energy_j(a, b) - want) < 1e-12


def test_wt_sim_error_seed_shifts_update_power() -> None:
    wf = parse_spec("constant,w=20").waveform
    opts = {"rate": "0.1", "vrange": "15", "irange": "5"}
    exact = make_wt("wt310", wf, opts)
    erred = make_wt("wt310", wf, {**opts, "error_seed": "11"})
    reading, rng = exact.model.accuracy_fracs("dc", 3)
    drawn = InstrumentError.draw(11, reading, rng * 15 * 5)
    k = 18_000_000_000
    assert abs(exact._element_power_w(k, 1) - 20.0) < 1e-9
    assert abs(erred._element_power_w(k, 1) - (20.0 * (1 + drawn.gain) + drawn.offset_w)) < 1e-9


def test_averaging_s_travels_in_channel_json_and_old_json_reads_as_instantaneous() -> None:
    ch = _channel(0.001)
    assert Channel.from_json(ch.to_json()).averaging_s == 0.001
    old = {k: v for k, v in ch.to_json().items() if k != "averaging_s"}
    assert Channel.from_json(old).averaging_s == 0.0


def test_ina2xx_channel_averages_over_its_window(tmp_path: Path) -> None:
    from powerd.probes.ina2xx import family

    dev = tmp_path / "ttyACM9"
    dev.touch()
    probe = family.open(f"{dev},rate=1000,window_us=500")
    assert probe.channel.averaging_s == 0.0005
    assert family.open(f"{dev},rate=1000").channel.averaging_s == 0.001
