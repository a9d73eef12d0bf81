"""Ring buffers and the monotonic→UTC anchor."""

from __future__ import annotations

import numpy as np
import pytest

from powerd.block import Block
from powerd.channel import Channel
from powerd.timebase import TimeAnchor
from powerd.timeline import Ring, Timeline

CH = Channel(id="sim:x", kind="power", source_class="meter", nominal_period_s=1e-3)


def test_ring_keeps_the_latest_capacity_in_order_across_wraps() -> None:
    ring = Ring(10)
    for k in range(7):
        t = np.arange(k * 3, k * 3 + 3, dtype=np.int64)
        ring.append(t, t.astype(np.float64))
    t, v = ring.arrays()
    assert t.tolist() == list(range(11, 21)) and v.tolist() == list(range(11, 21))
    assert ring.latest() == (20, 20.0)
    assert ring.window(13, 15)[0].tolist() == [13, 14, 15]  # samples on the edges suffice
    ring2 = Ring(4)
    ring2.append(np.array([0, 10, 20, 30], np.int64), np.zeros(4))
    assert ring2.window(12, 18)[0].tolist() == [10, 20]  # one neighbour each side
    assert ring.nbytes == 10 * 16


def test_ring_drops_samples_not_after_the_last() -> None:
    ring = Ring(8)
    ring.append(np.array([1, 2, 3], np.int64), np.ones(3))
    ring.append(np.array([2, 3, 4], np.int64), np.ones(3))
    assert ring.arrays()[0].tolist() == [1, 2, 3, 4] and ring.dropped_out_of_order == 2


def test_ring_block_larger_than_capacity() -> None:
    ring = Ring(4)
    ring.append(np.arange(10, dtype=np.int64), np.arange(10.0))
    assert ring.arrays()[0].tolist() == [6, 7, 8, 9]


def test_timeline_drops_non_finite_values() -> None:
    tl = Timeline(16)
    tl.add_channel(CH)
    tl.append(Block.of(CH.id, [1, 2, 3], [1.0, np.nan, 3.0]))
    assert tl.window(CH.id, 0, 10)[1].tolist() == [1.0, 3.0]
    with pytest.raises(KeyError):
        tl.append(Block.of("sim:y", [1], [1.0]))


class FakeClocks:
    def __init__(self) -> None:
        self.mono_ns = 1_000
        self.wall_ns = 1_800_000_000_000_000_000

    def mono(self) -> int:
        self.mono_ns += 10
        return self.mono_ns

    def wall(self) -> int:
        return self.wall_ns + self.mono_ns


def test_anchor_maps_monotonic_to_utc_and_records_a_wall_step() -> None:
    clk = FakeClocks()
    anchor = TimeAnchor(mono=clk.mono, wall=clk.wall)
    assert anchor.utc_ns(5_000) == 5_000 + anchor.offset_ns
    assert abs(anchor.offset_ns - 1_800_000_000_000_000_000) <= 10
    assert anchor.check() is None
    clk.wall_ns += 3_000_000_000  # the wall clock steps 3 s forward
    step = anchor.check()
    assert step is not None and abs(step.step_ns - 3_000_000_000) <= 10
    assert anchor.steps == [step]
