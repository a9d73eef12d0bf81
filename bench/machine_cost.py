"""Cost on the measured machine: CPU and memory of the agent and the daemon at typical settings.

- **telemetry**: ``powerd-agent`` sampling 8 channels at 10 Hz (``sim:constant``, as in
  bench/mqtt_pipeline.py's agent_cpu, with its broker and agent helpers) and publishing them
  through Debian's mosquitto to ``powerd run`` (a separate process, so its CPU and memory are its
  own). Both processes are measured over the same steady window. Goal: agent <= 0.5 % of one core.
- **1 kHz meter**: ``powerd run`` reading ``ina2xx`` at 1 kHz from ``powerd sim ina2xx`` over a
  pseudo-terminal (serial reader thread, sampler, store, sinks hub); the simulator's CPU is not
  counted.
- **100 kHz LPM01A**: bench/lpm01a_stream.py's ``run`` (probe, sampler, timeline and store in
  one process, the simulated PowerShield in another), for a shorter window than that benchmark.

CPU is user + sys time of the process (every thread) over the window as % of one core (psutil or
getrusage); memory is the process's RSS at the end of the window (LPM01A: peak RSS). Not pinned:
these are separate processes, as deployed.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
import psutil
from _common import start_daemon, stop_daemon

NAME = "machine_cost"
GOAL_AGENT_PCT = 0.5


def measure(procs: dict[str, psutil.Process], warmup_s: float, window_s: float) -> dict[str, Any]:
    time.sleep(warmup_s)
    c0 = {k: p.cpu_times() for k, p in procs.items()}
    t0 = time.monotonic()
    time.sleep(window_s)
    c1 = {k: p.cpu_times() for k, p in procs.items()}
    wall = time.monotonic() - t0
    out = {}
    for k, p in procs.items():
        cpu = (c1[k].user + c1[k].system) - (c0[k].user + c0[k].system)
        out[k] = {
            "cpu_pct": 100.0 * cpu / wall,
            "cpu_s": cpu,
            "window_s": wall,
            "rss_mb": p.memory_info().rss / 1e6,
        }
    return out


def telemetry(tmp: Path, warmup_s: float, window_s: float) -> dict[str, Any]:
    from mqtt_pipeline import agent_proc, broker

    probes = [f"sim:constant,w={k + 1},rate=10,id=c{k}" for k in range(8)]
    with broker(tmp) as port:
        daemon, _ = start_daemon(tmp, "telemetry", f"probes = []\n[mqtt]\nport = {port}")
        agent = agent_proc(tmp, port, "cost", probes)
        try:
            res = measure(
                {"agent": psutil.Process(agent.pid), "daemon": psutil.Process(daemon.pid)},
                warmup_s,
                window_s,
            )
        finally:
            agent.terminate()
            agent.wait(15)
            stop_daemon(daemon)
    return res


def meter_1khz(tmp: Path, warmup_s: float, window_s: float) -> dict[str, Any]:
    link = tmp / "ina"
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "powerd",
            "sim",
            "ina2xx",
            "--link",
            str(link),
            "--waveform",
            "square,high=10,low=2,period=0.2,duty=0.3",
        ],
        cwd=benchlib.ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not link.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the ina2xx simulator did not come up")
            time.sleep(0.02)
        daemon, _ = start_daemon(tmp, "meter", f'probes = ["ina2xx:{link},rate=1000"]')
        try:
            res = measure({"daemon": psutil.Process(daemon.pid)}, warmup_s, window_s)
        finally:
            stop_daemon(daemon)
    finally:
        sim.terminate()
        sim.wait(10)
    return res


def lpm01a(seconds: float, cpu: int) -> dict[str, Any] | None:
    path = benchlib.BENCH_DIR / "lpm01a_stream.py"
    if not path.exists():
        return None
    mod = importlib.import_module("lpm01a_stream")  # bench/ is on sys.path (the script's folder)
    return dict(mod.run(seconds, cpu))


def main() -> int:
    args = benchlib.parser(__doc__.splitlines()[0]).parse_args()
    data = benchlib.envelope(NAME, args.quick, {"pinned": False})
    data["uptime_before"] = benchlib.uptime()
    data["goal"] = f"agent <= {GOAL_AGENT_PCT:g} % of one core at 10 Hz × 8 channels"
    warmup, window = (1.0, 2.0) if args.quick else (5.0, 60.0)
    t0 = time.perf_counter()
    notes = []
    with tempfile.TemporaryDirectory(prefix="powerd-bench-cost-") as tmp:
        tel = telemetry(Path(tmp), warmup, window)
        met = meter_1khz(Path(tmp), warmup, window)
    lpm = lpm01a(2.0 if args.quick else 20.0, args.cpu)
    if lpm is None:
        notes.append("LPM01A: bench/lpm01a_stream.py is missing; not measured")
    data.update({"telemetry": tel, "meter_1khz": met, "lpm01a": lpm, "notes": notes})
    rows: list[list[Any]] = [
        [
            "telemetry: 8 channels × 10 Hz over MQTT",
            "powerd-agent",
            f"{tel['agent']['cpu_pct']:.3f}",
            f"{tel['agent']['rss_mb']:.0f}",
            f"<= {GOAL_AGENT_PCT:g} %: "
            + ("met" if tel["agent"]["cpu_pct"] <= GOAL_AGENT_PCT else "**not met**"),
        ],
        [
            "telemetry: 8 channels × 10 Hz over MQTT",
            "powerd run (daemon)",
            f"{tel['daemon']['cpu_pct']:.3f}",
            f"{tel['daemon']['rss_mb']:.0f}",
            "-",
        ],
        [
            "1 kHz meter (ina2xx over a pty)",
            "powerd run (daemon)",
            f"{met['daemon']['cpu_pct']:.2f}",
            f"{met['daemon']['rss_mb']:.0f}",
            "-",
        ],
    ]
    if lpm is not None:
        rows.append(
            [
                "100 kHz LPM01A (binary stream over a pty)",
                "probe + sampler + store (one process)",
                f"{lpm['cpu_pct_one_core']:.1f}",
                f"{lpm['peak_rss_mib'] * 1.048576:.0f} (peak)",
                f"<= 25 % (bench/lpm01a_stream.py); dropped {lpm['dropped']}",
            ]
        )
    data["rows"] = rows
    agent_ok = tel["agent"]["cpu_pct"] <= GOAL_AGENT_PCT
    data["verdict"] = (
        f"{'met' if agent_ok else 'not met'}: agent {tel['agent']['cpu_pct']:.3f} % of one core "
        f"at 8 × 10 Hz; daemon {tel['daemon']['cpu_pct']:.2f} % (telemetry), "
        f"{met['daemon']['cpu_pct']:.2f} % (1 kHz meter)"
        + (f", {lpm['cpu_pct_one_core']:.1f} % (100 kHz LPM01A)" if lpm else "")
    )
    data["markdown"] = benchlib.md_table(
        ["setting", "process", "CPU % of one core", "RSS MB", "goal"], rows, "llrrl"
    ) + "".join(f"\n\nNote: {n}" for n in notes)
    data["load_after"] = benchlib.load()
    data["uptime_after"] = benchlib.uptime()
    data["elapsed_s"] = time.perf_counter() - t0
    path = benchlib.write_result(NAME, args.quick, args.out, data)
    print(data["markdown"])
    print(f"\n{data['verdict']}\nwrote {path}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
