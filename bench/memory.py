"""Memory per million samples buffered in the timeline (rings), measured as process RSS growth.

For each size, a fresh Timeline with 8 channels and a ring capacity of that many samples per
channel is filled completely with 10 000-sample blocks; the figure is the RSS growth (psutil)
from just before the timeline was created to just after it is full, per million samples held,
beside what the rings report (``Ring.nbytes``). Goal: <= 20 MB (10^6 bytes) per million samples.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

import benchlib
import numpy as np
import psutil

from powerd.block import Block
from powerd.channel import Channel
from powerd.timeline import Timeline

NAME = "memory"
GOAL_MB_PER_MSAMPLE = 20.0
T0_NS = 1_700_000_000_000_000_000
PERIOD_NS = 1_000_000
CHANNELS = 8
BLOCK = 10_000


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def fill(per_channel: int, values: np.ndarray, offsets: np.ndarray) -> dict[str, Any]:
    gc.collect()
    before = rss()
    tl = Timeline(capacity_per_channel=per_channel)
    chans = [
        Channel(id=f"sim:m{i}", kind="power", source_class="meter", nominal_period_s=1e-3)
        for i in range(CHANNELS)
    ]
    for ch in chans:
        tl.add_channel(ch)
    after_alloc = rss()
    for start in range(0, per_channel, BLOCK):
        n = min(BLOCK, per_channel - start)
        t = T0_NS + (start * PERIOD_NS) + offsets[:n]
        for ch in chans:
            tl.append(Block(ch.id, t, values[:n]))
        del t
    gc.collect()
    after = rss()
    held = sum(len(r) for r in tl.rings.values())
    nbytes = sum(r.nbytes for r in tl.rings.values())
    del tl
    gc.collect()
    growth = after - before
    return {
        "channels": CHANNELS,
        "samples_per_channel": per_channel,
        "samples_held": held,
        "rss_before": before,
        "rss_after_create": after_alloc,
        "rss_after_fill": after,
        "rss_growth_bytes": growth,
        "ring_nbytes": nbytes,
        "rss_mb_per_msample": growth / 1e6 / (held / 1e6),
        "nbytes_mb_per_msample": nbytes / 1e6 / (held / 1e6),
        "rss_after_free": rss(),
        "meets_goal": growth / held <= GOAL_MB_PER_MSAMPLE,
    }


def measure(quick: bool) -> list[dict[str, Any]]:
    sizes = [100_000, 250_000] if quick else [1_000_000, 4_000_000, 10_000_000]
    values = 5.0 + np.random.default_rng(3).standard_normal(BLOCK) * 0.01
    offsets = np.arange(BLOCK, dtype=np.int64) * PERIOD_NS
    rows = []
    for n in sizes:
        row = fill(n, values, offsets)
        rows.append(row)
        print(
            f"  {CHANNELS} x {n:>11,}: RSS +{row['rss_growth_bytes'] / 1e6:8.1f} MB, "
            f"{row['rss_mb_per_msample']:.2f} MB per M samples",
            file=sys.stderr,
            flush=True,
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        [
            f"{r['channels']} × {r['samples_per_channel'] / 1e6:g} M",
            f"{r['samples_held'] / 1e6:g} M",
            f"{r['rss_growth_bytes'] / 1e6:.1f}",
            f"{r['ring_nbytes'] / 1e6:.1f}",
            f"{r['rss_mb_per_msample']:.2f}",
            f"{r['nbytes_mb_per_msample']:.2f}",
            "yes" if r["meets_goal"] else "**no**",
        ]
        for r in rows
    ]
    return benchlib.md_table(
        [
            "channels × samples",
            "samples held",
            "RSS growth (MB)",
            "Σ Ring.nbytes (MB)",
            "RSS MB per M samples",
            "nbytes MB per M samples",
            "≤ 20 MB",
        ],
        out,
    )


def main() -> int:
    args = benchlib.parser(__doc__.splitlines()[0]).parse_args()
    setup = benchlib.single_core(args.cpu)
    data = benchlib.envelope(NAME, args.quick, setup)
    data["goal"] = "timeline memory <= 20 MB (10^6 bytes) per million buffered samples"
    t0 = time.perf_counter()
    rows = measure(args.quick)
    data["rows"] = rows
    data["load_after"] = benchlib.load()
    data["elapsed_s"] = time.perf_counter() - t0
    worst = max(r["rss_mb_per_msample"] for r in rows)
    ok = all(r["meets_goal"] for r in rows)
    data["verdict"] = f"{'met' if ok else 'not met'} (worst {worst:.2f} MB per million samples)."
    data["markdown"] = table(rows)
    path = benchlib.write_result(NAME, args.quick, args.out, data)
    print(data["markdown"])
    print(f"\n{data['verdict']}")
    print(f"load before/after: {data['load_before']} / {data['load_after']}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
