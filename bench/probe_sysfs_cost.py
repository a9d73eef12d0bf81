"""CPU cost of sampling sysfs: the powerd sampler reading RAPL and hwmon at 10 Hz, on one core.

The host is a captured-style sysfs tree written into tmp (``POWERD_SYSFS_ROOT``): RAPL with two
packages, each with core and DRAM subzones (6 counters), and hwmon with an amdgpu
(``power1_average``), an INA226 (``power1_input``) and an INA3221 (3 rails, voltage × current):
5 power channels from 8 files. A separate writer process rewrites every value every 50 ms, so
readings change as on a live host (its CPU is not counted). A child process opens
``rapl:interval=0.1`` and ``hwmon:interval=0.1`` and runs the real ``Sampler`` (timeline, SQLite
store, flushes) for the duration. Cost is the child's process CPU time (user + sys,
``resource.getrusage``) over the sampling period only, as % of one core; an empty sampler over
the same period is measured too. Reads of tmpfs files are cheaper than reads of real sysfs
attributes whose drivers talk to hardware (an INA226 read is an I2C transfer), so this is
powerd's own cost. Goal: <= 1 % of one core.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import benchlib
from _common import cost_bench_start, run_child, sample, us_per_read_above

NAME = "probe_sysfs_cost"
GOAL_PCT = 1.0
SPECS = "rapl:interval=0.1;hwmon:interval=0.1"
INTEL_RANGE_UJ = 262143328850

WRITER = r"""
import os, sys, time
root = sys.argv[1]
files = [l.split("\t") for l in open(os.path.join(root, "values.tsv")).read().splitlines()]
k = 0
while True:
    k += 1
    for rel, base, step in files:
        p = os.path.join(root, rel)
        tmp = p + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{int(base) + k * int(step)}\n")
        os.replace(tmp, p)
    time.sleep(0.05)
"""


def write_tree(root: Path) -> None:
    """The tree, and values.tsv: each changing file with its start value and step per write."""
    values: list[tuple[str, int, int]] = []

    def put(rel: str, text: str, step: int = 0) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"{text}\n")
        if step:
            values.append((rel, int(text), step))

    put("proc/cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel")
    for pkg in (0, 1):
        for d, name, step in (
            (f"intel-rapl:{pkg}", f"package-{pkg}", 10_000_000),
            (f"intel-rapl:{pkg}:0", "core", 6_000_000),
            (f"intel-rapl:{pkg}:1", "dram", 1_000_000),
        ):
            put(f"sys/class/powercap/{d}/name", name)
            put(f"sys/class/powercap/{d}/max_energy_range_uj", str(INTEL_RANGE_UJ))
            put(f"sys/class/powercap/{d}/energy_uj", str(10**9 * (pkg + 1)), step)
    hw = "sys/class/hwmon"
    put(f"{hw}/hwmon0/name", "amdgpu")
    put(f"{hw}/hwmon0/power1_label", "PPT")
    put(f"{hw}/hwmon0/power1_average", "187000000", 1000)
    put(f"{hw}/hwmon1/name", "ina226")
    put(f"{hw}/hwmon1/power1_input", "17987500", 1250)
    put(f"{hw}/hwmon1/in1_input", "12096")
    put(f"{hw}/hwmon2/name", "ina3221")
    for n, label in ((1, "VDD_IN"), (2, "VDD_CPU_GPU_CV"), (3, "VDD_SOC")):
        put(f"{hw}/hwmon2/in{n}_label", label)
        put(f"{hw}/hwmon2/in{n}_input", "5040", 1)
        put(f"{hw}/hwmon2/curr{n}_input", str(300 * n), 1)
    (root / "values.tsv").write_text("".join(f"{r}\t{b}\t{s}\n" for r, b, s in values))


def child(specs: str, duration_s: float, state_dir: Path) -> dict[str, Any]:
    """Run in the child: open the probes (if any), sample for ``duration_s``, report CPU time."""
    from powerd.probes.base import Probe
    from powerd.probes.registry import open_probe

    probes: list[Probe] = [open_probe(s) for s in specs.split(";") if s]
    s = sample(probes, duration_s, state_dir)
    return {
        "specs": specs or "(no probe)",
        "channels": sum(len(p.channels()) for p in probes),
        "cpu_s": s.cpu_s,
        "wall_s": s.wall_s,
        "core_pct": s.core_pct,
        "reads": s.reads,
        "samples": s.samples,
        "errors": s.errors,
        "last_error": s.last_error,
    }


def run_sysfs_child(specs: str, duration_s: float, root: Path, work: Path) -> Any:
    return run_child(__file__, specs, duration_s, work, {"POWERD_SYSFS_ROOT": str(root)})


def main() -> int:
    started = cost_bench_start(__doc__, NAME, child, "sampling time per run")
    if started is None:
        return 0  # a child: it printed its figures
    args, setup, duration = started.args, started.setup, started.duration_s
    result = benchlib.envelope(NAME, args.quick, setup)
    with tempfile.TemporaryDirectory(prefix="powerd-bench-sysfs-") as tmp:
        work = Path(tmp)
        root = work / "tree"
        write_tree(root)
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(root)])
        try:
            runs = [
                run_sysfs_child("", duration, root, work),
                run_sysfs_child(SPECS, duration, root, work),
            ]
        finally:
            writer.terminate()
            writer.wait()
    empty, sysfs = runs
    rows = [
        [
            r["specs"],
            r["channels"],
            f"{r['wall_s']:.1f}",
            r["reads"],
            r["samples"],
            r["errors"],
            f"{r['cpu_s'] * 1e3:.0f}",
            f"{r['core_pct']:.2f}",
        ]
        for r in runs
    ]
    header = ["sampler", "channels", "wall s", "reads", "samples", "errors", "CPU ms", "% core"]
    print(benchlib.md_table(header, rows))
    per_read_us = us_per_read_above(sysfs, empty)
    met = sysfs["core_pct"] <= GOAL_PCT
    print(
        f"\nRAPL (6 counters) + hwmon (5 channels) at 10 Hz: {sysfs['core_pct']:.2f} % of one "
        f"core in total, {sysfs['core_pct'] - empty['core_pct']:.2f} % above an empty sampler "
        f"({per_read_us:.0f} us CPU per probe read); goal <= {GOAL_PCT:g} %: "
        f"{'met' if met else 'NOT met'}"
    )
    result |= {
        "goal_core_pct": GOAL_PCT,
        "duration_s": duration,
        "runs": runs,
        "core_pct": sysfs["core_pct"],
        "core_pct_above_empty": sysfs["core_pct"] - empty["core_pct"],
        "us_per_probe_read": per_read_us,
        "goal_met": met,
        "load_after": benchlib.load(),
    }
    path = benchlib.write_result(NAME, args.quick, args.out, result)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
