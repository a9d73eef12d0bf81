"""Offset estimation from four-timestamp exchanges: least round trip wins, drift is tracked."""

from __future__ import annotations

import random

from powerd.clocksync import Exchange, OffsetEstimator

T0 = 1_800_000_000_000_000_000


def exchange(t1: int, offset_ns: int, up_ns: int, down_ns: int, hold_ns: int = 50_000) -> Exchange:
    """Daemon sends at t1; the agent's clock reads daemon time - offset_ns."""
    t2 = t1 + up_ns - offset_ns
    t3 = t2 + hold_ns
    t4 = t3 + offset_ns + down_ns
    return Exchange(t1, t2, t3, t4)


def test_symmetric_exchange_gives_the_exact_offset() -> None:
    ex = exchange(T0, 3_500_000_000, 200_000, 200_000)
    assert ex.offset_ns == 3_500_000_000 and ex.rtt_ns == 400_000


def test_least_round_trip_wins_and_bounds_the_error() -> None:
    rng = random.Random(1)
    est = OffsetEstimator()
    true = -2_750_000_123
    for k in range(200):
        up = 100_000 + int(rng.expovariate(1 / 2_000_000))
        down = 100_000 + int(rng.expovariate(1 / 2_000_000))
        est.add(exchange(T0 + k * 100_000_000, true, up, down))
    off = est.estimate()
    assert off is not None
    assert abs(off.offset_ns - true) <= off.uncertainty_ns
    assert off.uncertainty_ns < 1_000_000


def test_drift_is_tracked_between_exchanges() -> None:
    est = OffsetEstimator()
    drift = 50e-6  # 50 ppm
    for k in range(60):
        t1 = T0 + k * 1_000_000_000
        est.add(exchange(t1, int(1_000_000 + drift * (t1 - T0)), 150_000, 150_000))
    later = T0 + 70 * 1_000_000_000
    off = est.estimate(later)
    assert off is not None
    assert abs(off.drift_ppm - 50) < 1
    assert abs(off.offset_ns - (1_000_000 + drift * (later - T0))) < 20_000


def test_impossible_exchanges_are_rejected_and_old_ones_expire() -> None:
    est = OffsetEstimator(window_ns=10_000_000_000)
    assert not est.add(Exchange(T0, T0, T0 + 10, T0 - 5))
    assert est.rejected == 1 and est.estimate() is None
    est.add(exchange(T0, 0, 10, 10))
    est.add(exchange(T0 + 20_000_000_000, 0, 10, 10))
    assert len(est.exchanges) == 1
