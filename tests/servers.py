"""Real servers for tests, started on loopback ports and stopped afterwards (bounded waits)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from powerd.agent.mqttconf import MqttSettings
from powerd.commands.serve import housekeeping
from powerd.daemon import Daemon
from powerd.mqtt_link import run_mqtt
from powerd.store import Store
from powerd.timebase import TimeAnchor
from powerd.timeline import Timeline
from tests.ports import free_port
from tests.tools import require_tool

START_TIMEOUT_S = 10.0
DAEMON_STOP_S = 15.0


def wait_port(port: int, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.01)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


@dataclass
class Mosquitto:
    """Debian's mosquitto on a loopback port; ``restart()`` keeps the port (and its config)."""

    conf: Path
    port: int
    exe: str
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.conf.with_suffix(".log")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf)], stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
        wait_port(self.port)

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        self.proc.wait(10)
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


SHIPPED_MOSQUITTO_CONF = Path(__file__).resolve().parent.parent / "mosquitto" / "powerd.conf"


@contextmanager
def mosquitto(tmp: Path, extra: str = "", production: bool = False) -> Iterator[Mosquitto]:
    """A broker on a free loopback port. ``production``: with the shipped mosquitto/powerd.conf
    (persistence on, saved after every change) included as in /etc/mosquitto/conf.d, its state
    in ``tmp``, so a SIGKILLed broker restarts with what it had."""
    exe = require_tool("mosquitto")
    port = free_port()
    conf = tmp / f"mosquitto-{port}.conf"
    if production:
        conf_d = tmp / f"mosquitto-{port}.d"
        conf_d.mkdir()
        (conf_d / "powerd.conf").write_text(SHIPPED_MOSQUITTO_CONF.read_text())
        state = tmp / f"mosquitto-{port}-state"
        state.mkdir()
        # as root, mosquitto drops to user "mosquitto", who cannot write in a private tmp dir
        user = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(
            f"per_listener_settings true\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
            f"{user}persistence_location {state}/\ninclude_dir {conf_d}\n{extra}"
        )
    else:
        conf.write_text(
            f"per_listener_settings true\nlistener {port} 127.0.0.1\n"
            f"allow_anonymous true\npersistence false\n{extra}"
        )
    broker = Mosquitto(conf, port, exe)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def wait_for(cond: Callable[[], Any], timeout_s: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@contextmanager
def running_daemon(
    tmp_path: Path, broker: Mosquitto, mqtt: MqttSettings | None = None
) -> Iterator[Daemon]:
    """The daemon core with its MQTT link and housekeeping on an event loop in a thread."""
    store = Store(tmp_path / "daemon" / "powerd.db")
    daemon = Daemon(store, Timeline(), TimeAnchor().utc_ns, result_grace_s=5.0)
    loop = asyncio.new_event_loop()
    holder: dict[str, asyncio.Event] = {}

    async def main() -> None:
        stop = asyncio.Event()
        holder["stop"] = stop
        keeper = asyncio.create_task(housekeeping(daemon, store))
        try:
            await run_mqtt(daemon, mqtt or MqttSettings(port=broker.port), 0.2, stop)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    wait_for(lambda: "stop" in holder, what="daemon loop")
    try:
        yield daemon
    finally:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(DAEMON_STOP_S)
        stopped = not thread.is_alive()
        store.close()
    assert stopped, f"the daemon's loop did not stop within {DAEMON_STOP_S} s"


# --- time-series stores: VictoriaMetrics and Prometheus (Debian packages) ----------------------

HTTP_TIMEOUT_S = 10.0


def http_json(url: str, data: dict[str, str] | None = None) -> Any:
    """GET (or POST a form) and decode the JSON reply."""
    body = None if data is None else urllib.parse.urlencode(data).encode()
    with urllib.request.urlopen(url, body, timeout=HTTP_TIMEOUT_S) as reply:
        return json.loads(reply.read())


def prom_query(base_url: str, query: str, time_s: float | None = None) -> list[dict[str, Any]]:
    """The result vector of an instant PromQL/MetricsQL query (``/api/v1/query``)."""
    form = {"query": query}
    if time_s is not None:
        form["time"] = f"{time_s:.3f}"
    reply = http_json(f"{base_url}/api/v1/query", form)
    if reply.get("status") != "success":
        raise AssertionError(f"query {query!r} failed: {reply}")
    return list(reply["data"]["result"])


@dataclass
class VictoriaMetrics:
    """Debian's single-node VictoriaMetrics on a loopback port, its data in ``data``.

    ``stop()``/``start()`` keep port and data, so a test can take the store away and bring it
    back. ``-search.latencyOffset=0s`` and ``-search.disableCache`` make fresh and back-filled
    samples queryable at once (the defaults hide the last 30 s and cache older windows);
    deduplication stays off (the default), so a sample written twice is stored twice and a test
    can count it."""

    data: Path
    port: int
    exe: str
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.data.with_suffix(".log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.exe,
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.data}",
                "-retentionPeriod=1d",
                "-search.latencyOffset=0s",
                "-search.disableCache",
                "-loggerLevel=WARN",
                *self.extra_args,
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port)

    def stop(self) -> None:
        """Graceful stop (SIGTERM): VictoriaMetrics answers requests in flight, then flushes."""
        if self.proc is None:
            return
        self.proc.terminate()
        self.proc.wait(HTTP_TIMEOUT_S)
        self.proc = None

    def force_flush(self) -> None:
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=HTTP_TIMEOUT_S):
            pass

    def query(self, query: str, time_s: float | None = None) -> list[dict[str, Any]]:
        return prom_query(self.url, query, time_s)

    def export(self, match: str) -> list[dict[str, Any]]:
        """Every raw sample of the series matching ``match`` (``/api/v1/export``, JSON lines):
        ``[{"metric": {...}, "values": [...], "timestamps": [ms, ...]}, ...]``."""
        self.force_flush()
        body = urllib.parse.urlencode({"match[]": match}).encode()
        with urllib.request.urlopen(
            f"{self.url}/api/v1/export", body, timeout=HTTP_TIMEOUT_S
        ) as reply:
            lines = reply.read().decode().splitlines()
        return [json.loads(line) for line in lines if line.strip()]


