"""``powerd run`` and ``powerd-agent`` as real subprocesses for the sink tests, on loopback."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.agent.agentproc import agent_argv
from tests.servers import free_port, wait_port

STOP_TIMEOUT_S = 30.0


@dataclass
class PowerdRun:
    url: str
    port: int
    log: Path
    proc: subprocess.Popen[bytes]

    def post_marker(self, marker: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            f"{self.url}/v1/markers",
            json.dumps({"v": 1, **marker}).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as reply:
            return dict(json.loads(reply.read()))

    def get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The daemon's /metrics as {(name, sorted labels): value}."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }

    def stop(self) -> str:
        """SIGTERM, wait, and return the log (the sink reports what it wrote as it closes)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.log.read_text()

    def written_samples(self) -> int:
        """Samples (field values) the InfluxDB sink reported written when it closed."""
        found = re.findall(r"influx: (\d+) samples written", self.stop())
        assert found, self.log.read_text()
        return int(found[-1])


@contextmanager
def powerd_run(tmp: Path, config: str) -> Iterator[PowerdRun]:
    """``powerd run`` with ``config`` plus an [http] table on a free loopback port."""
    port = free_port()
    path = tmp / f"powerd-{port}.toml"
    path.write_text(f'{config}\n[http]\nbind = "127.0.0.1"\nport = {port}\n')
    log = tmp / f"powerd-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "powerd", "run", "--config", str(path)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    run = PowerdRun(f"http://127.0.0.1:{port}", port, log, proc)
    try:
        wait_port(port, 20)
        yield run
    finally:
        run.stop()


@contextmanager
def powerd_agent(tmp: Path, agent_id: str, probe: str, mqtt_port: int) -> Iterator[None]:
    log = (tmp / f"agent-{agent_id}.log").open("wb")
    proc = subprocess.Popen(
        agent_argv(agent_id, probe, mqtt_port, tmp / f"spool-{agent_id}", None),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
