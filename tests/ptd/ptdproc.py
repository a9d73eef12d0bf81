"""A real ``powerd-ptd`` subprocess and a client that replays power-dev's session sequence.

The client speaks what power-dev's ``server.py`` speaks: one CRLF line per command, one reply
line (``RL``: ``Last N samples`` then N lines). ``max_volts_amps`` reads the ``-l`` log the way
the server does to choose the testing ranges. Waits are bounded; nothing is timed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.servers import free_port, wait_port

STAMP_RE = re.compile(r"^\d\d-\d\d-\d{4} \d\d:\d\d:\d\d\.\d{3}: ")
LOG_RE = re.compile(
    r"^Time,[^,]*,Watts,[^,]*,Volts,(?P<v>[^,]*),Amps,(?P<a>[^,]*),.*,Mark,(?P<mark>[^,]*)$"
)
EXIT_TIMEOUT_S = 15.0
REPLY_TIMEOUT_S = 30.0


def ptd_exe() -> str:
    """The installed console script beside this interpreter."""
    exe = Path(sys.executable).with_name("powerd-ptd")
    assert exe.exists(), f"{exe} missing: pip install -e . installs the powerd-ptd script"
    return str(exe)


@dataclass
class Ptd:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    stdout: Path
    stderr: Path

    def terminate(self) -> int:
        """SIGTERM (what power-dev's server sends) and the exit code (bounded wait)."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=EXIT_TIMEOUT_S)

    def out_lines(self) -> list[str]:
        return self.stdout.read_text("utf-8").splitlines()

    def log_lines(self) -> list[str]:
        return self.log.read_text("utf-8").splitlines() if self.log.exists() else []


@contextmanager
def running_ptd(
    tmp: Path, spec: str, state_dir: Path, name: str = "ptd", extra: tuple[str, ...] = ()
) -> Iterator[Ptd]:
    """``powerd-ptd -l LOG -p PORT 49 SPEC`` with stdout and stderr to files; killed if left."""
    port = free_port()
    log = tmp / f"{name}_logfile.log"
    out, err = tmp / f"{name}_stdout.txt", tmp / f"{name}_stderr.txt"
    env = {**os.environ, "POWERD_STATE_DIR": str(state_dir), "TZ": "UTC"}
    argv = [ptd_exe(), "-l", str(log), "-p", str(port), *extra, "49", spec]
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.Popen(argv, stdout=fo, stderr=fe, env=env)
    ptd = Ptd(proc, port, log, out, err)
    try:
        try:
            wait_port(port, timeout_s=30.0)
        except TimeoutError:
            proc.kill()
            raise AssertionError(
                f"powerd-ptd did not listen: {out.read_text()} {err.read_text()}"
            ) from None
        yield ptd
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Client:
    """power-dev's side of the TCP protocol."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=REPLY_TIMEOUT_S)
        self.f = self.sock.makefile("rb")
        self.sent: list[tuple[str, str]] = []

    def _line(self) -> str:
        raw = self.f.readline()
        assert raw.endswith(b"\r\n"), f"reply not a CRLF line: {raw!r}"
        return raw.decode("utf-8").rstrip("\r\n")

    def cmd(self, command: str) -> str:
        self.sock.sendall(command.encode() + b"\r\n")
        reply = self._line()
        self.sent.append((command, reply))
        return reply

    def read_last(self, command: str = "RL") -> list[str]:
        head = self.cmd(command)
        m = re.fullmatch(r"Last (\d+) samples", head)
        assert m, head
        return [self._line() for _ in range(int(m[1]))]

    def close(self) -> None:
        self.f.close()
        self.sock.close()


def init_range(rr_reply: str, index: int) -> str:
    """The server's initial range from RR: the value if its auto flag is 0 and it is > 0."""
    parts = rr_reply.split(",")
    try:
        if parts[index] == "0" and float(parts[index + 1]) > 0:
            return parts[index + 1]
    except (ValueError, IndexError):
        return "Auto"
    return "Auto"


def max_volts_amps(log: Path, mark: str) -> tuple[Decimal, Decimal]:
    """The largest Volts and Amps logged with ``mark`` (as the server reads them)."""
    vmax, amax = Decimal(-1), Decimal(-1)
    for line in log.read_text("utf-8").splitlines():
        m = LOG_RE.match(line)
        if m and m["mark"] == mark:
            vmax, amax = max(vmax, Decimal(m["v"])), max(amax, Decimal(m["a"]))
    return vmax, amax


def wait_log_lines(ptd: Ptd, mark: str, n: int, timeout_s: float = 30.0) -> None:
    """Until the ``-l`` log holds ``n`` lines of ``mark`` (a bounded wait, not a timing check)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(line.endswith(f",Mark,{mark}") for line in ptd.log_lines()) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} log lines of {mark} after {timeout_s} s")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# what the face answers to ``Go,1000,0,<mark>``
GO = "Starting untimed measurement, maximum 500000 samples at 1000ms with 0 rampup samples"


def session_text(ptd: Ptd, session: str, meter: str) -> list[str]:
    """The stdout of a ptd that ran ``<session>_ranging`` then ``<session>_testing`` and has
    exited, without the stamps: as check.py reads it, the uncertainty check of ``meter``
    announced before the ranging Go and the test completed after it."""
    text = [x.split(": ", 1)[1] for x in ptd.out_lines()]
    go_at = text.index(f"Go with mark '{session}_ranging'")
    assert f"Uncertainty checking for {meter} is activated" in text[:go_at]
    assert "Completed test" in text[go_at:]
    return text


def report_phases(state: Path, session: str, out: Path) -> dict[str, dict[str, Any]]:
    """``powerd report <session>`` on ``state``: its result's phases by name, which are the
    session's ranging and testing phases and nothing else."""
    done = subprocess.run(
        [sys.executable, "-m", "powerd", "--state-dir", str(state), "report", session,
         "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads((out / f"{session}.json").read_text())
    phases = {p["phase"]: p for p in result["phases"]}
    assert set(phases) == {f"{session}_ranging", f"{session}_testing"}
    return phases
