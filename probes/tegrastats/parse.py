"""Pure parser of one ``tegrastats`` output line into power-rail readings in W.

tegrastats prints one line per sample. Rails appear as ``NAME cur/avg`` in mW, where NVIDIA's
utility reference defines ``cur`` as the current power and ``avg`` as the average since start.
The formats seen:

- L4T 32 (JetPack 4): ``POM_5V_IN 2545/2547`` (no unit);
- L4T 35/36 (JetPack 5/6): ``VDD_GPU_SOC 1995mW/1995mW``, sometimes mixed (``598mW/598``);
- newer L4T: three values ``VDD_GPU_SOC 2792mW/2792mW/2792mW``;
- Jetson Thor (JetPack 7, L4T 38): negative values where a rail's offset exceeds its reading
  (``VDD_GPU -392mW/-392mW`` on an idle GPU). They are kept as read (the probe flags the rail:
  a negative power is a sensor or wiring problem the user must see), never dropped;
- any of them may be preceded by ``MM-DD-YYYY HH:MM:SS`` (local time, no zone).

Only the first (instantaneous) value is used. ``RAM 2149/3964MB``, ``SWAP 0/1982MB`` and
``IRAM 0/252kB`` have the same shape but a byte unit, so a value must end at a space or the end
of the line (the plain regex ``NAME (\\d+)(?:mW)?/(\\d+)…`` in the notes would take RAM for a rail).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

DATE_RE = re.compile(r"^\s*(\d{2})-(\d{2})-(\d{4}) (\d{2}):(\d{2}):(\d{2})\s+")
RAIL_RE = re.compile(
    r"(?<![\w@./%-])([A-Z][A-Z0-9_]*) (-?\d+)(?:mW)?/(-?\d+)(?:mW)?(?:/(-?\d+)(?:mW)?)?(?=\s|$)"
)


@dataclass(frozen=True)
class Rail:
    """One rail on one line: the instantaneous power and the values after it, in W."""

    power_w: float
    others_w: tuple[float, ...] = ()


@dataclass(frozen=True)
class Line:
    """A parsed line: its leading local timestamp if any, and its rails by name in line order."""

    local_time: dt.datetime | None
    rails: dict[str, Rail] = field(default_factory=dict)


def parse_line(line: str) -> Line:
    """Rails of one tegrastats line (none for a line that is not a sample)."""
    local_time = None
    m = DATE_RE.match(line)
    if m:
        mo, d, y, hh, mm, ss = (int(g) for g in m.groups())
        try:
            local_time = dt.datetime(y, mo, d, hh, mm, ss)  # local time: tegrastats prints no zone
        except ValueError:
            local_time = None
        line = line[m.end() :]
    rails: dict[str, Rail] = {}
    for r in RAIL_RE.finditer(line):
        values = [int(v) / 1e3 for v in r.groups()[1:] if v is not None]
        rails.setdefault(r.group(1), Rail(values[0], tuple(values[1:])))
    return Line(local_time, rails)
