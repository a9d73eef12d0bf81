"""A power channel reading below 0 W inside a window is integrated as read and flagged
``negative_power`` (issue 12 item 6: a rail that reads negative is a problem the user must see)."""

from __future__ import annotations

import numpy as np
import pytest

from powerd.channel import Channel
from powerd.integrate import Window, integrate_power

T0 = 1_800_000_000_000_000_000
MS = 1_000_000


def ch() -> Channel:
    return Channel(id="t:p", kind="power", source_class="telemetry", nominal_period_s=0.01)


def test_a_negative_sample_in_the_window_is_kept_and_flagged() -> None:
    t = T0 + np.arange(101, dtype=np.int64) * 10 * MS
    p = np.where(np.arange(101) % 2 == 0, -0.4, 1.2)
    r = integrate_power(t, p, Window(T0, T0 + 1000 * MS), ch())
    assert "negative_power" in r.flags
    assert r.energy_j == pytest.approx(0.4 * 1.0, rel=1e-9)  # mean 0.4 W as read, not 0.6 W


def test_negative_samples_outside_the_window_do_not_flag_it() -> None:
    t = T0 + np.arange(200, dtype=np.int64) * 10 * MS
    p = np.where(np.arange(200) < 50, -0.4, 2.0)
    r = integrate_power(t, p, Window(T0 + 1000 * MS, T0 + 1900 * MS), ch())
    assert "negative_power" not in r.flags and r.energy_j == pytest.approx(1.8)
    # a zero reading is not negative
    r = integrate_power(t, np.zeros(200), Window(T0, T0 + 1900 * MS), ch())
    assert r.flags == ()
