"""The fault harness (tests/faults.py) drives real processes: a SIGKILLed daemon restarts on its
store and serves what it had stored; a SIGKILLed agent's last will says offline and its restart
announces it online again (also under libfaketime); a killed and restarted meter simulator is
an unplug and replug the daemon's probe recovers from; the sim truth helpers agree with the
waveform definition."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from tests.faults import (
    FAKETIME_LIB,
    AgentProc,
    DaemonProc,
    MeterSimProc,
    expected_grid,
    find_exe,
    http,
    make_broker,
    truth_energy_j,
)
from tests.servers import Mosquitto, wait_for
from tests.tools import require_tool

LOCAL_SIM = "sim:square,high=12,low=4,period=0.5,duty=0.5,rate=100"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    if find_exe("mosquitto") is None:
        require_tool("mosquitto")  # skips here, fails in CI
    b = make_broker(tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.stop(kill=True)


def test_truth_helpers_follow_the_waveform() -> None:
    # square 12 W / 4 W, 0.5 s period: one whole period holds 0.25 s × 12 + 0.25 s × 4 = 4 J
    t0 = 1_800_000_000 * 1_000_000_000  # a period boundary (0.5 s divides whole seconds)
    assert truth_energy_j(LOCAL_SIM, t0, t0 + 500_000_000) == pytest.approx(4.0)
    assert truth_energy_j(LOCAL_SIM, t0, t0 + 250_000_000) == pytest.approx(3.0)
    k = expected_grid(LOCAL_SIM, t0 + 1, t0 + 1_000_000_000)  # 100 Hz: 10 ms grid
    assert k[0] * 10_000_000 == t0 + 10_000_000 and k.size == 100


def test_daemon_sigkilled_restarts_on_its_store_and_serves_the_result(tmp_path: Path) -> None:
    daemon = DaemonProc("daemon", tmp_path, probes=(LOCAL_SIM,))
    with daemon:
        daemon.start()
        daemon.wait_healthy()
        time.sleep(0.3)  # the sampler has samples before the phase begins
        begin = {"v": 1, "run": "kill1", "phase": "p", "event": "begin", "seq": 1}
        daemon.post_marker(begin | {"t_ns": time.time_ns()}, source="harness")
        time.sleep(1.0)
        end = {"v": 1, "run": "kill1", "phase": "p", "event": "end", "seq": 2, "count": 5}
        daemon.post_marker(end | {"t_ns": time.time_ns()}, source="harness")
        before = daemon.wait_result("kill1")
        (phase,) = before["phases"]
        truth = truth_energy_j(LOCAL_SIM, phase["t_begin_ns"], phase["t_end_ns"])
        assert abs(phase["energy_j"] - truth) <= phase["uncertainty_j"], (phase, truth)
        pid = daemon.pid
        daemon.kill()
        assert not daemon.alive()
        daemon.start()
        assert daemon.pid != pid
        daemon.wait_healthy()
        after = daemon.wait_result("kill1")
    assert after["phases"][0]["energy_j"] == phase["energy_j"]
    assert after["phases"][0]["t_begin_ns"] == phase["t_begin_ns"]
    assert "--- start 1 at" in daemon.log.read_text()


def test_agent_sigkilled_goes_offline_by_its_will_and_restarts_online(
    tmp_path: Path, broker: Mosquitto
) -> None:
    got: list[dict[str, object]] = []
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, msg: got.append(json.loads(msg.payload))
    client.connect("127.0.0.1", broker.port)
    client.subscribe("powerd/v1/status/edge-k", qos=1)
    client.loop_start()
    agent = AgentProc("agent", tmp_path, agent_id="edge-k", mqtt_port=broker.port)
    try:
        with agent:
            agent.start()
            wait_for(lambda: any(m["state"] == "online" for m in got), 15.0, "agent online")
            first_online = max(int(str(m["t_ns"])) for m in got if m["state"] == "online")
            agent.kill()
            wait_for(lambda: got[-1]["state"] == "offline", 10.0, "last will: offline")
            agent.start()
            wait_for(
                lambda: got[-1]["state"] == "online" and int(str(got[-1]["t_ns"])) > first_online,
                15.0,
                "agent online again after the restart",
            )
            agent.wait_http()
    finally:
        client.loop_stop()
        client.disconnect()


def test_agent_under_libfaketime_runs_on_a_shifted_clock(tmp_path: Path, broker: Mosquitto) -> None:
    if not FAKETIME_LIB.exists():
        require_tool("faketime")  # skips here (fails in CI) when the package is missing
    got: list[dict[str, object]] = []
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, msg: got.append(json.loads(msg.payload))
    client.connect("127.0.0.1", broker.port)
    client.subscribe("powerd/v1/status/edge-f", qos=1)
    client.loop_start()
    agent = AgentProc(
        "agent", tmp_path, agent_id="edge-f", mqtt_port=broker.port, fake_offset_s=7.0
    )
    try:
        with agent:
            agent.start()
            online = wait_for(
                lambda: [m for m in got if m["state"] == "online"], 15.0, "agent online"
            )
            shift_s = (int(str(online[-1]["t_ns"])) - time.time_ns()) / 1e9
            assert 6.0 < shift_s < 7.5, shift_s
            agent.wait_http()  # timed waits still work (monotonic clock not faked)
    finally:
        client.loop_stop()
        client.disconnect()


def test_meter_simulator_unplugged_and_replugged_feeds_the_daemon_again(tmp_path: Path) -> None:
    meter = MeterSimProc("meter", tmp_path, waveform="constant,w=20")
    daemon = DaemonProc("daemon", tmp_path, probes=(f"wt300:{meter.link},rate=0.1",))
    with meter, daemon:
        meter.start()
        daemon.start()
        daemon.wait_healthy()

        def latest_ns() -> int:
            channels = http("GET", f"{daemon.url}/v1/channels")[1]["channels"]
            return int(channels.get("wt300:meter:p1", {}).get("t_ns", 0))

        first = wait_for(latest_ns, 10.0, "meter updates")
        meter.kill()  # the cable pulled: the link dangles and is removed
        assert not meter.link.exists()
        time.sleep(1.0)
        unplugged = latest_ns()
        meter.start()  # replugged on the same path
        wait_for(lambda: latest_ns() > unplugged, 15.0, "meter updates after the replug")
    assert unplugged >= first
