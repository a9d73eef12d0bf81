"""Device time → host time: jitter removed, wrap and reset handled, gaps counted, skew followed.

Synthetic streams: line ``k`` ends its window at true host time ``T_k``; the device clock reads
``T_k`` scaled by its skew; the host gets lines in chunks, each chunk late by a random delay.
"""

from __future__ import annotations

import numpy as np
import pytest

from powerd.probes.ina2xx.timing import U32, WARMUP_NS, DeviceClock

PERIOD_NS = 1_000_000
T0 = 1_763_000_000_000_000_000


def stream(
    n: int,
    ppm: float = 0.0,
    t0_us: int = 0,
    seed: int = 0,
    max_delay_ns: int = 4_000_000,
    min_delay_ns: int = 100_000,
) -> tuple[DeviceClock, np.ndarray, np.ndarray]:
    """Feed ``n`` lines in random chunks; return the clock, stamps and true window midpoints."""
    rng = np.random.default_rng(seed)
    clock = DeviceClock(window_ns=PERIOD_NS)
    t_end = T0 + PERIOD_NS * np.arange(1, n + 1, dtype=np.int64)
    dev_us = (t0_us + ((t_end - T0) * (1 + ppm * 1e-6) // 1000).astype(np.int64)) % U32
    seq = np.arange(n, dtype=np.int64) % U32
    stamps: list[np.ndarray] = []
    i = 0
    while i < n:
        size = int(rng.integers(1, 17))
        j = min(n, i + size)
        arrival = int(t_end[j - 1]) + min_delay_ns + int(rng.integers(0, max_delay_ns))
        out = clock.feed(seq[i:j], dev_us[i:j], np.ones(j - i), arrival)
        stamps.append(out.t_ns)
        i = j
    stamps.append(clock.flush().t_ns)
    return clock, np.concatenate(stamps), t_end - PERIOD_NS // 2


def test_jitter_is_removed_and_stamps_increase() -> None:
    _clock, stamps, truth = stream(20_000)
    assert stamps.size == truth.size
    assert bool((np.diff(stamps) > 0).all())
    err = stamps - truth
    # Late by about the least transport delay, not by the chunk jitter of up to 4 ms.
    assert float(np.abs(err).max()) < 0.5e6
    assert float(np.std(np.diff(stamps))) < 20_000


@pytest.mark.parametrize("ppm", [-150.0, 150.0])
def test_device_clock_skew_is_followed(ppm: float) -> None:
    _clock, stamps, truth = stream(120_000, ppm=ppm, seed=1)
    err = stamps - truth
    assert float(np.abs(err).max()) < 1.0e6, (err.min(), err.max())


def test_wrap_is_unwrapped_and_counted() -> None:
    clock, stamps, truth = stream(5_000, t0_us=U32 - 2_000_000, seed=2)
    assert clock.stats.wraps == 1 and clock.stats.resets == 0
    assert float(np.abs(stamps - truth).max()) < 0.5e6


def test_seq_gap_is_counted_not_filled() -> None:
    clock = DeviceClock(window_ns=PERIOD_NS)
    seq = np.array([0, 1, 2, 5, 6, 6, 7], np.int64)
    dev = seq * 1000
    out = clock.feed(seq, dev, np.arange(7.0), T0 + 10 * PERIOD_NS)
    out2 = clock.flush()
    assert out.t_ns.size + out2.t_ns.size == 6  # the repeated 6 is dropped, nothing invented
    assert clock.stats.lost == 2 and clock.stats.duplicates == 1
    stamps = np.concatenate([out.t_ns, out2.t_ns])
    assert list(np.diff(stamps) // 1000) == [1000, 1000, 3000, 1000, 1000]


def test_reset_starts_a_new_epoch_and_time_still_increases() -> None:
    clock = DeviceClock(window_ns=PERIOD_NS)
    n = 600
    seq = np.arange(n, dtype=np.int64)
    dev = 5_000_000 + seq * 1000
    a = clock.feed(seq, dev, np.ones(n), T0 + WARMUP_NS + n * PERIOD_NS)
    # Reboot 2 s later: seq and t_us restart near zero.
    b = clock.feed(seq[:400], 1000 + seq[:400] * 1000, np.ones(400), T0 + 3 * 10**9)
    c = clock.flush()
    assert clock.stats.resets == 1
    stamps = np.concatenate([a.t_ns, b.t_ns, c.t_ns])
    assert stamps.size == n + 400
    assert bool((np.diff(stamps) > 0).all())
    src = np.concatenate([a.source_t_ns, b.source_t_ns, c.source_t_ns])
    assert int(src[n]) == 1_000_000  # device time restarts with the epoch


def test_stalled_device_clock_is_dropped() -> None:
    clock = DeviceClock(window_ns=PERIOD_NS)
    out = clock.feed(
        np.array([0, 1, 2], np.int64), np.array([100, 100, 200], np.int64), np.ones(3), T0
    )
    out2 = clock.flush()
    assert out.t_ns.size + out2.t_ns.size == 2 and clock.stats.stalled == 1
