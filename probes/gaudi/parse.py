"""Pure parser of ``hl-smi -Q index,uuid,name,power.draw,power.max -f csv,noheader`` lines.

Intel Gaudi's ``hl-smi`` prints one CSV line per device and, with ``-l <seconds>``, the same
lines again every interval. Fields are separated by ``", "``; power values carry their unit,
``226 W`` (W is checked: this module's only unit handling), as in
``0, 01P4-HL3090A0-18-U4V193-22-07-00, HL-325L, 226 W, 850 W``. ``power.draw`` is the reading;
``power.max`` is the power limit (settable with ``hl-smi -p``), never a reading. ``N/A`` is no
reading, never 0 W.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FIELDS = ("index", "uuid", "name", "power.draw", "power.max")
WATTS_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*W$")
NA = ("N/A", "[N/A]", "NA")


@dataclass(frozen=True)
class Row:
    """One device line: its index, uuid, name, power in W (or why not) and the limit in W."""

    index: int
    uuid: str
    name: str
    power_w: float | None
    power_error: str | None
    limit_w: float | None


def watts(text: str) -> tuple[float | None, str | None]:
    """``"226 W"`` → 226.0; ``"N/A"`` or a value without the W unit → (None, why)."""
    m = WATTS_RE.match(text.strip())
    if m:
        return float(m.group(1)), None
    if text.strip() in NA:
        return None, "power.draw is N/A"
    return None, f"power.draw reads {text.strip()!r}"


def parse_line(line: str) -> Row | None:
    """One CSV line (None for a blank line); ValueError if it is not a device line."""
    text = line.strip()
    if not text:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != len(FIELDS):
        raise ValueError(f"expected {len(FIELDS)} fields, got {len(parts)}: {text[:120]!r}")
    if not (parts[0].isascii() and parts[0].isdigit()):
        raise ValueError(f"index is {parts[0]!r}: {text[:120]!r}")
    w, why = watts(parts[3])
    limit, _ = watts(parts[4])
    return Row(int(parts[0]), parts[1], parts[2], w, why, limit)
