"""Pieces several benchmarks share: loopback ports for the servers they start, and the child
process of the probe cost benches (``probe_nvml_cost``, ``probe_sysfs_cost``, ``probe_cli_cost``).

Why here: each bench had its own copy. ``free_port`` is the tests' (``tests/ports.py``): a port
outside the kernel's ephemeral range, so a client reconnecting to a stopped server can never take
its port by a TCP self-connect. A cost bench measures a probe in a child process (its own CPU
times, nothing else of the bench's in them): ``run_child`` starts ``<script> --child SPEC SECONDS
STATE_DIR``, the child's ``main`` hands those to ``child_args``, opens its probes and calls
``sample``, which runs the real ``Sampler`` for the duration and returns what it cost.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import benchlib

if str(benchlib.ROOT) not in sys.path:
    sys.path.insert(0, str(benchlib.ROOT))

from tests.ports import free_port

if TYPE_CHECKING:
    from powerd.probes.base import Probe

__all__ = [
    "CostRun",
    "Sampled",
    "child_args",
    "cost_bench_start",
    "cpu_s",
    "free_port",
    "run_child",
    "sample",
    "start_daemon",
    "stop_daemon",
    "us_per_read_above",
    "wait_port",
]


def wait_port(port: int, timeout_s: float = 20.0) -> None:
    """Return once something accepts TCP connections on 127.0.0.1:``port``; raise after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def start_daemon(tmp: Path, name: str, body: str) -> tuple[subprocess.Popen[bytes], int]:
    """``powerd run`` from ``tmp/<name>.toml`` (``body``'s keys in ``[daemon]``, a state dir of
    its own, HTTP on a free port), its output to ``tmp/<name>.log``; returns once the HTTP port
    accepts connections (else it is killed and this raises)."""
    http = free_port()
    conf = tmp / f"{name}.toml"
    conf.write_text(
        f'[daemon]\nstate_dir = "{tmp / ("state-" + name)}"\n{body}\n[http]\nport = {http}\n'
    )
    log = (tmp / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "powerd", "run", "--config", str(conf)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=benchlib.ROOT,
    )
    try:
        wait_port(http, timeout_s=30.0)
    except RuntimeError as err:
        proc.kill()
        proc.wait(10)
        log_path = tmp / f"{name}.log"
        raise RuntimeError(f"powerd run did not open port {http}; see {log_path}") from err
    return proc, http


def stop_daemon(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT (a clean stop), then SIGKILL after 30 s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def cpu_s(who: int = resource.RUSAGE_SELF) -> float:
    """CPU time (user + sys) of this process (all threads), or of its reaped children."""
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


@dataclass(frozen=True)
class Sampled:
    """What one sampling period cost, and what the sampler did in it."""

    cpu_s: float  # this process, all threads (sampler, readers, pollers)
    wall_s: float
    tools_cpu_s: float  # the processes the probes started and reaped in the period (closed)
    reads: int
    samples: int
    problems: int
    errors: int
    last_error: str  # the first probe's last error that is not empty; "" if none

    @property
    def core_pct(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s

    @property
    def tools_core_pct(self) -> float:
        return 100.0 * self.tools_cpu_s / self.wall_s


def sample(probes: Sequence[Probe], duration_s: float, state_dir: Path) -> Sampled:
    """Run the real ``Sampler`` (timeline, SQLite store, flushes) over ``probes`` for
    ``duration_s``, then close them; the CPU it took over the sampling period only."""
    from powerd.runner import Sampler
    from powerd.store import Store
    from powerd.timebase import TimeAnchor
    from powerd.timeline import Timeline

    with Store(state_dir / "powerd.db") as store:
        sampler = Sampler(list(probes), Timeline(), store, TimeAnchor())
        c0, k0, w0 = cpu_s(), cpu_s(resource.RUSAGE_CHILDREN), time.monotonic()
        sampler.start()
        time.sleep(duration_s)
        sampler.stop()
        own, wall = cpu_s() - c0, time.monotonic() - w0
        for p in probes:
            p.close()
        tools = cpu_s(resource.RUSAGE_CHILDREN) - k0
    health = sampler.health
    return Sampled(
        cpu_s=own,
        wall_s=wall,
        tools_cpu_s=tools,
        reads=sum(h.reads for h in health),
        samples=sum(h.samples for h in health),
        problems=sum(h.problems for h in health),
        errors=sum(h.errors for h in health),
        last_error=next((h.last_error for h in health if h.last_error), ""),
    )


def us_per_read_above(run: Mapping[str, Any], empty: Mapping[str, Any]) -> float:
    """CPU µs per probe read that ``run`` (a child's figures: ``cpu_s``, ``wall_s``, ``reads``)
    took above an empty sampler's CPU over the same wall time."""
    above_s = run["cpu_s"] - empty["cpu_s"] * run["wall_s"] / empty["wall_s"]
    return 1e6 * above_s / max(run["reads"], 1)


def child_args() -> tuple[str, float, Path] | None:
    """``(spec, seconds, state_dir)`` when this process was started by ``run_child``, else None."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return sys.argv[2], float(sys.argv[3]), Path(sys.argv[4])
    return None


@dataclass(frozen=True)
class CostRun:
    """A cost bench's parent run: its arguments, the one-core setup and the sampling time."""

    args: argparse.Namespace
    setup: dict[str, Any]
    duration_s: float  # 3 s with --quick, else --seconds


def cost_bench_start(
    doc: str | None,
    name: str,
    child: Callable[[str, float, Path], dict[str, Any]],
    seconds_help: str,
    default_s: float = 20.0,
) -> CostRun | None:
    """The start of a cost bench's ``main``. In a child (``run_child``): print ``child``'s JSON
    and return None. Else parse the common options and ``--seconds`` (``default_s``), pin to one
    core, and return what the parent needs."""
    if (given := child_args()) is not None:
        print(json.dumps(child(*given)))
        return None
    p = benchlib.parser(doc.splitlines()[0] if doc else name)
    p.add_argument("--seconds", type=float, default=default_s, help=seconds_help)
    args = p.parse_args()
    setup = benchlib.single_core(args.cpu)
    return CostRun(args, setup, 3.0 if args.quick else args.seconds)


def run_child(script: str, spec: str, duration_s: float, work: Path, env: Mapping[str, str]) -> Any:
    """Run ``script``'s child for ``spec`` in a fresh state dir under ``work``, with ``env`` added
    to this environment; the JSON object it printed last."""
    state = Path(tempfile.mkdtemp(prefix="state-", dir=work))
    cmd = [sys.executable, script, "--child", spec, str(duration_s), str(state)]
    r = subprocess.run(
        cmd, env={**os.environ, **env}, cwd=benchlib.ROOT, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    return json.loads(r.stdout.strip().splitlines()[-1])
