"""The sampler with real probes: a failing source is counted and never stops the others; a
recorded wall-clock step flags the phases it falls in."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from powerd.agent.wire import Marker
from powerd.block import Block
from powerd.channel import Channel
from powerd.phases import stamp
from powerd.probes.registry import open_probe
from powerd.runner import Sampler
from powerd.runs import compute_run
from powerd.store import Store
from powerd.timebase import TimeAnchor
from powerd.timeline import Timeline


class FlakyProbe:
    """A source whose every other read fails, as a serial meter with a loose cable would."""

    poll_interval_s = 0.01

    def __init__(self) -> None:
        self.channel = Channel(
            id="flaky:0", kind="power", source_class="meter", nominal_period_s=0.01
        )
        self.calls = 0

    def channels(self) -> list[Channel]:
        return [self.channel]

    def read(self, now_utc_ns: int) -> list[Block]:
        self.calls += 1
        if self.calls % 2:
            raise OSError("device reports not ready")
        return [Block.of(self.channel.id, [now_utc_ns], [1.0])]

    def problems(self) -> list[str]:
        return []

    def close(self) -> None:
        return None


def test_a_failing_probe_is_counted_and_the_others_keep_sampling(tmp_path: Path) -> None:
    sim = open_probe("sim:constant,w=2")
    flaky = FlakyProbe()
    with Store(tmp_path / "s.db") as store:
        sampler = Sampler([sim, flaky], Timeline(1 << 12), store, TimeAnchor())
        sampler.start()
        deadline = time.monotonic() + 10
        while sampler.health[1].reads < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        sampler.stop()
        sim_health, flaky_health = sampler.health
        assert flaky_health.errors >= 3 and "not ready" in flaky_health.last_error
        assert flaky_health.samples >= 3 and sim_health.errors == 0 and sim_health.samples > 0
        assert store.sample_count() == sim_health.samples + flaky_health.samples


def test_clock_step_inside_a_phase_is_flagged(tmp_path: Path) -> None:
    sim = open_probe("sim:constant,w=2,rate=100")
    t0 = 1_800_000_000_000_000_000
    with Store(tmp_path / "s.db") as store:
        store.put_channel(sim.channels()[0])
        for block in sim.read(t0):
            store.append(block)
        for block in sim.read(t0 + 3_000_000_000):
            store.append(block)
        store.flush()
        for seq, (phase, event, t) in enumerate(
            [("a", "begin", 1), ("a", "end", 1000), ("b", "begin", 1500), ("b", "end", 2500)]
        ):
            m = Marker("r", phase, event, seq, t_ns=t0 + t * 1_000_000)  # type: ignore[arg-type]
            store.put_marker(stamp("h", m, t0))
        store.put_clock_step(5, t0 + 2_000_000_000, 40_000_000)
        res = compute_run(store, "r")
        flags = {p["phase"]: p["flags"] for p in res["phases"]}
        assert flags == {"a": [], "b": ["clock_step"]}
        assert res["phases"][0]["energy_j"] == pytest.approx(2 * 0.999, rel=1e-12)
