"""Real processes for fault tests and the soak benchmark: start them, SIGKILL them, restart them.

Every part runs as it is deployed, as its own process on loopback:

- ``DaemonProc``: ``python -m powerd --state-dir DIR run --config FILE`` with an HTTP port, the
  broker in ``[mqtt]`` and optional local probes; wait for ``/healthz``, read ``/v1/runs/<run>``,
  post markers, its RSS from ``/proc``; a restart keeps the state dir (and so the store).
- ``AgentProc``: ``python -m powerd.agent`` with sim probes, its own spool dir and marker endpoint,
  optionally under libfaketime (LD_PRELOAD, so the pid is the agent's own and a SIGKILL hits it).
- ``MeterSimProc``: ``python -m powerd sim MODEL --link PATH``: a killed simulator is a pulled
  cable (the link dangles), a restarted one a replug on the same path.
- the broker: ``tests.servers.Mosquitto`` (``stop(kill=True)`` / ``start()``), made here without
  pytest so the benchmark can use it too (``make_broker``).

Each process is started in its own session (its group is what a kill hits), with stdout and stderr
appended to ``<name>.log`` in the work directory; every wait is bounded. Use them as context
managers (or call ``stop()`` in a ``finally``) so nothing outlives a test.

Truth: the ``sim`` source is a pure function of UTC time (``probes/sim``), so the energy of any
window and the samples a channel must have are known exactly (``truth_energy_j``,
``expected_grid``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from powerd.probes.sim.waveform import SimSpec, parse_spec
from tests.servers import Mosquitto, free_port, wait_port

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = 5.0
FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")
SHIPPED_BROKER_CONF = ROOT / "mosquitto" / "powerd.conf"  # the production broker settings


# --- truth from the sim source -----------------------------------------------------------------


def sim_spec(spec: str) -> SimSpec:
    """A ``sim:...`` probe spec (or the part after ``sim:``) parsed."""
    return parse_spec(spec.removeprefix("sim:"))


def truth_energy_j(spec: str, t_begin_ns: int, t_end_ns: int) -> float:
    """The exact energy of the sim waveform ``spec`` over [begin, end] on the clock it ran on."""
    return float(sim_spec(spec).waveform.energy_j(t_begin_ns, t_end_ns))


def expected_grid(spec: str, t_begin_ns: int, t_end_ns: int) -> np.ndarray:
    """Grid indices k of every sample the sim source emits in [begin, end] (t = k × step)."""
    step = sim_spec(spec).step_ns
    first = -(-t_begin_ns // step)
    last = t_end_ns // step
    return np.arange(first, last + 1, dtype=np.int64)


# --- processes -----------------------------------------------------------------------------------


def find_exe(name: str) -> str | None:
    """An executable on PATH or in an sbin directory (mosquitto lives in /usr/sbin)."""
    found = shutil.which(name)
    if found:
        return found
    for d in SBIN:
        if (Path(d) / name).exists():
            return str(Path(d) / name)
    return None


def make_broker(
    work: Path, persistence: bool = True, extra: str = "", shipped: Path | None = None
) -> Mosquitto:
    """Debian's mosquitto on a free loopback port, not started yet (``start()``).

    With ``persistence`` it runs the broker settings powerd ships (``mosquitto/powerd.conf``:
    persistence saved on every change, so a SIGKILL loses no queued message) when that file
    exists, else the same settings written here; its database lives in ``work``. ``extra`` is
    appended."""
    exe = find_exe("mosquitto")
    if exe is None:
        raise FileNotFoundError("mosquitto is not installed (Debian package mosquitto)")
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = work / f"mosquitto-{port}.conf"
    shipped = shipped or SHIPPED_BROKER_CONF
    if not persistence:
        settings = "persistence false\nmax_queued_messages 100000\n"
    elif shipped.exists():
        settings = f"{shipped.read_text()}\npersistence_location {work}/\n"
    else:
        settings = (
            "persistence true\nautosave_on_changes true\nautosave_interval 1\n"
            f"max_queued_messages 100000\npersistence_location {work}/\n"
        )
    conf.write_text(
        f"per_listener_settings true\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
        f"{settings}{extra}"
    )
    return Mosquitto(conf, port, exe)


@dataclass
class Proc:
    """One managed subprocess: ``start``, ``kill`` (SIGKILL), ``stop`` (SIGTERM), ``restart``."""

    name: str
    work: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    starts: int = field(default=0, init=False)

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        pythonpath = env.get("PYTHONPATH", "")
        env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{pythonpath}" if pythonpath else str(ROOT)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    @property
    def log(self) -> Path:
        return self.work / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.alive():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.work.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            log.write(f"--- start {self.starts} at {time.time_ns()} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(),
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.work,
            )
        self.starts += 1

    def _signal_group(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the process (and its group); waits until it is gone."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT_S)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within ``STOP_TIMEOUT_S``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(STOP_TIMEOUT_S)
        self.proc = None

    def restart(self, down_s: float = 0.0, kill: bool = True) -> None:
        self.kill() if kill else self.stop()
        time.sleep(down_s)
        self.start()

    def rss_kib(self) -> int | None:
        """Resident set size from /proc/<pid>/status (VmRSS), None when not running."""
        if not self.alive():
            return None
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    def tail(self, n_chars: int = 3000) -> str:
        """The end of the log (for assertion messages)."""
        try:
            return self.log.read_text(errors="replace")[-n_chars:]
        except OSError:
            return ""

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """One JSON request; (status, decoded body). Connection errors raise ``OSError``."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data, {"Content-Type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
            return resp.status, dict(json.loads(resp.read() or b"{}"))
    except urllib.error.HTTPError as err:
        try:
            payload = dict(json.loads(err.read() or b"{}"))
        except ValueError:
            payload = {}
        return err.code, payload


