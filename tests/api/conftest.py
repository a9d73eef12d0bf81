"""Fixtures for the HTTP API tests: a real Daemon over a temp store, served on a loopback port,
and Debian's mosquitto for the MQTT client."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from powerd.api import ApiThread, make_app
from powerd.daemon import Daemon
from powerd.store import Store
from powerd.timeline import Timeline
from tests.api.helpers import TIMEOUT_S, Api, Broker
from tests.ports import free_port
from tests.tools import require_tool


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "powerd.db") as s:
        yield s


@pytest.fixture
def daemon(store: Store) -> Daemon:
    return Daemon(store, Timeline(), time.time_ns, result_grace_s=0.0)


@pytest.fixture
def serve(daemon: Daemon) -> Iterator[Callable[..., Api]]:
    """``serve(token=None) -> Api``: the daemon's API on a free loopback port, stopped after."""
    threads: list[ApiThread] = []

    def start(token: str | None = None) -> Api:
        thread = ApiThread(make_app(daemon, token), "127.0.0.1", 0)
        threads.append(thread)
        return Api(thread.url, token)

    yield start
    for thread in threads:
        thread.stop()


@pytest.fixture
def api(serve: Callable[..., Api]) -> Api:
    return serve()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """Debian's mosquitto on a free loopback port, anonymous, no persistence."""
    exe = require_tool("mosquitto")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    log = (tmp_path / "mosquitto.log").open("wb")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start: {conf.with_suffix('.log')}")
            time.sleep(0.02)
        yield Broker("127.0.0.1", port)
    finally:
        proc.terminate()
        try:
            proc.wait(TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(TIMEOUT_S)
        log.close()
