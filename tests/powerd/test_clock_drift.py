"""A slow steady divergence of the wall and monotonic clocks is not a wall-clock step (task H24).

On Linux, NTP slewing moves CLOCK_MONOTONIC and CLOCK_REALTIME alike; their difference changes
only when the clock is set. A steady divergence (libfaketime with a rate, a VM) used to look like
a step at every check: new agent epochs every second or two, ``clock_step`` on ordinary runs.
Injected clocks for TimeAnchor and EpochAnchor; the real sampler with a sim probe for the flag."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from powerd.agent.epoch import EpochAnchor
from powerd.probes.registry import open_probe
from powerd.runner import Sampler
from powerd.store import Store
from powerd.timebase import TimeAnchor
from powerd.timeline import Timeline

SEC = 1_000_000_000
MS = 1_000_000


class Clocks:
    """A monotonic clock and a wall clock that runs ``rate`` faster (plus any steps)."""

    def __init__(self, rate: float) -> None:
        self.mono_ns = 1_000 * SEC
        self.rate = rate
        self.step_ns = 0

    def mono(self) -> int:
        return self.mono_ns

    def wall(self) -> int:
        return 1_700_000_000 * SEC + round(self.mono_ns * (1 + self.rate)) + self.step_ns


def test_a_steady_drift_is_followed_without_a_step() -> None:
    """0.5 % drift, checked every 1.0-1.3 s for two minutes: no step; the daemon's anchor follows
    the wall clock within a re-anchor's amount and learns the rate; a real step is still one."""
    c = Clocks(0.005)
    anchor = TimeAnchor(mono=c.mono, wall=c.wall)
    for i in range(100):
        c.mono_ns += SEC + (i % 4) * 100 * MS
        before = anchor.utc_ns(c.mono_ns)
        assert anchor.check() is None, f"drift taken for a step at check {i}"
        assert abs(anchor.utc_ns(c.mono_ns) - before) <= 1_000  # re-anchored without a jump
        assert abs(anchor.utc_ns() - c.wall()) <= (7 if i < 5 else 1) * MS  # follows the wall
    assert anchor.steps == [] and anchor.drift_reanchors > 5
    t = [anchor.utc_ns(c.mono_ns + k * 100 * MS) for k in range(30)]
    assert all(b > a for a, b in itertools.pairwise(t))  # stamps keep increasing
    assert anchor.drift_ppm == pytest.approx(5000, rel=0.01)
    c.mono_ns += SEC
    c.step_ns = 20 * MS  # a real step, small but sudden
    step = anchor.check()
    assert step is not None and abs(step.step_ns - 20 * MS) <= 7 * MS
    assert abs(anchor.utc_ns() - c.wall()) <= MS


def test_an_agents_epoch_survives_drift_and_its_stamps_stay_on_one_mapping() -> None:
    """The agent's EpochAnchor neither starts epochs nor moves its anchor on drift: every stamp
    of the epoch is ``monotonic + anchor_ns``, which the daemon's exchanges and links rely on."""
    c = Clocks(-0.005)
    anchor = EpochAnchor(mono=c.mono, wall=c.wall)
    boot, anchor_ns = anchor.info()
    for _ in range(120):
        c.mono_ns += SEC
        assert anchor.check() is None
    assert anchor.info() == (boot, anchor_ns) and anchor.epoch == 0
    assert anchor.stamp() == (boot, c.mono_ns + anchor_ns)
    assert abs(anchor.wall_disagreement_ns() + 600 * MS) <= 10 * MS  # 0.5 % of 120 s, measured
    c.step_ns = SEC  # a step still starts a new epoch
    c.mono_ns += SEC
    assert anchor.check() is not None and anchor.epoch == 1 and anchor.info()[0] != boot


def test_the_sampler_on_a_drifting_clock_records_no_step(tmp_path: Path) -> None:
    """``powerd measure``'s sampler with its wall clock 0.6 % fast (injected) for a few anchor
    checks: no clock step stored (so no ``clock_step`` flag), stamps strictly increasing."""
    m0 = time.monotonic_ns()
    anchor = TimeAnchor(wall=lambda: time.time_ns() + (time.monotonic_ns() - m0) * 6 // 1000)
    sim = open_probe("sim:constant,w=2,rate=200")
    cid = sim.channels()[0].id
    with Store(tmp_path / "s.db") as store:
        sampler = Sampler([sim], Timeline(1 << 14), store, anchor, flush_interval_s=0.2)
        sampler.start()
        deadline = time.monotonic() + 30
        while anchor.drift_reanchors < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        sampler.stop()
        store.flush()
        assert anchor.drift_reanchors >= 3, "the sampler never checked its anchor"
        assert anchor.steps == [] and store.clock_steps(0, 2**62) == []
        t, _ = store.samples(cid, 0, 2**62)
        assert t.size > 100 and bool((t[1:] > t[:-1]).all())
    assert abs(anchor.utc_ns() - time.time_ns() - (time.monotonic_ns() - m0) * 6 // 1000) < 5 * MS


def test_without_drift_the_mapping_stays_one_constant_offset() -> None:
    """Read noise alone (±50 µs) never re-anchors: a host without drift keeps its offset."""
    c = Clocks(0.0)
    anchor = TimeAnchor(mono=c.mono, wall=c.wall)
    offset = anchor.offset_ns
    for i in range(60):
        c.mono_ns += SEC
        c.step_ns = 50_000 if i % 2 else -50_000
        assert anchor.check() is None
    assert anchor.drift_reanchors == 0 and anchor.offset_ns == offset
    assert anchor.utc_ns(c.mono_ns) == c.mono_ns + offset
