"""Probes come back: a meter that is not there at start is retried until it appears, then used;
an unplugged meter is down while unplugged and its gap is recorded exactly; /healthz follows.

Real parts: the WT310 simulator on a pty (in-process for the sampler test, ``powerd sim`` killed
with SIGKILL for the daemon test) and the real wt300 probe; truth from the simulator's waveform."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from powerd.health import Health
from powerd.probes.serialsim import PtySimulator
from powerd.probes.wt300.sim import make
from powerd.runner import GAP_REASON, Sampler, component, open_probes
from powerd.store import Store
from powerd.timebase import TimeAnchor
from powerd.timeline import Timeline
from tests.probes.wt300.helpers import WF, truth_power_w, update_of, wait_for

SPEC = "rate=0.1,vrange=15,irange=5"
POWER = "wt300:wt310:p1"
FAR_NS = 2**62


def _status_on(health: Health) -> Any:
    def on_status(comp: str, reason: str | None) -> None:
        if reason is None:
            health.up(comp)
        else:
            health.down(comp, reason)

    return on_status


def test_meter_absent_at_start_then_plugged_unplugged_and_replugged(tmp_path: Path) -> None:
    link = tmp_path / "wt310"
    spec = f"wt300:{link},{SPEC}"
    logged: list[str] = []
    opened, pending = open_probes([spec], logged.append)
    assert not opened and [s for s, _, _ in pending] == [spec]
    assert "cannot open" in logged[0] and "retrying" in logged[0]
    health = Health(log=logged.append)
    model = make("wt310", WF, {"rate": "0.1"})
    sim = PtySimulator(model, link)
    with Store(tmp_path / "s.db") as store:
        sampler = Sampler(
            [],
            Timeline(1 << 14),
            store,
            TimeAnchor(),
            pending=pending,
            on_status=_status_on(health),
            put_gap=store.put_gap,
            retry_first_s=0.05,
            retry_max_s=0.2,
        )
        sampler.start()
        try:
            ((_, ph),) = sampler.probe_health()
            wait_for(lambda: ph.opens_failed >= 3)
            snap = health.snapshot()
            assert snap["status"] == "degraded" and "cannot open" in snap["down"][component(spec)]
            assert not ph.up
            sim.start()
            wait_for(lambda: ph.samples >= 20)
            assert health.snapshot()["status"] == "ok" and ph.up
            sim.unplug()
            unplug_ns = time.time_ns()
            wait_for(lambda: health.degraded)
            assert not ph.up
            time.sleep(0.5)
            replug_ns = time.time_ns()
            sim.replug()
            before = ph.samples
            wait_for(lambda: not health.degraded and ph.samples >= before + 20)
        finally:
            sampler.stop()
            sim.stop()
        store.flush()
        t, v = store.samples(POWER, 0, FAR_NS)
        gaps = store.gaps(POWER, 0, FAR_NS)
    # never-opened: from the sampler's start to the first sample, once the channels were known
    assert gaps[0] == (sampler._start_ns, int(t[0]), GAP_REASON)
    # the unplug: exactly from the last sample before it to the first sample after the replug
    assert len(gaps) == 2, gaps
    begin, end, reason = gaps[1]
    assert reason == GAP_REASON and end is not None
    i = int(np.searchsorted(t, begin))
    assert t[i] == begin and t[i + 1] == end, (begin, end)
    assert begin < unplug_ns and end > replug_ns
    # every sample stored is its update's truth, and after the replug no update is missing
    for ts, val in zip(t.tolist(), v.tolist(), strict=True):
        truth = truth_power_w(update_of(ts))
        assert abs(val - truth) <= 2e-4 * abs(truth) + 1e-9
    after = np.array([update_of(x) for x in t[i + 1 :].tolist()])
    assert after.size >= 10 and bool((np.diff(after) == 1).all()), after
    served_after = sorted(k for k, _ in list(model.served) if k >= after[0])
    assert served_after[: after.size] == after.tolist()
    assert any("is down" in line for line in logged) and any("is back" in line for line in logged)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _sim(link: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "powerd",
            "sim",
            "wt310",
            "--link",
            str(link),
            "--option",
            "rate=0.1",
            "--waveform",
            "square,high=40,low=5,period=1.3,duty=0.5",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_daemon_started_before_its_meter_uses_it_and_flags_a_killed_meter(tmp_path: Path) -> None:
    link = tmp_path / "wt310"
    port = _free_port()
    cfg = tmp_path / "powerd.toml"
    cfg.write_text(
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\nprobes = ["wt300:{link},{SPEC}"]\n'
        f"result_grace_s = 1.0\n[http]\nport = {port}\n"
    )
    base = f"http://127.0.0.1:{port}"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "powerd", "run", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    sims: list[subprocess.Popen[bytes]] = []
    try:

        def health() -> Any:
            try:
                return _get(f"{base}/healthz")
            except OSError:
                return None

        wait_for(lambda: health() is not None)
        first = health()
        assert first["status"] == "degraded"
        assert any(c.startswith("probe:wt300:") for c in first["down"]), first
        sims.append(_sim(link))
        wait_for(lambda: health()["status"] == "ok")
        wait_for(lambda: POWER in _get(f"{base}/v1/channels")["channels"])
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
        assert "powerd_probe_up{host=" in metrics or "powerd_probe_up{" in metrics
        up_lines = [ln for ln in metrics.splitlines() if ln.startswith("powerd_probe_up{")]
        assert up_lines and all(ln.endswith(" 1.0") for ln in up_lines), up_lines
        marker = {"v": 1, "run": "r1", "phase": "p", "seq": 1}
        _post(f"{base}/v1/markers", {**marker, "event": "begin"})
        time.sleep(1.0)
        sims[0].send_signal(signal.SIGKILL)
        sims[0].wait(10)
        wait_for(lambda: health()["status"] == "degraded")
        time.sleep(0.5)
        sims.append(_sim(link))
        wait_for(lambda: health()["status"] == "ok")
        time.sleep(1.0)
        _post(f"{base}/v1/markers", {**marker, "event": "end", "seq": 2, "count": 1})

        def result() -> Any:
            try:
                return _get(f"{base}/v1/runs/r1")
            except OSError:
                return None

        wait_for(lambda: result() is not None)
        (phase,) = result()["phases"]
    finally:
        for p in [*sims, daemon]:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in [*sims, daemon]:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
    ch = phase["channels"][POWER]
    assert "probe_down" in phase["flags"] and "probe_down" in ch["flags"], phase
    (gap,) = [g for g in ch["gaps"] if g["reason"] == "probe_down"]
    assert phase["t_begin_ns"] < gap["t_begin_ns"] < gap["t_end_ns"] < phase["t_end_ns"]
    with Store(tmp_path / "state" / "powerd.db") as store:
        t, _ = store.samples(POWER, phase["t_begin_ns"], phase["t_end_ns"])
    i = int(np.searchsorted(t, gap["t_begin_ns"]))
    assert t[i] == gap["t_begin_ns"] and t[i + 1] == gap["t_end_ns"]


class FileProbe:
    """Power read from a file at every poll: removing the file makes every read fail (a real
    OSError), as a sysfs attribute of a driver that went away would."""

    poll_interval_s = 0.01

    def __init__(self, path: Path) -> None:
        from powerd.channel import Channel

        self.path = path
        self.channel = Channel(
            id="file:0", kind="power", source_class="meter", nominal_period_s=0.01
        )

    def channels(self) -> list[Any]:
        return [self.channel]

    def read(self, now_utc_ns: int) -> list[Any]:
        from powerd.block import Block

        return [Block.of(self.channel.id, [now_utc_ns], [float(self.path.read_text())])]

    def problems(self) -> list[str]:
        return []

    def close(self) -> None:
        return None


def test_a_probe_whose_reads_keep_failing_is_down_and_its_gap_exact(tmp_path: Path) -> None:
    source = tmp_path / "power"
    source.write_text("3.5")
    health = Health(log=lambda _: None)
    with Store(tmp_path / "s.db") as store:
        sampler = Sampler(
            [FileProbe(source)],
            Timeline(1 << 14),
            store,
            TimeAnchor(),
            names=["file:0"],
            on_status=_status_on(health),
            put_gap=store.put_gap,
        )
        sampler.start()
        try:
            ((_, ph),) = sampler.probe_health()
            wait_for(lambda: ph.samples >= 5)
            assert not health.degraded
            source.unlink()
            wait_for(lambda: health.degraded)
            down = health.snapshot()["down"]["probe:file:0"]
            assert "3 reads in a row failed" in down and "FileNotFoundError" in down
            wait_for(lambda: bool(store.gaps("file:0", 0, FAR_NS)))
            assert store.gaps("file:0", 0, FAR_NS)[0][1] is None  # open while down
            before = ph.samples
            (tmp_path / "power.new").write_text("4.5")
            (tmp_path / "power.new").rename(source)  # atomically: no read sees half of it
            wait_for(lambda: not health.degraded and ph.samples >= before + 5)
        finally:
            sampler.stop()
        t, v = store.samples("file:0", 0, FAR_NS)
        ((begin, end, reason),) = store.gaps("file:0", 0, FAR_NS)
    assert reason == GAP_REASON and end is not None
    i = int(np.searchsorted(t, begin))
    assert t[i] == begin and t[i + 1] == end
    assert set(v[: i + 1].tolist()) == {3.5} and set(v[i + 1 :].tolist()) == {4.5}
    assert ph.up and ph.errors >= 3


def test_an_agent_probe_absent_at_start_comes_up_and_its_channels_are_announced(
    tmp_path: Path,
) -> None:
    from powerd.agent.agent import Agent, AgentConfig
    from powerd.agent.mqttconf import MqttSettings

    link = tmp_path / "wt310"
    spec = f"wt300:{link},{SPEC}"
    cfg = AgentConfig("edge-9", ("sim:constant,w=2", spec), MqttSettings(), tmp_path / "spool")
    agent = Agent(cfg)
    agent.sampler.retry_first_s = agent.sampler.retry_max_s = 0.05
    agent.sampler.start()
    sim = PtySimulator(make("wt310", WF, {"rate": "0.1"}), link)
    try:
        health = dict(agent.sampler.probe_health())
        assert not health[spec].up and "cannot open" in health[spec].down_reason
        assert POWER not in agent.outbox.channels
        sim.start()
        wait_for(lambda: health[spec].up and health[spec].samples >= 4)
        assert POWER in agent.outbox.channels
    finally:
        agent.sampler.stop()
        sim.stop()
    topics = [(m.topic, m.payload) for m in agent.spool.peek(10_000)]
    announced = [p for t, p in topics if t == "powerd/v1/channels/edge-9"]
    assert announced and POWER in {ch["id"] for ch in json.loads(announced[-1])}
    # its channels were announced before its first block, so the daemon knows them
    from powerd.agent.wire import decode_blocks

    first_block = next(
        i
        for i, (t, p) in enumerate(topics)
        if t == "powerd/v1/blocks/edge-9" and any(b.channel == POWER for b in decode_blocks(p))
    )
    assert any(
        t == "powerd/v1/channels/edge-9" and POWER in p.decode() for t, p in topics[:first_block]
    )
    agent.spool.close()