def _wait(cond: Any, timeout_s: float, what: str, proc: Proc) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited while waiting for {what}:\n{proc.tail()}")
        try:
            value = cond()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"{proc.name}: no {what} after {timeout_s} s:\n{proc.tail()}")


@dataclass
class DaemonProc(Proc):
    """``powerd run`` with its own state dir, config and HTTP port (kept across restarts)."""

    mqtt_port: int | None = None
    probes: tuple[str, ...] = ()
    result_grace_s: float = 2.0
    extra_config: str = ""
    http_port: int = field(default_factory=free_port)

    @property
    def state_dir(self) -> Path:
        return self.work / "state"

    @property
    def db(self) -> Path:
        return self.state_dir / "powerd.db"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def config(self) -> Path:
        return self.work / "powerd.toml"

    def write_config(self) -> None:
        lines = [
            "[daemon]",
            f"probes = {json.dumps(list(self.probes))}",
            f"result_grace_s = {self.result_grace_s}",
            "",
            "[http]",
            'bind = "127.0.0.1"',
            f"port = {self.http_port}",
            "",
        ]
        if self.mqtt_port is not None:
            lines += ["[mqtt]", 'host = "127.0.0.1"', f"port = {self.mqtt_port}", ""]
        self.config.write_text("\n".join(lines) + self.extra_config)

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "powerd",
            "--state-dir",
            str(self.state_dir),
            "run",
            "--config",
            str(self.config),
        ]

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.write_config()
        super().start()

    def health(self) -> dict[str, Any] | None:
        """``/healthz`` as served (``status`` "ok" or "degraded", whatever the HTTP code), or
        None while nothing answers."""
        try:
            _, body = http("GET", f"{self.url}/healthz")
        except OSError:
            return None
        return body if "status" in body else None

    def wait_healthy(self, timeout_s: float = START_TIMEOUT_S) -> dict[str, Any]:
        """Wait until the daemon serves ``/healthz`` (ok or degraded: a meter may be unplugged)."""
        return dict(_wait(self.health, timeout_s, "/healthz", self))

    def run_result(self, run: str) -> dict[str, Any] | None:
        """``GET /v1/runs/<run>``: the result, or None while there is none (404)."""
        status, body = http("GET", f"{self.url}/v1/runs/{run}")
        return body if status == 200 else None

    def wait_result(self, run: str, timeout_s: float = 10.0) -> dict[str, Any]:
        return dict(_wait(lambda: self.run_result(run), timeout_s, f"result of {run}", self))

    def post_marker(self, marker: dict[str, Any], source: str | None = None) -> dict[str, Any]:
        query = "" if source is None else f"?source={source}"
        status, body = http("POST", f"{self.url}/v1/markers{query}", marker)
        if status >= 300:
            raise AssertionError(f"marker {marker} refused ({status}): {body}")
        return body


