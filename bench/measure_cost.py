"""Whole-process CPU of ``powerd measure --probe nvml`` while its command runs, seen from /proc.

The GPU is the tests' fake ``libnvidia-ml.so.1`` (one GPU, 100 ms counter updates), loaded through
the real nvidia-ml-py. ``powerd measure --quiet --probe nvml -- sleep S`` runs as its own process;
once its ``sleep`` child exists and a warm-up has passed, this script reads the measure process's
utime + stime from ``/proc/<pid>/stat`` (every thread: sampler, API server, main thread waiting
for the child) and again shortly before ``sleep`` ends. The figure is that CPU time over that wall
time, as % of one core: what the user pays while the workload runs, start-up and the report
excluded. ``--tree DIR`` measures another checkout's powerd (e.g. the ``int`` worktree, for a
before/after comparison) with the same interpreter and fake.
Goal (issue 16 item 4): <= 0.5 % of one core with one NVML GPU.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib

sys.path.insert(0, str(benchlib.ROOT))
from tests.probes.nvml.fakenvml import FakeGpu, build_fake, fake_env, write_config

NAME = "measure_cost"
GOAL_PCT = 0.5
WARMUP_S = 3.0
TAIL_S = 2.0
TICK_S = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """utime + stime of every thread of ``pid`` (s), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK_S


def child_pid(pid: int, timeout_s: float = 60.0) -> int:
    """The first child of ``pid`` (measure's CMD), waiting for it to appear."""
    deadline = time.monotonic() + timeout_s
    path = Path(f"/proc/{pid}/task/{pid}/children")
    while time.monotonic() < deadline:
        kids = path.read_text().split()
        if kids:
            return int(kids[0])
        time.sleep(0.05)
    raise RuntimeError("measure never started its command")


def one_run(tree: Path, lib_dir: Path, config: Path, work: Path, sleep_s: float) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="state-", dir=work))
    out = Path(tempfile.mkdtemp(prefix="out-", dir=work))
    env = {**fake_env(lib_dir, config), "PYTHONPATH": str(tree), "POWERD_STATE_DIR": str(state)}
    cmd = [sys.executable, "-m", "powerd", "measure", "--quiet", "--probe", "nvml"]
    cmd += ["--run", "cost", "--out", str(out), "--", "sleep", f"{sleep_s:g}"]
    proc = subprocess.Popen(
        cmd, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        child_pid(proc.pid)
        time.sleep(WARMUP_S)
        c0, t0 = proc_cpu_s(proc.pid), time.monotonic()
        time.sleep(sleep_s - WARMUP_S - TAIL_S - 0.5)
        c1, t1 = proc_cpu_s(proc.pid), time.monotonic()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode != 0:
        raise RuntimeError(f"powerd measure failed ({proc.returncode}): {err[-2000:]}")
    return {"cpu_s": c1 - c0, "wall_s": t1 - t0, "core_pct": 100 * (c1 - c0) / (t1 - t0)}


def main() -> int:
    p = benchlib.parser(__doc__.splitlines()[0] if __doc__ else NAME)
    p.add_argument("--seconds", type=float, default=120.0, help="length of the measured sleep")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tree", type=Path, default=benchlib.ROOT, help="powerd checkout to measure")
    args = p.parse_args()
    setup = benchlib.single_core(args.cpu)
    sleep_s = 15.0 if args.quick else args.seconds
    repeats = 1 if args.quick else args.repeats
    result = benchlib.envelope(NAME, args.quick, setup)
    with tempfile.TemporaryDirectory(prefix="powerd-bench-measure-") as tmp:
        work = Path(tmp)
        lib = build_fake(work)
        config = work / "scenario"
        write_config(config, [FakeGpu()], energy_update_ms=100)
        runs = [one_run(args.tree.resolve(), lib, config, work, sleep_s) for _ in range(repeats)]
    pct = statistics.median(r["core_pct"] for r in runs)
    rows = [[f"{r['wall_s']:.0f}", f"{r['cpu_s'] * 1e3:.0f}", f"{r['core_pct']:.3f}"] for r in runs]
    print(benchlib.md_table(["wall s", "CPU ms", "% core"], rows))
    met = pct <= GOAL_PCT
    print(
        f"\npowerd measure --probe nvml (1 GPU), tree {args.tree}: median {pct:.3f} % of one core "
        f"while the command runs; goal <= {GOAL_PCT:g} %: {'met' if met else 'NOT met'}"
    )
    result.update(tree=str(args.tree), sleep_s=sleep_s, runs=runs, core_pct=pct, met=met)
    benchlib.write_result(NAME, args.quick, args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
