"""Shared pieces of the WT300 tests: the waveform, the simulator on a pty, and truth checks."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from powerd.block import Block
from powerd.probes.serialsim import Faults, PtySimulator
from powerd.probes.sim.waveform import Waveform, parse_spec
from powerd.probes.wt300 import Wt300Probe, family
from powerd.probes.wt300.sim import Wt300Sim, make

T_NS = 100_000_000
SQUARE = "square,high=40,low=5,period=1.3,duty=0.5"
WF: Waveform = parse_spec(SQUARE).waveform


def wait_for(cond: Callable[[], bool], timeout_s: float = 30.0, step_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(step_s)


def truth_power_w(k: int, share: float = 1.0, wf: Waveform = WF) -> float:
    """The simulator's P for update k (the mean over (k-1)T..kT)."""
    return share * wf.energy_j((k - 1) * T_NS, k * T_NS) / (T_NS / 1e9)


def update_of(t_mid_ns: int) -> int:
    """The update whose interval midpoint is nearest to a power sample's stamp."""
    return round((t_mid_ns + T_NS // 2) / T_NS)


@dataclass
class Collected:
    t: dict[str, list[int]] = field(default_factory=dict)
    v: dict[str, list[float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, blocks: list[Block], problems: list[str]) -> None:
        for b in blocks:
            self.t.setdefault(b.channel, []).extend(b.t_ns.tolist())
            self.v.setdefault(b.channel, []).extend(b.value.tolist())
        self.problems.extend(problems)

    def n(self, channel: str) -> int:
        return len(self.t.get(channel, []))

    def arrays(self, channel: str) -> tuple[np.ndarray, np.ndarray]:
        return np.array(self.t[channel], np.int64), np.array(self.v[channel], np.float64)


@dataclass
class Bench:
    model: Wt300Sim
    sim: PtySimulator
    link: Path
    probe: Wt300Probe | None = None
    got: Collected = field(default_factory=Collected)

    def open(self, extra: str = "") -> Wt300Probe:
        self.probe = family.open(f"{self.link},rate=0.1{extra}")
        self.probe.start(time.time_ns)
        return self.probe

    def pull(self) -> Collected:
        assert self.probe is not None
        blocks = self.probe.read(time.time_ns())
        self.got.add(blocks, self.probe.problems())
        return self.got


@contextmanager
def bench(
    tmp_path: Path,
    name: str = "wt310",
    faults: Faults | None = None,
    waveform: Waveform = WF,
    **options: str,
) -> Iterator[Bench]:
    model = make(name, waveform, {"rate": "0.1", **options})
    link = tmp_path / name
    sim = PtySimulator(model, link, faults or Faults()).start()
    b = Bench(model, sim, link)
    try:
        yield b
    finally:
        if b.probe is not None:
            b.probe.close()
        sim.stop()
