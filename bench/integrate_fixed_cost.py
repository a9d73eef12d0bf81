"""Integration's fixed cost per call against a plain ``numpy.trapezoid`` of the same samples.

Windows of 10^3, 10^4 and 10^5 samples of a 1 kHz power channel (5 W / 7 W square wave with
10 mW noise, edges between samples) and of its cumulative counter: the best of several timed
batches of ``integrate_power`` and ``integrate_counter``, and of ``numpy.trapezoid(p, t)`` on the
same arrays. Run with ``PYTHONPATH=<tree>`` to time another checkout's ``powerd.integrate``
(e.g. the ``int`` worktree) under the same interpreter. Goal (issue 16 item 4): <= 2x trapezoid.
``energy_only`` (the energy without the uncertainty model) is timed too where the tree has it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import partial

import benchlib
import numpy as np

import powerd.integrate
from powerd.channel import Channel
from powerd.integrate import Window, integrate_counter, integrate_power

T0_NS = 1_700_000_000_000_000_000
PERIOD_NS = 1_000_000


def best_s(fn: Callable[[], object], batch: int, batches: int = 7) -> float:
    best = float("inf")
    for _ in range(batches):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        best = min(best, (time.perf_counter() - t0) / batch)
    return best


def main() -> int:
    p = benchlib.parser(__doc__.splitlines()[0] if __doc__ else "integrate_fixed_cost")
    args = p.parse_args()
    benchlib.single_core(args.cpu)
    ch_p = Channel(id="sim:x", kind="power", source_class="meter", nominal_period_s=1e-3)
    ch_e = Channel(id="sim:e", kind="energy", source_class="meter", nominal_period_s=1e-3)
    print(f"powerd.integrate from {sys.modules['powerd.integrate'].__file__}")
    energy_only = getattr(powerd.integrate, "energy_only", None)
    print(
        "| samples | integrate_power us | integrate_counter us | energy_only power / counter us"
        " | trapezoid us | ratios |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | --- |")
    for n in (10**3, 10**4, 10**5):
        t = T0_NS + np.arange(n, dtype=np.int64) * PERIOD_NS
        pw = np.where((np.arange(n) // 500) % 2 == 0, 7.0, 5.0)
        pw += np.random.default_rng(1).standard_normal(n) * 0.01
        c = np.cumsum(pw) * (PERIOD_NS / 1e9)
        w = Window(int(t[0]) + PERIOD_NS // 2, int(t[-1]) - PERIOD_NS // 2)
        batch = max(3, 20_000 // n * 5) if not args.quick else 3
        a = best_s(partial(integrate_power, t, pw, w, ch_p), batch)
        b = best_s(partial(integrate_counter, t, c, w, ch_e), batch)
        z = best_s(partial(np.trapezoid, pw, t), batch)
        only, only_ratio = "-", ""
        if energy_only is not None:
            ea = best_s(partial(energy_only, t, pw, w, ch_p), batch)
            eb = best_s(partial(energy_only, t, c, w, ch_e), batch)
            only = f"{ea * 1e6:.0f} / {eb * 1e6:.0f}"
            only_ratio = f"; energy_only power {ea / z:.1f}x, counter {eb / z:.1f}x"
        print(
            f"| {n} | {a * 1e6:.0f} | {b * 1e6:.0f} | {only} | {z * 1e6:.0f} | "
            f"power {a / z:.1f}x, counter {b / z:.1f}x{only_ratio} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
