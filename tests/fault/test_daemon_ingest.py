"""The daemon's MQTT ingestion under faults, with real parts: Debian mosquitto running the shipped
mosquitto/powerd.conf and killed with SIGKILL, ``powerd run`` as a subprocess killed with
SIGKILL, and hostile payloads on every topic the daemon reads. Each ends with a result checked
against the sim source's analytic truth, and the daemon still ingesting."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from powerd.probes.sim.waveform import parse_spec
from tests.servers import Mosquitto, free_port, mosquitto, running_daemon, wait_for, wait_port

# The sim probe samples on the waveform's own clock: a square wave is a phase-locked load,
# rightly flagged periodic_load; no other flag is expected.
LOCKED = {"periodic_load"}
SIM = "constant,w=7,rate=200"
CHANNEL = "sim:constant"
HARNESS = "harness-1"


@dataclass
class DaemonProc:
    """``powerd run`` in a subprocess on a state dir and config that survive its restarts."""

    tmp: Path
    broker_port: int
    http_port: int
    result_grace_s: float = 1.0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        conf = self.tmp / "powerd.toml"
        conf.write_text(
            "[daemon]\n"
            'id = "fault-daemon"\n'
            f'probes = ["sim:{SIM}"]\n'
            f"result_grace_s = {self.result_grace_s}\n"
            "clock_interval_s = 0.2\n"
            f"[mqtt]\nport = {self.broker_port}\n"
            f"[http]\nport = {self.http_port}\n"
        )
        log = (self.tmp / "daemon.log").open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "powerd",
                "--state-dir",
                str(self.tmp / "state"),
                "run",
                "--config",
                str(conf),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_port(self.http_port, 20)
        wait_for(lambda: self.health().get("status") == "ok", 20, "daemon ingesting (healthz ok)")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")
        except (ConnectionError, urllib.error.URLError):
            return 0, {}

    def health(self) -> dict[str, Any]:
        return dict(self.get("/healthz")[1])

    def result(self, run: str) -> dict[str, Any] | None:
        status, body = self.get(f"/v1/runs/{run}")
        return dict(body) if status == 200 else None

    def log(self) -> str:
        return (self.tmp / "daemon.log").read_text(errors="replace")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with mosquitto(tmp_path, production=True) as b:
        yield b


@pytest.fixture
def daemon(tmp_path: Path, broker: Mosquitto) -> Iterator[DaemonProc]:
    d = DaemonProc(tmp_path, broker.port, free_port())
    d.start()
    try:
        yield d
    finally:
        d.stop()


def broker_state(broker: Mosquitto) -> tuple[int, int]:
    """Identity of the broker's persistence file (mosquitto replaces it at each save)."""
    path = broker.conf.with_name(f"mosquitto-{broker.port}-state") / "mosquitto.db"
    try:
        st = path.stat()
    except FileNotFoundError:
        return (0, 0)
    return (st.st_ino, st.st_mtime_ns)


