"""Pure parser of the ``hyperdex-smi`` table (HyperAccel LPU) into board power in W per device.

``hyperdex-smi`` prints an ``nvidia-smi``-like table (HyperDex 1.5, XRT 2022.2, LPUs on AMD Alveo
U55C cards). Each device takes two rows; the first starts with its id, name, persistence mode and
PCI bus id, the second holds ``Temp  Perf  Pwr:Usage/Cap``:

    |    0      XILINX U55C    Off  | 0000:b1:00.1      On |                  N/A |
    |       48C    P8    34W / 225W |      0MiB / 16384MiB |      0%      Default |

``34W`` is the reading in integer W (this module's only unit conversion: none, W is checked);
``225W`` is the power cap, a limit, never a reading. ``N/A`` is no reading, never 0 W.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEAD_RE = re.compile(r"^\|\s*(\d+)\s+(.+?)\s+(On|Off|N/A)\s*\|\s*([0-9A-Fa-f]{4}:[0-9A-Fa-f:.]+)")
PWR_RE = re.compile(r"(\S+)\s*/\s*(\S+)\s*$")
WATTS_RE = re.compile(r"^(\d+(?:\.\d+)?)W$")


@dataclass(frozen=True)
class Lpu:
    """One device row pair: id, name, bus id, power in W (or why not) and the cap (a limit)."""

    index: int
    name: str
    bus_id: str
    power_w: float | None
    power_error: str | None
    cap_w: float | None


def _watts(text: str) -> float | None:
    m = WATTS_RE.match(text.strip())
    return float(m.group(1)) if m else None


def parse_table(text: str) -> list[Lpu]:
    """Devices of one ``hyperdex-smi`` output; ValueError if it lists none."""
    lines = text.splitlines()
    lpus: list[Lpu] = []
    for i, line in enumerate(lines):
        head = HEAD_RE.match(line.strip())
        if head is None:
            continue
        index, name, bus = int(head.group(1)), head.group(2), head.group(4)
        cell = lines[i + 1].strip().strip("|").split("|")[0] if i + 1 < len(lines) else ""
        pwr = PWR_RE.search(cell.strip())
        if pwr is None:
            lpus.append(Lpu(index, name, bus, None, f"no Pwr:Usage/Cap in {cell.strip()!r}", None))
            continue
        usage, cap = pwr.group(1), pwr.group(2)
        w = _watts(usage)
        why = None if w is not None else f"Pwr:Usage reads {usage!r}"
        lpus.append(Lpu(index, name, bus, w, why, _watts(cap)))
    if not lpus:
        first = text.strip().splitlines()[:1]
        raise ValueError(f"no device rows in the output ({first[0][:80]!r})" if first else "empty")
    return lpus
