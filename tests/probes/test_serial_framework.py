"""The serial reader and the pty simulator base, with a minimal line-streaming meter."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import serial

from powerd.probes.serialport import Emit, SerialReader
from powerd.probes.serialsim import Faults, PtySimulator
from powerd.probes.simulators import SIMULATORS


class CounterMeter:
    """Streams ``<k>\\n`` every tick and answers ``PING`` with ``PONG``."""

    tick_s = 0.005

    def __init__(self) -> None:
        self.k = 0

    def on_input(self, data: bytes, now_ns: int) -> bytes:
        return b"PONG\n" if b"PING" in data else b""

    def stream(self, now_ns: int) -> bytes:
        self.k += 1
        return f"{self.k}\n".encode()


def line_session(
    port: serial.Serial, emit: Emit, clock: Callable[[], int], stop: threading.Event
) -> None:
    port.timeout = 0.2
    while not stop.is_set():
        line = port.readline()
        if not line.endswith(b"\n"):
            continue
        try:
            emit.sample("ctr:0", clock(), float(line))
        except ValueError:
            emit.problem(f"bad line {line!r}")


def wait_for(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cond()


def test_query_reply_over_the_pty(tmp_path: Path) -> None:
    with PtySimulator(CounterMeter(), tmp_path / "meter"):
        port = serial.serial_for_url(str(tmp_path / "meter"), timeout=1)
        port.reset_input_buffer()
        port.write(b"PING\n")
        deadline = time.monotonic() + 5
        seen = b""
        while b"PONG" not in seen and time.monotonic() < deadline:
            seen += port.read(port.in_waiting or 1)
        port.close()
        assert b"PONG" in seen


def test_unplug_is_a_gap_and_nothing_before_or_after_is_lost(tmp_path: Path) -> None:
    link = tmp_path / "meter"
    sim = PtySimulator(CounterMeter(), link).start()
    reader = SerialReader(str(link), line_session, time.time_ns, "ctr", {"timeout": 0.2})
    reader.start()
    got: list[np.ndarray] = []
    problems: list[str] = []

    def pull() -> int:
        blocks, probs = reader.drain()
        got.extend(b.value for b in blocks)
        problems.extend(probs)
        return sum(a.size for a in got)

    try:
        wait_for(lambda: pull() > 20)
        sim.unplug()
        assert not link.exists()
        wait_for(lambda: bool(reader.gaps))
        time.sleep(0.3)
        sim.replug()
        wait_for(lambda: reader.connects >= 2 and pull() > 60)
    finally:
        reader.stop()
        sim.stop()
    pull()
    values = np.concatenate(got)
    assert bool((np.diff(values) > 0).all())  # in order, no repeats
    gap = reader.gaps[0]
    assert gap.end_ns is not None and gap.end_ns - gap.start_ns >= 300_000_000
    assert any("lost" in p or "cannot open" in p for p in problems)
    assert any("reconnected" in p for p in problems)


def test_faults_are_deterministic_and_do_what_they_say() -> None:
    data = b"0123456789" * 10
    assert Faults(no_reply=1.0).apply(random.Random(0), data, True) == b""
    garbled = Faults(garble=1.0).apply(random.Random(0), data, False)
    assert len(garbled) == len(data) and garbled != data
    assert len(Faults(drop=1.0).apply(random.Random(0), data, False)) == len(data) - 1
    assert len(Faults(partial=1.0).apply(random.Random(0), data, False)) < len(data)
    f = Faults(garble=0.5, drop=0.5, partial=0.5, seed=3)
    assert f.apply(random.Random(3), data, False) == f.apply(random.Random(3), data, False)


@pytest.mark.parametrize("model", sorted(SIMULATORS))
def test_every_simulator_serves_from_the_command_line(model: str, tmp_path: Path) -> None:
    link = tmp_path / "dev"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "powerd",
            "sim",
            model,
            "--link",
            str(link),
            "--duration",
            "0.3",
            "--waveform",
            "square,high=4,low=1,period=0.2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert f"{model} at {link}" in r.stderr and not link.exists()


def test_unknown_simulator_is_a_one_line_error(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "powerd", "sim", "nope", "--link", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2 and "unknown simulator 'nope'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