def publish(port: int, items: list[tuple[str, bytes | str]], qos: int = 1) -> None:
    """Publish and wait until the broker acknowledged each message (QoS 1)."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=qos) for topic, payload in items]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def marker(run: str, phase: str, event: str, seq: int, t_ns: int, **extra: Any) -> str:
    body = {"v": 1, "run": run, "phase": phase, "event": event, "seq": seq, "t_ns": t_ns}
    return json.dumps(body | extra)


def send_marker(port: int, text: str) -> None:
    publish(port, [(f"powerd/v1/markers/{HARNESS}", text)])


def check_truth(result: dict[str, Any], phases: int) -> None:
    """Every phase against the sim's analytic energy (the daemon's own probe: offset 0)."""
    assert len(result["phases"]) == phases, result
    wf = parse_spec(SIM).waveform
    for ph in result["phases"]:
        truth = wf.energy_j(ph["t_begin_ns"], ph["t_end_ns"])
        assert ph["energy_j"] is not None, ph
        assert abs(ph["energy_j"] - truth) <= ph["uncertainty_j"], (ph, truth)
        assert ph["channels"][CHANNEL]["coverage"] > 0


def test_daemon_and_broker_killed_mid_phase_lose_no_marker(
    tmp_path: Path, broker: Mosquitto, daemon: DaemonProc
) -> None:
    t0 = time.time_ns()
    send_marker(broker.port, marker("crash", "p1", "begin", 1, t0))
    wait_for(lambda: daemon.health()["counts"].get("markers_applied") == 1, 10, "begin applied")
    daemon.kill()  # mid-phase: p1 is open
    # the end marker reaches the broker while the daemon is down: queued in its session
    time.sleep(0.3)  # the broker has published and saved the daemon's last will by now
    saved = broker_state(broker)
    send_marker(broker.port, marker("crash", "p1", "end", 2, time.time_ns(), count=5))
    # mosquitto acknowledges a message before its save (milliseconds later, with the shipped
    # autosave after every change): a SIGKILL in between loses it, whatever the config
    wait_for(lambda: broker_state(broker) != saved, 5, "the broker saving its state")
    broker.stop(kill=True)  # and the broker dies with it queued
    broker.start()
    # a marker sent right after the broker restarts, before the daemon is back
    send_marker(broker.port, marker("crash", "p2", "begin", 3, time.time_ns()))
    daemon.start()
    send_marker(broker.port, marker("crash", "p2", "end", 4, time.time_ns(), count=1))
    try:
        result = wait_for(
            lambda: (r := daemon.result("crash")) and len(r["phases"]) == 2 and r, 15, "2 phases"
        )
    except AssertionError:
        raise AssertionError((daemon.get("/v1/runs/crash"), daemon.health())) from None
    check_truth(result, 2)
    p1 = next(p for p in result["phases"] if p["phase"] == "p1")
    assert p1["t_begin_ns"] == t0 and p1["count"] == 5
    health = daemon.health()
    assert health["status"] == "ok"
    assert health["counts"].get("markers_applied") == 3  # this process: p1 end, p2 begin + end
    assert health["counts"].get("markers_rejected", 0) == 0


def test_result_pending_at_kill_is_computed_after_restart(
    broker: Mosquitto, daemon: DaemonProc
) -> None:
    now = time.time_ns()
    # the end lies 3 s ahead: the result waits for samples covering it, and the daemon dies first
    send_marker(broker.port, marker("pending", "p", "begin", 1, now - 500_000_000))
    send_marker(broker.port, marker("pending", "p", "end", 2, now + 3_000_000_000))
    wait_for(lambda: daemon.health()["counts"].get("markers_applied") == 2, 10, "both applied")
    assert daemon.result("pending") is None
    daemon.kill()
    daemon.start()
    result = wait_for(lambda: daemon.result("pending"), 15, "result after restart")
    check_truth(result, 1)


HOSTILE: list[bytes] = [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    b"\xff\xfe\x00garbage",
    b"",
    b"null",
    b"[]",
    b'"just a string"',
    b"12345678901234567890123456789012345678901234567890",
    b'{"v": 1, "id": 1, "t1_ns": 99999999999999999999999, "t2_ns": -1, "t3_ns": 1.5}',
    b'{"v": 1, "agent": "fuzz", "state": ["online"]}',
    b"PB\x01\x00" + b"\xff" * 40,
    b"PB\x01\x01" + b"\x00" * 8 + b"\x00" * 4 + b"\xff\xff" + b"x" * 10,
    b"NaN",
    json.dumps({"v": 1, "run": "x", "phase": "y", "event": "begin", "seq": 2**70}).encode(),
    json.dumps({"v": 1, "run": "x", "phase": "y", "event": "begin", "t_ns": 2**63}).encode(),
    json.dumps([{"id": "sim:x", "kind": ["power"]}]).encode(),
    json.dumps([{"id": {"deep": [[[[1]]]]}}]).encode(),
]


def test_hostile_payloads_on_every_topic_leave_ingestion_working(
    broker: Mosquitto, daemon: DaemonProc
) -> None:
    topics = [
        "powerd/v1/markers/fuzz",
        "powerd/v1/markers/harness-fuzz",
        "powerd/v1/blocks/fuzz",
        "powerd/v1/channels/fuzz",
        "powerd/v1/status/fuzz",
        "powerd/v1/clock/fuzz/reply",
        "powerd/v1/blocks/never-seen",
    ]
    # a valid "online" status first, so the agent-side paths (held data, clock) are exercised
    online = json.dumps({"v": 1, "agent": "fuzz", "state": "online", "t_ns": 1, "version": "x"})
    publish(broker.port, [("powerd/v1/status/fuzz", online)])
    publish(broker.port, [(t, p) for t in topics for p in HOSTILE])
    publish(broker.port, [(t, p) for t in topics for p in HOSTILE[:4]], qos=0)
    wait_for(
        lambda: sum(daemon.health()["problems"].values()) >= len(HOSTILE) * 3,
        15,
        "hostile messages counted",
    )
    t0 = time.time_ns()
    send_marker(broker.port, marker("after-fuzz", "p", "begin", 1, t0))
    send_marker(broker.port, marker("after-fuzz", "p", "end", 2, t0 + 400_000_000, count=2))
    result = wait_for(lambda: daemon.result("after-fuzz"), 15, "result after the fuzz")
    check_truth(result, 1)
    health = daemon.health()
    assert health["status"] == "ok", health
    problems = health["problems"]
    for kind in ("marker_rejected", "blocks_malformed", "channels_malformed", "status_malformed"):
        assert problems.get(kind, 0) > 0, (kind, problems)
    assert problems.get("clock_malformed", 0) + problems.get("clock_unmatched", 0) >= 0
    assert "Traceback" not in daemon.log()
    assert daemon.proc is not None and daemon.proc.poll() is None


def test_ingestion_down_is_degraded_and_presence_not_online(
    tmp_path: Path, broker: Mosquitto, daemon: DaemonProc
) -> None:
    """With the broker gone the daemon says degraded (with the reason); its retained presence
    is then "offline" (its last will, published by the broker when the session broke) or
    "degraded", never "online", until it ingests again."""
    got: dict[str, bytes] = {}

    def presence() -> str | None:
        client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        client.on_message = lambda _c, _u, msg: got.__setitem__(msg.topic, bytes(msg.payload))
        client.connect("127.0.0.1", broker.port)
        client.subscribe("powerd/v1/daemons/fault-daemon", qos=1)
        client.loop_start()
        try:
            wait_for(lambda: "powerd/v1/daemons/fault-daemon" in got, 5, "retained presence")
        finally:
            client.disconnect()
            client.loop_stop()
        return str(json.loads(got.pop("powerd/v1/daemons/fault-daemon"))["state"])

    assert presence() == "online"
    broker.stop(kill=True)
    health = wait_for(
        lambda: (h := daemon.health())["status"] == "degraded" and h, 10, "degraded healthz"
    )
    assert "mqtt" in health["down"]
    broker.start()
    wait_for(lambda: daemon.health()["status"] == "ok", 15, "ingesting again")
    assert presence() == "online"


AGENT_SIM = "square,high=9,low=3,period=0.2,duty=0.5"


@contextmanager
def running_agent(tmp: Path, broker_port: int, agent_id: str) -> Iterator[subprocess.Popen[bytes]]:
    """``powerd-agent`` with a sim probe in a subprocess, spooling under ``tmp``."""
    cmd = [
        sys.executable,
        "-m",
        "powerd.agent",
        "--id",
        agent_id,
        "--probe",
        f"sim:{AGENT_SIM},rate=200",
        "--mqtt",
        f"127.0.0.1:{broker_port}",
        "--spool-dir",
        str(tmp / f"spool-{agent_id}"),
        "--http-port",
        str(free_port()),
    ]
    with (tmp / f"agent-{agent_id}.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def test_agent_samples_survive_daemon_sigkills_mid_phase(tmp_path: Path, broker: Mosquitto) -> None:
    """The daemon acknowledges agents' blocks only once they are in its store: killed twice
    mid-phase (once while the agent drains its backlog), it ends with every sample of the
    phase, and the energy within its uncertainty of the sim's truth. (The result waits for the
    samples covering the phase's end: a grace long enough for the backlog on a loaded host.)"""
    cid = "edge-f/sim:square"
    daemon = DaemonProc(tmp_path, broker.port, free_port(), result_grace_s=15.0)
    daemon.start()
    with running_agent(tmp_path, broker.port, "edge-f"):
        wait_for(lambda: cid in daemon.get("/v1/channels")[1].get("channels", {}), 20, "samples")
        t0 = time.time_ns()
        send_marker(broker.port, marker("agent-kill", "p", "begin", 1, t0, device="edge-f"))
        time.sleep(0.7)
        daemon.kill()
        time.sleep(1.0)  # the agent spools meanwhile
        daemon.start()
        time.sleep(0.3)
        daemon.kill()  # likely while the backlog is being drained
        daemon.start()
        time.sleep(0.5)
        send_marker(broker.port, marker("agent-kill", "p", "end", 2, time.time_ns(), count=9))
        try:
            result = wait_for(lambda: daemon.result("agent-kill"), 20, "result")
            assert daemon.health()["status"] == "ok"
        finally:
            daemon.stop()
    (ph,) = result["phases"]
    ch = ph["channels"][cid]
    assert ch["coverage"] == 1.0 and set(ch["flags"]) <= LOCKED, ch
    truth = parse_spec(AGENT_SIM).waveform.energy_j(ph["t_begin_ns"], ph["t_end_ns"])
    assert abs(ph["energy_j"] - truth) <= ph["uncertainty_j"], (ph, truth)


