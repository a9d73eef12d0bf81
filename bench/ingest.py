"""Ingest throughput of sample blocks into the timeline and the SQLite store, on one core.

Each block goes to ``Timeline.append`` and ``Store.append``; the store is flushed once per second
of data (the daemon's pace), so one stored row holds about 1 s of samples, and closed at the end.
The wall time includes every flush and commit (WAL, synchronous=NORMAL) and the final close.
Separate runs time the timeline alone and the store alone, to split the cost.
Goal: >= 2 million samples/s on one core.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
import numpy as np

from powerd.block import Block
from powerd.channel import Channel
from powerd.store import Store
from powerd.timeline import Timeline

NAME = "ingest"
GOAL_SAMPLES_PER_S = 2e6
T0_NS = 1_700_000_000_000_000_000
CAPACITY = 1 << 20


def scenarios(quick: bool) -> list[dict[str, int]]:
    """Block size, sample rate, and total samples per run; a flush every second of data."""
    if quick:
        return [
            {"block": 50, "rate_hz": 1_000, "total": 20_000},
            {"block": 1_000, "rate_hz": 10_000, "total": 100_000},
            {"block": 10_000, "rate_hz": 100_000, "total": 200_000},
        ]
    return [
        {"block": 50, "rate_hz": 1_000, "total": 2_000_000},
        {"block": 1_000, "rate_hz": 1_000, "total": 4_000_000},
        {"block": 1_000, "rate_hz": 10_000, "total": 10_000_000},
        {"block": 10_000, "rate_hz": 100_000, "total": 20_000_000},
    ]


def make_blocks(ch: Channel, block: int, rate_hz: int, total: int) -> list[Block]:
    """Blocks of a 5 W + noise power channel, consecutive in time; built before timing."""
    period_ns = 1_000_000_000 // rate_hz
    t = T0_NS + np.arange(total, dtype=np.int64) * period_ns
    v = 5.0 + np.random.default_rng(2).standard_normal(total) * 0.01
    return [
        Block(ch.id, t[i : i + block].copy(), v[i : i + block].copy())
        for i in range(0, total, block)
    ]


def work_dir() -> tuple[Path, str]:
    """A temp directory on the same filesystem as the repository (never tmpfs)."""
    tmp = Path(tempfile.gettempdir())
    if os.stat(tmp).st_dev == os.stat(benchlib.ROOT).st_dev:
        base = tmp
    else:
        base = benchlib.BENCH_DIR / "results" / "tmp"
        base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="powerd-bench-", dir=base)), _fs_of(base)


def _fs_of(path: Path) -> str:
    """'<device> <fstype> on <mountpoint>' of the mount holding ``path``."""
    best = ("?", "?", "/")
    real = str(path.resolve())
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mnt, fstype = line.split()[:3]
            inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
            if inside and len(mnt) >= len(best[2]):
                best = (dev, fstype, mnt)
    except OSError:
        pass
    return f"{best[0]} {best[1]} on {best[2]}"


def run_full(ch: Channel, blocks: list[Block], per_flush: int, db: Path) -> float:
    tl = Timeline(capacity_per_channel=CAPACITY)
    tl.add_channel(ch)
    store = Store(db)
    store.put_channel(ch)
    t0 = time.perf_counter()
    for i, b in enumerate(blocks, 1):
        tl.append(b)
        store.append(b)
        if i % per_flush == 0:
            store.flush()
    store.close()
    return time.perf_counter() - t0


def run_timeline(ch: Channel, blocks: list[Block]) -> float:
    tl = Timeline(capacity_per_channel=CAPACITY)
    tl.add_channel(ch)
    t0 = time.perf_counter()
    for b in blocks:
        tl.append(b)
    return time.perf_counter() - t0


def run_store(ch: Channel, blocks: list[Block], per_flush: int, db: Path) -> tuple[float, float]:
    """Store alone: (total seconds, of which in flush/close)."""
    store = Store(db)
    store.put_channel(ch)
    in_flush = 0.0
    t0 = time.perf_counter()
    for i, b in enumerate(blocks, 1):
        store.append(b)
        if i % per_flush == 0:
            f0 = time.perf_counter()
            store.flush()
            in_flush += time.perf_counter() - f0
    f0 = time.perf_counter()
    store.close()
    end = time.perf_counter()
    return end - t0, in_flush + end - f0


def measure(quick: bool, repeats: int) -> tuple[list[dict[str, Any]], str]:
    ch = Channel(id="sim:x", kind="power", source_class="meter", nominal_period_s=1e-3)
    tmp, fs = work_dir()
    rows = []
    try:
        for sc in scenarios(quick):
            blocks = make_blocks(ch, sc["block"], sc["rate_hz"], sc["total"])
            per_flush = max(1, sc["rate_hz"] // sc["block"])
            n = sc["total"]
            full, tl_only, st_only, st_flush, db_bytes = [], [], [], [], 0
            for k in range(repeats):
                db = tmp / f"full-{sc['block']}-{sc['rate_hz']}-{k}.db"
                full.append(run_full(ch, blocks, per_flush, db))
                db_bytes = sum(p.stat().st_size for p in tmp.glob(db.name + "*"))
                tl_only.append(run_timeline(ch, blocks))
                s_total, s_flush = run_store(ch, blocks, per_flush, tmp / f"st-{k}.db")
                st_only.append(s_total)
                st_flush.append(s_flush)
                for p in tmp.iterdir():
                    p.unlink()
            med = benchlib.median(full)
            row = {
                **sc,
                "blocks": len(blocks),
                "blocks_per_flush": per_flush,
                "samples_per_row": per_flush * sc["block"],
                "repeats": repeats,
                "full_s": full,
                "timeline_only_s": tl_only,
                "store_only_s": st_only,
                "store_flush_s": st_flush,
                "median_s": med,
                "samples_per_s": n / med,
                "meets_goal": n / med >= GOAL_SAMPLES_PER_S,
                "ns_per_sample": {
                    "total": med / n * 1e9,
                    "timeline": benchlib.median(tl_only) / n * 1e9,
                    "store_append": (benchlib.median(st_only) - benchlib.median(st_flush))
                    / n
                    * 1e9,
                    "store_flush": benchlib.median(st_flush) / n * 1e9,
                },
                "db_bytes": db_bytes,
            }
            rows.append(row)
            print(
                f"  block={sc['block']:>6} rate={sc['rate_hz']:>7} Hz  "
                f"{row['samples_per_s'] / 1e6:7.2f} M samples/s",
                file=sys.stderr,
                flush=True,
            )
            del blocks
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows, fs


def table(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        ns = r["ns_per_sample"]
        out.append(
            [
                f"{r['block']:,}",
                f"{r['rate_hz'] / 1000:g} kHz",
                f"{r['samples_per_row']:,}",
                f"{r['total'] / 1e6:g} M",
                f"{r['median_s']:.3f}",
                f"{r['samples_per_s'] / 1e6:.2f}",
                "yes" if r["meets_goal"] else "**no**",
                f"{ns['total']:.0f}",
                f"{ns['timeline']:.0f}",
                f"{ns['store_append']:.0f}",
                f"{ns['store_flush']:.0f}",
            ]
        )
    return benchlib.md_table(
        [
            "block (samples)",
            "rate",
            "samples per flush (row)",
            "samples",
            "wall s",
            "M samples/s",
            "≥ 2 M/s",
            "ns/sample total",
            "timeline alone",
            "store append alone",
            "store flush+close alone",
        ],
        out,
    )


def main() -> int:
    args = benchlib.parser(__doc__.splitlines()[0]).parse_args()
    setup = benchlib.single_core(args.cpu)
    data = benchlib.envelope(NAME, args.quick, setup)
    data["goal"] = "ingest into timeline + store >= 2 million samples/s on one core"
    data["flush_policy"] = "store.flush() once per second of data (rate_hz // block blocks)"
    t0 = time.perf_counter()
    repeats = 1 if args.quick else 3
    rows, fs = measure(args.quick, repeats)
    data["filesystem"] = fs
    data["rows"] = rows
    data["load_after"] = benchlib.load()
    data["elapsed_s"] = time.perf_counter() - t0
    worst = min(r["samples_per_s"] for r in rows)
    met = sum(r["meets_goal"] for r in rows)
    how = "met in every case" if met == len(rows) else f"met in {met} of {len(rows)} cases"
    data["verdict"] = f"{how} (slowest case {worst / 1e6:.1f} M samples/s)."
    data["markdown"] = table(rows)
    path = benchlib.write_result(NAME, args.quick, args.out, data)
    print(data["markdown"])
    print(f"\n{data['verdict']}")
    print(f"store on {fs}")
    print(f"load before/after: {data['load_before']} / {data['load_after']}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
