"""The InfluxDB sink without a server: line protocol, energy integration, down-sampling, and
delivery through the disk buffer (in order, nothing lost, nothing twice) with a scripted writer."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from influxdb_client import Point

from powerd.block import Block
from powerd.channel import Channel
from powerd.integrate import Window, integrate
from powerd.metrics import LabelConfig
from powerd.sinks.buffer import DiskBuffer
from powerd.sinks.energy import EnergyIntegrator
from powerd.sinks.influx import Downsampler, InfluxSink, WriteError, line, series_prefix
from powerd.sinks.settings import InfluxSettings
from tests.servers import wait_for

S = 1_000_000_000
T0 = 1_700_000_000 * S
POWER = Channel("sim:dut", "power", "meter", 0.001)
COUNTER = Channel("edge/rapl:pkg", "energy", "telemetry", 0.001, wrap_j=100.0)
LABELS = LabelConfig("host a", ("model",))


def test_line_protocol_escapes_like_influxdb_client() -> None:
    tags = {"channel": "a b,c=d", "host": "h", "agent": ""}
    ours = line(series_prefix("powerd_power", tags), {"watts": 1.5}, T0)
    point = Point("powerd_power").tag("channel", "a b,c=d").tag("host", "h").field("watts", 1.5)
    assert ours == point.time(T0).to_line_protocol()
    assert line("m", {"x": float("nan")}, T0) is None
    assert line("m", {"x": float("inf"), "y": 2.0}, T0) == f"m y=2.0 {T0}"


def blocks(ch: Channel, values: np.ndarray, per_block: int) -> list[Block]:
    t = T0 + np.arange(values.size, dtype=np.int64) * 1_000_000
    return [
        Block(ch.id, t[i : i + per_block], values[i : i + per_block])
        for i in range(0, values.size, per_block)
    ]


def test_running_energy_equals_the_integrator_over_the_same_samples() -> None:
    rng = np.random.default_rng(1)
    power = 5 + rng.normal(0, 1, 5000)
    integ = EnergyIntegrator()
    for b in blocks(POWER, power, 333):
        integ.feed(POWER, b)
    t = T0 + np.arange(power.size, dtype=np.int64) * 1_000_000
    whole = integrate(t, power, Window(int(t[0]), int(t[-1])), POWER)
    assert integ.totals_j()["sim:dut"] == pytest.approx(whole.energy_j, rel=1e-12)


def test_counter_energy_is_unwrapped_and_repeats_are_skipped() -> None:
    truth = np.arange(3000) * 0.1  # 0.1 J per ms = 100 W, wraps every 100 J
    integ = EnergyIntegrator()
    parts = blocks(COUNTER, np.mod(truth, 100.0), 250)
    for b in [*parts[:5], parts[3], *parts[5:]]:  # a repeated block
        integ.feed(COUNTER, b)
    assert integ.totals_j()[COUNTER.id] == pytest.approx(truth[-1], rel=1e-9)


def test_downsampled_intervals_carry_mean_power_and_cumulative_energy() -> None:
    step = S // 10
    t = T0 + np.arange(1000, dtype=np.int64) * 1_000_000  # 1 s at 1 kHz
    power = np.where((t // (S // 20)) % 2 == 0, 10.0, 2.0)  # 10 W / 2 W every 50 ms
    integ, ds = EnergyIntegrator(), Downsampler(step)
    out = []
    for b in blocks(POWER, power, 77):
        inc = integ.feed(POWER, b)
        assert inc is not None
        out += ds.add(inc)
    out += ds.close()
    assert [p.t_ns for p in out] == [T0 + (k + 1) * step for k in range(10)]
    # every complete interval: 50 ms at 10 W, 50 ms at 2 W, edges linear over 1 ms
    for p in out[1:-1]:
        assert p.mean_power_w == pytest.approx(6.0, abs=0.1)
    assert out[-1].total_j == pytest.approx(integ.totals_j()[POWER.id])
    assert out[-1].total_j == pytest.approx(0.999 * 6.0, abs=0.05)


class ScriptedWriter:
    """Fails while ``down`` is set (as an unreachable store), records what it accepted."""

    def __init__(self) -> None:
        self.accepted: list[bytes] = []
        self.down = threading.Event()
        self.refuse: set[bytes] = set()
        self.attempts = 0

    def write(self, payload: bytes) -> None:
        self.attempts += 1
        if self.down.is_set():
            raise WriteError("ConnectionRefusedError: down")
        if payload in self.refuse:
            raise WriteError("HTTP 400: bad line", permanent=True)
        self.accepted.append(payload)

    def close(self) -> None:
        pass


def settings(**kw: float) -> InfluxSettings:
    return InfluxSettings(url="http://127.0.0.1:1", **kw)  # type: ignore[arg-type]


def feed(sink: InfluxSink, integ: EnergyIntegrator, seconds: range) -> None:
    for s in seconds:
        t = T0 + s * S + np.arange(0, S, S // 100, dtype=np.int64)
        inc = integ.feed(POWER, Block(POWER.id, t, np.full(t.size, 5.0)))
        assert inc is not None
        sink.on_samples(POWER, inc)
        sink.tick(time.time_ns(), [])
        sink._spill()


def accepted_lines(writer: ScriptedWriter) -> list[str]:
    return [x for p in writer.accepted for x in p.decode().split("\n")]


def test_an_outage_is_buffered_on_disk_and_replayed_in_order_once(tmp_path: Path) -> None:
    writer = ScriptedWriter()
    sink = InfluxSink(settings(downsample_s=1.0), LABELS, tmp_path, writer)
    integ = EnergyIntegrator()
    feed(sink, integ, range(3))
    wait_for(lambda: len(accepted_lines(writer)) == 4, 5, "the first intervals")
    writer.down.set()
    feed(sink, integ, range(3, 20))
    wait_for(lambda: writer.attempts > 3, 5, "retries while down")
    assert len(sink.buffer) > 0 and sink.stats().buffer_bytes > 0
    writer.down.clear()
    feed(sink, integ, range(20, 25))
    sink.close()
    got = accepted_lines(writer)
    power = [x for x in got if x.startswith("powerd_power,")]
    stamps = [int(x.rsplit(" ", 1)[1]) for x in power]
    assert stamps == [T0 + k * S for k in range(1, 26)]  # every interval, once, in order
    watts = [float(x.split("watts=")[1].split()[0]) for x in power]
    assert watts == pytest.approx([5.0] * len(watts), rel=1e-12)
    assert sink.stats().written == len(got) and sink.stats().dropped == 0


def test_a_refused_batch_is_dropped_and_counted_not_retried_forever(tmp_path: Path) -> None:
    writer = ScriptedWriter()
    sink = InfluxSink(settings(downsample_s=0.0), LABELS, tmp_path, writer)
    poison = b"bad"
    writer.refuse.add(poison)
    sink.buffer.put(poison, 7)
    feed(sink, EnergyIntegrator(), range(2))
    sink.close()
    assert sink.stats().rejected == 7
    assert len(accepted_lines(writer)) == sink.stats().written > 0


def test_the_buffer_survives_a_restart_and_drops_the_oldest_at_its_bound(tmp_path: Path) -> None:
    writer = ScriptedWriter()
    writer.down.set()
    sink = InfluxSink(settings(downsample_s=0.0), LABELS, tmp_path, writer)
    feed(sink, EnergyIntegrator(), range(3))
    sink.close()
    held = DiskBuffer(tmp_path / "influx.sqlite", 1 << 30)
    batches = held.peek(100)
    held.close()
    assert batches
    again = ScriptedWriter()
    sink2 = InfluxSink(settings(downsample_s=0.0), LABELS, tmp_path, again)
    sink2.close()
    assert again.accepted == [b.payload for b in batches]

    small = DiskBuffer(tmp_path / "small.sqlite", 250)
    dropped = sum(small.put(bytes(100), 10) for _ in range(5))
    assert (dropped, len(small), small.dropped_points) == (30, 2, 30)
    assert [b.id for b in small.peek(10)] == [4, 5]
    small.close()


def test_an_unchanged_recomputed_result_is_not_written_again(tmp_path: Path) -> None:
    writer = ScriptedWriter()
    sink = InfluxSink(settings(), LABELS, tmp_path, writer)
    phase = {
        "phase": "infer",
        "trial": 0,
        "t_end_ns": T0,
        "unit": "inference",
        "energy_j": 10.0,
        "j_per_unit": 0.1,
        "net_energy_j": None,
        "flags": ["incomplete", "incomplete"],
        "meta": {"model": "m"},
    }
    sink.on_result({"run": "r", "phases": [phase]})
    sink.on_result({"run": "r", "phases": [phase]})
    sink.on_result({"run": "r", "phases": [{**phase, "energy_j": 11.0}]})
    sink.close()
    got = accepted_lines(writer)
    assert got == [
        f"powerd_phase,host=host\\ a,model=m,phase=infer,run=r,trial=0,unit=inference "
        f"energy_joules=10.0,joules_per_unit=0.1 {T0}",
        f"powerd_phase,flag=incomplete,host=host\\ a,phase=infer,run=r,trial=0 flag=1.0 {T0}",
        # the changed recomputation is the later point: 1 ms per revision
        f"powerd_phase,host=host\\ a,model=m,phase=infer,run=r,trial=0,unit=inference "
        f"energy_joules=11.0,joules_per_unit=0.1 {T0 + 1_000_000}",
        f"powerd_phase,flag=incomplete,host=host\\ a,phase=infer,run=r,trial=0 "
        f"flag=1.0 {T0 + 1_000_000}",
    ]