@contextmanager
def victoria_metrics(tmp: Path, *extra_args: str) -> Iterator[VictoriaMetrics]:
    """A fresh VictoriaMetrics on a free loopback port, stopped afterwards."""
    exe = require_tool("victoria-metrics")
    port = free_port()
    vm = VictoriaMetrics(tmp / f"vm-{port}", port, exe, tuple(extra_args))
    vm.start()
    try:
        yield vm
    finally:
        vm.stop()


@dataclass
class Prometheus:
    """Debian's Prometheus on a loopback port scraping ``targets`` (host:port) every second.

    Its scrape manager applies a new config on a 5 s tick, so the first sample is queryable about
    5.5 s after start: wait with ``wait_for``."""

    port: int
    url: str
    proc: subprocess.Popen[bytes]

    def query(self, query: str, time_s: float | None = None) -> list[dict[str, Any]]:
        return prom_query(self.url, query, time_s)


@contextmanager
def prometheus(
    tmp: Path, targets: list[str], metrics_path: str = "/metrics"
) -> Iterator[Prometheus]:
    exe = require_tool("prometheus")
    port = free_port()
    conf = tmp / f"prometheus-{port}.yml"
    target_list = ", ".join(f"'{t}'" for t in targets)
    conf.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: powerd\n"
        f"    metrics_path: {metrics_path}\n"
        f"    static_configs:\n      - targets: [{target_list}]\n"
    )
    log = conf.with_suffix(".log")
    proc = subprocess.Popen(
        [
            exe,
            f"--config.file={conf}",
            f"--storage.tsdb.path={tmp / f'prom-{port}'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port)
        yield Prometheus(port, f"http://127.0.0.1:{port}", proc)
    finally:
        proc.terminate()
        try:
            proc.wait(HTTP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(HTTP_TIMEOUT_S)
