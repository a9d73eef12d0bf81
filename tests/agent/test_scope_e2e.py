"""Two agents and a bench meter on one daemon (a real ``powerd run`` on Debian's mosquitto): each
phase covers its own device whatever path its markers took (MQTT, agent HTTP, daemon HTTP, the
CLI), and devices are summed only when a begin marker names several."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.agent.agentproc import agent_argv
from tests.agent.test_mqtt_e2e import post, pub
from tests.servers import Mosquitto, free_port, mosquitto, wait_for

HOST_W, BENCH_W, EDGE1_W, EDGE2_W = 5.0, 6.0, 7.0, 3.0


@contextmanager
def process(cmd: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, ConnectionError):
        return None


def daemon_cmd(tmp: Path, broker: Mosquitto, http_port: int) -> list[str]:
    conf = tmp / "powerd.toml"
    conf.write_text(
        f"""
[daemon]
probes = ["sim:constant,w={HOST_W},id=host,rate=100",
          "sim:constant,w={BENCH_W},id=bench,rate=100,device=edge-01"]
clock_interval_s = 0.2
result_grace_s = 5.0
[mqtt]
host = "127.0.0.1"
port = {broker.port}
[http]
bind = "127.0.0.1"
port = {http_port}
"""
    )
    return [sys.executable, "-m", "powerd", "--state-dir", str(tmp / "state"), "run", "--config",
            str(conf)]  # fmt: skip


def agent_cmd(tmp: Path, broker: Mosquitto, agent: str, watts: float, http_port: int) -> list[str]:
    probe = f"sim:constant,w={watts},rate=100,class=telemetry"
    return agent_argv(agent, probe, broker.port, tmp / f"spool-{agent}", http_port)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with mosquitto(tmp_path) as b:
        yield b


def test_each_path_measures_its_own_device_and_named_devices_are_summed(
    tmp_path: Path, broker: Mosquitto
) -> None:
    api, a1, a2 = free_port(), free_port(), free_port()
    url = f"http://127.0.0.1:{api}"
    with ExitStack() as stack:
        stack.enter_context(process(daemon_cmd(tmp_path, broker, api), tmp_path / "daemon.log"))
        for agent, watts, port in (("edge-01", EDGE1_W, a1), ("edge-02", EDGE2_W, a2)):
            cmd = agent_cmd(tmp_path, broker, agent, watts, port)
            stack.enter_context(process(cmd, tmp_path / f"{agent}.log"))
        wanted = {"sim:host", "sim:bench", "edge-01/sim:constant", "edge-02/sim:constant"}
        wait_for(
            lambda: wanted <= set((get(f"{url}/v1/channels") or {}).get("channels", {})),
            30,
            "all four channels with samples",
        )

        def begin(run: str) -> dict[str, Any]:
            return {"v": 1, "run": run, "phase": "p", "event": "begin"}

        # MQTT, from the agent's own source id (receive time: no t_ns, no seq)
        pub(broker.port, "powerd/v1/markers/edge-02", json.dumps(begin("mq")))
        # through edge-01's local endpoint (stamped on its clock, sent under its id)
        post(f"http://127.0.0.1:{a1}", begin("ag"))
        # the daemon's HTTP API from a harness that is no device
        post_daemon = f"{url}/v1/markers?source=harness"
        req = urllib.request.Request(post_daemon, json.dumps(begin("dh")).encode())
        urllib.request.urlopen(req, timeout=5).close()
        # the CLI, naming both agents
        mark = [sys.executable, "-m", "powerd", "mark", "begin", "p", "--run", "cl", "--url", url,
                "--device", "edge-01", "--device", "edge-02"]  # fmt: skip
        subprocess.run(mark, check=True, timeout=30, capture_output=True)
        time.sleep(1.0)
        pub(broker.port, "powerd/v1/markers/edge-02", json.dumps(begin("mq") | {"event": "end"}))
        post(f"http://127.0.0.1:{a1}", begin("ag") | {"event": "end", "count": 2})
        req = urllib.request.Request(
            post_daemon, json.dumps(begin("dh") | {"event": "end"}).encode()
        )
        urllib.request.urlopen(req, timeout=5).close()
        subprocess.run([*mark[:4], "end", "p", *mark[6:10]], check=True, timeout=30)

        results = {
            run: wait_for(lambda r=run: get(f"{url}/v1/runs/{r}"), 30, f"result of {run}")
            for run in ("mq", "ag", "dh", "cl")
        }
    expected = {
        "mq": (["edge-02"], {"edge-02/sim:constant"}, EDGE2_W),
        "ag": (["edge-01"], {"edge-01/sim:constant", "sim:bench"}, BENCH_W),
        "dh": (["local"], {"sim:host"}, HOST_W),
        "cl": (["edge-01", "edge-02"], {"edge-01/sim:constant", "sim:bench",
                                         "edge-02/sim:constant"}, BENCH_W + EDGE2_W),
    }  # fmt: skip
    for run, (devices, channels, watts) in expected.items():
        (phase,) = results[run]["phases"]
        assert phase["devices"] == devices, run
        assert set(phase["channels"]) == channels, run
        assert phase["mean_power_w"] == pytest.approx(watts, rel=1e-6), run
        for cid, entry in phase["channels"].items():
            assert entry["device"] in devices, (run, cid)