def test_an_unexpected_error_in_the_mqtt_loop_is_logged_and_the_loop_restarts(
    tmp_path: Path,
) -> None:
    """Not only lost connections: any exception in the loop marks ingestion down with the
    reason (logged once), reconnects, and ingestion comes back."""
    with mosquitto(tmp_path) as b, running_daemon(tmp_path, b) as daemon:
        lines: list[str] = []
        daemon.health.log = lines.append
        wait_for(lambda: not daemon.health.is_down("mqtt"), 10, "connected")
        calls: list[str] = []
        real = daemon.clock_request

        def flaky(agent: str) -> bytes:
            calls.append(agent)
            if len(calls) == 1:
                raise RuntimeError("injected")
            return real(agent)

        daemon.clock_request = flaky  # type: ignore[method-assign]
        states: list[str] = []
        sub = paho.Client(paho.CallbackAPIVersion.VERSION2)
        sub.on_message = lambda _c, _u, msg: states.append(json.loads(msg.payload)["state"])
        sub.connect("127.0.0.1", b.port)
        sub.subscribe("powerd/v1/daemons/+", qos=1)
        sub.loop_start()
        try:
            wait_for(lambda: states == ["online"], 10, "the retained presence")
            online = json.dumps({"v": 1, "agent": "edge-x", "state": "online", "t_ns": 1})
            publish(b.port, [("powerd/v1/status/edge-x", online)])
            wait_for(lambda: len(calls) >= 2, 10, "clock requests after the restart")
            wait_for(lambda: not daemon.health.is_down("mqtt"), 10, "ingesting again")
            wait_for(lambda: states[-1] == "online" and len(states) >= 3, 10, "online again")
        finally:
            sub.loop_stop()
            sub.disconnect()
        assert states[1] == "degraded", states  # said before the loop went away
        assert any("ingestion failed" in line and "injected" in line for line in lines), lines
        t0 = time.time_ns()
        send_marker(b.port, marker("after-error", "p", "begin", 1, t0))
        send_marker(b.port, marker("after-error", "p", "end", 2, t0 + 1000))
        wait_for(lambda: len(daemon.store.markers("after-error")) == 2, 10, "markers stored")


