"""Helpers for end-to-end meter tests: ``powerd measure`` in a subprocess against a simulator
served in-process on a pty, the result JSON and the stored samples (CSV) read back.

Used by the ina2xx and scpi tests. Waits are bounded and conditions are polled, never timed.
"""

from __future__ import annotations

import csv
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from powerd.probes.serialsim import PtySimulator
from tests.tools import run_powerd


@dataclass
class Measured:
    rc: int
    stderr: str
    stdout: str
    result: dict[str, Any]
    samples: dict[str, tuple[np.ndarray, np.ndarray]]  # channel → (t_ns, value)

    def phase(self, name: str) -> dict[str, Any]:
        found = [p for p in self.result["phases"] if p["phase"] == name]
        assert found, f"no phase {name!r} in {self.result['phases']}"
        return dict(found[0])


def powerd(state: Path, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    return run_powerd(*args, state=state, timeout_s=timeout_s)


def read_csv(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rows: dict[str, tuple[list[int], list[float]]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(line for line in f if not line.startswith("#")):  # notes
            t, v = rows.setdefault(row["channel"], ([], []))
            t.append(int(row["t_ns"]))
            v.append(float(row["value"]))
    return {c: (np.array(t, np.int64), np.array(v, np.float64)) for c, (t, v) in rows.items()}


def measure(
    tmp: Path,
    spec: str,
    run: str,
    cmd: list[str],
    idle_s: float = 0.0,
    quiet: bool = True,
    extra_probes: list[str] | None = None,
) -> Measured:
    out = tmp / "out"
    args = ["measure", "--probe", spec, "--run", run, "--out", str(out)]
    for other in extra_probes or []:
        args += ["--probe", other]
    if idle_s:
        args += ["--idle", str(idle_s)]
    if quiet:
        args.append("--quiet")
    r = powerd(tmp / "state", *args, "--", *cmd)
    result_path = out / f"{run}.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else {"phases": []}
    csv_path = out / f"{run}.csv"
    samples = read_csv(csv_path) if csv_path.exists() else {}
    return Measured(r.returncode, r.stderr, r.stdout, result, samples)


def unplug_later(
    sim: PtySimulator, link: Path, wait_for: Callable[[], bool], down_s: float
) -> threading.Thread:
    """In a thread: once ``wait_for()`` holds (bounded), pull the cable for ``down_s``, replug."""

    def run() -> None:
        deadline = time.monotonic() + 60
        while not wait_for() and time.monotonic() < deadline:
            time.sleep(0.02)
        sim.unplug()
        time.sleep(down_s)
        sim.replug()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def largest_gap(t_ns: np.ndarray) -> tuple[int, int]:
    """Index of the sample before the largest interval, and that interval in ns."""
    d = np.diff(t_ns)
    i = int(np.argmax(d))
    return i, int(d[i])


def aged(path: Path, seconds: float) -> bool:
    """``path`` was last written at least ``seconds`` ago."""
    return time.time() - path.stat().st_mtime >= seconds


def measure_unplugged(
    tmp: Path, sim: PtySimulator, spec: str, run: str, cmd_s: float, exit_code: int, down_s: float
) -> Measured:
    """``powerd measure`` of CMD ``sleep cmd_s; exit exit_code`` while the cable of the started
    ``sim`` is pulled for ``down_s`` once CMD has run 1 s; the simulator is stopped after."""
    started = tmp / "started"
    try:
        unplug_later(sim, sim.link, lambda: started.exists() and aged(started, 1.0), down_s)
        return measure(
            tmp, spec, run, ["sh", "-c", f"touch {started}; sleep {cmd_s}; exit {exit_code}"]
        )
    finally:
        sim.stop()


def run_gap(m: Measured, channel: str) -> tuple[dict[str, Any], int, np.ndarray, np.ndarray]:
    """The run phase of ``m`` (asserted ``incomplete``), the largest interval between the stored
    samples of ``channel`` within it (ns), and the intervals before and after that one."""
    p = m.phase("run")
    assert "incomplete" in p["flags"]
    t, _ = m.samples[channel]
    t = t[(t >= p["t_begin_ns"]) & (t <= p["t_end_ns"])]
    i, gap_ns = largest_gap(t)
    return p, gap_ns, np.diff(t[: i + 1]), np.diff(t[i + 1 :])


class Readable(Protocol):
    """A probe driven in-process: started with a clock, read, closed."""

    def start(self, now_ns: Callable[[], int]) -> None: ...

    def read(self, now_ns: int) -> Iterable[Any]: ...

    def problems(self) -> list[str]: ...

    def close(self) -> None: ...


def drive(
    probe: Readable, seconds: float, poll_s: float, read_after_close: bool
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Run the probe in-process for ``seconds``, reading every ``poll_s`` (and once more after
    closing it when ``read_after_close``); all samples' times and values, and its problems."""
    probe.start(time.time_ns)
    t: list[np.ndarray] = []
    v: list[np.ndarray] = []
    problems: list[str] = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            time.sleep(poll_s)
            for b in probe.read(time.time_ns()):
                t.append(b.t_ns)
                v.append(b.value)
            problems += probe.problems()
    finally:
        probe.close()
    if read_after_close:
        for b in probe.read(time.time_ns()):
            t.append(b.t_ns)
            v.append(b.value)
    if not t:
        return np.empty(0, np.int64), np.empty(0), problems
    return np.concatenate(t), np.concatenate(v), problems
