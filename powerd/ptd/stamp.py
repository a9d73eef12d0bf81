"""The timestamped lines PTDaemon prints and power-dev's checker reads.

Every line is ``MM-DD-YYYY HH:MM:SS.fff: <message>`` in UTC, flushed at once: the server tees
stdout into ``ptd_logs.txt`` and check.py fails on any WARNING/ERROR line without a stamp, so
nothing in powerd-ptd prints to stdout or stderr except through ``StampedOut``.
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime
from typing import TextIO


def stamp_text(t_ns: int) -> str:
    """``MM-DD-YYYY HH:MM:SS.fff`` (UTC, milliseconds truncated) of a UTC ns time."""
    ms = t_ns // 1_000_000
    dt = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{dt:%m-%d-%Y %H:%M:%S}.{ms % 1000:03d}"


class StampedOut:
    """One writer of stamped lines (thread-safe); every line is flushed as written."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()
        self.lines = 0

    def line(self, message: str, t_ns: int | None = None) -> None:
        """Print one message (a multi-line message is split, each line stamped)."""
        t = time.time_ns() if t_ns is None else t_ns
        prefix = stamp_text(t)
        with self._lock:
            for part in message.splitlines() or [""]:
                self.stream.write(f"{prefix}: {part}\n")
                self.lines += 1
            self.stream.flush()

    def warning(self, message: str, t_ns: int | None = None) -> None:
        self.line(f"WARNING: {message}", t_ns)

    def error(self, message: str, t_ns: int | None = None) -> None:
        self.line(f"ERROR: {message}", t_ns)
