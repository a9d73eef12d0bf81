"""The agent's own cost, from outside: ``powerd-agent`` at 8 channels × 10 Hz over mosquitto.

The telemetry setting of bench/machine_cost.py alone, over a longer window and repeated: the
agent (``sim:constant`` probes, as there) publishes through Debian's mosquitto to ``powerd run``
(a separate process: it confirms the blocks, so the agent's spool deletes them as in use).
CPU is user + sys time of the agent process (every thread) from ``/proc`` (psutil) over the
window, as % of one core; and the exact run time on a CPU from ``/proc/<pid>/task/*/schedstat``
(nanoseconds, summed over threads): utime/stime are charged in whole clock ticks to whichever
task runs at the tick, so a process that runs ~5 ms a second in short bursts gets ±10 % noise
over two minutes. Goal: <= 0.5 %. ``PYTHONPATH=<other tree>`` measures another tree's agent.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
import machine_cost
from machine_cost import GOAL_AGENT_PCT, telemetry


def schedstat_ns(pid: int) -> int:
    """Nanoseconds the process's threads have run on a CPU (``/proc/<pid>/task/*/schedstat``)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total


_measure = machine_cost.measure


def measure_with_schedstat(procs: dict[str, Any], warmup_s: float, window_s: float) -> Any:
    """machine_cost.measure, plus each process's exact CPU time from schedstat."""
    time.sleep(warmup_s)
    s0 = {k: schedstat_ns(p.pid) for k, p in procs.items()}
    t0 = time.monotonic()
    out = _measure(procs, 0.0, window_s)
    wall = time.monotonic() - t0
    for k, p in procs.items():
        out[k]["sched_cpu_pct"] = 100.0 * (schedstat_ns(p.pid) - s0[k]) / 1e9 / wall
    return out


machine_cost.measure = measure_with_schedstat


def _with_agent_args(extra: list[str]) -> None:
    """Start the agent with ``extra`` arguments appended (mqtt_pipeline.agent_proc's command)."""
    import subprocess

    import mqtt_pipeline

    popen = subprocess.Popen

    def agent_popen(cmd: list[str], *a: Any, **kw: Any) -> Any:
        if "powerd.agent" in cmd:
            cmd = [*cmd, *extra]
        return popen(cmd, *a, **kw)

    mqtt_pipeline.subprocess.Popen = agent_popen  # type: ignore[misc]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="measured window per run")
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument(
        "--agent-arg",
        action="append",
        default=[],
        help="extra powerd-agent argument, e.g. --agent-arg=--publish-interval=1 (repeatable)",
    )
    args = ap.parse_args()
    if args.agent_arg:
        _with_agent_args(args.agent_arg)
    runs = []
    up0 = benchlib.uptime()
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="powerd-bench-agent-") as tmp:
            runs.append(telemetry(Path(tmp), args.warmup, args.seconds))
    agent = [r["agent"]["cpu_pct"] for r in runs]
    out = {
        "agent_cpu_pct": agent,
        "agent_cpu_pct_median": statistics.median(agent),
        "agent_sched_cpu_pct": [r["agent"]["sched_cpu_pct"] for r in runs],
        "agent_sched_cpu_pct_median": statistics.median(r["agent"]["sched_cpu_pct"] for r in runs),
        "daemon_cpu_pct": [r["daemon"]["cpu_pct"] for r in runs],
        "agent_rss_mb": [r["agent"]["rss_mb"] for r in runs],
        "window_s": args.seconds,
        "agent_args": args.agent_arg,
        "goal_pct": GOAL_AGENT_PCT,
        "uptime_before": up0,
        "uptime_after": benchlib.uptime(),
        "utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
