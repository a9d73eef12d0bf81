"""A real ``powerd-agent`` subprocess for fault tests: started from a TOML config (optionally
under libfaketime), stopped with SIGTERM or killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tests.servers import Mosquitto, free_port
from tests.tools import require_tool

if TYPE_CHECKING:
    from powerd.agent.agent import Agent
    from powerd.agent.epoch import EpochAnchor

SQUARE = "square,high=9,low=3,period=0.2,duty=0.5"
RATE_HZ = 200


def write_config(
    path: Path,
    agent_id: str,
    broker_port: int,
    spool_dir: Path,
    spool_max_mb: float = 256,
    rate_hz: int = RATE_HZ,
) -> Path:
    path.write_text(
        f'[agent]\nid = "{agent_id}"\nprobes = ["sim:{SQUARE},rate={rate_hz}"]\n'
        f'spool_dir = "{spool_dir}"\nspool_max_mb = {spool_max_mb}\nhttp_port = 0\n'
        f'publish_interval_s = 0.2\n\n[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\n'
    )
    return path


def agent_argv(
    agent_id: str, probe: str, mqtt_port: int, spool_dir: Path, http_port: int | None
) -> list[str]:
    """``powerd-agent`` configured by its flags alone: one probe, the broker on loopback, its
    spool, its marker HTTP port (``None``: no HTTP)."""
    http = ["--no-http"] if http_port is None else ["--http-port", str(http_port)]
    return [sys.executable, "-m", "powerd.agent", "--id", agent_id, "--probe", probe,
            "--mqtt", f"127.0.0.1:{mqtt_port}", "--spool-dir", str(spool_dir), *http]  # fmt: skip


@contextmanager
def agent_process(
    config: Path,
    log: Path,
    fake_offset_s: float | None = None,
    http_port: int | None = None,
    kill: bool = False,
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``python -m powerd.agent --config FILE``; yields the process and its marker URL. Leaving the
    block SIGKILLs it (``kill``) or stops it with SIGTERM."""
    port = http_port or free_port()
    cmd = [sys.executable, "-m", "powerd.agent", "--config", str(config), "--http-port", str(port)]
    env = dict(os.environ)
    if fake_offset_s is not None:
        cmd = [require_tool("faketime"), "-f", f"{fake_offset_s:+.3f}s", *cmd]
        env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
    out = log.open("ab")
    proc = subprocess.Popen(
        cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        out.close()


@contextmanager
def running_agent(
    tmp_path: Path,
    broker: Mosquitto,
    agent_id: str,
    fake_offset_s: float | None = None,
    kill: bool = False,
    spool_dir: Path | None = None,
    spool_max_mb: float = 256,
) -> Iterator[str]:
    """An agent sampling the square waveform; yields its marker URL."""
    spool = spool_dir or tmp_path / f"spool-{agent_id}"
    conf = write_config(
        tmp_path / f"agent-{agent_id}.toml", agent_id, broker.port, spool, spool_max_mb
    )
    with agent_process(conf, tmp_path / f"agent-{agent_id}.log", fake_offset_s, kill=kill) as (
        _,
        url,
    ):
        yield url


def inprocess_agent(tmp: Path, agent_id: str, broker_port: int, anchor: EpochAnchor) -> Agent:
    """An ``Agent`` in this process (its wall clock through ``anchor``, so a test can step or
    drift it), with the sim probe ``agent_process`` runs, spooling under ``tmp``; not started."""
    from powerd.agent.agent import Agent, AgentConfig
    from powerd.agent.mqttconf import MqttSettings

    cfg = AgentConfig(
        id=agent_id,
        probes=(f"sim:{SQUARE},rate={RATE_HZ}",),
        mqtt=MqttSettings(port=broker_port),
        spool_dir=tmp / "spool",
        http_port=None,
        publish_interval_s=0.2,
    )
    return Agent(cfg, anchor=anchor)


@contextmanager
def agent_thread(agent: Agent) -> Iterator[None]:
    """``agent.run`` on its own event loop in a thread while the block runs; then stopped,
    joined (bounded) and its loop closed."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(agent.run(stop),))
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(15)
        loop.close()
