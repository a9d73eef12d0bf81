"""Real servers for tests, started on loopback ports and stopped afterwards (bounded waits)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.mqttconf import MqttSettings
from powerd.daemon import Daemon
from powerd.mqtt_link import run_mqtt
from powerd.serve import housekeeping
from powerd.store import Store
from powerd.timebase import TimeAnchor
from powerd.timeline import Timeline
from tests.tools import require_tool

START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


@contextmanager
def mosquitto(tmp: Path, extra: str = "") -> Iterator[Mosquitto]:
    exe = require_tool("mosquitto")
    port = free_port()
    conf = tmp / f"mosquitto-{port}.conf"
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

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    wait_for(lambda: "stop" in holder, what="daemon loop")
    try:
        yield daemon
    finally:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(15)
        store.close()