def test_a_marker_whose_handling_raises_is_answered_and_the_next_one_applies(
    tmp_path: Path,
) -> None:
    with mosquitto(tmp_path) as b, running_daemon(tmp_path, b) as daemon:
        wait_for(lambda: not daemon.health.is_down("mqtt"), 10, "connected")
        errors: list[bytes] = []
        sub = paho.Client(paho.CallbackAPIVersion.VERSION2)
        sub.on_message = lambda _c, _u, msg: errors.append(bytes(msg.payload))
        sub.connect("127.0.0.1", b.port)
        sub.subscribe(f"powerd/v1/errors/{HARNESS}", qos=1)
        sub.loop_start()
        real = daemon.submit_marker
        calls: list[str] = []

        def flaky(source: str, payload: Any, received_ns: int | None = None, **kw: Any) -> Any:
            calls.append(source)
            if len(calls) == 1:
                raise ValueError("injected")
            return real(source, payload, received_ns, **kw)

        daemon.submit_marker = flaky  # type: ignore[method-assign,assignment]
        try:
            time.sleep(0.3)  # the subscription is in place
            t0 = time.time_ns()
            send_marker(b.port, marker("raise", "p", "begin", 1, t0))
            send_marker(b.port, marker("raise", "q", "begin", 2, t0))
            wait_for(lambda: errors, 10, "the error answer")
            wait_for(lambda: len(daemon.store.markers("raise")) == 1, 10, "the next marker")
        finally:
            sub.loop_stop()
            sub.disconnect()
        body = json.loads(errors[0])
        assert "internal error" in body["error"] and "injected" in body["error"]
        assert daemon.health.problems["markers_failed"] == 1
        assert not daemon.health.is_down("mqtt")
