"""UpdateClock: update ends recovered from jittered reply arrivals; skipped updates counted."""

from __future__ import annotations

import random

from powerd.probes.wt300.timing import UpdateClock

T = 100_000_000
T0 = 1_700_000_000_000_000_000


def test_the_least_delayed_reply_sets_the_grid() -> None:
    rng = random.Random(1)
    clock = UpdateClock(T)
    errors = []
    for k in range(200):
        latency = 2_000_000 + int(rng.expovariate(1 / 8_000_000))  # >= 2 ms, mean 10 ms
        upd = clock.feed(T0 + k * T + latency)
        assert upd.k == k and upd.skipped == 0
        if k >= 20:
            errors.append(upd.t_end_ns - (T0 + k * T))
    assert max(errors) <= 3_000_000  # within 1 ms of the 2 ms floor once the window filled
    assert min(errors) >= 0


def test_skipped_updates_are_counted_and_numbered() -> None:
    clock = UpdateClock(T)
    arrivals = [0, 1, 2, 4, 5, 8]
    got = [clock.feed(T0 + k * T + 3_000_000) for k in arrivals]
    assert [u.k for u in got] == arrivals
    assert [u.skipped for u in got] == [0, 0, 0, 1, 0, 2]
    assert all(u.t_end_ns == T0 + u.k * T + 3_000_000 for u in got)


def test_reset_starts_a_new_grid() -> None:
    clock = UpdateClock(T)
    clock.feed(T0)
    clock.reset()
    assert clock.feed(T0 + 37 * T + 50_000_000).k == 0


def test_a_late_reply_keeps_its_update_number_when_the_clear_brackets_it() -> None:
    """A reply delayed by 80 % of T on a loaded host is still its own update, and so is the next."""
    clock = UpdateClock(T)
    for k in range(10):
        clock.feed(
            T0 + k * T + 2_000_000, T0 + (k - 1) * T + 5_000_000, T0 + (k - 1) * T + 7_000_000
        )
    late = clock.feed(T0 + 10 * T + 80_000_000, T0 + 9 * T + 5_000_000, T0 + 9 * T + 7_000_000)
    assert (late.k, late.skipped, late.t_end_ns) == (10, 0, T0 + 10 * T + 2_000_000)
    on_time = clock.feed(
        T0 + 11 * T + 2_000_000, T0 + 10 * T + 85_000_000, T0 + 10 * T + 88_000_000
    )
    assert (on_time.k, on_time.skipped) == (11, 0)
    # the clear came after update 12 had ended: that update is skipped, the reply is 13's
    skip = clock.feed(T0 + 13 * T + 2_000_000, T0 + 12 * T + 10_000_000, T0 + 12 * T + 12_000_000)
    assert (skip.k, skip.skipped) == (13, 1)
