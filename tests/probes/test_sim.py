"""The sim source: spec parsing, exact analytic energy, determinism, grid sampling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerd.errors import SpecError
from powerd.integrate import Window, integrate
from powerd.probes.registry import open_probe
from powerd.probes.sim import SimProbe
from powerd.probes.sim.waveform import parse_spec

T0 = 1_800_000_000_000_000_000


def test_square_is_high_for_the_first_duty_of_each_period() -> None:
    spec = parse_spec("square,high=10,low=2,period=0.1,duty=0.25")
    t = np.array([0, 24_999_999, 25_000_000, 99_999_999, 100_000_000], np.int64) + T0
    assert spec.waveform.power_w(t).tolist() == [10, 10, 2, 2, 10]


def test_ramp_and_constant_values() -> None:
    ramp = parse_spec("ramp,low=2,high=10,period=1").waveform
    assert ramp.power_w(np.array([T0, T0 + 500_000_000])).tolist() == [2.0, 6.0]
    assert parse_spec("constant,w=7").waveform.power_w(np.array([T0])).tolist() == [7.0]


def test_analytic_energy_known_values() -> None:
    sq = parse_spec("square,high=10,low=2,period=0.1,duty=0.5").waveform
    assert sq.energy_j(T0, T0 + 1_000_000_000) == pytest.approx(6.0, rel=1e-15)
    assert sq.energy_j(T0 + 25_000_000, T0 + 75_000_000) == pytest.approx(0.25 + 0.05)
    ramp = parse_spec("ramp,low=0,high=10,period=2").waveform
    assert ramp.energy_j(T0, T0 + 2_000_000_000) == pytest.approx(10.0)
    assert ramp.energy_j(T0, T0 + 1_000_000_000) == pytest.approx(2.5)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**12), st.integers(1, 10**11), st.integers(1, 10**11))
def test_energy_is_additive_and_matches_the_cumulative_counter(a: int, d1: int, d2: int) -> None:
    wf = parse_spec("square,high=9,low=1,period=0.013,duty=0.3").waveform
    a += T0
    b, c = a + d1, a + d1 + d2
    assert wf.energy_j(a, c) == pytest.approx(wf.energy_j(a, b) + wf.energy_j(b, c), rel=1e-12)
    cum = wf.cumulative_j(np.array([a, c], np.int64))
    assert cum[1] - cum[0] == pytest.approx(wf.energy_j(a, c), rel=1e-6, abs=1e-5)


def test_square_at_1khz_is_within_0_1_percent_of_the_integral() -> None:
    probe = open_probe("sim:square,high=10,low=2,period=0.1,duty=0.5")
    assert isinstance(probe, SimProbe)
    k0 = T0 // probe.spec.step_ns
    block = probe.samples(np.arange(k0, k0 + 3000, dtype=np.int64))
    w = Window(T0 + 12_345_678, T0 + 2_987_654_321)
    r = integrate(block.t_ns, block.value, w, probe.channel)
    truth = probe.spec.waveform.energy_j(w.t_begin_ns, w.t_end_ns)
    assert r.energy_j is not None and abs(r.energy_j - truth) / truth < 1e-3
    assert abs(r.energy_j - truth) <= (r.uncertainty_j or 0)


def test_energy_kind_with_wrap_integrates_to_the_truth() -> None:
    probe = open_probe("sim:ramp,low=1,high=30,period=0.5,kind=energy,wrap=3,rate=100")
    assert isinstance(probe, SimProbe) and probe.channel.kind == "energy"
    k0 = T0 // probe.spec.step_ns
    block = probe.samples(np.arange(k0, k0 + 500, dtype=np.int64))
    assert float(block.value.max()) < 3.0
    w = Window(T0 + 5_000_000, T0 + 4_321_000_000)
    r = integrate(block.t_ns, block.value, w, probe.channel)
    truth = probe.spec.waveform.energy_j(w.t_begin_ns, w.t_end_ns)
    assert r.energy_j == pytest.approx(truth, rel=2e-3)
    assert "counter_reset" not in r.flags


def test_noise_is_deterministic_and_zero_mean() -> None:
    a = open_probe("sim:constant,w=5,noise=0.5,seed=3")
    b = open_probe("sim:constant,w=5,noise=0.5,seed=3")
    assert isinstance(a, SimProbe) and isinstance(b, SimProbe)
    k = np.arange(10**6, dtype=np.int64) + T0 // 1_000_000
    va, vb = a.samples(k).value, b.samples(k).value
    assert np.array_equal(va, vb)
    assert abs(va.mean() - 5.0) < 0.005 and va.std() == pytest.approx(0.5, rel=0.01)


def test_read_emits_each_grid_sample_once() -> None:
    probe = open_probe("sim:constant,w=1,rate=1000")
    assert isinstance(probe, SimProbe)
    first = probe.read(T0 + 500_000)
    later = probe.read(T0 + 10_700_000)
    t = np.concatenate([b.t_ns for b in first + later])
    assert t.tolist() == [T0 + i * 1_000_000 for i in range(11)]
    assert probe.read(T0 + 10_900_000) == []


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("sine", "unknown shape"),
        ("square,hight=3", "unknown key 'hight'"),
        ("square,high", "expected key=value"),
        ("constant,w=abc", "is not a number"),
        ("constant,rate=0", "rate must be"),
        ("constant,noise=1,kind=energy", "noise must be"),
        ("constant,wrap=5", "wrap must be"),
        ("square,duty=2", "duty must be"),
        ("square,period=0", "period must be"),
        ("constant,class=oracle", "class must be"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, reason: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(spec)
    assert reason in str(info.value)


def test_unknown_probe_names_the_known_ones() -> None:
    with pytest.raises(SpecError, match=r"known probes: .*sim"):
        open_probe("nosuch:x")
