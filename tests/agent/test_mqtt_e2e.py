"""Agent → Debian's mosquitto → daemon, end to end: markers exactly as contract 1 (sent with
mosquitto_pub or through the agent), results as contract 2 on the broker, errors, an agent clock
that is seconds off, and a broker stopped mid-run losing nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
import pytest

from powerd.probes.sim.waveform import parse_spec
from tests.agent.agentproc import agent_argv
from tests.servers import Mosquitto, free_port, mosquitto, running_daemon, wait_for
from tests.tools import require_tool

# The sim probe samples on the waveform's own clock: a square wave is a phase-locked load,
# rightly flagged periodic_load; no other flag is expected.
LOCKED = {"periodic_load"}
SQUARE = "square,high=9,low=3,period=0.2,duty=0.5"
RATE_HZ = 200


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with mosquitto(tmp_path) as b:
        yield b


@contextmanager
def running_agent(
    tmp_path: Path, broker: Mosquitto, agent_id: str, fake_offset_s: float | None = None
) -> Iterator[str]:
    """``powerd-agent`` in a subprocess (under faketime when an offset is given); yields its
    local marker URL."""
    port = free_port()
    probe = f"sim:{SQUARE},rate={RATE_HZ}"
    cmd = agent_argv(agent_id, probe, broker.port, tmp_path / f"spool-{agent_id}", port)
    env = dict(os.environ)
    if fake_offset_s is not None:
        cmd = [require_tool("faketime"), "-f", f"{fake_offset_s:+.3f}s", *cmd]
        env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
    log = (tmp_path / f"agent-{agent_id}.log").open("wb")
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # faketime runs the agent as its child
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


def post(url: str, marker: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        f"{url}/v1/markers", json.dumps(marker).encode(), {"Content-Type": "application/json"}
    )
    for _ in range(200):
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return dict(json.loads(resp.read()))
        except (ConnectionError, urllib.error.URLError):
            time.sleep(0.05)
    raise AssertionError("agent marker endpoint never came up")


def subscribe(port: int, topic: str) -> tuple[paho.Client, list[tuple[str, bytes]]]:
    got: list[tuple[str, bytes]] = []
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, msg: got.append((msg.topic, bytes(msg.payload)))
    client.connect("127.0.0.1", port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    return client, got


def pub(port: int, topic: str, payload: str) -> None:
    subprocess.run(
        [
            require_tool("mosquitto_pub"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            payload,
        ],
        check=True,
        timeout=10,
    )


def truth_j(result_phase: dict[str, Any]) -> float:
    """The waveform's energy over the phase, in the agent's clock (where the sim ran)."""
    off = result_phase["timing"]["offset_ns"]
    wf = parse_spec(SQUARE).waveform
    return wf.energy_j(result_phase["t_begin_ns"] - off, result_phase["t_end_ns"] - off)


def test_agent_with_a_clock_seconds_off_lines_up_within_1_ms(
    tmp_path: Path, broker: Mosquitto
) -> None:
    results, got = subscribe(broker.port, "powerd/v1/results/#")
    with (
        running_daemon(tmp_path, broker) as daemon,
        running_agent(tmp_path, broker, "edge-1", fake_offset_s=3.5) as url,
    ):
        wait_for(
            lambda: (o := daemon.offsets.get("edge-1")) and len(o.exchanges) >= 10,
            what="clock exchanges",
        )
        before = time.time_ns()
        post(url, {"v": 1, "run": "skew", "phase": "inference", "event": "begin", "seq": 1})
        after = time.time_ns()
        time.sleep(1.2)
        post(
            url,
            {"v": 1, "run": "skew", "phase": "inference", "event": "end", "seq": 2, "count": 40},
        )
        msg = wait_for(
            lambda: [m for t, m in got if t == "powerd/v1/results/skew"],
            what="result on the broker",
        )
    results.loop_stop()
    result = json.loads(msg[-1])
    (phase,) = result["phases"]
    assert phase["timing"]["source"] == "marker"
    assert abs(phase["timing"]["offset_ns"] + 3_500_000_000) < 50_000_000
    assert before - 1_000_000 <= phase["t_begin_ns"] <= after + 1_000_000
    assert phase["timing"]["uncertainty_ns"] < 1_000_000
    ch = phase["channels"]["edge-1/sim:square"]
    assert ch["coverage"] == 1.0 and set(ch["flags"]) <= LOCKED
    assert abs(phase["energy_j"] - truth_j(phase)) <= phase["uncertainty_j"]
    assert phase["j_per_unit"] == pytest.approx(phase["energy_j"] / 40)


def test_markers_from_mosquitto_pub_and_invalid_ones(tmp_path: Path, broker: Mosquitto) -> None:
    errors, got_errors = subscribe(broker.port, "powerd/v1/errors/#")
    with running_daemon(tmp_path, broker) as daemon, running_agent(tmp_path, broker, "edge-2"):
        wait_for(lambda: "edge-2/sim:square" in daemon.timeline.channels, what="agent channels")
        wait_for(lambda: daemon.timeline.latest("edge-2/sim:square"), what="agent samples")
        t0 = time.time_ns()
        begin = {"v": 1, "run": "pub1", "phase": "run", "event": "begin", "t_ns": t0, "seq": 10}
        # a harness that is no device names the agent whose board it measures
        pub(broker.port, "powerd/v1/markers/harness-a", json.dumps(begin | {"device": "edge-2"}))
        time.sleep(0.6)
        end = begin | {"event": "end", "t_ns": time.time_ns(), "seq": 11, "count": 3}
        pub(broker.port, "powerd/v1/markers/harness-a", json.dumps(end))
        wait_for(lambda: daemon.run_result("pub1"), what="result")
        markers_before = len(daemon.store.markers())
        pub(broker.port, "powerd/v1/markers/harness-a", "{not json")
        pub(
            broker.port,
            "powerd/v1/markers/harness-a",
            json.dumps(begin | {"event": "end", "seq": 12, "phase": "never-begun"}),
        )
        wait_for(lambda: len(got_errors) >= 2, what="two errors")
        assert len(daemon.store.markers()) == markers_before
        assert daemon.rejected_by_source["harness-a"] == 2
    errors.loop_stop()
    bodies = [json.loads(m) for _, m in got_errors]
    assert all(t == "powerd/v1/errors/harness-a" for t, _ in got_errors)
    assert "not UTF-8 JSON" in bodies[0]["error"] and bodies[0]["message"] == "{not json"
    assert "without a begin" in bodies[1]["error"]
    retained, got = subscribe(broker.port, "powerd/v1/results/pub1")
    msg = wait_for(lambda: got, what="retained result")
    retained.loop_stop()
    result = json.loads(msg[0][1])
    assert result["v"] == 1 and result["run"] == "pub1"
    (phase,) = result["phases"]
    assert phase["t_begin_ns"] == t0 and phase["count"] == 3
    assert abs(phase["energy_j"] - truth_j(phase)) <= phase["uncertainty_j"]


def test_broker_stopped_mid_run_loses_nothing(tmp_path: Path, broker: Mosquitto) -> None:
    with (
        running_daemon(tmp_path, broker) as daemon,
        running_agent(tmp_path, broker, "edge-3") as url,
    ):
        wait_for(lambda: "edge-3/sim:square" in daemon.timeline.channels, what="agent channels")
        wait_for(lambda: daemon.timeline.latest("edge-3/sim:square"), what="agent samples")
        post(url, {"v": 1, "run": "outage", "phase": "run", "event": "begin", "seq": 1})
        time.sleep(0.5)
        broker.stop()
        time.sleep(1.5)
        broker.start()
        time.sleep(0.5)
        post(url, {"v": 1, "run": "outage", "phase": "run", "event": "end", "seq": 2, "count": 1})
        wait_for(lambda: daemon.run_result("outage"), what="result after the outage")
        result = daemon.run_result("outage")
        assert result is not None
        (phase,) = result["phases"]
        t, _ = daemon.store.samples("edge-3/sim:square", phase["t_begin_ns"], phase["t_end_ns"])
    step_ns = 1_000_000_000 // RATE_HZ
    # every grid sample is there: a later clock estimate may shift the grid by microseconds
    assert int(np.diff(t).max()) < 1.5 * step_ns, "a sample went missing"
    assert t.size >= (phase["t_end_ns"] - phase["t_begin_ns"]) // step_ns - 1
    ch = phase["channels"]["edge-3/sim:square"]
    assert ch["coverage"] == 1.0 and set(phase["flags"]) <= LOCKED
    assert phase["duration_s"] > 2.0
    assert abs(phase["energy_j"] - truth_j(phase)) <= phase["uncertainty_j"]
