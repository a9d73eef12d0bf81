"""End-to-end marker confirmation: a broker acknowledges a publish before it saves it, so a broker
SIGKILL can lose a marker its sender already counted as delivered. Senders keep each marker
until the daemon confirms it stored it (``powerd/v1/acks/<source>``) and send it again until
then. The brokers here run without persistence, so a SIGKILL loses every queued message for
certain: the markers still arrive, exactly once, with their original stamps."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest

from powerd.agent import wire
from powerd.client import PowerdClient
from tests.faults import AgentProc, DaemonProc, expected_grid, find_exe, make_broker
from tests.servers import Mosquitto, wait_for
from tests.tools import require_tool

LOCAL_SIM = "sim:square,high=12,low=4,period=0.5,duty=0.5,rate=100"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    if find_exe("mosquitto") is None:
        require_tool("mosquitto")  # skips here, fails in CI
    b = make_broker(tmp_path / "broker", persistence=False)
    b.start()
    try:
        yield b
    finally:
        b.stop(kill=True)


def _markers(db: Path, run: str) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT source, marker FROM markers WHERE run=?", (run,)).fetchall()
    return [(src, json.loads(m)["event"]) for src, m in rows]


def _connected(daemon: DaemonProc) -> bool:
    health = daemon.health() or {}
    return health.get("status") == "ok"


def _fake_daemon_presence(broker: Mosquitto) -> None:
    """Another daemon's retained presence says online, so the agent sends while the daemon is
    down and the broker queues it: in real life a broker that dies between acknowledging a
    message and passing it on (or saving it) loses it the same way."""
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    body = wire.status("other", "online", time.time_ns(), "0")
    pub.publish(wire.daemon_topic("other"), body, qos=1, retain=True).wait_for_publish(5)
    pub.loop_stop()
    pub.disconnect()


def test_client_marker_lost_by_a_broker_crash_is_sent_again_until_confirmed(
    tmp_path: Path, broker: Mosquitto
) -> None:
    daemon = DaemonProc("daemon", tmp_path, probes=(LOCAL_SIM,), mqtt_port=broker.port)
    with daemon:
        daemon.start()
        wait_for(lambda: _connected(daemon), 20.0, "daemon ingesting")
        time.sleep(0.3)
        client = PowerdClient(
            run="lost1",
            source="harness-a",
            transport="mqtt",
            mqtt_port=broker.port,
            confirm_timeout_s=60,
        )
        client.mark("begin", "p")
        assert client.wait_confirmed(20.0) == []
        daemon.kill()
        t_end = time.time_ns()
        client.mark("end", "p", count=5, t_ns=t_end)  # the broker acknowledges and queues it
        assert len(client.unconfirmed) == 1
        broker.stop(kill=True)  # no persistence: the queued end marker is gone
        broker.start()
        daemon.start()
        result = daemon.wait_result("lost1", timeout_s=40.0)
        client.close()  # raises if anything stayed unconfirmed
    (phase,) = result["phases"]
    assert phase["t_end_ns"] == t_end and phase["count"] == 5
    # the daemon's own probe did not sample while it was down: flagged, never a plain number
    assert "daemon_down" in phase["flags"], phase
    assert phase["energy_j"] is None or "incomplete" in phase["flags"], phase
    assert sorted(_markers(daemon.db, "lost1")) == [("harness-a", "begin"), ("harness-a", "end")]


def test_agent_keeps_a_relayed_marker_until_the_daemon_confirms_it(
    tmp_path: Path, broker: Mosquitto
) -> None:
    daemon = DaemonProc("daemon", tmp_path, mqtt_port=broker.port)
    agent = AgentProc("agent", tmp_path, agent_id="edge-c", mqtt_port=broker.port)
    with daemon, agent:
        daemon.start()
        agent.start()
        agent.wait_http()
        wait_for(lambda: _connected(daemon), 20.0, "daemon ingesting")
        agent.post_marker({"v": 1, "run": "lost2", "phase": "p", "event": "begin"})
        wait_for(lambda: len(_markers(daemon.db, "lost2")) == 1, 20.0, "begin stored")
        daemon.kill()
        _fake_daemon_presence(broker)
        agent.post_marker({"v": 1, "run": "lost2", "phase": "p", "event": "end", "count": 3})
        time.sleep(1.5)  # the agent drains its spool to the broker, which queues it for the daemon
        broker.stop(kill=True)
        broker.start()
        daemon.start()
        result = daemon.wait_result("lost2", timeout_s=40.0)
    assert result["phases"][0]["count"] == 3
    assert sorted(_markers(daemon.db, "lost2")) == [("edge-c", "begin"), ("edge-c", "end")]


def test_powerd_mark_over_mqtt_waits_for_the_daemon(tmp_path: Path, broker: Mosquitto) -> None:
    def mark(*extra: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "powerd", "mark", "begin", "p", "--run", "cli"]
        cmd += ["--source", "shell", "--mqtt", f"127.0.0.1:{broker.port}", *extra]
        return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)

    down = mark("--confirm-timeout", "1")
    assert down.returncode == 2 and "did not confirm 1 marker" in down.stderr, down.stderr
    daemon = DaemonProc("daemon", tmp_path, mqtt_port=broker.port)
    with daemon:
        daemon.start()
        wait_for(lambda: _connected(daemon), 20.0, "daemon ingesting")
        up = mark()
        assert up.returncode == 0 and "confirmed" in up.stdout, up.stderr
        assert _markers(daemon.db, "cli") == [("shell", "begin")]


def _agent_times(db: Path, agent: str, t0: int, t1: int) -> np.ndarray:
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT t FROM blocks WHERE channel LIKE ? AND t_last_ns>=? AND t_first_ns<=?",
            (f"{agent}/%", t0, t1),
        ).fetchall()
    if not rows:
        return np.zeros(0, np.int64)
    t = np.concatenate([np.frombuffer(r[0], dtype="<i8") for r in rows])
    return np.unique(t[(t >= t0) & (t <= t1)])


def test_agent_blocks_lost_by_a_broker_crash_are_sent_again(
    tmp_path: Path, broker: Mosquitto
) -> None:
    daemon = DaemonProc("daemon", tmp_path, mqtt_port=broker.port)
    agent = AgentProc("agent", tmp_path, agent_id="edge-b", mqtt_port=broker.port)
    with daemon, agent:
        daemon.start()
        agent.start()
        wait_for(lambda: _connected(daemon), 20.0, "daemon ingesting")
        wait_for(lambda: _agent_times(daemon.db, "edge-b", 0, 2**62).size > 0, 20.0, "samples")
        daemon.kill()
        _fake_daemon_presence(broker)  # the agent sends, the broker queues for the daemon
        t0 = time.time_ns()
        time.sleep(1.5)
        t1 = time.time_ns()
        time.sleep(1.0)  # the agent has drained [t0, t1] to the broker
        broker.stop(kill=True)  # no persistence: every queued block is gone
        broker.start()
        daemon.start()
        wait_for(
            lambda: _agent_times(daemon.db, "edge-b", t1, t1 + 10**9).size > 0,
            40.0,
            "samples after the crash window",
        )
        got = _agent_times(daemon.db, "edge-b", t0 + 50_000_000, t1 - 50_000_000)
    expected = expected_grid(agent.probes[0], t0 + 50_000_000, t1 - 50_000_000).size
    assert abs(got.size - expected) <= 2, (got.size, expected)


def test_an_end_refused_before_its_resent_begin_is_sent_again_after_it(
    tmp_path: Path, broker: Mosquitto
) -> None:
    # After a reconnect, the client's resends and paho's own queue can deliver an end before
    # its begin; the daemon refuses that end, and the client must send it again, not drop it.
    daemon = DaemonProc("daemon", tmp_path, mqtt_port=broker.port)
    with daemon:
        daemon.start()
        wait_for(lambda: _connected(daemon), 20.0, "daemon ingesting")
        daemon.kill()
        client = PowerdClient(
            run="order1", source="harness-o", transport="mqtt", mqtt_port=broker.port
        )
        client.mark("begin", "p")
        client.mark("end", "p", count=2)
        broker.stop(kill=True)  # no persistence: both queued markers are gone
        broker.start()
        mqtt = client._mqtt
        assert mqtt is not None
        wait_for(mqtt.is_connected, 20.0, "client reconnected")
        time.sleep(0.5)  # its reconnect resend went to no subscriber
        (begin_key, _), (end_key, _) = sorted(client._unconfirmed.items())
        with client._lock:  # the end is due for a resend, the begin not yet: out of order
            client._unconfirmed[end_key] = (client._unconfirmed[end_key][0], 0.0)
            begin_payload = client._unconfirmed[begin_key][0]
            client._unconfirmed[begin_key] = (begin_payload, time.monotonic() + 3.0)
        daemon.start()
        result = daemon.wait_result("order1", timeout_s=40.0)
        client.close()  # raises if a marker was dropped or stayed unconfirmed
    assert result["phases"][0]["count"] == 2
    assert sorted(_markers(daemon.db, "order1")) == [("harness-o", "begin"), ("harness-o", "end")]
