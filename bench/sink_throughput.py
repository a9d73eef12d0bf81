"""The InfluxDB sink into Debian's VictoriaMetrics on loopback: throughput and the daemon's CPU.

- daemon CPU: ``powerd run`` sampling 8 ``sim`` channels at 1 kHz (the sampler, store, sink hub
  and sink all in the daemon), CPU time (user+sys) over a steady window as % of one core: without
  a sink (baseline), with ``[influx]`` down-sampling to 1 s, and writing raw samples. The sink's
  cost is the difference to the baseline. Whether it kept up: samples written, buffer left.
- throughput: the sink alone (in this process) given 8 channels x 1 kHz of raw samples as fast as
  they can be formatted into its disk buffer (formatting rate) while writes are held back, then
  released: the rate at which VictoriaMetrics acknowledges the backlog (delivery rate, samples/s),
  i.e. how fast the sink catches up after an outage.
- The baseline already runs the sink hub (energy counters for /metrics); "vs no sink" is the
  InfluxDB sink's own cost.

Not pinned to one core: daemon, VictoriaMetrics and this script are separate processes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
import psutil
from _common import free_port, start_daemon, stop_daemon, wait_port

from powerd.block import Block
from powerd.channel import Channel
from powerd.metrics import LabelConfig
from powerd.sinks.energy import EnergyIntegrator
from powerd.sinks.influx import InfluxSink, InfluxWriter
from powerd.sinks.settings import InfluxSettings

NAME = "sink_throughput"
CHANNELS = 8
RATE_HZ = 1000


@contextmanager
def victoria_metrics(tmp: Path) -> Iterator[str]:
    exe = shutil.which("victoria-metrics")
    if exe is None:
        raise SystemExit("victoria-metrics is not installed (scripts/setup.sh --dev)")
    port = free_port()
    proc = subprocess.Popen(
        [
            exe,
            f"-httpListenAddr=127.0.0.1:{port}",
            f"-storageDataPath={tmp / 'vm'}",
            "-retentionPeriod=1d",
            "-loggerLevel=ERROR",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(20)


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(name):
                return float(line.rsplit(" ", 1)[1])
    return float("nan")


def daemon_cpu(
    tmp: Path, vm_url: str, mode: str, warmup_s: float, window_s: float
) -> dict[str, Any]:
    """CPU of ``powerd run`` with 8 x 1 kHz sim channels; mode: none, downsampled, raw."""
    probes = ", ".join(
        f'"sim:square,high=10,low=2,period=0.1,id=ch{i},rate={RATE_HZ}"' for i in range(CHANNELS)
    )
    body = f"probes = [{probes}]\n"
    if mode != "none":
        body += (
            f'[influx]\nurl = "{vm_url}"\ndownsample_s = {1.0 if mode == "downsampled" else 0}\n'
        )
    proc, port = start_daemon(tmp, mode, body)  # state-<mode>, <mode>.toml, <mode>.log
    log = tmp / f"{mode}.log"
    try:
        p = psutil.Process(proc.pid)
        time.sleep(warmup_s)
        c0, t0 = p.cpu_times(), time.monotonic()
        time.sleep(window_s)
        c1, t1 = p.cpu_times(), time.monotonic()
        url = f"http://127.0.0.1:{port}"
        buffered = metric(url, 'powerd_sink_buffer_bytes{sink="influx"}')
    finally:
        stop_daemon(proc)
    cpu_s = (c1.user + c1.system) - (c0.user + c0.system)
    written = re.findall(r"influx: (\d+) samples written, (\d+) dropped", log.read_text())
    return {
        "mode": mode,
        "window_s": t1 - t0,
        "cpu_pct": 100.0 * cpu_s / (t1 - t0),
        "buffer_bytes_at_end": None if mode == "none" else buffered,
        "samples_written": int(written[-1][0]) if written else None,
        "samples_dropped": int(written[-1][1]) if written else None,
        "run_s": warmup_s + window_s,
    }


class GatedWriter:
    """The real writer, held back until ``open`` is set: the backlog of an outage."""

    def __init__(self, inner: InfluxWriter) -> None:
        self.inner = inner
        self.open = threading.Event()

    def write(self, payload: bytes) -> None:
        self.open.wait()
        self.inner.write(payload)

    def close(self) -> None:
        self.inner.close()


def sink_throughput(tmp: Path, vm_url: str, seconds: int) -> dict[str, Any]:
    """Raw samples of 8 x 1 kHz channels for ``seconds`` of data, formatted into the disk buffer
    while the writer is held back; then the time VictoriaMetrics takes to acknowledge them all."""
    settings = InfluxSettings(url=vm_url, downsample_s=0.0, batch_size=5000, buffer_max_mb=4096)
    writer = GatedWriter(InfluxWriter(settings))
    sink = InfluxSink(settings, LabelConfig("bench"), tmp / "buffer", writer)
    channels = [Channel(f"sim:ch{i}", "power", "meter", 1.0 / RATE_HZ) for i in range(CHANNELS)]
    integ = EnergyIntegrator()
    t_start = time.time_ns() - seconds * 1_000_000_000
    step = 1_000_000_000 // RATE_HZ
    block = RATE_HZ // 10  # the hub's 0.1 s batches
    t0 = time.perf_counter()
    for k in range(0, seconds * RATE_HZ, block):
        t = t_start + (k + np.arange(block, dtype=np.int64)) * step
        for ch in channels:
            inc = integ.feed(ch, Block(ch.id, t, 5.0 + np.sin(t / 1e8)))
            assert inc is not None
            sink.on_samples(ch, inc)
        if len(sink._pending) >= settings.batch_size:
            sink._spill()
    sink._spill()
    formatted_s = time.perf_counter() - t0
    buffered_bytes = sink.buffer.nbytes
    samples = sum(b.points for b in sink.buffer.peek(1 << 20))
    t1 = time.perf_counter()
    writer.open.set()
    while len(sink.buffer):
        time.sleep(0.002)
    delivered_s = time.perf_counter() - t1
    assert sink.stats().written == samples
    sink.close()
    return {
        "samples": samples,
        "buffered_bytes": buffered_bytes,
        "format_s": formatted_s,
        "deliver_s": delivered_s,
        "format_rate": samples / formatted_s,
        "delivery_rate": samples / delivered_s,
    }


def main() -> int:
    args = benchlib.parser(__doc__.splitlines()[0]).parse_args()
    data = benchlib.envelope(NAME, args.quick, {"pinned": False})
    warmup_s, window_s, seconds = (2.0, 4.0, 10) if args.quick else (5.0, 20.0, 120)
    with tempfile.TemporaryDirectory(prefix="powerd-bench-sink-") as d:
        tmp = Path(d)
        with victoria_metrics(tmp) as vm_url:
            modes = ("none", "downsampled", "raw")
            cpu = [daemon_cpu(tmp, vm_url, m, warmup_s, window_s) for m in modes]
            thr = sink_throughput(tmp, vm_url, seconds)
    data.update(daemon_cpu=cpu, throughput=thr, load_after=benchlib.load())
    base = cpu[0]["cpu_pct"]
    rows = [
        [
            f"daemon CPU, 8 ch x 1 kHz, {c['mode']}",
            f"{c['cpu_pct']:.2f} % of a core",
            "" if c["mode"] == "none" else f"+{c['cpu_pct'] - base:.2f} %",
            ""
            if c["samples_written"] is None
            else f"{c['samples_written']} written, "
            f"{c['samples_dropped']} dropped, {c['buffer_bytes_at_end']:.0f} B left",
        ]
        for c in cpu
    ]
    rows.append(
        [
            "sink formatting (raw, 8 ch)",
            f"{benchlib.si(thr['format_rate'])} samples/s",
            "",
            f"{thr['samples']} samples",
        ]
    )
    rows.append(
        [
            "sink delivery into VictoriaMetrics (a buffered backlog)",
            f"{benchlib.si(thr['delivery_rate'])} samples/s",
            "",
            f"5000 lines a batch, {thr['buffered_bytes'] / 1e6:.0f} MB in {thr['deliver_s']:.1f} s",
        ]
    )
    header = ["figure", "measured", "vs no sink", "notes"]
    data["markdown"] = benchlib.md_table(header, rows, "lrrl")
    path = benchlib.write_result(NAME, args.quick, args.out, data)
    print(data["markdown"])
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
