"""Integration throughput of one channel over windows of 10^3 … 10^8 samples, on one core.

Measures ``integrate_power`` (trapezoid, power channel) and ``integrate_counter`` (cumulative J
counter) on a 1 kHz channel whose window edges fall between samples, so both edges are
interpolated. Figure: median seconds per call over several repeats, and samples per second.
Goal: >= 100 million samples/s on one core.
"""

from __future__ import annotations

import sys
import time
from functools import partial
from typing import Any

import benchlib
import numpy as np

from powerd.channel import Channel
from powerd.integrate import Window, integrate_counter, integrate_power

NAME = "integrate"
GOAL_SAMPLES_PER_S = 100e6
T0_NS = 1_700_000_000_000_000_000
PERIOD_NS = 1_000_000  # 1 kHz


def make_data(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Timestamps, a power waveform (5 W + 2 W square wave at 1 Hz + 10 mW noise), its counter."""
    t = T0_NS + np.arange(n, dtype=np.int64) * PERIOD_NS
    p = np.where((np.arange(n) // 500) % 2 == 0, 7.0, 5.0)
    p += np.random.default_rng(seed).standard_normal(n) * 0.01
    c = np.cumsum(p) * (PERIOD_NS / 1e9)  # J, cumulative
    return t, p, c


def plan(quick: bool) -> list[tuple[int, int, float]]:
    """(samples, repeats, minimum seconds per repeat) for each size."""
    if quick:
        return [(10**3, 3, 0.02), (10**4, 3, 0.02), (10**5, 3, 0.02)]
    return [
        (10**3, 7, 0.2),
        (10**4, 7, 0.2),
        (10**5, 7, 0.2),
        (10**6, 7, 0.2),
        (10**7, 5, 0.0),
        (10**8, 3, 0.0),
    ]


def measure(quick: bool) -> list[dict[str, Any]]:
    sizes = plan(quick)
    n_max = max(n for n, _, _ in sizes)
    t_all, p_all, c_all = make_data(n_max)
    ch_p = Channel(id="sim:x", kind="power", source_class="meter", nominal_period_s=1e-3)
    ch_e = Channel(id="sim:e", kind="energy", source_class="meter", nominal_period_s=1e-3)
    rows = []
    for n, repeats, min_s in sizes:
        t, p, c = t_all[:n], p_all[:n], c_all[:n]
        w = Window(int(t[0]) + PERIOD_NS // 2, int(t[-1]) - PERIOD_NS // 2)
        row: dict[str, Any] = {"samples": n, "repeats": repeats}
        for label, fn, vals, ch in (
            ("power", integrate_power, p, ch_p),
            ("counter", integrate_counter, c, ch_e),
        ):
            r = fn(t, vals, w, ch)
            secs = benchlib.timed_repeats(partial(fn, t, vals, w, ch), repeats, min_s)
            med = benchlib.median(secs)
            row[label] = {
                "seconds_per_call": secs,
                "median_s": med,
                "samples_per_s": n / med,
                "meets_goal": n / med >= GOAL_SAMPLES_PER_S,
                "energy_j": r.energy_j,
                "mean_power_w": r.mean_power_w,
                "flags": list(r.flags),
            }
        rows.append(row)
        print(
            f"  n={n:>11,}  power {row['power']['samples_per_s'] / 1e6:8.1f} M/s   "
            f"counter {row['counter']['samples_per_s'] / 1e6:8.1f} M/s",
            file=sys.stderr,
            flush=True,
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    def yes(x: bool) -> str:
        return "yes" if x else "**no**"

    out = []
    for r in rows:
        pw, ct = r["power"], r["counter"]
        out.append(
            [
                f"10^{len(str(r['samples'])) - 1}",
                r["repeats"],
                f"{pw['median_s'] * 1e3:.3f}",
                f"{pw['samples_per_s'] / 1e6:.1f}",
                yes(pw["meets_goal"]),
                f"{ct['median_s'] * 1e3:.3f}",
                f"{ct['samples_per_s'] / 1e6:.1f}",
                yes(ct["meets_goal"]),
            ]
        )
    return benchlib.md_table(
        [
            "window (samples)",
            "repeats",
            "power: ms/call",
            "power: M samples/s",
            "≥ 100 M/s",
            "counter: ms/call",
            "counter: M samples/s",
            "≥ 100 M/s",
        ],
        out,
    )


def verdict(rows: list[dict[str, Any]]) -> str:
    parts = []
    for label in ("power", "counter"):
        met = [f"10^{len(str(r['samples'])) - 1}" for r in rows if r[label]["meets_goal"]]
        best = max(r[label]["samples_per_s"] for r in rows)
        if len(met) == len(rows):
            parts.append(f"integrate_{label}: met at every size")
        elif met:
            parts.append(
                f"integrate_{label}: met only at {', '.join(met)} (best {best / 1e6:.0f} M/s)"
            )
        else:
            parts.append(f"integrate_{label}: not met (best {best / 1e6:.0f} M/s)")
    return "; ".join(parts) + "."


def main() -> int:
    args = benchlib.parser(__doc__.splitlines()[0]).parse_args()
    setup = benchlib.single_core(args.cpu)
    data = benchlib.envelope(NAME, args.quick, setup)
    data["goal"] = "integration throughput >= 100 million samples/s on one core"
    data["channel"] = "1 kHz, window edges half a period inside the data (both interpolated)"
    t0 = time.perf_counter()
    rows = measure(args.quick)
    data["rows"] = rows
    data["load_after"] = benchlib.load()
    data["elapsed_s"] = time.perf_counter() - t0
    data["verdict"] = verdict(rows)
    data["markdown"] = table(rows)
    path = benchlib.write_result(NAME, args.quick, args.out, data)
    print(data["markdown"])
    print(f"\n{data['verdict']}")
    print(f"load before/after: {data['load_before']} / {data['load_after']}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
