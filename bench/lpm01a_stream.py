"""LPM01A binary stream at 100 kS/s, sustained: simulator → pty → probe → timeline → store.

The simulated PowerShield (``probes/lpm01a/sim.py``) runs in its own process, pinned away from
the measured core, and streams ``bin_hexa`` current samples at 100 kHz through a pseudo-terminal,
with a timestamp frame every second. This process runs what powerd runs: the ``lpm01a`` probe
(its serial session in the ``SerialReader`` thread: decode, place on the host clock) polled by
powerd's ``Sampler`` into a ``Timeline`` and a SQLite ``Store`` in a temporary directory (flushed
every second). It measures, over the steady part of the run (after the first second of data):

- dropped samples: what the simulator sent minus what reached the store (expected 0), and the
  probe's own counts of undecodable, lost and out-of-order data;
- CPU of this process (user + sys, from ``getrusage``) as % of one core — goal ≤ 25 %;
- peak RSS of this process.

``--seconds`` sets the length (default 60); ``--quick`` runs 5 s (a smoke test, not a figure).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib

NAME = "lpm01a_stream"
GOAL_CPU_PCT = 25.0
RATE = "100k"
RATE_HZ = 100_000
WAVEFORM = "square,high=0.1,low=0.02,period=0.1,duty=0.5"
WARMUP_S = 1.0


def sim_main(link: str, stop: Any, report: str, avoid_cpu: int) -> None:
    """The simulator process: serve the pty until told to stop, then write its counters."""
    if hasattr(os, "sched_setaffinity"):
        others = set(os.sched_getaffinity(0)) - {avoid_cpu}
        if others:
            os.sched_setaffinity(0, others)
    from powerd.probes.lpm01a.sim import make
    from powerd.probes.serialsim import PtySimulator
    from powerd.probes.sim.waveform import parse_spec

    model = make("lpm01a", parse_spec(WAVEFORM).waveform, {})
    sim = PtySimulator(model, Path(link)).start()
    stop.wait()
    time.sleep(0.5)  # let the probe's stop and release go through
    sim.stop()
    Path(report).write_text(
        json.dumps(
            {
                "samples_sent": model.samples_sent,
                "timestamps_sent": model.timestamps_sent,
                "acquisitions": model.acquisitions,
                "bytes_out": sim.bytes_out,
                "bytes_overflowed": sim.bytes_overflowed,
                "commands": model.commands,
            }
        )
    )


def cpu_s() -> tuple[float, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime


def stored_samples(db: Path, channel: str) -> int:
    con = sqlite3.connect(db)
    try:
        row = con.execute("SELECT COALESCE(SUM(n), 0) FROM blocks WHERE channel=?", (channel,))
        return int(row.fetchone()[0])
    finally:
        con.close()


def run(seconds: float, cpu: int) -> dict[str, Any]:
    from powerd.probes.lpm01a import family
    from powerd.runner import Sampler
    from powerd.store import Store
    from powerd.timebase import TimeAnchor
    from powerd.timeline import Timeline

    tmp = Path(tempfile.mkdtemp(prefix="powerd-bench-lpm01a-"))
    link = tmp / "lpm01a"
    report = tmp / "sim.json"
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    proc = ctx.Process(target=sim_main, args=(str(link), stop, str(report), cpu), daemon=True)
    proc.start()
    try:
        deadline = time.monotonic() + 30
        while not link.exists():
            if time.monotonic() > deadline or not proc.is_alive():
                raise SystemExit("the simulator did not come up")
            time.sleep(0.02)
        probe = family.open(f"{link},output=current,rate={RATE},format=bin")
        channel = probe.channels()[0].id
        store = Store(tmp / "powerd.db")
        sampler = Sampler([probe], Timeline(), store, TimeAnchor())
        sampler.start()
        deadline = time.monotonic() + 30
        while probe.state.samples == 0:
            if time.monotonic() > deadline:
                raise SystemExit("no data from the simulated PowerShield")
            time.sleep(0.01)
        time.sleep(WARMUP_S)
        u0, s0 = cpu_s()
        w0 = time.perf_counter()
        n0 = probe.state.samples
        time.sleep(seconds)
        u1, s1 = cpu_s()
        w1 = time.perf_counter()
        n1 = probe.state.samples
        probe.close()  # stop: the shield's last samples come in, then hrc
        sampler.stop()  # the last poll, the last flush
        store.close()
        stop.set()
        proc.join(30)
        sim = json.loads(report.read_text())
        counts = probe.state.counts
        health = sampler.health[0]
        stored = stored_samples(tmp / "powerd.db", channel)
        wall = w1 - w0
        return {
            "seconds": seconds,
            "rate_hz": RATE_HZ,
            "waveform": WAVEFORM,
            "measured_wall_s": wall,
            "samples_in_window": n1 - n0,
            "samples_per_s": (n1 - n0) / wall,
            "samples_sent": sim["samples_sent"],
            "samples_received": probe.state.samples,
            "samples_sampled": health.samples,
            "samples_stored": stored,
            "dropped": sim["samples_sent"] - stored,
            "bad": counts.bad,
            "lost": counts.lost,
            "ahead": counts.ahead,
            "out_of_order": counts.out_of_order,
            "timestamps_sent": sim["timestamps_sent"],
            "acquisitions": sim["acquisitions"],
            "sim_bytes_out": sim["bytes_out"],
            "sim_bytes_overflowed": sim["bytes_overflowed"],
            "reconnects": max(0, (probe.reader.connects if probe.reader else 1) - 1),
            "probe_problems": health.errors,
            "last_problem": health.last_error,
            "cpu_user_s": u1 - u0,
            "cpu_sys_s": s1 - s0,
            "cpu_pct_one_core": 100.0 * ((u1 - u0) + (s1 - s0)) / wall,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "db_bytes": sum(p.stat().st_size for p in tmp.glob("powerd.db*")),
        }
    finally:
        stop.set()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def table(r: dict[str, Any]) -> str:
    ok = r["cpu_pct_one_core"] <= GOAL_CPU_PCT and r["dropped"] == 0
    return benchlib.md_table(
        [
            "stream",
            "seconds",
            "sent",
            "stored",
            "dropped",
            "bad/lost",
            "CPU % of 1 core (user+sys)",
            "peak RSS MiB",
            "goal met",
        ],
        [
            [
                "bin_hexa 100 kS/s",
                f"{r['seconds']:g}",
                f"{r['samples_sent']:,}",
                f"{r['samples_stored']:,}",
                f"{r['dropped']:,}",
                f"{r['bad']}/{r['lost']}",
                f"{r['cpu_pct_one_core']:.1f} ({r['cpu_user_s']:.1f}+{r['cpu_sys_s']:.1f} s)",
                f"{r['peak_rss_mib']:.0f}",
                "yes" if ok else "**no**",
            ]
        ],
    )


def main() -> None:
    p = benchlib.parser(__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=None, help="length of the run (default 60)")
    args = p.parse_args()
    setup = benchlib.single_core(args.cpu)
    seconds = args.seconds if args.seconds is not None else (5.0 if args.quick else 60.0)
    data = benchlib.envelope(NAME, args.quick, setup)
    print(f"lpm01a stream: {seconds:g} s at {RATE_HZ} S/s ...", file=sys.stderr, flush=True)
    result = run(seconds, args.cpu)
    data.update(
        {
            "goal": f"no dropped samples, <= {GOAL_CPU_PCT:g} % of one core",
            "result": result,
            "load_after": benchlib.load(),
        }
    )
    path = benchlib.write_result(NAME, args.quick, args.out, data)
    print(f"**lpm01a binary stream** (goal: {data['goal']}); `{data['command']}`\n")
    print(table(result))
    print(f"\nload before/after: {data['load_before']} / {data['load_after']}; wrote {path}")


if __name__ == "__main__":
    main()
