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

import paho.mqtt.client as paho
import pytest

from powerd.agent import wire
from powerd.client import PowerdClient
from tests.faults import AgentProc, DaemonProc, find_exe, make_broker
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
    # the daemon's own probe did not sample while it was down: flagged, never a number
    assert "daemon_down" in phase["flags"] and phase["energy_j"] is None, phase
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
        # Another daemon's presence says online (a broker-side race in real life: the agent
        # sends while a daemon is listening and the broker dies before passing it on).
        pub = paho.Client(paho.CallbackAPIVersion.VERSION2)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        body = wire.status("other", "online", time.time_ns(), "0")
        pub.publish(wire.daemon_topic("other"), body, qos=1, retain=True).wait_for_publish(5)
        pub.loop_stop()
        pub.disconnect()
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
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    down = mark("--confirm-timeout", "1")
    assert down.returncode == 2 and "did not confirm 1 marker" in down.stderr, down.stderr
    daemon = DaemonProc("daemon", tmp_path, mqtt_port=broker.port)
    with daemon:
        daemon.start()
        wait_for(lambda: _connected(daemon), 20.0, "daemon ingesting")
        up = mark()
        assert up.returncode == 0 and "confirmed" in up.stdout, up.stderr
        assert _markers(daemon.db, "cli") == [("shell", "begin")]
