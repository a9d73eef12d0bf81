"""CPU cost of sampling NVML: the powerd sampler reading 8 GPUs at the learned rate, on one core.

The GPUs are the tests' fake ``libnvidia-ml.so.1`` (``tests/probes/nvml/fake_nvml.c``), built here
with gcc and loaded through the real nvidia-ml-py by ``LD_LIBRARY_PATH`` in a child process. The
child opens ``nvml`` (learning each counter's update period, 100 ms in the scenario), then runs the
real ``Sampler`` (timeline, SQLite store, flushes) for the duration. Cost is the child's process
CPU time (user + sys, ``resource.getrusage``) over the sampling period only, as % of one core;
an empty sampler over the same period is measured too, so the probe's own share is visible.
The fake's calls cost well under a microsecond, so this is powerd's and the binding's cost, not
the driver's (a real driver call can be slower).
Goal: <= 1 % of one core for 8 GPUs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
from _common import cost_bench_start, cpu_s, run_child, sample, us_per_read_above

NAME = "probe_nvml_cost"
GOAL_PCT = 1.0
GPUS = 8
FAKE_C = benchlib.ROOT / "tests" / "probes" / "nvml" / "fake_nvml.c"


def child(spec: str, duration_s: float, state_dir: Path) -> dict[str, Any]:
    """Run in the child: open the probe (if any), sample for ``duration_s``, report CPU time."""
    from powerd.probes.base import Probe
    from powerd.probes.registry import open_probe

    probes: list[Probe] = []
    open_cpu = open_wall = 0.0
    if spec:
        c0, w0 = cpu_s(), time.monotonic()
        probes.append(open_probe(spec))
        open_cpu, open_wall = cpu_s() - c0, time.monotonic() - w0
    s = sample(probes, duration_s, state_dir)
    return {
        "spec": spec or "(no probe)",
        "open_cpu_s": open_cpu,
        "open_wall_s": open_wall,
        "poll_interval_s": probes[0].poll_interval_s if probes else None,
        "channels": len(probes[0].channels()) if probes else 0,
        "cpu_s": s.cpu_s,
        "wall_s": s.wall_s,
        "core_pct": s.core_pct,
        "reads": s.reads,
        "samples": s.samples,
        "errors": s.errors,
    }


def scenario(path: Path) -> None:
    """8 GPUs of different square waves, instant field supported, 100 ms counter updates."""
    lines = [f"gpus={GPUS}", "energy_update_ms=100"]
    for i in range(GPUS):
        lines += [
            f"gpu{i}.high_w={250 + 10 * i}",
            f"gpu{i}.low_w={80 + 5 * i}",
            f"gpu{i}.period_ns={(i + 1) * 100_000_000}",
            f"gpu{i}.high_ns={(i + 1) * 50_000_000}",
        ]
    path.write_text("\n".join(lines) + "\n")


def run_nvml_child(spec: str, duration_s: float, lib_dir: Path, config: Path, work: Path) -> Any:
    env = {"LD_LIBRARY_PATH": str(lib_dir), "FAKE_NVML_CONFIG": str(config)}
    return run_child(__file__, spec, duration_s, work, env)


def main() -> int:
    started = cost_bench_start(__doc__, NAME, child, "sampling time per run")
    if started is None:
        return 0  # a child: it printed its figures
    args, setup, duration = started.args, started.setup, started.duration_s
    gcc = shutil.which("gcc")
    if gcc is None:
        print("gcc is needed to build the fake libnvidia-ml.so.1", file=sys.stderr)
        return 2
    result = benchlib.envelope(NAME, args.quick, setup)
    with tempfile.TemporaryDirectory(prefix="powerd-bench-nvml-") as tmp:
        work = Path(tmp)
        build = [gcc, "-O2", "-shared", "-fPIC", "-Wl,-soname,libnvidia-ml.so.1"]
        lib = work / "libnvidia-ml.so.1"
        subprocess.run([*build, "-o", str(lib), str(FAKE_C)], check=True)
        config = work / "scenario"
        scenario(config)
        runs = [
            run_nvml_child("", duration, work, config, work),
            run_nvml_child("nvml", duration, work, config, work),
        ]
    empty, nvml = runs
    probe_pct = nvml["core_pct"] - empty["core_pct"]
    met = nvml["core_pct"] <= GOAL_PCT
    rows = [
        [
            r["spec"],
            r["channels"],
            f"{r['poll_interval_s'] * 1e3:.1f}" if r["poll_interval_s"] else "-",
            f"{r['wall_s']:.1f}",
            r["reads"],
            r["samples"],
            f"{r['cpu_s'] * 1e3:.0f}",
            f"{r['core_pct']:.2f}",
        ]
        for r in runs
    ]
    header = ["sampler", "channels", "poll ms", "wall s", "reads", "samples", "CPU ms", "% core"]
    print(benchlib.md_table(header, rows))
    per_read_us = us_per_read_above(nvml, empty)
    print(
        f"\n{GPUS} GPUs: {nvml['core_pct']:.2f} % of one core in total, "
        f"{probe_pct:.2f} % above an empty sampler ({per_read_us:.0f} us CPU per read of all "
        f"{GPUS} GPUs); goal <= {GOAL_PCT:g} %: {'met' if met else 'NOT met'}"
    )
    print(
        f"open (incl. learning the update period): {nvml['open_wall_s']:.2f} s wall, "
        f"{nvml['open_cpu_s'] * 1e3:.0f} ms CPU"
    )
    result.update(
        gpus=GPUS,
        goal_core_pct=GOAL_PCT,
        runs=runs,
        nvml_core_pct=nvml["core_pct"],
        probe_over_empty_core_pct=probe_pct,
        cpu_us_per_read=per_read_us,
        goal_met=met,
    )
    path = benchlib.write_result(NAME, args.quick, args.out, result)
    print(
        f"wrote {path.relative_to(benchlib.ROOT) if path.is_relative_to(benchlib.ROOT) else path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
