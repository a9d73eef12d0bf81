"""The ``-l`` sample log: one PTDaemon line per face sample, flushed as written.

``Time,MM-DD-YYYY HH:MM:SS.fff,Watts,w,Volts,v,Amps,a,PF,pf,Mark,<mark>``: exactly 12 fields
(power-dev's server reads more fields as channels and crashes), ``-1`` for a value not measured,
never ``nan`` (the server parses values with Decimal, and NaN breaks its comparisons). Numbers are
positional (never an exponent), 7 significant digits. Only samples inside a measurement (Go to
Stop) are written, with the mark of that Go, which is what the server reads back.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np

from powerd.errors import PowerdError
from powerd.ptd.stamp import stamp_text


def num(x: float | None) -> str:
    """A log/reply number: positional, 7 significant digits, ``-1`` if unknown or not finite."""
    if x is None or not math.isfinite(x):
        return "-1"
    return str(np.format_float_positional(x, precision=7, unique=True, fractional=False, trim="-"))


def sample_fields(
    t_ns: int, watts: float, volts: float | None, amps: float | None, pf: float | None
) -> str:
    """``Time,...,PF,pf`` (the RL line; the log adds ``,Mark,<mark>``)."""
    return (
        f"Time,{stamp_text(t_ns)},Watts,{num(watts)},Volts,{num(volts)},"
        f"Amps,{num(amps)},PF,{num(pf)}"
    )


class SampleLog:
    """Appends lines to the ``-l`` file; every line is flushed before ``write`` returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._f = path.open("a", encoding="utf-8", newline="\n")
        except OSError as err:  # one line and exit 2, as every setup error
            raise PowerdError(f"-l {path}: cannot open the sample log: {err.strerror}") from None
        self._lock = threading.Lock()
        self.lines = 0

    def write(self, fields: str, mark: str) -> None:
        with self._lock:
            self._f.write(f"{fields},Mark,{mark}\n")
            self._f.flush()
            self.lines += 1

    def close(self) -> None:
        with self._lock:
            self._f.close()
