"""The MQTT path through Debian's mosquitto on loopback: marker→result latency, agent→daemon
sample throughput, and the agent's CPU at typical telemetry settings.

- latency: the daemon samples a 1 kHz channel itself; a harness publishes begin/end markers
  (contract 1) with paho; the time from publishing ``end`` to receiving the retained result on
  ``powerd/v1/results/<run>``. Goal: p99 <= 20 ms.
- throughput: ``powerd-agent`` samples ``sim`` at a high rate and publishes blocks; the rate at
  which the daemon accepts samples, and whether the agent's spool keeps up (backlog at the end).
  Goal: >= 200 000 samples/s per agent.
- agent CPU: ``powerd-agent`` with 8 telemetry channels at 10 Hz, CPU time (user+sys) over a
  steady window after start-up, as % of one core. Goal: <= 0.5 %.

Not pinned to one core: broker, agent and daemon are separate processes, as deployed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
import paho.mqtt.client as paho
import psutil
from _common import free_port

from powerd.agent.mqttconf import MqttSettings
from powerd.commands.serve import housekeeping
from powerd.daemon import Daemon
from powerd.mqtt_link import run_mqtt
from powerd.probes.registry import open_probe
from powerd.runner import Sampler
from powerd.store import Store
from powerd.timebase import TimeAnchor
from powerd.timeline import Timeline

NAME = "mqtt_pipeline"


@contextmanager
def broker(tmp: Path) -> Iterator[int]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / f"mosquitto-{port}.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 100000\nset_tcp_nodelay true\n"
    )
    proc = subprocess.Popen(
        [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.01)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def daemon_thread(tmp: Path, port: int, local_probe: str | None) -> Iterator[Daemon]:
    store = Store(tmp / "daemon" / "powerd.db")
    anchor = TimeAnchor()
    timeline = Timeline()
    daemon = Daemon(store, timeline, anchor.utc_ns, result_grace_s=2.0)
    sampler = Sampler([open_probe(local_probe)] if local_probe else [], timeline, store, anchor)
    sampler.start()
    loop = asyncio.new_event_loop()
    holder: dict[str, asyncio.Event] = {}

    async def main() -> None:
        holder["stop"] = stop = asyncio.Event()
        keeper = asyncio.create_task(housekeeping(daemon, store))
        try:
            await run_mqtt(daemon, MqttSettings(port=port), 0.5, stop)
        finally:
            keeper.cancel()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    while "stop" not in holder:
        time.sleep(0.01)
    try:
        yield daemon
    finally:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(15)
        sampler.stop()
        store.close()


def agent_proc(tmp: Path, port: int, agent_id: str, probes: list[str]) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "powerd.agent",
        "--id",
        agent_id,
        "--mqtt",
        f"127.0.0.1:{port}",
        "--spool-dir",
        str(tmp / f"spool-{agent_id}"),
        "--no-http",
    ]
    for p in probes:
        cmd += ["--probe", p]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def latency(tmp: Path, quick: bool) -> dict[str, Any]:
    n = 10 if quick else 200
    with broker(tmp) as port, daemon_thread(tmp, port, "sim:constant,w=5,rate=1000"):
        arrived: dict[str, int] = {}
        client = paho.Client(paho.CallbackAPIVersion.VERSION2)

        def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
            arrived.setdefault(msg.topic.rsplit("/", 1)[1], time.perf_counter_ns())

        client.on_message = on_message
        client.connect("127.0.0.1", port)
        client.subscribe("powerd/v1/results/#", qos=1)
        client.loop_start()
        time.sleep(1.0)
        sent: dict[str, int] = {}
        for i in range(n):
            run = f"lat{i}"
            base = {"v": 1, "run": run, "phase": "p", "seq": 2 * i}
            client.publish(
                "powerd/v1/markers/bench",
                json.dumps(base | {"event": "begin", "t_ns": time.time_ns()}),
                qos=1,
            ).wait_for_publish()
            time.sleep(0.02)
            end = base | {"event": "end", "seq": 2 * i + 1, "t_ns": time.time_ns(), "count": 1}
            sent[run] = time.perf_counter_ns()
            client.publish("powerd/v1/markers/bench", json.dumps(end), qos=1)
            deadline = time.monotonic() + 5
            while run not in arrived and time.monotonic() < deadline:
                time.sleep(0.0005)
        client.loop_stop()
    lat_ms = np.array([(arrived[r] - sent[r]) / 1e6 for r in sent if r in arrived])
    return {
        "phases": n,
        "results_received": int(lat_ms.size),
        "p50_ms": float(np.percentile(lat_ms, 50)),
        "p99_ms": float(np.percentile(lat_ms, 99)),
        "max_ms": float(lat_ms.max()),
        "goal_p99_ms": 20.0,
    }


def throughput(tmp: Path, quick: bool) -> list[dict[str, Any]]:
    rates = (50_000,) if quick else (50_000, 200_000, 400_000)
    seconds = 4.0 if quick else 15.0
    rows = []
    for rate in rates:
        with broker(tmp) as port, daemon_thread(tmp, port, None) as daemon:
            proc = agent_proc(tmp, port, f"tp{rate}", [f"sim:constant,w=5,rate={rate}"])
            agent = psutil.Process(proc.pid)
            deadline = time.monotonic() + 30
            while daemon.counts["samples_accepted"] == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            c0, t0 = daemon.counts["samples_accepted"], time.monotonic()
            cpu0 = agent.cpu_times()
            time.sleep(seconds)
            c1, t1 = daemon.counts["samples_accepted"], time.monotonic()
            cpu1 = agent.cpu_times()
            proc.terminate()
            proc.wait(15)
        accepted = (c1 - c0) / (t1 - t0)
        cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (t1 - t0) * 100
        rows.append(
            {
                "generated_per_s": rate,
                "accepted_per_s": accepted,
                "keeps_up": accepted >= 0.97 * rate,
                "agent_cpu_pct": cpu,
                "window_s": t1 - t0,
            }
        )
    return rows


def agent_cpu(tmp: Path, quick: bool) -> dict[str, Any]:
    warmup_s, window_s = (2.0, 5.0) if quick else (5.0, 60.0)
    probes = [f"sim:constant,w={k + 1},rate=10,id=c{k}" for k in range(8)]
    with broker(tmp) as port, daemon_thread(tmp, port, None) as daemon:
        proc = agent_proc(tmp, port, "cpu", probes)
        agent = psutil.Process(proc.pid)
        time.sleep(warmup_s)
        cpu0, s0, t0 = agent.cpu_times(), daemon.counts["samples_accepted"], time.monotonic()
        time.sleep(window_s)
        cpu1, s1, t1 = agent.cpu_times(), daemon.counts["samples_accepted"], time.monotonic()
        rss_mb = agent.memory_info().rss / 1e6
        proc.terminate()
        proc.wait(15)
    cpu_s = cpu1.user + cpu1.system - cpu0.user - cpu0.system
    return {
        "channels": 8,
        "rate_hz": 10,
        "window_s": t1 - t0,
        "cpu_s": cpu_s,
        "cpu_pct_of_one_core": cpu_s / (t1 - t0) * 100,
        "rss_mb": rss_mb,
        "samples_per_s_at_daemon": (s1 - s0) / (t1 - t0),
        "goal_pct": 0.5,
    }


def main() -> int:
    args = benchlib.parser(__doc__.splitlines()[0]).parse_args()
    data = benchlib.envelope(NAME, args.quick, {"pinned": False})
    data["goal"] = (
        "marker→result p99 <= 20 ms; >= 200 000 samples/s per agent; agent CPU "
        "<= 0.5 % of one core at 10 Hz × 8 channels"
    )
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        lat = latency(tmp / "lat", args.quick)
        tp = throughput(tmp / "tp", args.quick)
        cpu = agent_cpu(tmp / "cpu", args.quick)
    data.update(
        latency=lat,
        throughput=tp,
        agent_cpu=cpu,
        load_after=benchlib.load(),
        elapsed_s=time.perf_counter() - t_start,
    )
    best_tp = max(r["accepted_per_s"] for r in tp)
    verdicts = [
        f"latency p99 {lat['p99_ms']:.1f} ms ({'met' if lat['p99_ms'] <= 20 else 'not met'})",
        f"throughput up to {best_tp:,.0f} samples/s ({'met' if best_tp >= 200_000 else 'not met'})",
        f"agent CPU {cpu['cpu_pct_of_one_core']:.2f} % "
        f"({'met' if cpu['cpu_pct_of_one_core'] <= 0.5 else 'not met'})",
    ]
    data["verdict"] = "; ".join(verdicts) + "."
    rows = [
        [
            "marker → result latency",
            f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, "
            f"max {lat['max_ms']:.1f} ms over {lat['results_received']}/{lat['phases']} phases",
            "p99 ≤ 20 ms",
        ],
        *[
            [
                f"agent → daemon at {r['generated_per_s']:,} samples/s generated",
                f"{r['accepted_per_s']:,.0f} samples/s accepted; "
                f"agent CPU {r['agent_cpu_pct']:.1f} %",
                "≥ 200 000 samples/s",
            ]
            for r in tp
        ],
        [
            "agent CPU, 8 channels × 10 Hz",
            f"{cpu['cpu_pct_of_one_core']:.2f} % of one core over {cpu['window_s']:.0f} s, "
            f"RSS {cpu['rss_mb']:.0f} MB",
            "≤ 0.5 %",
        ],
    ]
    data["markdown"] = benchlib.md_table(["figure", "measured", "goal"], rows)
    path = benchlib.write_result(NAME, args.quick, args.out, data)
    print(data["markdown"])
    print(f"\n{data['verdict']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
