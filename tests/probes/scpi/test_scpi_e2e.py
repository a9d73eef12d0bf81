"""SCPI instruments end to end: simulators on ptys, ``powerd measure`` in a subprocess.

- every profile at once in one run: each channel's energy per phase matches the waveform's exact
  integral within its reported uncertainty (slow ramp: these meters update a few times a second);
- Siglent's silence: a query it does not know (``MEAS:POW?``) is never answered; measure does not
  hang, exits with CMD's code, and says which query and that the error queue holds -113;
- unplug and replug mid-run: measure goes on, the phase is ``incomplete`` with the gap, the polls
  on either side are regular;
- faults (garbled, dropped, cut or lost replies): counted, and no corrupted value gets through
  where the profile reads V, I and P together.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from powerd.probes.scpi import family
from powerd.probes.scpi.sim import make
from powerd.probes.serialsim import Faults, PtySimulator
from powerd.probes.sim.waveform import parse_spec
from tests.probes.ina2xx.runmeasure import drive, measure, measure_unplugged, run_gap

RAMP = "ramp,low=2,high=8,period=60"
PROFILE_CHANNELS = {
    "rigol-dp800": "scpi:rigol-dp800:1",
    "siglent-spd": "scpi:siglent-spd:1",
    "keysight-n6700": "scpi:keysight-n6700:1",
    "hioki-pw3335": "scpi:hioki-pw3335",
    "tek-pa1000": "scpi:tek-pa1000",
}


def test_every_profile_measures_energy_within_its_uncertainty(tmp_path: Path) -> None:
    wf = parse_spec(RAMP).waveform
    sims = [PtySimulator(make(name, wf, {}), tmp_path / name).start() for name in PROFILE_CHANNELS]
    try:
        args = [f"scpi:{tmp_path / name},profile={name}" for name in PROFILE_CHANNELS]
        m = measure(tmp_path, args[0], "all", ["sleep", "4"], idle_s=2.0, extra_probes=args[1:])
    finally:
        for s in sims:
            s.stop()
    assert m.rc == 0, m.stderr
    failures = []
    for name in ("idle", "run"):
        p = m.phase(name)
        truth = wf.energy_j(p["t_begin_ns"], p["t_end_ns"])
        for profile, channel in PROFILE_CHANNELS.items():
            ch = p["channels"][channel]
            if ch["energy_j"] is None or abs(ch["energy_j"] - truth) > ch["uncertainty_j"]:
                failures.append((name, profile, ch["energy_j"], truth, ch["uncertainty_j"]))
            assert ch["samples"] >= 2, (name, profile, ch)
    assert not failures, failures


def test_siglent_silence_is_a_clear_timeout_never_a_hang(tmp_path: Path) -> None:
    wf = parse_spec(RAMP).waveform
    link = tmp_path / "spd"
    with PtySimulator(make("siglent-spd", wf, {}), link):
        t0 = time.monotonic()
        m = measure(
            tmp_path,
            f"scpi:{link},profile=siglent-spd,cmd=MEAS:POW? CH1,timeout=0.5",
            "quiet",
            ["sh", "-c", "sleep 2; exit 3"],
        )
        elapsed_s = time.monotonic() - t0
    assert m.rc == 3, m.stderr
    assert elapsed_s < 30
    assert "MEAS:POW? CH1" in m.stderr and "-113" in m.stderr, m.stderr
    p = m.phase("run")
    assert "no_data" in p["flags"] and p["energy_j"] is None  # never a 0 W reading
    assert "scpi:siglent-spd:1" not in m.samples


def test_unplug_and_replug_is_a_gap_with_regular_polls_around_it(tmp_path: Path) -> None:
    wf = parse_spec(RAMP).waveform
    link = tmp_path / "n6705"
    sim = PtySimulator(make("keysight-n6700", wf, {}), link).start()
    spec = f"scpi:{link},profile=keysight-n6700,rate=5"
    m = measure_unplugged(tmp_path, sim, spec, "unplug", 7, 4, 2.0)
    assert m.rc == 4, m.stderr
    p, gap_ns, before, after = run_gap(m, "scpi:keysight-n6700:1")  # asserts it is incomplete
    ch = p["channels"]["scpi:keysight-n6700:1"]
    assert 1.6 <= ch["gap_s"] <= 5.0, ch
    assert 1.8e9 <= gap_ns <= 5.5e9
    assert before.size >= 3 and after.size >= 3
    assert before.max() < 0.45e9 and after.max() < 0.45e9  # polls at 5 Hz, none missing


@pytest.mark.parametrize(
    ("profile", "extra"), [("rigol-dp800", "mode=all,rate=10"), ("hioki-pw3335", "check=vi")]
)
def test_corrupt_replies_are_counted_and_never_integrated(
    tmp_path: Path, profile: str, extra: str
) -> None:
    wf = parse_spec("constant,w=6").waveform
    link = tmp_path / profile
    faults = Faults(garble=0.15, drop=0.1, partial=0.05, no_reply=0.05, seed=3)
    with PtySimulator(make(profile, wf, {}), link, faults):
        probe = family.open(f"{link},profile={profile},timeout=0.3,{extra}")
        t, v, problems = drive(probe, 5.0, poll_s=0.1, read_after_close=False)
    stats = probe.stats
    assert stats.rejected + stats.timeouts > 0, stats
    assert stats.readings >= 5, stats
    assert bool((np.abs(v - 6.0) <= 0.02).all()), v[np.abs(v - 6.0) > 0.02]
    assert bool((np.diff(t) > 0).all())
    assert any("not used" in p or "no reply" in p for p in problems), problems