@dataclass
class AgentProc(Proc):
    """``powerd-agent`` (``python -m powerd.agent``) with sim probes, a spool dir and a marker
    endpoint.

    ``fake_offset_s`` runs it under libfaketime with its UTC clock that far off (the monotonic
    clock stays real, or Python's timed waits hang); change it between restarts to step it."""

    agent_id: str = "edge"
    mqtt_port: int = 1883
    probes: tuple[str, ...] = ("sim:square,high=9,low=3,period=0.2,duty=0.5,rate=200",)
    fake_offset_s: float | None = None
    http_port: int = field(default_factory=free_port)

    @property
    def spool_dir(self) -> Path:
        return self.work / f"spool-{self.agent_id}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "powerd.agent", "--id", self.agent_id]
        for probe in self.probes:
            cmd += ["--probe", probe]
        return [
            *cmd,
            "--mqtt",
            f"127.0.0.1:{self.mqtt_port}",
            "--spool-dir",
            str(self.spool_dir),
            "--http-port",
            str(self.http_port),
        ]

    def environment(self) -> dict[str, str]:
        env = super().environment()
        if self.fake_offset_s is not None:
            if not FAKETIME_LIB.exists():
                raise FileNotFoundError(f"{FAKETIME_LIB} missing (Debian package faketime)")
            env["LD_PRELOAD"] = str(FAKETIME_LIB)
            env["FAKETIME"] = f"{self.fake_offset_s:+.3f}s"
            env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
            env["FAKETIME_NO_CACHE"] = "1"
        return env

    def wait_http(self, timeout_s: float = START_TIMEOUT_S) -> None:
        _wait(lambda: _port_open(self.http_port), timeout_s, "marker endpoint", self)

    def post_marker(self, marker: dict[str, Any]) -> dict[str, Any]:
        status, body = http("POST", f"{self.url}/v1/markers", marker)
        if status >= 300:
            raise AssertionError(f"agent refused marker {marker} ({status}): {body}")
        return body


@dataclass
class MeterSimProc(Proc):
    """``powerd sim MODEL --link PATH``: kill = unplug (the link dangles), start = replug."""

    model: str = "wt310"
    waveform: str = "square,high=40,low=10,period=4,duty=0.5"
    link: Path = field(default=Path("meter"))

    def __post_init__(self) -> None:
        if not self.link.is_absolute():
            self.link = self.work / self.link

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "powerd",
            "sim",
            self.model,
            "--link",
            str(self.link),
            "--waveform",
            self.waveform,
        ]

    def start(self) -> None:
        super().start()
        _wait(self.link.exists, START_TIMEOUT_S, f"pty link {self.link}", self)

    def kill(self) -> None:
        super().kill()
        # a SIGKILLed simulator cannot remove its link: a dangling one is the unplugged cable;
        # remove it so the next start (the replug) is allowed to create it again
        if self.link.is_symlink() and not self.link.exists():
            self.link.unlink()


def _port_open(port: int) -> bool:
    try:
        wait_port(port, 0.05)
    except TimeoutError:
        return False
    return True
