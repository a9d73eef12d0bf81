"""The agent's own cost, from outside: ``powerd-agent`` at 8 channels × 10 Hz over mosquitto.

The telemetry setting of bench/machine_cost.py alone, over a longer window and repeated: the
agent (``sim:constant`` probes, as there) publishes through Debian's mosquitto to ``powerd run``
(a separate process: it confirms the blocks, so the agent's spool deletes them as in use).
CPU is user + sys time of the agent process (every thread) from ``/proc`` (psutil) over the
window, as % of one core. Goal: <= 0.5 %. ``PYTHONPATH=<other tree>`` measures another tree.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import benchlib
from machine_cost import GOAL_AGENT_PCT, telemetry


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="measured window per run")
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    runs = []
    up0 = benchlib.uptime()
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="powerd-bench-agent-") as tmp:
            runs.append(telemetry(Path(tmp), args.warmup, args.seconds))
    agent = [r["agent"]["cpu_pct"] for r in runs]
    out = {
        "agent_cpu_pct": agent,
        "agent_cpu_pct_median": statistics.median(agent),
        "daemon_cpu_pct": [r["daemon"]["cpu_pct"] for r in runs],
        "agent_rss_mb": [r["agent"]["rss_mb"] for r in runs],
        "window_s": args.seconds,
        "goal_pct": GOAL_AGENT_PCT,
        "uptime_before": up0,
        "uptime_after": benchlib.uptime(),
        "utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
